"""Every update shape bejo uses, applied as MongoDB applies it: operators, conditional filters,
upserts, replace, deletes and the work queue's update_many. Expected documents are written out in
plain Python."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from store_dataset import entry, h
from store_harness import Document

from bejo_contracts.common import WIB

pytestmark = [pytest.mark.integration, pytest.mark.store]

E1 = entry("e1", "order.placed")
E1_OTHER_TYPE = entry("e1", "order.approved")  # same id, another document: $pullAll must keep it
E2 = entry("e2", "order.paid", h(1))
E3 = entry("e3", "order.shipped", h(2))
EMPTIED = {"$or": [{"outbox": {"$size": 0}}, {"outbox": {"$exists": False}}]}
CLEARED = {"$unset": {"outbox": "", "outbox_pending": "", "outbox_lease": ""}}

BASE: Document = {
    "_id": "doc-1",
    "status": "placed",
    "version": 3,
    "stock": 10,
    "price": 12.5,
    "next": 5,
    "holds": ["ord-1", "ord-2", "ord-1"],
    "inbox": ["evt-1"],
    "outbox": [E1, E2, E1_OTHER_TYPE],
    "history": [{"status": "placed", "at": h(0)}],
    "provider": {"id": "cv-a", "region": "35.15"},
    "members": {"u-1": {"role": "pp"}},
    "lease_until": None,
    "outbox_pending": True,
    "outbox_lease": None,
    "name": "Kopi ☕",
}


def base(**changes: Any) -> Document:
    doc = {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    doc.update(changes)
    return doc


def without(*fields: str, **changes: Any) -> Document:
    doc = base(**changes)
    for name in fields:
        del doc[name]
    return doc


@dataclass(frozen=True)
class Update:
    id: str
    update: Document
    expected: Document | None  # the document afterwards; None: unchanged
    condition: Document = field(default_factory=dict)  # added to {"_id": ...}
    matched: bool = True
    start: Document | None = None  # the document before; None: base()


UPDATES = [
    Update("set", {"$set": {"status": "approved", "updated_at": h(5)}}, base(status="approved", updated_at=h(5))),
    Update(
        "set-wib-datetime",
        {"$set": {"paid_at": datetime(2025, 3, 10, 9, 30, tzinfo=WIB)}},
        base(paid_at=datetime(2025, 3, 10, 2, 30, tzinfo=UTC)),
    ),
    Update(
        "set-dotted-into-map",  # notifications audiences: members.<key>
        {"$set": {"members.u-9": {"role": "bendahara", "email": "ani@example.id"}}},
        base(members={"u-1": {"role": "pp"}, "u-9": {"role": "bendahara", "email": "ani@example.id"}}),
    ),
    Update(
        "set-dotted-nested", {"$set": {"provider.region": "35.16"}}, base(provider={"id": "cv-a", "region": "35.16"})
    ),
    Update("set-dotted-creates-parent", {"$set": {"meta.source": "feed"}}, base(meta={"source": "feed"})),
    Update(
        "set-empty-array-and-bool",
        {"$set": {"holds": [], "outbox_pending": False}},
        base(holds=[], outbox_pending=False),
    ),
    Update("set-unicode", {"$set": {"name": "Teh Ñusantara 🍵"}}, base(name="Teh Ñusantara 🍵")),
    Update("unset", {"$unset": {"lease_until": "", "outbox_pending": ""}}, without("lease_until", "outbox_pending")),
    Update("unset-missing-field", {"$unset": {"no_such_field": ""}}, None),
    Update("inc", {"$inc": {"stock": -2, "version": 1}}, base(stock=8, version=4)),
    Update("inc-float", {"$inc": {"price": 0.25}}, base(price=12.75)),
    Update("inc-creates-field", {"$inc": {"consecutive_failures": 1}}, base(consecutive_failures=1)),
    Update("max-raises", {"$max": {"next": 7}}, base(next=7)),
    Update("max-keeps", {"$max": {"next": 2}}, None),
    Update("max-creates-field", {"$max": {"high": 3}}, base(high=3)),
    Update(
        "push",
        {"$push": {"history": {"status": "approved", "at": h(1)}}},
        base(history=[*BASE["history"], {"status": "approved", "at": h(1)}]),
    ),
    Update("push-each", {"$push": {"outbox": {"$each": [E3, E1]}}}, base(outbox=[*BASE["outbox"], E3, E1])),
    Update("push-creates-array", {"$push": {"attempts": {"n": 1}}}, base(attempts=[{"n": 1}])),
    Update("pull-all-strings", {"$pullAll": {"holds": ["ord-1"]}}, base(holds=["ord-2"])),
    Update("pull-all-absent-value", {"$pullAll": {"holds": ["ord-9"]}}, None),
    Update(
        "pull-all-embedded-documents",  # whole documents: E1 goes, the other e1 (different type) stays
        {"$pullAll": {"outbox": [E1, E3]}},
        base(outbox=[E2, E1_OTHER_TYPE]),
    ),
    Update(
        "outbox-append",  # bejo_kit.outbox.with_events
        {"$set": {"status": "paid"}, "$inc": {"version": 1}, "$push": {"outbox": {"$each": [E3]}}},
        base(status="paid", version=4, outbox=[*BASE["outbox"], E3]),
        condition={"version": 3},
    ),
    Update(
        "outbox-append-first",
        {"$push": {"outbox": {"$each": [E3]}}, "$set": {"outbox_pending": True}},
        {**without("outbox", "outbox_pending", "outbox_lease"), "outbox": [E3], "outbox_pending": True},
        start=without("outbox", "outbox_pending", "outbox_lease"),
    ),
    Update(
        "outbox-clear-exact",  # the relay published exactly what the document holds
        CLEARED,
        without("outbox", "outbox_pending", "outbox_lease"),
        condition={"outbox": [E1, E2, E1_OTHER_TYPE]},
    ),
    Update(
        "outbox-clear-exact-stale",  # more events arrived since: nothing happens
        CLEARED,
        None,
        condition={"outbox": [E1, E2]},
        matched=False,
    ),
    Update("outbox-clear-emptied-not-empty", CLEARED, None, condition=EMPTIED, matched=False),
    Update(
        "outbox-clear-emptied",  # a clean-up stopped half-way: the marker outlived the entries
        CLEARED,
        without("outbox", "outbox_pending", "outbox_lease"),
        condition=EMPTIED,
        start=base(outbox=[]),
    ),
    Update(
        "outbox-clear-emptied-gone",
        CLEARED,
        without("outbox", "outbox_pending", "outbox_lease"),
        condition=EMPTIED,
        start=without("outbox"),
    ),
    Update(
        "outbox-claim-lease",  # the sweeper's lease: the value it read (null) still there
        {"$set": {"outbox_lease": h(9)}},
        base(outbox_lease=h(9)),
        condition={"outbox_lease": None},
    ),
    Update("outbox-claim-lease-moved", {"$set": {"outbox_lease": h(9)}}, None, {"outbox_lease": h(8)}, False),
    Update(
        "reserve",  # catalog: stock covers it, order not yet holding
        {"$inc": {"stock": -4, "version": 1}, "$push": {"holds": "ord-3"}, "$set": {"updated_at": h(3)}},
        base(stock=6, version=4, holds=[*BASE["holds"], "ord-3"], updated_at=h(3)),
        condition={"stock": {"$gte": 4}, "holds": {"$ne": "ord-3"}},
    ),
    Update(
        "reserve-insufficient",
        {"$inc": {"stock": -11}, "$push": {"holds": "ord-3"}},
        None,
        condition={"stock": {"$gte": 11}, "holds": {"$ne": "ord-3"}},
        matched=False,
    ),
    Update(
        "reserve-already-held",
        {"$inc": {"stock": -1}, "$push": {"holds": "ord-2"}},
        None,
        condition={"stock": {"$gte": 1}, "holds": {"$ne": "ord-2"}},
        matched=False,
    ),
    Update(
        "release",  # catalog: only while the order holds stock
        {"$inc": {"stock": 2, "version": 1}, "$pullAll": {"holds": ["ord-2"]}, "$set": {"updated_at": h(4)}},
        base(stock=12, version=4, holds=["ord-1", "ord-1"], updated_at=h(4)),
        condition={"holds": "ord-2"},
    ),
    Update(
        "version-guard",  # payments / catalog transitions
        {"$set": {"status": "paid"}, "$push": {"history": {"status": "paid", "at": h(2)}}, "$inc": {"version": 1}},
        base(status="paid", version=4, history=[*BASE["history"], {"status": "paid", "at": h(2)}]),
        condition={"version": 3},
    ),
    Update("version-guard-stale", {"$set": {"status": "paid"}, "$inc": {"version": 1}}, None, {"version": 2}, False),
    Update(
        "inbox-guard",
        {"$inc": {"stock": 1}, "$push": {"inbox": "evt-2"}},
        base(stock=11, inbox=["evt-1", "evt-2"]),
        condition={"inbox": {"$ne": "evt-2"}},
    ),
    Update(
        "inbox-guard-redelivery",
        {"$inc": {"stock": 1}, "$push": {"inbox": "evt-1"}},
        None,
        {"inbox": {"$ne": "evt-1"}},
        False,
    ),
    Update(
        "lease-expired-or-mine",
        {"$set": {"owner": "me", "lease_until": h(1)}},
        base(owner="me", lease_until=h(1)),
        condition={"$or": [{"lease_until": None}, {"lease_until": {"$lt": h(0)}}]},
    ),
    Update(  # notifications mark_read, payments answer_callback: the first write stays
        "set-if-absent",
        {"$set": {"read_by.u-1": h(6)}},
        base(read_by={"u-1": h(6)}),
        condition={"read_by.u-1": {"$exists": False}},
    ),
    Update(
        "set-if-absent-present",
        {"$set": {"read_by.u-1": h(7)}},
        None,
        condition={"read_by.u-1": {"$exists": False}},
        matched=False,
        start=base(read_by={"u-1": h(6)}),
    ),
    Update(
        "set-if-absent-other-key",
        {"$set": {"read_by.u-2": h(7)}},
        base(read_by={"u-1": h(6), "u-2": h(7)}),
        condition={"read_by.u-2": {"$exists": False}},
        start=base(read_by={"u-1": h(6)}),
    ),
    Update(  # webhooks: reset the failure count only when there is one
        "reset-if-positive",
        {"$set": {"stock": 0}},
        base(stock=0),
        condition={"stock": {"$gt": 0}},
    ),
    Update("reset-if-positive-zero", {"$set": {"stock": 0}}, None, {"stock": {"$gt": 0}}, False, base(stock=0)),
    Update("status-and-type-exact", {"$set": {"status": "x"}}, None, {"next": "5"}, False),
    Update("numeric-across-types", {"$set": {"status": "x"}}, base(status="x"), {"next": 5.0, "price": {"$gt": 12}}),
]


@pytest.mark.parametrize("case", UPDATES, ids=lambda u: u.id)
async def test_update(collection: AsyncCollection[Document], case: Update) -> None:
    """The same filter and update through update_one, then find_one_and_update (AFTER and BEFORE),
    each from the same starting document; a second document must never change."""
    docs = collection
    start = case.start or base()
    other = base(_id="doc-2")
    await docs.insert_many([dict(start), other])
    filter_ = {"_id": "doc-1", **case.condition}
    expected = case.expected if case.expected is not None else start

    result = await docs.update_one(filter_, case.update)
    assert result.matched_count == (1 if case.matched else 0)
    if case.expected is not None:
        assert result.modified_count == 1
    assert await docs.find_one({"_id": "doc-1"}) == expected

    await docs.replace_one({"_id": "doc-1"}, start)
    after = await docs.find_one_and_update(filter_, case.update, return_document=ReturnDocument.AFTER)
    assert after == (expected if case.matched else None)
    assert await docs.find_one({"_id": "doc-1"}) == expected

    await docs.replace_one({"_id": "doc-1"}, start)
    before = await docs.find_one_and_update(filter_, case.update)  # BEFORE is the default
    assert before == (start if case.matched else None)
    assert await docs.find_one({"_id": "doc-1"}) == expected
    assert await docs.find_one({"_id": "doc-2"}) == other, "another document changed"


UPSERTS: list[tuple[str, Document, Document, Document]] = [
    # (id, update, the document's fields after the first upsert, after the second)
    (
        "set",
        {"$set": {"email": "ani@example.id", "name": None, "updated_at": h(1)}},
        {"email": "ani@example.id", "name": None, "updated_at": h(1)},
        {"email": "ani@example.id", "name": None, "updated_at": h(1)},
    ),
    (
        "set-dotted-map",
        {"$set": {"members.u-1": {"role": "pp"}}},
        {"members": {"u-1": {"role": "pp"}}},
        {"members": {"u-1": {"role": "pp"}}},
    ),
    ("max", {"$max": {"next": 8}}, {"next": 8}, {"next": 8}),
    ("inc", {"$inc": {"seq": 1}}, {"seq": 1}, {"seq": 2}),
    (  # payments callback records: the first notification's digest and time stay
        "set-on-insert",
        {"$setOnInsert": {"body_sha256": "ab12", "at": h(1)}},
        {"body_sha256": "ab12", "at": h(1)},
        {"body_sha256": "ab12", "at": h(1)},
    ),
]


@pytest.mark.parametrize(("update", "first", "second"), [u[1:] for u in UPSERTS], ids=[u[0] for u in UPSERTS])
async def test_upsert_creates_then_updates(
    collection: AsyncCollection[Document], update: Document, first: Document, second: Document
) -> None:
    docs = collection
    created = await docs.update_one({"_id": "new"}, update, upsert=True)
    assert created.upserted_id == "new"
    assert created.matched_count == 0
    assert await docs.find_one({"_id": "new"}) == {"_id": "new", **first}
    again = await docs.update_one({"_id": "new"}, update, upsert=True)
    assert again.upserted_id is None
    assert again.matched_count == 1
    assert await docs.find_one({"_id": "new"}) == {"_id": "new", **second}
    other = await docs.find_one_and_update({"_id": "other"}, update, upsert=True, return_document=ReturnDocument.AFTER)
    assert other == {"_id": "other", **first}
    assert await docs.count_documents({}) == 2


async def test_replace_one_with_version_condition(collection: AsyncCollection[Document]) -> None:
    """The orders product snapshot: replace only when the stored version is the one read."""
    products = collection
    await products.insert_one({"_id": "p", "version": 2, "name": "Kopi", "price": 10})
    stale = await products.replace_one({"_id": "p", "version": 1}, {"_id": "p", "version": 3, "name": "Teh"})
    assert stale.matched_count == 0
    fresh = await products.replace_one({"_id": "p", "version": 2}, {"version": 3, "name": "Teh ☕"})
    assert (fresh.matched_count, fresh.modified_count) == (1, 1)
    assert await products.find_one({"_id": "p"}) == {"_id": "p", "version": 3, "name": "Teh ☕"}


async def test_deletes(collection: AsyncCollection[Document]) -> None:
    timers = collection
    await timers.insert_many([{"_id": f"t{i}", "due_at": h(i)} for i in range(5)])
    assert (await timers.delete_one({"_id": "t1"})).deleted_count == 1
    assert (await timers.delete_one({"_id": "t1"})).deleted_count == 0
    assert (await timers.delete_many({"_id": {"$in": ["t0", "t3", "t9"]}})).deleted_count == 2
    assert sorted(d["_id"] for d in await timers.find({}).to_list()) == ["t2", "t4"]


async def test_work_queue_claim_with_update_many(collection: AsyncCollection[Document]) -> None:
    """bejo_notifications.work_queue.claim_due: lease the due, unleased items, then read them by token."""
    queue = collection
    now = h(10)
    items = [
        {"_id": "free", "next_attempt_at": h(9), "lease_until": None},
        {"_id": "expired", "next_attempt_at": h(9), "lease_until": h(9)},
        {"_id": "leased", "next_attempt_at": h(9), "lease_until": h(11)},
        {"_id": "later", "next_attempt_at": h(12), "lease_until": None},
        {"_id": "no-lease-field", "next_attempt_at": h(10)},
    ]
    await queue.insert_many(items)
    unleased: Callable[[Document], bool] = lambda d: d.get("lease_until") is None or d["lease_until"] < now  # noqa: E731
    due = sorted(d["_id"] for d in items if d["next_attempt_at"] <= now and unleased(d))
    unleased_filter = {"$or": [{"lease_until": None}, {"lease_until": {"$lt": now}}]}
    found = await queue.find({"next_attempt_at": {"$lte": now}, **unleased_filter}, {"_id": 1}).to_list()
    assert sorted(d["_id"] for d in found) == due == ["expired", "free", "no-lease-field"]
    ids = [*due, "leased"]
    result = await queue.update_many(
        {"_id": {"$in": ids}, **unleased_filter}, {"$set": {"lease_until": now + timedelta(seconds=30), "claim": "tok"}}
    )
    assert (result.matched_count, result.modified_count) == (3, 3)
    claimed = await queue.find({"claim": "tok"}).to_list()
    assert sorted(d["_id"] for d in claimed) == due
    assert all(d["lease_until"] == now + timedelta(seconds=30) for d in claimed)
    assert await queue.find_one({"_id": "leased"}) == items[2]
