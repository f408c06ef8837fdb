"""Single-document atomicity under real races: what bejo's invariants rest on.

MongoDB applies each single-document write atomically, whichever connection it comes from: an
update's filter is evaluated and its operators applied as one step. bejo relies on that for stock
reservation, claims, leases, counters, version checks, inbox guards and appended event arrays.
Every test here races many tasks over many independent clients against one document and counts.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError
from store_harness import Document, race

pytestmark = [pytest.mark.integration, pytest.mark.store]


def failures(results: list[Any]) -> list[BaseException]:
    return [r for r in results if isinstance(r, BaseException)]


async def test_concurrent_inc_applies_every_increment(handles: Any) -> None:
    things = handles("counters")
    await things[0].insert_one({"_id": "c", "n": 0})

    async def inc(i: int, coll: AsyncCollection[Document]) -> int:
        return (await coll.update_one({"_id": "c"}, {"$inc": {"n": 1}})).modified_count

    results = await race(200, things, inc)
    assert not failures(results)
    assert results == [1] * 200
    assert await things[0].find_one({"_id": "c"}) == {"_id": "c", "n": 200}


async def test_conditional_decrement_never_oversells(handles: Any) -> None:
    products = handles("products")
    await products[0].insert_one({"_id": "p", "stock": 10})

    async def take_one(i: int, coll: AsyncCollection[Document]) -> int:
        result = await coll.update_one({"_id": "p", "stock": {"$gte": 1}}, {"$inc": {"stock": -1}})
        return result.modified_count

    results = await race(200, products, take_one)
    assert not failures(results)
    assert Counter(results) == {1: 10, 0: 190}
    assert (await products[0].find_one({"_id": "p"}))["stock"] == 0  # type: ignore[index]


async def test_reservation_with_holds_takes_stock_once_per_order(handles: Any) -> None:
    """The catalog's reservation: stock covers the quantity and the order holds nothing yet, then
    decrement, record the hold and bump the version in one find_one_and_update. 60 tasks, 30 orders
    each sent twice (a redelivery), quantity 2, stock 20: exactly 10 distinct orders get stock."""
    products = handles("products")
    await products[0].insert_one({"_id": "p", "stock": 20, "version": 0, "holds": []})

    async def reserve(i: int, coll: AsyncCollection[Document]) -> str | None:
        order = f"ord-{i % 30:02d}"
        after = await coll.find_one_and_update(
            {"_id": "p", "stock": {"$gte": 2}, "holds": {"$ne": order}},
            {"$inc": {"stock": -2, "version": 1}, "$push": {"holds": order}},
            return_document=ReturnDocument.AFTER,
        )
        return order if after is not None else None

    results = await race(60, products, reserve)
    assert not failures(results)
    winners = [r for r in results if r is not None]
    assert len(winners) == 10
    assert len(set(winners)) == 10, "an order was reserved twice"
    doc = await products[0].find_one({"_id": "p"})
    assert doc is not None
    assert doc["stock"] == 0
    assert doc["version"] == 10
    assert sorted(doc["holds"]) == sorted(winners)


async def test_find_one_and_update_claim_has_one_winner(handles: Any) -> None:
    jobs = handles("jobs")
    await jobs[0].insert_one({"_id": "job", "owner": None})

    async def claim(i: int, coll: AsyncCollection[Document]) -> str | None:
        got = await coll.find_one_and_update(
            {"_id": "job", "owner": None}, {"$set": {"owner": f"w{i}"}}, return_document=ReturnDocument.AFTER
        )
        return got["owner"] if got is not None else None

    results = await race(200, jobs, claim)
    assert not failures(results)
    winners = [r for r in results if r is not None]
    assert len(winners) == 1, f"{len(winners)} claimants won"
    assert await jobs[0].find_one({"_id": "job"}) == {"_id": "job", "owner": winners[0]}


async def test_counter_allocator_yields_distinct_consecutive_numbers(handles: Any) -> None:
    """Sequence numbers from one counter document created by the first upsert."""
    counters = handles("counters")

    async def allocate(i: int, coll: AsyncCollection[Document]) -> int:
        after = await coll.find_one_and_update(
            {"_id": "seq"}, {"$inc": {"seq": 1}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        assert after is not None, "an upsert returning AFTER always has a document"
        return int(after["seq"])

    results = await race(100, counters, allocate)
    assert not failures(results)
    assert sorted(results) == list(range(1, 101))
    assert await counters[0].find_one({"_id": "seq"}) == {"_id": "seq", "seq": 100}


async def test_version_guarded_update_has_one_winner_per_version(handles: Any) -> None:
    """Optimistic concurrency: 40 tasks per round all hold version v and try to write; 10 rounds."""
    aggregates = handles("aggregates")
    await aggregates[0].insert_one({"_id": "a", "version": 0, "holder": None, "log": []})
    winners = []
    for version in range(10):

        async def write(i: int, coll: AsyncCollection[Document], version: int = version) -> str | None:
            me = f"v{version}-w{i}"
            result = await coll.update_one(
                {"_id": "a", "version": version},
                {"$set": {"holder": me}, "$inc": {"version": 1}, "$push": {"log": me}},
            )
            return me if result.modified_count == 1 else None

        results = await race(40, aggregates, write)
        assert not failures(results)
        round_winners = [r for r in results if r is not None]
        assert len(round_winners) == 1, f"version {version}: {len(round_winners)} writers won"
        winners.append(round_winners[0])
    assert await aggregates[0].find_one({"_id": "a"}) == {
        "_id": "a",
        "version": 10,
        "holder": winners[-1],
        "log": winners,
    }


async def test_concurrent_push_keeps_every_value(handles: Any) -> None:
    orders = handles("orders")
    await orders[0].insert_one({"_id": "o", "events": []})

    async def push(i: int, coll: AsyncCollection[Document]) -> int:
        return (await coll.update_one({"_id": "o"}, {"$push": {"events": {"id": f"e{i:03d}", "n": i}}})).modified_count

    results = await race(100, orders, push)
    assert not failures(results)
    doc = await orders[0].find_one({"_id": "o"})
    assert doc is not None
    assert len(doc["events"]) == 100
    assert sorted(e["n"] for e in doc["events"]) == list(range(100))


async def test_outbox_clean_up_never_loses_a_concurrent_append(handles: Any) -> None:
    """bejo_kit.outbox: writers append events (`$push $each` + `$set outbox_pending`) while the relay
    clears what it published, first by exact array equality + `$unset`, else by `$pullAll`. An event
    appended meanwhile must survive both."""
    orders = handles("orders")
    published = {"id": "e-old", "at": datetime(2025, 1, 1, tzinfo=UTC), "envelope": {"type": "order.placed"}}
    await orders[0].insert_one({"_id": "o", "outbox": [published], "outbox_pending": True})

    async def act(i: int, coll: AsyncCollection[Document]) -> int:
        if i % 6 == 0:  # the relay's exact clean-up
            result = await coll.update_one(
                {"_id": "o", "outbox": [published]},
                {"$unset": {"outbox": "", "outbox_pending": "", "outbox_lease": ""}},
            )
            return -result.matched_count
        if i % 6 == 1:  # its fallback
            await coll.update_one({"_id": "o"}, {"$pullAll": {"outbox": [published]}})
            return 0
        entry = {"id": f"e{i:03d}", "at": datetime(2025, 1, 2, tzinfo=UTC), "envelope": {"type": "order.paid", "n": i}}
        result = await coll.update_one(
            {"_id": "o"}, {"$push": {"outbox": {"$each": [entry]}}, "$set": {"outbox_pending": True}}
        )
        return result.modified_count

    results = await race(120, orders, act)
    assert not failures(results)
    appended = sorted(f"e{i:03d}" for i in range(120) if i % 6 not in (0, 1))
    assert sum(r for r in results if r > 0) == len(appended)
    assert sum(r for r in results if r < 0) >= -1, "the exact clean-up matched more than once"
    doc = await orders[0].find_one({"_id": "o"})
    assert doc is not None
    assert sorted(e["id"] for e in doc["outbox"]) == appended, "an appended event was lost or the old one kept"
    assert doc["outbox_pending"] is True


async def test_inbox_guard_applies_each_event_once(handles: Any) -> None:
    """bejo_kit.inbox.guarded: `{inbox: {$ne: id}}` + `$push: {inbox: id}`. 10 events, each delivered
    to 15 consumers at once: each applies once, and the effect ($inc) counts 10."""
    accounts = handles("accounts")
    await accounts[0].insert_one({"_id": "acc", "balance": 0, "inbox": []})

    async def handle(i: int, coll: AsyncCollection[Document]) -> int:
        event = f"evt-{i % 10}"
        result = await coll.update_one(
            {"_id": "acc", "inbox": {"$ne": event}}, {"$inc": {"balance": 1}, "$push": {"inbox": event}}
        )
        return result.modified_count

    results = await race(150, accounts, handle)
    assert not failures(results)
    assert sum(results) == 10
    doc = await accounts[0].find_one({"_id": "acc"})
    assert doc is not None
    assert doc["balance"] == 10
    assert sorted(doc["inbox"]) == [f"evt-{k}" for k in range(10)]


async def test_expired_lease_is_taken_by_one_owner(handles: Any) -> None:
    """The catalog feed publisher's lease: `{_id, $or: [{lease_until: {$lt: now}}, {owner: me}]}`."""
    state = handles("state")
    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    await state[0].insert_one({"_id": "lease", "owner": "gone", "lease_until": now - timedelta(minutes=1)})

    async def take(i: int, coll: AsyncCollection[Document]) -> str | None:
        me = f"owner-{i}"
        result = await coll.update_one(
            {"_id": "lease", "$or": [{"lease_until": {"$lt": now}}, {"owner": me}]},
            {"$set": {"owner": me, "lease_until": now + timedelta(seconds=15)}},
        )
        return me if result.matched_count == 1 else None

    results = await race(100, state, take)
    assert not failures(results)
    winners = [r for r in results if r is not None]
    assert len(winners) == 1, f"{len(winners)} owners took the lease"
    doc = await state[0].find_one({"_id": "lease"})
    assert doc is not None
    assert doc["owner"] == winners[0]
    assert doc["lease_until"] == now + timedelta(seconds=15)


