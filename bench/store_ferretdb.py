"""The MongoDB-wire store itself (FerretDB/SQLite or mongod): single-document latencies and write
throughput at 30k documents, the figures behind scripts/ferretdb/README.md.

One collection of BENCH_STORE_DOCS documents (string _id, a unique `sku`, a `category` index with
60 documents per value) is written first (not timed). Then, one request at a time:
- find_one by _id, update_one by _id ($inc), find_one by the unique `sku` (p50 / p95 over REPS);
- find all 60 documents of one category;
and with WRITERS concurrent writers for BENCH_STORE_SECONDS each:
- update_one {$inc: {n: 1}} on a hot set of 50 documents: updates/s, how many increments were
  lost (acknowledged updates minus the final sum of n: 0 on a store that keeps its promises) and
  how many updates failed with an error;
- insert_one of new documents: inserts/s.
Then the change feed (scripts/ferretdb 0006): a collection of BENCH_STORE_FEED_DOCS documents with
integer _id 1..N, read page by page like the national e-catalog sync reads it,
`find({_id: {$gt: cursor, $lte: cursor + 1000}}).sort(_id)`: items/s of a full pass, and
find_one by integer _id (p50). BENCH_STORE_FEED_ONLY=1 runs only this part.

`python -m bench store_ferretdb` runs it against MONGODB_URL; `python -m bench.store_ferretdb URL...`
runs it against each URL in turn (e.g. an unpatched and a patched FerretDB) and prints them side by side.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import time
import uuid
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

DOCS = int(os.environ.get("BENCH_STORE_DOCS", "30000"))
SECONDS = float(os.environ.get("BENCH_STORE_SECONDS", "10"))
REPS = int(os.environ.get("BENCH_STORE_REPS", "300"))
FEED_DOCS = int(os.environ.get("BENCH_STORE_FEED_DOCS", "31000"))
FEED_PAGE = 1000
FEED_ONLY = os.environ.get("BENCH_STORE_FEED_ONLY", "") not in ("", "0")
WRITERS = 8
PER_CATEGORY = 60
HOT = 50

Result = dict[str, float]


def doc(i: int) -> dict[str, Any]:
    return {
        "_id": f"doc-{i:07d}",
        "sku": f"SKU-{i:07d}",
        "category": f"cat-{i % (DOCS // PER_CATEGORY):04d}",
        "name": f"Product {i} with a name of realistic length",
        "price": {"amount": 1000 + i % 977, "currency": "IDR"},
        "tags": ["bench", f"t{i % 7}"],
        "stock": 100,
        "n": 0,
    }


def ms(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples) * 1000, samples[int(len(samples) * 0.95)] * 1000


async def timed(n: int, op: Any) -> list[float]:
    out = []
    for i in range(n):
        started = time.perf_counter()
        await op(i)
        out.append(time.perf_counter() - started)
    return out


async def measure(url: str) -> Result:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, maxPoolSize=WRITERS * 2)
    name = f"bench_store_{uuid.uuid4().hex[:6]}"
    coll = client[name]["items"]
    res: Result = {}
    rnd = random.Random(1)
    try:
        await measure_feed(client[name]["feed"], res, rnd)
        if FEED_ONLY:
            return res
        await coll.create_index("sku", unique=True)
        await coll.create_index("category")
        started = time.perf_counter()
        for i in range(0, DOCS, 1000):
            await coll.insert_many([doc(j) for j in range(i, min(i + 1000, DOCS))], ordered=False)
        res["seed docs/s"] = DOCS / (time.perf_counter() - started)
        print(f"   seeded {DOCS} documents at {res['seed docs/s']:.0f}/s", flush=True)

        ids = [rnd.randrange(DOCS) for _ in range(REPS)]

        async def find_id(i: int) -> None:
            assert await coll.find_one({"_id": f"doc-{ids[i]:07d}"}) is not None

        async def update_id(i: int) -> None:
            r = await coll.update_one({"_id": f"doc-{ids[i]:07d}"}, {"$inc": {"stock": -1}})
            assert r.modified_count == 1

        async def find_sku(i: int) -> None:
            assert await coll.find_one({"sku": f"SKU-{ids[i]:07d}"}) is not None

        async def find_category(i: int) -> None:
            got = await coll.find({"category": f"cat-{ids[i] % (DOCS // PER_CATEGORY):04d}"}).to_list()
            assert len(got) == PER_CATEGORY, len(got)

        for label, op, n in (
            ("find_one(_id)", find_id, REPS),
            ("update_one(_id)", update_id, REPS),
            ("find_one(sku)", find_sku, REPS),
            (f"find {PER_CATEGORY} by category", find_category, max(REPS // 3, 10)),
        ):
            res[f"{label} p50 ms"], res[f"{label} p95 ms"] = ms(await timed(n, op))
            print(f"   {label}: p50 {res[f'{label} p50 ms']:.2f} ms", flush=True)

        hot = [f"doc-{i:07d}" for i in range(HOT)]
        await coll.update_many({"_id": {"$in": hot}}, {"$set": {"n": 0}})

        errors: list[str] = []

        async def updater(w: int, deadline: float) -> int:
            done = 0
            r = random.Random(w)
            while time.perf_counter() < deadline:
                try:
                    done += (await coll.update_one({"_id": r.choice(hot)}, {"$inc": {"n": 1}})).modified_count
                except OperationFailure as exc:  # e.g. SQLITE_BUSY from an unpatched FerretDB
                    errors.append(str(exc.details and exc.details.get("errmsg", exc))[-80:])
            return done

        counts = await run_writers(updater)
        total = sum([d["n"] async for d in coll.find({"_id": {"$in": hot}}, {"n": 1})])
        res[f"updates/s ({WRITERS} writers)"] = sum(counts) / SECONDS
        res["updates lost"] = sum(counts) - total
        res["updates failed"] = len(errors)
        if errors:
            print(f"   {len(errors)} updates failed, e.g. {errors[0]}", flush=True)

        async def inserter(w: int, deadline: float) -> int:
            done = 0
            while time.perf_counter() < deadline:
                await coll.insert_one(doc(DOCS + w * 10_000_000 + done))
                done += 1
            return done

        res[f"inserts/s ({WRITERS} writers)"] = sum(await run_writers(inserter)) / SECONDS
        return res
    finally:
        await client.drop_database(name)
        await client.close()


async def measure_feed(feed: Any, res: Result, rnd: random.Random) -> None:
    for i in range(1, FEED_DOCS + 1, 1000):
        await feed.insert_many(
            [
                {"_id": j, "seq": j, "sku": f"SKU-{j:07d}", "op": "upsert", "name": f"Product {j}"}
                for j in range(i, min(i + 1000, FEED_DOCS + 1))
            ]
        )
    started, cursor, seen = time.perf_counter(), 0, 0
    while True:
        page = await feed.find({"_id": {"$gt": cursor, "$lte": cursor + FEED_PAGE}}).sort("_id", 1).to_list()
        if not page:
            break
        assert [d["_id"] for d in page] == list(range(cursor + 1, cursor + 1 + len(page))), cursor
        cursor, seen = page[-1]["_id"], seen + len(page)
    res["feed sync items/s"] = seen / (time.perf_counter() - started)
    assert seen == FEED_DOCS, seen
    print(f"   change feed: {seen} items in pages of {FEED_PAGE} at {res['feed sync items/s']:.0f}/s", flush=True)

    ids = [rnd.randrange(1, FEED_DOCS + 1) for _ in range(REPS)]

    async def find_int_id(i: int) -> None:
        assert await feed.find_one({"_id": ids[i]}) is not None

    res["find_one(int _id) p50 ms"], res["find_one(int _id) p95 ms"] = ms(await timed(REPS, find_int_id))
    print(f"   find_one(int _id): p50 {res['find_one(int _id) p50 ms']:.2f} ms", flush=True)


async def run_writers(writer: Any) -> list[int]:
    deadline = time.perf_counter() + SECONDS
    return list(await asyncio.gather(*(writer(w, deadline) for w in range(WRITERS))))


def table(urls: list[str], results: list[Result]) -> str:
    width = max(len(k) for k in results[0])
    lines = [f"{'':<{width}}  " + "  ".join(f"{u:>28}" for u in urls)]
    for key in results[0]:
        lines.append(f"{key:<{width}}  " + "  ".join(f"{r[key]:>28.2f}" for r in results))
    return "\n".join(lines)


async def compare(urls: list[str]) -> None:
    print(f"{DOCS} documents, {REPS} requests per latency, {WRITERS} writers for {SECONDS:g} s", flush=True)
    results = []
    for url in urls:
        print(f"-- {url}", flush=True)
        results.append(await measure(url))
    print(table(urls, results))


async def run() -> None:
    await compare([os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")])


if __name__ == "__main__":
    asyncio.run(compare(sys.argv[1:] or [os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")]))
