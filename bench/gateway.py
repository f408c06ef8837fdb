"""Gateway benchmark (row 1): requests/s and p99 of proxies in front of one upstream, same run.

The upstream is nginx answering a small JSON document itself (one worker), so it is never the
bottleneck and every proxy is measured against the same thing. In front of it:
- nginx as a plain reverse proxy with keep-alive (Debian's nginx), 1 and 2 workers;
- a bare aiohttp hop (one handler, one ClientSession, uvloop), 1 worker;
- the bejo gateway with JWT auth, RBAC, rate limiting (a high limit), routing and the access log,
  1 and 2 worker processes (`GATEWAY_WORKERS`, SO_REUSEPORT); and the same on asyncio's own loop;
- the edge alternative: nginx in front (routing; TLS would end there), anonymous catalog reads
  sent by nginx straight to the service, authenticated requests through the Python gateway.
The load generator is wrk (keep-alive, `CONNECTIONS` connections, `SECONDS` each after a warm-up).
Everything shares this machine's cores with the load generator, so the ratios say more than the
absolute figures. Also measured in-process: what the token cache saves per request.

    .venv/bin/python -m bench gateway
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

from bench.report import profile, record

PATH = "/api/v1/orders/o-1"  # needs a token (any role): auth, RBAC and the rate limiter all run
PUBLIC_PATH = "/api/v1/products?q=kopi"  # anonymous browsing: public in the RBAC table
CONNECTIONS = int(os.environ.get("BENCH_GATEWAY_CONNECTIONS", "64"))
WARMUP_SECONDS = 1
SECONDS = int(os.environ.get("BENCH_GATEWAY_SECONDS", "5"))
PAYLOAD = b'{"id":"o-1","status":"approved","total":2615000,"pemda":"35.15"}'
# A 16 KiB order-like JSON body: relayed as bytes, never parsed (the body lever).
POST_BODY = '{"lines":[' + ",".join(f'{{"product_id":"prd-{n:05d}","quantity":{n % 7 + 1}}}' for n in range(400)) + "]}"
GOAL = 0.5  # x nginx with the same number of workers
REPO = Path(__file__).resolve().parent.parent
LOG_DIR = Path(os.environ.get("BENCH_LOG_DIR", REPO / ".state" / "bench"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- processes (this file re-executed with a role) --------------------------------------------


def _serve_bare_proxy(port: int, upstream: str) -> None:
    import aiohttp
    import uvloop
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
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def _serve_gateway_asyncio() -> None:
    """The gateway exactly as `bejo-gateway` runs it, but on asyncio's default event loop."""
    from aiohttp import web

    from bejo_gateway.app import build
    from bejo_gateway.settings import GatewaySettings
    from bejo_kit.logging import configure_logging

    settings = GatewaySettings()
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    web.run_app(build(settings), host="127.0.0.1", port=settings.http_port, access_log=None, print=None)


# -- orchestration ---------------------------------------------------------------------------------


def nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log = (LOG_DIR / "gateway-processes.log").open("ab")

    def start(self, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=self.log, stderr=self.log, cwd=REPO)
        self.procs.append(proc)
        return proc

    def python(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self.start([sys.executable, *args], env)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)
        self.log.close()


async def wait_ready(url: str, token: str | None, within: float = 20.0) -> None:
    import aiohttp

    deadline = time.monotonic() + within
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    last = ""
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url, headers=headers) as answer:
                    body = await answer.read()
                    if answer.status == 200 and body == PAYLOAD:
                        return
                    last = f"HTTP {answer.status}: {body[:200]!r}"
            except aiohttp.ClientError as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready: {last}")
            await asyncio.sleep(0.1)


def nginx_config(prefix: Path, body: str, workers: int) -> Path:
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    config = prefix / "nginx.conf"
    config.write_text(
        textwrap.dedent(
            f"""
            worker_processes {workers};
            pid {prefix}/nginx.pid;
            error_log {prefix}/error.log warn;
            events {{ worker_connections 4096; }}
            http {{
                access_log off;
                client_body_buffer_size 64k;
                client_body_temp_path {prefix}/body;
                proxy_temp_path {prefix}/proxy;
                fastcgi_temp_path {prefix}/fastcgi;
                uwsgi_temp_path {prefix}/uwsgi;
                scgi_temp_path {prefix}/scgi;
            """
        )
        + textwrap.indent(body, "    ")
        + "\n}\n"
    )
    return config


def upstream_block(port: int) -> str:
    return textwrap.dedent(
        f"""
        server {{
            listen 127.0.0.1:{port} reuseport;
            keepalive_requests 1000000;
            location / {{
                default_type application/json;
                return 200 '{PAYLOAD.decode()}';
            }}
        }}
        """
    )


