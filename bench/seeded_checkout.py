"""Checkout burst at the seed's scale: 200 PPs check out at once through the gateway.

Needs a running platform with the demo data loaded (`make run`, then `.venv/bin/bejo seed`), so it
is not part of the default `make bench` run:

    .venv/bin/python -m bench seeded_checkout            # gateway at http://127.0.0.1:8080
    BENCH_GATEWAY=http://host:8080 BENCH_BUYERS=200 .venv/bin/python -m bench seeded_checkout

Each buyer is a distinct PP of Kab. Sidoarjo (35.15) ordering one unit of a different product that
delivers there. Figures: how many buyers got an answer within the client timeout, the status codes,
and p50/p99 of `POST /orders`; then how many of the placed orders reached `reserved` (the catalog
answered the saga) within the wait bound.
"""

from __future__ import annotations

import asyncio
import collections
import os
import statistics
import time
import uuid
from typing import Any

import aiohttp

from bejo_cli.samples import order_body
from bejo_kit.auth import mint_token
from bejo_kit.settings import KitSettings

GATEWAY = os.environ.get("BENCH_GATEWAY", "http://127.0.0.1:8080").rstrip("/")
BUYERS = int(os.environ.get("BENCH_BUYERS", "200"))
CLIENT_TIMEOUT = float(os.environ.get("BENCH_CLIENT_TIMEOUT", "15"))
SETTLE_WAIT = float(os.environ.get("BENCH_SETTLE_WAIT", "60"))
PEMDA, SATKER = "35.15", "dinkes-sidoarjo"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def orderable_products(http: aiohttp.ClientSession, count: int) -> list[str]:
    found: list[str] = []
    for term in ("beras", "kopi", "kertas", "kain", "meja", "teh", "gula", "tas", "batik", "kursi", "air", "buku"):
        async with http.get(f"{GATEWAY}/api/v1/products", params={"q": term, "region": PEMDA, "limit": 100}) as r:
            if r.status != 200:
                raise RuntimeError(f"product search answered {r.status}: {await r.text()}")
            body = await r.json()
        found.extend(p["id"] for p in body["items"] if p["orderable"] and p["stock"] > 0 and p["id"] not in found)
        if len(found) >= count:
            return found[:count]
    raise RuntimeError(f"only {len(found)} orderable products found for {PEMDA}: load the demo data (bejo seed)")


async def checkout(http: aiohttp.ClientSession, token: str, product_id: str) -> tuple[int | str, float, str | None]:
    body = order_body([(product_id, 1)], ppk_id="ppk-bench")
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())}
    started = time.perf_counter()
    try:
        async with http.post(
            f"{GATEWAY}/api/v1/orders", json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
        ) as r:
            answer = await r.json(content_type=None)
            order_id = answer["orders"][0]["id"] if r.status == 201 else None
            return r.status, time.perf_counter() - started, order_id
    except TimeoutError:
        return "no answer", time.perf_counter() - started, None


async def run() -> None:
    settings = KitSettings()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        products = await orderable_products(http, BUYERS)
        tokens = [
            mint_token(settings, sub=f"pp-bench-{i}", role="pp", pemda=PEMDA, satker=SATKER, name=f"PP {i}")
            for i in range(BUYERS)
        ]
        started = time.perf_counter()
        results = await asyncio.gather(*(checkout(http, t, p) for t, p in zip(tokens, products, strict=True)))
        span = time.perf_counter() - started
        statuses = collections.Counter(str(status) for status, _, _ in results)
        answered = [latency * 1000 for status, latency, _ in results if status != "no answer"]
        print(f"  {BUYERS} concurrent checkouts through {GATEWAY}, all sent at once, {span:.1f} s in all")
        print(f"  answered within {CLIENT_TIMEOUT:.0f} s: {len(answered)}/{BUYERS}; statuses {dict(statuses)}")
        if answered:
            print(
                f"  POST /orders  p50 {statistics.median(answered):7.1f} ms   p99 {percentile(answered, 0.99):7.1f} ms"
                f"   max {max(answered):7.1f} ms"
            )
        placed = [(t, order_id) for t, (_, _, order_id) in zip(tokens, results, strict=True) if order_id]
        reserved = await wait_reserved(http, placed)
        print(f"  reserved by the saga within {SETTLE_WAIT:.0f} s: {reserved}/{len(placed)} placed orders")


async def wait_reserved(http: aiohttp.ClientSession, placed: list[tuple[str, str]]) -> int:
    deadline = time.perf_counter() + SETTLE_WAIT
    waiting = dict((order_id, token) for token, order_id in placed)
    done = 0
    while waiting and time.perf_counter() < deadline:
        for order_id, token in list(waiting.items()):
            async with http.get(
                f"{GATEWAY}/api/v1/orders/{order_id}", headers={"Authorization": f"Bearer {token}"}
            ) as r:
                status: Any = (await r.json()).get("status") if r.status == 200 else None
            if status not in (None, "placed"):
                done += 1
                del waiting[order_id]
        if waiting:
            await asyncio.sleep(0.5)
    return done