async def test_concurrent_max_keeps_the_largest(handles: Any) -> None:
    """The BAST counter hint: `$max: {next: n}` with upsert, from 100 tasks with distinct n."""
    counters = handles("counters")

    async def bump(i: int, coll: AsyncCollection[Document]) -> None:
        await coll.update_one({"_id": "bast"}, {"$max": {"next": i + 1}}, upsert=True)

    results = await race(100, counters, bump)
    assert not failures(results)
    assert await counters[0].find_one({"_id": "bast"}) == {"_id": "bast", "next": 100}


async def test_first_write_stays_under_racing_writers(handles: Any) -> None:
    """Notifications' mark_read / payments' answer_callback: `{_id, field: {$exists: false}}` then
    `$set field`. Of 100 racing writers exactly one sets it, and its value stays."""
    notes = handles("notes")
    await notes[0].insert_one({"_id": "n", "read_by": {}})

    async def mark(i: int, coll: AsyncCollection[Document]) -> int | None:
        got = await coll.find_one_and_update(
            {"_id": "n", "read_by.u-1": {"$exists": False}},
            {"$set": {"read_by.u-1": i}},
            return_document=ReturnDocument.AFTER,
        )
        return None if got is None else i

    results = await race(100, notes, mark)
    assert not failures(results)
    winners = [r for r in results if r is not None]
    assert len(winners) == 1, f"{len(winners)} writers set the field"
    assert await notes[0].find_one({"_id": "n"}) == {"_id": "n", "read_by": {"u-1": winners[0]}}