def proxy_block(port: int, upstream_port: int) -> str:
    return textwrap.dedent(
        f"""
        upstream backend {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}
        server {{
            listen 127.0.0.1:{port} reuseport;
            keepalive_requests 1000000;
            location / {{
                proxy_pass http://backend;
                proxy_http_version 1.1;
                proxy_set_header Connection "";
                proxy_set_header Host $host;
            }}
        }}
        """
    )


def edge_block(port: int, gateway_port: int, catalog_port: int) -> str:
    """nginx as the edge: anonymous catalog reads straight to the catalog service (rate limited per
    IP by nginx), everything else through the Python gateway (auth, RBAC, composition)."""
    return textwrap.dedent(
        f"""
        limit_req_zone $binary_remote_addr zone=anonymous:10m rate=100000r/s;
        upstream gateway {{ server 127.0.0.1:{gateway_port}; keepalive 128; }}
        upstream catalog {{ server 127.0.0.1:{catalog_port}; keepalive 128; }}
        map $http_authorization $public_target {{ "" catalog; default gateway; }}
        server {{
            listen 127.0.0.1:{port} reuseport;
            keepalive_requests 1000000;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            location ~ ^/api/v1/(products|categories|providers|promotions)(/|$) {{
                limit_except GET HEAD {{ proxy_pass http://gateway; }}
                limit_req zone=anonymous burst=100000 nodelay;
                proxy_pass http://$public_target;
            }}
            location / {{ proxy_pass http://gateway; }}
        }}
        """
    )


def parse_wrk(out: str, url: str) -> tuple[float, float]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        raise RuntimeError(f"{url}: {non_2xx.group(1)} non-2xx answers during the run")
    errors = re.search(r"Socket errors: (.*)", out)
    if errors:
        print(f"    wrk socket errors on {url}: {errors.group(1)}")
    return rps, p99


async def wrk(url: str, token: str | None, threads: int = 1, script: str | None = None) -> tuple[float, float]:
    """(requests per second, p99 ms) over SECONDS after a warm-up; `script`: a wrk Lua script."""
    binary = shutil.which("wrk")
    assert binary
    header = ["-H", f"Authorization: Bearer {token}"] if token else []
    common = [binary, f"-t{threads}", f"-c{CONNECTIONS}", *header, *(["-s", script] if script else [])]
    warm = await asyncio.create_subprocess_exec(*common, f"-d{WARMUP_SECONDS}s", url, stdout=asyncio.subprocess.DEVNULL)
    await warm.wait()
    run = await asyncio.create_subprocess_exec(
        *common, f"-d{SECONDS}s", "--latency", url, stdout=asyncio.subprocess.PIPE
    )
    out = (await run.communicate())[0].decode()
    return parse_wrk(out, url)


def gateway_env(port: int, upstream: str, workers: int = 1) -> dict[str, str]:
    return {
        "GATEWAY_HTTP_PORT": str(port),
        "GATEWAY_WORKERS": str(workers),
        **{f"GATEWAY_{name}_URLS": upstream for name in ("CATALOG", "ORDERS", "PAYMENTS", "NOTIFICATIONS")},
        "GATEWAY_RATE_LIMIT_PER_SECOND": "1000000",
        "GATEWAY_RATE_LIMIT_BURST": "1000000",
        "LOG_JSON": "true",
        "LOG_LEVEL": "WARNING",
        # The access log stays on (as deployed) but is written to a file, not the terminal.
        "GATEWAY_ACCESS_LOG": "true",
    }


