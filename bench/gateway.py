"""Gateway benchmark: throughput and p99 of three proxies in front of the same upstream handler.

1. the bejo gateway, with JWT auth, RBAC, rate limiting (a high limit), routing and access log;
2. a bare aiohttp proxy hop: one handler, one ClientSession, the default asyncio loop;
3. nginx (Debian's package) as a plain reverse proxy with keep-alive to the upstream.

The upstream is one tiny aiohttp app (uvloop) answering a small JSON document. Each proxy and the
upstream run as separate processes (one worker each), and the load generator is `wrk` when
installed (else an asyncio client in its own process), with keep-alive connections. Everything
shares this machine's cores, so the ratios say more than the absolute figures.

    .venv/bin/python bench/gateway.py          # or: python -m bench gateway
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

PATH = "/api/v1/orders/o-1"  # needs a token (any role): auth, RBAC and the rate limiter all run
CONNECTIONS = 64
WARMUP_SECONDS = 2
SECONDS = 10
PAYLOAD = b'{"id":"o-1","status":"approved","total":2615000,"pemda":"35.15"}'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- processes (this file re-executed with a role) --------------------------------------------


def _serve_upstream(port: int) -> None:
    import uvloop
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=PAYLOAD, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def _serve_bare_proxy(port: int, upstream: str) -> None:
    import aiohttp
    from aiohttp import web

    async def session_ctx(app: web.Application) -> Any:
        app["session"] = aiohttp.ClientSession()
        yield
        await app["session"].close()

    async def hop(request: web.Request) -> web.Response:
        async with request.app["session"].request(
            request.method, upstream + request.raw_path, headers=request.headers, data=await request.read()
        ) as answer:
            body = await answer.read()
            return web.Response(body=body, status=answer.status, content_type=answer.content_type)

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", hop)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def _load_python(url: str, token: str, seconds: float, connections: int) -> None:
    """Fallback load generator: keep-alive connections, each a worker looping for `seconds`."""
    import aiohttp
    import uvloop

    async def main() -> None:
        latencies: list[float] = []
        errors = 0
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector, headers={"Authorization": f"Bearer {token}"}) as http:
            deadline = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal errors
                while time.perf_counter() < deadline:
                    started = time.perf_counter()
                    async with http.get(url) as answer:
                        await answer.read()
                        if answer.status != 200:
                            errors += 1
                    latencies.append(time.perf_counter() - started)

            began = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(connections)))
            elapsed = time.perf_counter() - began
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else float("nan")
        print(f"RESULT {len(latencies) / elapsed:.1f} {p99:.3f} {errors}")

    uvloop.run(main())


# -- orchestration ---------------------------------------------------------------------------------


def _start(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return _start([sys.executable, *args], env)


def _nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


async def _wait_ready(url: str, token: str, within: float = 20.0) -> None:
    import aiohttp

    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as answer:
                    body = await answer.read()
                    if answer.status == 200 and body == PAYLOAD:
                        return
                    last = f"HTTP {answer.status}: {body[:200]!r}"
            except aiohttp.ClientError as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready: {last}")
            await asyncio.sleep(0.1)


def _nginx_config(prefix: Path, port: int, upstream_port: int) -> Path:
    config = prefix / "nginx.conf"
    config.write_text(
        textwrap.dedent(
            f"""
            worker_processes 1;
            pid {prefix}/nginx.pid;
            error_log {prefix}/error.log warn;
            events {{ worker_connections 1024; }}
            http {{
                access_log off;
                client_body_temp_path {prefix}/body;
                proxy_temp_path {prefix}/proxy;
                fastcgi_temp_path {prefix}/fastcgi;
                uwsgi_temp_path {prefix}/uwsgi;
                scgi_temp_path {prefix}/scgi;
                upstream backend {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
                server {{
                    listen 127.0.0.1:{port};
                    location / {{
                        proxy_pass http://backend;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                        proxy_set_header Host $host;
                    }}
                }}
            }}
            """
        )
    )
    return config


async def _measure(url: str, token: str) -> tuple[float, float, str]:
    """(requests per second, p99 ms, tool) over SECONDS after a warm-up."""
    wrk = shutil.which("wrk")
    header = f"Authorization: Bearer {token}"
    if wrk:
        warm = await asyncio.create_subprocess_exec(
            wrk, "-t1", f"-c{CONNECTIONS}", f"-d{WARMUP_SECONDS}s", "-H", header, url,
            stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await warm.wait()
        run = await asyncio.create_subprocess_exec(
            wrk, "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", "-H", header, url,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out = (await run.communicate())[0].decode()
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if non_2xx:
            raise RuntimeError(f"{url}: {non_2xx.group(1)} non-2xx answers during the run")
        return rps, p99, "wrk"
    for seconds in (WARMUP_SECONDS, SECONDS):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "load", url, token, str(seconds), str(CONNECTIONS),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out = (await proc.communicate())[0].decode()
    rps_text, p99_text, errors = out.split("RESULT", 1)[1].split()
    if int(errors):
        raise RuntimeError(f"{url}: {errors} non-200 answers during the run")
    return float(rps_text), float(p99_text), "python asyncio client"


async def run() -> None:
    from bejo_kit.auth import mint_token
    from bejo_kit.settings import KitSettings

    token = mint_token(KitSettings(), sub="bench-pp", role="pp", pemda="35.15", satker="dinkes")
    upstream_port, gateway_port, bare_port, nginx_port = (_free_port() for _ in range(4))
    upstream = f"http://127.0.0.1:{upstream_port}"
    procs = [_spawn(__file__, "upstream", str(upstream_port))]
    gateway_env = {
        "GATEWAY_HTTP_PORT": str(gateway_port),
        **{f"GATEWAY_{name}_URLS": upstream for name in ("CATALOG", "ORDERS", "PAYMENTS", "NOTIFICATIONS")},
        "GATEWAY_RATE_LIMIT_PER_SECOND": "1000000",
        "GATEWAY_RATE_LIMIT_BURST": "1000000",
        "LOG_JSON": "true",
    }
    results: dict[str, tuple[float, float, str]] = {}
    nginx_dir = tempfile.mkdtemp(prefix="bejo-bench-nginx-")
    nginx = _nginx_binary()
    try:
        await _wait_ready(upstream + PATH, token)
        targets: list[tuple[str, str, list[subprocess.Popen[bytes]]]] = []
        gateway_proc = _spawn("-c", "from bejo_gateway.app import main; main()", env=gateway_env)
        targets.append(("gateway", f"http://127.0.0.1:{gateway_port}{PATH}", [gateway_proc]))
        bare_proc = _spawn(__file__, "bare", str(bare_port), upstream)
        targets.append(("bare aiohttp hop", f"http://127.0.0.1:{bare_port}{PATH}", [bare_proc]))
        if nginx:
            config = _nginx_config(Path(nginx_dir), nginx_port, upstream_port)
            nginx_proc = _start([nginx, "-p", nginx_dir, "-c", str(config), "-g", "daemon off;"])
            targets.append(("nginx", f"http://127.0.0.1:{nginx_port}{PATH}", [nginx_proc]))
        else:
            print("nginx: not installed (apt-get install -y nginx); skipped")
        for _, _, started in targets:
            procs.extend(started)
        for _name, url, _ in targets:
            await _wait_ready(url, token)
        for name, url, _ in targets:
            results[name] = await _measure(url, token)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(nginx_dir, ignore_errors=True)

    tool = next(iter(results.values()))[2] if results else "-"
    print(f"gateway benchmark: GET {PATH} with a bearer token, {CONNECTIONS} keep-alive connections, {SECONDS}s each")
    print(f"load generator: {tool}; small JSON upstream (aiohttp + uvloop); one process per proxy")
    for name, (rps, p99, _) in results.items():
        print(f"  {name:<18} {rps:>9.0f} req/s   p99 {p99:7.2f} ms")
    if "nginx" in results:
        nginx_rps = results["nginx"][0]
        print(f"  ratio gateway/nginx        {results['gateway'][0] / nginx_rps:.2f}x")
        print(f"  ratio bare aiohttp/nginx   {results['bare aiohttp hop'][0] / nginx_rps:.2f}x")
    print(f"  ratio gateway/bare aiohttp {results['gateway'][0] / results['bare aiohttp hop'][0]:.2f}x")


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else "run"
    if role == "upstream":
        _serve_upstream(int(sys.argv[2]))
    elif role == "bare":
        _serve_bare_proxy(int(sys.argv[2]), sys.argv[3])
    elif role == "load":
        _load_python(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
    else:
        asyncio.run(run())
