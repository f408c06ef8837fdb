"""Per-service footprint (row 7): cold start and idle memory of each service process.

Each service is started as `make run` starts it (its console script, uvloop, JSON logs), on a free
port, with a database and bus namespace of its own (empty), and timed from the spawn to its first
`/healthz` 200 — the HTTP server listens only after the service's start-up (Mongo, indexes, bus,
relay, consumers, loading its store) has finished. Then it idles `IDLE_SECONDS` and its resident
set size (VmRSS) is read. What the catalog's search index adds per 10k products is measured by the
catalog benchmark (it depends on the data, not on the process).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
import uuid
from pathlib import Path

import aiohttp

from bench.report import profile, record

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SERVICES = ("catalog", "orders", "payments", "notifications", "gateway")
IDLE_SECONDS = float(os.environ.get("BENCH_FOOTPRINT_IDLE", "3"))
RSS_GOAL_MB, START_GOAL_S = 80.0, 2.0
LOG_DIR = Path(os.environ.get("BENCH_LOG_DIR", REPO / ".state" / "bench"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident set of `pid` and its children (the gateway with several workers has children)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


async def measure(name: str, tag: str) -> tuple[float, float]:
    port = free_port()
    prefix = name.upper()
    env = {
        **os.environ,
        f"{prefix}_HTTP_PORT": str(port),
        f"{prefix}_MONGODB_DATABASE": f"bench_{tag}_{name}",
        "BUS_NAMESPACE": f"bench{tag}.",
        "BUS_QUEUE_EXPIRES_MS": "60000",
        "LOG_JSON": "true",
        "LOG_LEVEL": "WARNING",
        "PAYMENTS_SANDBOX_ENABLED": "true",
        "NOTIFICATIONS_SMTP_PORT": str(free_port()),  # nothing listens: idle, no mail is sent
    }
    await asyncio.to_thread(LOG_DIR.mkdir, parents=True, exist_ok=True)
    log = await asyncio.to_thread((LOG_DIR / "footprint-processes.log").open, "ab")
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        str(BIN / f"bejo-{name}"), env=env, stdout=log, stderr=log, cwd=REPO
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            deadline = started + 60
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as answer:
                        if answer.status == 200:
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if proc.returncode is not None or time.perf_counter() > deadline:
                    raise RuntimeError(f"{name} did not start (exit {proc.returncode}); see footprint-processes.log")
                await asyncio.sleep(0.02)
            cold = time.perf_counter() - started
            await asyncio.sleep(IDLE_SECONDS)
            return cold, await asyncio.to_thread(rss_mb, proc.pid)
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        log.close()


async def drop_databases(tag: str) -> None:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")
    )
    try:
        for name in SERVICES:
            await client.drop_database(f"bench_{tag}_{name}")
    finally:
        await client.close()


def profile_start(name: str, tag: str) -> None:
    """In a fresh process: import the service, build it and run its start-up under pyinstrument."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001)
    profiler.start()
    import importlib

    from aiohttp import web

    app_module = importlib.import_module(f"bejo_{name}.app")
    settings_module = importlib.import_module(f"bejo_{name}.settings")
    settings_class = getattr(settings_module, f"{name.capitalize()}Settings")
    settings = settings_class(
        mongodb_database=f"bench_{tag}_{name}", bus_namespace=f"bench{tag}.", bus_queue_expires_ms=60_000
    )

    async def start() -> None:
        runner = web.AppRunner(app_module.build(settings))
        await runner.setup()  # the service's whole start-up
        profiler.stop()
        await runner.cleanup()

    import uvloop

    uvloop.run(start())
    print(profiler.output_text(unicode=True, color=False, time="seconds"))


async def profiled(name: str, tag: str) -> str:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.footprint", "profile", name, tag, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await child.communicate()
    return out.decode()


async def run() -> None:
    tag = uuid.uuid4().hex[:6]
    print(f"cold start (spawn -> first /healthz 200) and idle RSS after {IDLE_SECONDS:g} s; empty stores")
    slowest: tuple[float, str] = (0.0, "")
    try:
        for name in SERVICES:
            cold, rss = await measure(name, tag)
            slowest = max(slowest, (cold, name))
            print(f"  {name:<14} cold start {cold:5.2f} s   idle RSS {rss:6.1f} MB")
            met = rss <= RSS_GOAL_MB and cold <= START_GOAL_S
            record(
                "7",
                f"{name}: idle RSS, cold start",
                f"{rss:.0f} MB, {cold:.2f} s",
                goal="≤ 80 MB, ≤ 2 s",
                met=met,
            )
        if slowest[0] > START_GOAL_S:
            name = slowest[1]
            profile("7", f"{name} start-up: import, build, start (pyinstrument, in-process)", await profiled(name, tag))
    finally:
        await drop_databases(tag)


if __name__ == "__main__" and sys.argv[1:2] == ["profile"]:
    profile_start(sys.argv[2], sys.argv[3])