def token_cache_saving(token: str) -> tuple[float, float]:
    """µs per request: verifying the token each time vs the verified-token cache."""
    from bejo_gateway.auth import Authenticator
    from bejo_kit.auth import TokenVerifier
    from bejo_kit.settings import KitSettings

    settings = KitSettings()
    verifier = TokenVerifier(settings)
    authenticator = Authenticator(settings, verifier=verifier)
    header = f"Bearer {token}"
    n = 5000

    async def measure() -> tuple[float, float]:
        started = time.perf_counter()
        for _ in range(n):
            await verifier.verify(token)
        uncached = (time.perf_counter() - started) / n * 1e6
        await authenticator.principal(header)
        started = time.perf_counter()
        for _ in range(n):
            await authenticator.principal(header)
        cached = (time.perf_counter() - started) / n * 1e6
        return uncached, cached

    return asyncio.run(measure()) if not _loop_running() else (float("nan"), float("nan"))


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def profile_gateway(url: str, token: str) -> str:
    """pyinstrument over an in-process gateway serving `url`'s path under load from wrk."""
    from aiohttp import web
    from pyinstrument import Profiler

    from bejo_gateway.app import build
    from bejo_gateway.settings import GatewaySettings

    upstream = url
    port = _free_port()
    env = gateway_env(port, upstream)
    settings = GatewaySettings(
        http_port=port,
        catalog_urls=[upstream],
        orders_urls=[upstream],
        payments_urls=[upstream],
        notifications_urls=[upstream],
        rate_limit_per_second=1e6,
        rate_limit_burst=1_000_000,
        access_log=env["GATEWAY_ACCESS_LOG"] == "true",
    )
    runner = web.AppRunner(build(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        binary = shutil.which("wrk")
        assert binary
        target = f"http://127.0.0.1:{port}{PATH}"
        await wait_ready(target, token)
        profiler = Profiler(interval=0.0005, async_mode="disabled")
        load = await asyncio.create_subprocess_exec(
            binary, "-t1", "-c32", "-d3s", "-H", f"Authorization: Bearer {token}", target,
            stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        profiler.start()
        await load.wait()
        profiler.stop()
        return profiler.output_text(unicode=True, color=False, show_all=False, time="percent_of_total")
    finally:
        await runner.cleanup()


async def run() -> None:
    from bejo_kit.auth import mint_token
    from bejo_kit.settings import KitSettings

    nginx = nginx_binary()
    if nginx is None or shutil.which("wrk") is None:
        print("nginx or wrk is missing: run scripts/bench-tools.sh (as root) first")
        record("1", "gateway vs nginx", "not measured", goal="≥ 0.5x nginx", note="nginx/wrk missing")
        return
    token = mint_token(KitSettings(), sub="bench-pp", role="pp", pemda="35.15", satker="dinkes")
    procs = Procs()
    work = Path(tempfile.mkdtemp(prefix="bejo-bench-nginx-"))
    results: dict[str, tuple[float, float]] = {}

    def start_nginx(name: str, body: str, workers: int) -> subprocess.Popen[bytes]:
        prefix = work / name
        prefix.mkdir()
        config = nginx_config(prefix, body, workers)
        return procs.start([nginx, "-p", str(prefix), "-c", str(config), "-g", "daemon off;"])

    post_script = work / "post.lua"
    post_script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [[{POST_BODY}]]\n'
    )

    async def measure(
        name: str, url: str, auth: bool = True, threads: int = 1, post: bool = False
    ) -> tuple[float, float]:
        await wait_ready(url, token if auth else None)
        results[name] = await wrk(url, token if auth else None, threads, str(post_script) if post else None)
        print(f"  {name:<44} {results[name][0]:>9.0f} req/s   p99 {results[name][1]:7.2f} ms", flush=True)
        return results[name]

    try:
        upstream_port = _free_port()
        start_nginx("upstream", upstream_block(upstream_port), 1)
        upstream = f"http://127.0.0.1:{upstream_port}"
        await wait_ready(upstream + PATH, None)
        print(f"gateway benchmark: GET {PATH} with a bearer token, {CONNECTIONS} connections, {SECONDS}s each (wrk)")
        print("upstream: nginx answering a small JSON document itself (1 worker)")

        for workers in (1, 2):
            port = _free_port()
            proc = start_nginx(f"proxy{workers}", proxy_block(port, upstream_port), workers)
            await measure(f"nginx reverse proxy x{workers}", f"http://127.0.0.1:{port}{PATH}", threads=workers)
            if workers == 1:
                await measure("nginx x1, POST 16 KiB JSON", f"http://127.0.0.1:{port}{PATH}", post=True)
            procs.stop(proc)

        port = _free_port()
        proc = procs.python("-m", "bench.gateway", "bare", str(port), upstream)
        await measure("bare aiohttp hop x1", f"http://127.0.0.1:{port}{PATH}")
        procs.stop(proc)

        port = _free_port()
        proc = procs.python("-m", "bench.gateway", "gateway-asyncio", env=gateway_env(port, upstream))
        await measure("gateway x1, asyncio loop", f"http://127.0.0.1:{port}{PATH}")
        procs.stop(proc)

        for workers in (1, 2):
            port = _free_port()
            proc = procs.python(
                "-c", "from bejo_gateway.app import main; main()", env=gateway_env(port, upstream, workers)
            )
            await measure(f"gateway x{workers} (uvloop)", f"http://127.0.0.1:{port}{PATH}", threads=workers)
            if workers == 1:
                await measure("gateway x1, POST 16 KiB JSON", f"http://127.0.0.1:{port}{PATH}", post=True)
            procs.stop(proc)

        # The edge alternative: nginx in front of two gateway workers and the (catalog) upstream.
        gateway_port, edge_port = _free_port(), _free_port()
        gateway_proc = procs.python(
            "-c", "from bejo_gateway.app import main; main()", env=gateway_env(gateway_port, upstream, 2)
        )
        edge = start_nginx("edge", edge_block(edge_port, gateway_port, upstream_port), 2)
        await measure("edge nginx x2 -> gateway x2, authenticated", f"http://127.0.0.1:{edge_port}{PATH}", threads=2)
        await measure(
            "edge nginx x2 -> catalog, anonymous search", f"http://127.0.0.1:{edge_port}{PUBLIC_PATH}", False, 2
        )
        await measure(
            "gateway x2 -> catalog, anonymous search", f"http://127.0.0.1:{gateway_port}{PUBLIC_PATH}", False, 2
        )
        procs.stop(edge)
        procs.stop(gateway_proc)

        if "--no-profile" not in sys.argv:
            ratio1 = results["gateway x1 (uvloop)"][0] / results["nginx reverse proxy x1"][0]
            if ratio1 < GOAL:
                text = await profile_gateway(upstream, token)
                profile("1", "gateway x1 (in-process, pyinstrument) under wrk -c32 for 3 s", text)
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)

    uncached, cached = await asyncio.to_thread(token_cache_saving, token)
    print(f"  token check per request: verify {uncached:.1f} µs, verified-token cache {cached:.1f} µs")

    def rps(name: str) -> float:
        return results[name][0]

    for workers in (1, 2):
        gateway, nginx_rps = rps(f"gateway x{workers} (uvloop)"), rps(f"nginx reverse proxy x{workers}")
        ratio = gateway / nginx_rps
        record(
            "1",
            f"gateway x{workers} worker(s): auth, RBAC, rate limit, routing",
            f"{gateway:,.0f} req/s (p99 {results[f'gateway x{workers} (uvloop)'][1]:.1f} ms)",
            baseline=f"nginx x{workers}: {nginx_rps:,.0f} req/s",
            ratio=ratio,
            goal="≥ 0.5x nginx",
            met=ratio >= GOAL,
        )
        print(f"  ratio gateway/nginx, {workers} worker(s): {ratio:.2f}x")
    bare = rps("bare aiohttp hop x1")
    record(
        "1",
        "gateway x1 vs a bare aiohttp hop",
        f"{rps('gateway x1 (uvloop)'):,.0f} req/s",
        baseline=f"bare aiohttp hop: {bare:,.0f} req/s",
        ratio=rps("gateway x1 (uvloop)") / bare,
    )
    record(
        "1",
        "lever: uvloop (gateway x1)",
        f"{rps('gateway x1 (uvloop)'):,.0f} req/s",
        baseline=f"asyncio loop: {rps('gateway x1, asyncio loop'):,.0f} req/s",
        ratio=rps("gateway x1 (uvloop)") / rps("gateway x1, asyncio loop"),
    )
    post_gateway, post_nginx = rps("gateway x1, POST 16 KiB JSON"), rps("nginx x1, POST 16 KiB JSON")
    record(
        "1",
        "lever: bodies relayed as bytes (POST 16 KiB JSON, x1)",
        f"{post_gateway:,.0f} req/s ({post_gateway / rps('gateway x1 (uvloop)'):.2f}x its GET)",
        baseline=f"nginx x1 POST: {post_nginx:,.0f} req/s ({post_nginx / rps('nginx reverse proxy x1'):.2f}x its GET)",
        ratio=post_gateway / post_nginx,
    )
    record(
        "1",
        "lever: 2 workers, SO_REUSEPORT",
        f"{rps('gateway x2 (uvloop)'):,.0f} req/s",
        baseline=f"1 worker: {rps('gateway x1 (uvloop)'):,.0f} req/s",
        ratio=rps("gateway x2 (uvloop)") / rps("gateway x1 (uvloop)"),
    )
    record(
        "1",
        "lever: verified-token cache",
        f"{cached:.1f} µs per request",
        baseline=f"verifying each time: {uncached:.1f} µs",
        ratio=cached / uncached if uncached else None,
    )
    edge_auth = rps("edge nginx x2 -> gateway x2, authenticated")
    edge_public = rps("edge nginx x2 -> catalog, anonymous search")
    record(
        "1",
        "edge: nginx x2 in front, authenticated via gateway x2",
        f"{edge_auth:,.0f} req/s",
        baseline=f"nginx x2: {rps('nginx reverse proxy x2'):,.0f} req/s",
        ratio=edge_auth / rps("nginx reverse proxy x2"),
    )
    record(
        "1",
        "edge: anonymous search, nginx x2 straight to catalog",
        f"{edge_public:,.0f} req/s",
        baseline=f"via gateway x2: {rps('gateway x2 -> catalog, anonymous search'):,.0f} req/s",
        ratio=edge_public / rps("nginx reverse proxy x2"),
        goal="≥ 0.5x nginx",
        met=edge_public / rps("nginx reverse proxy x2") >= GOAL,
        note="ratio against nginx x2 as a plain proxy",
    )


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else "run"
    if role == "bare":
        _serve_bare_proxy(int(sys.argv[2]), sys.argv[3])
    elif role == "gateway-asyncio":
        _serve_gateway_asyncio()
    else:
        asyncio.run(run())
