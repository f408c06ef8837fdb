"""Store: what single operations cost on the Mongo-wire server at two collection sizes, and whether
concurrent writers lose updates.

Figures, each the latency of single sequential calls from one client (warm connection):
- `find_one({_id})` at 1k and at 30k documents;
- `update_one({_id}, {$inc})` at 1k and at 30k documents;
- `find_one({sku})`, an indexed (unique) non-_id field, at 1k and at 30k documents;
- updates/s of 8 concurrent writers (8 separate clients, as 8 replicas) `$inc`-ing one shared
  document in the 1k collection for a fixed time, and how many acknowledged updates were lost
  (acknowledged `modified_count`s minus the final counter; MongoDB loses none).
Baselines in the same run: the 1k figure for each 30k figure, `find_one({_id})` for the indexed
look-up, and one writer alone for the 8 writers. Each figure is measured for at most
`BENCH_STORE_BUDGET` seconds (and at least a few calls), so the run stays within about a minute
even where a call scans the collection.

    .venv/bin/python -m bench store
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from bejo_kit.mongo import create_client
from bejo_kit.settings import KitSettings

SMALL = int(os.environ.get("BENCH_STORE_SMALL", "1000"))
LARGE = int(os.environ.get("BENCH_STORE_LARGE", "30000"))
WRITERS = int(os.environ.get("BENCH_STORE_WRITERS", "8"))
BUDGET = float(os.environ.get("BENCH_STORE_BUDGET", "3"))  # seconds per latency figure
MAX_ROUNDS = 300
MIN_ROUNDS = 5
WRITE_SECONDS = float(os.environ.get("BENCH_STORE_WRITE_SECONDS", "4"))

Document = dict[str, Any]


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(samples: list[float]) -> str:
    return f"p50 {percentile(samples, 50):8.2f} ms  p95 {percentile(samples, 95):8.2f} ms  (n={len(samples)})"


async def timed(call: Callable[[int], Awaitable[Any]]) -> list[float]:
    """Latencies in ms of `call(round)`, for up to BUDGET seconds (at least MIN_ROUNDS calls)."""
    await call(-1)  # warm-up, not counted
    samples: list[float] = []
    deadline = time.perf_counter() + BUDGET
    while len(samples) < MAX_ROUNDS and (len(samples) < MIN_ROUNDS or time.perf_counter() < deadline):
        started = time.perf_counter()
        await call(len(samples))
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def product(i: int) -> Document:
    return {"_id": f"p{i:06d}", "sku": f"SKU-{i:06d}", "name": f"Kopi robusta {i}", "price": 1000 + i, "n": 0}


async def load(collection: AsyncCollection[Document], count: int) -> float:
    started = time.perf_counter()
    await collection.create_index([("sku", ASCENDING)], unique=True)
    for start in range(0, count, 1000):
        await collection.insert_many([product(i) for i in range(start, min(count, start + 1000))], ordered=False)
    return time.perf_counter() - started


async def latencies(collection: AsyncCollection[Document], count: int) -> dict[str, list[float]]:
    rng = random.Random(20211130)
    picks = [rng.randrange(count) for _ in range(MAX_ROUNDS + 1)]

    async def by_id(n: int) -> None:
        assert await collection.find_one({"_id": f"p{picks[n]:06d}"}) is not None

    async def by_sku(n: int) -> None:
        assert await collection.find_one({"sku": f"SKU-{picks[n]:06d}"}) is not None

    async def update(n: int) -> None:
        result = await collection.update_one({"_id": f"p{picks[n]:06d}"}, {"$inc": {"n": 1}})
        assert result.matched_count == 1

    return {"find_id": await timed(by_id), "update_id": await timed(update), "find_sku": await timed(by_sku)}


async def writers(url: str, database: str, collection: str, count: int) -> tuple[float, int, int]:
    """`count` clients $inc one document for WRITE_SECONDS; (updates/s, acknowledged, lost)."""
    clients: list[AsyncMongoClient[Document]] = [AsyncMongoClient(url) for _ in range(count)]
    try:
        handles = [c[database][collection] for c in clients]
        await handles[0].update_one({"_id": "hot"}, {"$set": {"n": 0}}, upsert=True)
        await asyncio.gather(*(h.find_one({"_id": "hot"}) for h in handles))  # connect everyone first
        acknowledged = 0
        deadline = time.perf_counter() + WRITE_SECONDS

        async def writer(handle: AsyncCollection[Document]) -> None:
            nonlocal acknowledged
            while time.perf_counter() < deadline:
                result = await handle.update_one({"_id": "hot"}, {"$inc": {"n": 1}})
                acknowledged += result.modified_count  # (not `x += await ...`: that reads x before awaiting)

        started = time.perf_counter()
        await asyncio.gather(*(writer(h) for h in handles))
        elapsed = time.perf_counter() - started
        final = await handles[0].find_one({"_id": "hot"})
        stored = int(final["n"]) if final else 0
        return acknowledged / elapsed, acknowledged, acknowledged - stored
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def run() -> None:
    settings = KitSettings(service_name="bench-store", mongodb_database=f"bench_store_{uuid.uuid4().hex[:8]}")
    client = create_client(settings)
    db = client[settings.database_name]
    try:
        figures: dict[int, dict[str, list[float]]] = {}
        for count in (SMALL, LARGE):
            collection = db[f"products_{count}"]
            seconds = await load(collection, count)
            print(f"  loaded {count:>6} documents in {seconds:5.1f} s", flush=True)
            figures[count] = await latencies(collection, count)
        small, large = figures[SMALL], figures[LARGE]
        for count in (SMALL, LARGE):
            f, label = figures[count], f"{count // 1000}k" if count % 1000 == 0 else str(count)
            for what, key in (("find_one({_id})", "find_id"), ("update_one({_id})", "update_id")):
                print(f"  {what:<26}{label:>4} docs: {summary(f[key])}")
            print(f"  {'find_one({sku}), indexed':<26}{label:>4} docs: {summary(f['find_sku'])}")

        def ratio(a: list[float], b: list[float]) -> float:
            return percentile(a, 50) / max(percentile(b, 50), 1e-3)

        sizes = f"{LARGE} / {SMALL} docs"
        print(f"  ratio find_one({{_id}}) p50, {sizes}:     {ratio(large['find_id'], small['find_id']):7.2f}x")
        print(f"  ratio update_one({{_id}}) p50, {sizes}:   {ratio(large['update_id'], small['update_id']):7.2f}x")
        indexed = ratio(large["find_sku"], large["find_id"])
        print(f"  ratio find_one({{sku}}) / find_one({{_id}}) p50, {LARGE} docs: {indexed:7.2f}x")

        name = f"products_{SMALL}"
        alone, alone_acked, alone_lost = await writers(settings.mongodb_url, settings.database_name, name, 1)
        many, many_acked, many_lost = await writers(settings.mongodb_url, settings.database_name, name, WRITERS)
        print(
            f"  1 writer,  $inc one document:  {alone:8.0f} updates/s  ({alone_acked} acknowledged, {alone_lost} lost)"
        )
        print(
            f"  {WRITERS} writers, $inc one document:  {many:8.0f} updates/s  "
            f"({many_acked} acknowledged, {many_lost} lost = {many_lost / max(many_acked, 1):.1%})"
        )
        print(f"  ratio {WRITERS} writers / 1 writer updates/s:           {many / max(alone, 1e-9):7.2f}x")
    finally:
        await client.drop_database(settings.database_name)
        await client.close()