async def test_racing_set_on_insert_upserts_agree(handles: Any) -> None:
    """Payments' callback record: `$setOnInsert` upserts of one key from 100 tasks create one
    document, and every caller gets that document back (a DuplicateKeyError, which bejo retries,
    is the only failure tolerated)."""
    callbacks = handles("callbacks")

    async def record(i: int, coll: AsyncCollection[Document]) -> Document | None:
        return await coll.find_one_and_update(
            {"_id": "key"}, {"$setOnInsert": {"by": i}}, upsert=True, return_document=ReturnDocument.AFTER
        )

    results = await race(100, callbacks, record)
    errors = failures(results)
    assert all(isinstance(e, DuplicateKeyError) and e.code == 11000 for e in errors), errors[:3]
    stored = await callbacks[0].find_one({"_id": "key"})
    assert stored is not None
    assert await callbacks[0].count_documents({}) == 1
    assert [r for r in results if not isinstance(r, BaseException)] == [stored] * (100 - len(errors))


async def test_racing_inserts_of_one_id_have_one_winner(handles: Any) -> None:
    """Insert-unique: the claim primitive of idempotency keys, sequence numbers and outbox claims."""
    claims = handles("claims")

    async def insert(i: int, coll: AsyncCollection[Document]) -> str:
        await coll.insert_one({"_id": "key", "by": i})
        return "inserted"

    results = await race(200, claims, insert)
    assert results.count("inserted") == 1
    errors = failures(results)
    assert len(errors) == 199
    assert all(isinstance(e, DuplicateKeyError) and e.code == 11000 for e in errors), errors[:3]
    assert await claims[0].count_documents({}) == 1


async def test_racing_deletes_of_one_id_have_one_winner(handles: Any) -> None:
    """Timers: the replica whose delete_one removed the due timer is the one that acts on it."""
    timers = handles("timers")
    await timers[0].insert_one({"_id": "t", "due_at": datetime(2025, 1, 1, tzinfo=UTC)})

    async def delete(i: int, coll: AsyncCollection[Document]) -> int:
        return (await coll.delete_one({"_id": "t"})).deleted_count

    results = await race(100, timers, delete)
    assert not failures(results)
    assert sum(results) == 1
    assert await timers[0].count_documents({}) == 0
