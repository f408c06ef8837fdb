"""Every query shape bejo's services, kit and outbox relay use, answered as MongoDB answers it.

Table-driven over the fixed data set in store_dataset.py: each case pairs a filter with a plain-Python
predicate stating MongoDB's semantics for that data, so the expected answer never comes from the
server. The collection carries the indexes a service would create, so index-backed answers count too.
The tests only read, so they share one loaded collection (in a database dropped after the module).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from store_dataset import DOCS, MISSING, NOW, by_id, dataset, get, h, is_number, nullish, project
from store_harness import Document

from bejo_contracts.common import WIB
from bejo_contracts.pemda import subtree_regex

pytestmark = [pytest.mark.integration, pytest.mark.store]


@pytest.fixture(scope="module")
async def orders(module_db: AsyncDatabase[Document]) -> AsyncIterator[AsyncCollection[Document]]:
    """The data set, loaded once for this module: every test here only reads it."""
    collection = module_db["orders"]
    await collection.create_indexes(
        [
            IndexModel([("outbox_pending", ASCENDING)]),
            IndexModel([("created_at", DESCENDING), ("_id", DESCENDING)]),
            IndexModel([("status", ASCENDING)]),
            IndexModel([("provider.region", ASCENDING)]),
            IndexModel([("tags", ASCENDING)]),
            IndexModel([("due_at", ASCENDING)]),
        ]
    )
    await collection.insert_many(dataset())
    yield collection


@dataclass(frozen=True)
class Case:
    id: str
    filter: Document
    matches: Callable[[Document], bool]


def regex(field: str, pattern: str) -> Callable[[Document], bool]:
    return lambda d: isinstance(d.get(field), str) and re.search(pattern, d[field]) is not None


def scope(pemda: str) -> str:
    """The services' pemda-scope regex (bejo_contracts.pemda, used by orders and catalog)."""
    return subtree_regex(pemda)


CURSOR_AT, CURSOR_ID = h(1), "ord-006"  # a page ended at ord-006; ord-001 shares its created_at

CASES = [
    Case("everything", {}, lambda d: True),
    # _id look-ups with string ids
    Case("id-eq", {"_id": "ord-002"}, lambda d: d["_id"] == "ord-002"),
    Case("id-eq-unicode", {"_id": "ord-ñ01"}, lambda d: d["_id"] == "ord-ñ01"),
    Case("id-eq-absent", {"_id": "ord-999"}, lambda d: False),
    Case("id-in", {"_id": {"$in": ["ord-001", "ord-004", "ord-999"]}}, lambda d: d["_id"] in {"ord-001", "ord-004"}),
    Case("id-lt-string-order", {"_id": {"$lt": "ord-003"}}, lambda d: d["_id"] < "ord-003"),
    Case("id-gt-unicode", {"_id": {"$gt": "ord-008"}}, lambda d: d["_id"] > "ord-008"),
    Case("id-and-field", {"_id": "ord-003", "status": "paid"}, lambda d: d["_id"] == "ord-003"),
    Case("id-and-field-mismatch", {"_id": "ord-003", "status": "placed"}, lambda d: False),
    # strings: case-sensitive equality, $in, $ne (which also matches a missing field)
    Case("status-eq", {"status": "paid"}, lambda d: d.get("status") == "paid"),
    Case("status-in", {"status": {"$in": ["paid", "approved"]}}, lambda d: d.get("status") in {"paid", "approved"}),
    Case("status-ne", {"status": {"$ne": "placed"}}, lambda d: d.get("status") != "placed"),
    Case(
        "status-and-pemda",
        {"status": "placed", "pemda": "35.15"},
        lambda d: (d.get("status"), d.get("pemda")) == ("placed", "35.15"),
    ),
    # numbers: 5 == 5.0 across types, never "5"; ranges bracket by type
    Case("qty-int", {"qty": 5}, lambda d: is_number(d.get("qty")) and d["qty"] == 5),
    Case("qty-float", {"qty": 5.0}, lambda d: is_number(d.get("qty")) and d["qty"] == 5),
    Case("qty-string", {"qty": "5"}, lambda d: d.get("qty") == "5"),
    Case("qty-gte", {"qty": {"$gte": 5}}, lambda d: is_number(d.get("qty")) and d["qty"] >= 5),
    Case("qty-lt-float", {"qty": {"$lt": 5.5}}, lambda d: is_number(d.get("qty")) and d["qty"] < 5.5),
    Case("qty-gte-string", {"qty": {"$gte": "5"}}, lambda d: isinstance(d.get("qty"), str) and d["qty"] >= "5"),
    Case(
        "qty-in-mixed",
        {"qty": {"$in": [4, "5"]}},
        lambda d: d.get("qty") == "5" or (is_number(d.get("qty")) and d["qty"] == 4),
    ),
    Case("total-float-eq", {"total": 99.5}, lambda d: d.get("total") == 99.5),
    Case("total-int-matches-float", {"total": 250}, lambda d: is_number(d.get("total")) and d["total"] == 250),
    Case(
        "total-range",
        {"total": {"$gte": 99.5, "$lte": 250}},
        lambda d: is_number(d.get("total")) and 99.5 <= d["total"] <= 250,
    ),
    # null vs missing
    Case("qty-null", {"qty": None}, lambda d: nullish(get(d, "qty"))),
    Case("qty-exists-false", {"qty": {"$exists": False}}, lambda d: "qty" not in d),
    Case("qty-exists-true", {"qty": {"$exists": True}}, lambda d: "qty" in d),
    Case("qty-ne-null", {"qty": {"$ne": None}}, lambda d: not nullish(get(d, "qty"))),
    Case("lease-null", {"lease_until": None}, lambda d: nullish(get(d, "lease_until"))),
    Case(
        "lease-free-or-expired",  # notifications work queue
        {"$or": [{"lease_until": None}, {"lease_until": {"$lt": NOW}}]},
        lambda d: nullish(get(d, "lease_until")) or d["lease_until"] < NOW,
    ),
    Case(
        "due-and-unleased",  # notifications work queue, claim_due
        {"next_attempt_at": {"$lte": NOW}, "$or": [{"lease_until": None}, {"lease_until": {"$lt": NOW}}]},
        lambda d: False,  # nobody has next_attempt_at
    ),
    # booleans: true is not 1
    Case("outbox-pending-true", {"outbox_pending": True}, lambda d: d.get("outbox_pending") is True),
    Case("outbox-pending-false", {"outbox_pending": False}, lambda d: d.get("outbox_pending") is False),
    Case("outbox-pending-ne-true", {"outbox_pending": {"$ne": True}}, lambda d: d.get("outbox_pending") is not True),
    Case("ledger-due", {"ledger_due": True}, lambda d: d.get("ledger_due") is True),
    Case(
        "open-payments",  # payments repository
        {"$or": [{"status": {"$in": ["awaiting_payment", "paid"]}}, {"ledger_due": True}]},
        lambda d: d.get("status") in {"awaiting_payment", "paid"} or d.get("ledger_due") is True,
    ),
    # tz-aware datetimes, bounds in UTC and in WIB (+07:00)
    Case("created-eq", {"created_at": h(1)}, lambda d: d["created_at"] == h(1)),
    Case("created-utc-range", {"created_at": {"$gte": h(0), "$lt": h(17)}}, lambda d: h(0) <= d["created_at"] < h(17)),
    Case(
        "created-wib-day",  # orders: wib_day_bounds for 10 March WIB, passed as +07:00 datetimes
        {"created_at": {"$gte": datetime(2025, 3, 10, tzinfo=WIB), "$lt": datetime(2025, 3, 11, tzinfo=WIB)}},
        lambda d: datetime(2025, 3, 9, 17, tzinfo=UTC) <= d["created_at"] < datetime(2025, 3, 10, 17, tzinfo=UTC),
    ),
    Case("due-lte", {"due_at": {"$lte": NOW}}, lambda d: "due_at" in d and d["due_at"] <= NOW),
    Case(
        "lease-gt",
        {"lease_until": {"$gt": NOW}},
        lambda d: isinstance(d.get("lease_until"), datetime) and d["lease_until"] > NOW,
    ),
    # arrays: element equality, exact array equality (order matters), empty array, $in, $ne
    Case("tags-element", {"tags": "kopi"}, lambda d: "kopi" in d.get("tags", [])),
    Case("tags-exact", {"tags": ["kopi", "teh"]}, lambda d: d.get("tags") == ["kopi", "teh"]),
    Case("tags-exact-other-order", {"tags": ["teh", "kopi"]}, lambda d: d.get("tags") == ["teh", "kopi"]),
    Case("tags-empty", {"tags": []}, lambda d: d.get("tags") == []),
    Case("tags-in", {"tags": {"$in": ["gula", "KOPI"]}}, lambda d: bool({"gula", "KOPI"} & set(d.get("tags", [])))),
    Case("tags-ne", {"tags": {"$ne": "kopi"}}, lambda d: "kopi" not in d.get("tags", [])),
    Case("inbox-guard", {"inbox": {"$ne": "evt-2"}}, lambda d: "evt-2" not in d.get("inbox", [])),
    Case("inbox-guard-by-id", {"_id": "ord-002", "inbox": {"$ne": "evt-2"}}, lambda d: False),
    Case("holds-element", {"inbox": "evt-1"}, lambda d: "evt-1" in d.get("inbox", [])),
    # embedded documents, whole or by dotted path, also into arrays of documents and maps
    Case("dotted", {"provider.region": "35.15"}, lambda d: get(d, "provider.region") == "35.15"),
    Case("dotted-null", {"provider.region": None}, lambda d: nullish(get(d, "provider.region"))),
    Case("dotted-exists", {"provider.id": {"$exists": True}}, lambda d: get(d, "provider.id") is not MISSING),
    Case(
        "embedded-eq",
        {"provider": {"id": "cv-a", "region": "35.15"}},
        lambda d: d.get("provider") == {"id": "cv-a", "region": "35.15"},
    ),
    Case(
        "dotted-into-array",
        {"history.status": "paid"},
        lambda d: any(x["status"] == "paid" for x in d.get("history", [])),
    ),
    Case("map-path", {"members.u-2.role": "bendahara"}, lambda d: get(d, "members.u-2.role") == "bendahara"),
    Case(  # notifications: unread by this user = no `read_by.<sub>` yet
        "map-key-absent",
        {"_id": {"$in": ["ord-001", "ord-004", "ord-005"]}, "members.u-2": {"$exists": False}},
        lambda d: d["_id"] in {"ord-001", "ord-004", "ord-005"} and get(d, "members.u-2") is MISSING,
    ),
    # bejo_kit.outbox: the marker, the relay's exact-array clean-up, the emptied-array check, the lease
    Case("outbox-pending", {"outbox_pending": True}, lambda d: d.get("outbox_pending") is True),
    Case("outbox-exact", {"outbox": DOCS[0]["outbox"]}, lambda d: d.get("outbox") == DOCS[0]["outbox"]),
    Case("outbox-exact-two", {"outbox": DOCS[3]["outbox"]}, lambda d: d.get("outbox") == DOCS[3]["outbox"]),
    Case(
        "outbox-exact-other-order",
        {"outbox": DOCS[3]["outbox"][::-1]},
        lambda d: d.get("outbox") == DOCS[3]["outbox"][::-1],
    ),
    Case("outbox-exact-subset", {"outbox": DOCS[3]["outbox"][:1]}, lambda d: d.get("outbox") == DOCS[3]["outbox"][:1]),
    Case("outbox-exact-by-id", {"_id": "ord-004", "outbox": DOCS[3]["outbox"]}, lambda d: d["_id"] == "ord-004"),
    # (Not here: `{"outbox": <one embedded document>}`, matching an element of an array of documents.
    # FerretDB v1 never matches it; bejo does not use it, and should not start to.)
    Case("outbox-dotted-id", {"outbox.id": "e1"}, lambda d: any(e["id"] == "e1" for e in d.get("outbox", []))),
    Case(
        "outbox-dotted-nested",
        {"outbox.envelope.type": "order.paid"},
        lambda d: any(e["envelope"]["type"] == "order.paid" for e in d.get("outbox", [])),
    ),
    Case("outbox-empty", {"outbox": []}, lambda d: d.get("outbox") == []),
    Case(
        "outbox-size-2", {"outbox": {"$size": 2}}, lambda d: isinstance(d.get("outbox"), list) and len(d["outbox"]) == 2
    ),
    Case(
        "outbox-emptied-or-gone",
        {"$or": [{"outbox": {"$size": 0}}, {"outbox": {"$exists": False}}]},
        lambda d: d.get("outbox", []) == [],
    ),
    Case(
        "outbox-emptied-by-id",
        {"_id": "ord-004", "$or": [{"outbox": {"$size": 0}}, {"outbox": {"$exists": False}}]},
        lambda d: False,
    ),
    Case("lease-null-or-missing", {"outbox_lease": None}, lambda d: nullish(get(d, "outbox_lease"))),
    Case("lease-claim-null", {"_id": "ord-006", "outbox_lease": None}, lambda d: d["_id"] == "ord-006"),
    Case("lease-claim-time", {"_id": "ord-004", "outbox_lease": h(3)}, lambda d: d["_id"] == "ord-004"),
    Case("lease-claim-moved", {"_id": "ord-004", "outbox_lease": None}, lambda d: False),
    # $regex: the orders pemda scope, anchors, escaped metacharacters, case, unicode
    Case("regex-scope-35.15", {"pemda": {"$regex": scope("35.15")}}, regex("pemda", scope("35.15"))),
    Case("regex-scope-35", {"pemda": {"$regex": scope("35")}}, regex("pemda", scope("35"))),
    Case(
        "regex-scope-with-status",
        {"status": {"$in": ["paid", "approved"]}, "pemda": {"$regex": scope("35")}},
        lambda d: d.get("status") in {"paid", "approved"} and regex("pemda", scope("35"))(d),
    ),
    Case(
        "regex-metacharacters",
        {"name": {"$regex": r"^Kopi Luwak \(premium\) \[grade-1\]$"}},
        lambda d: d["name"] == "Kopi Luwak (premium) [grade-1]",
    ),
    Case("regex-case-sensitive", {"name": {"$regex": "^kopi"}}, regex("name", "^kopi")),
    Case("regex-unicode", {"name": {"$regex": "Ñusantara"}}, regex("name", "Ñusantara")),
    Case("regex-emoji", {"name": {"$regex": "🍚|🍯"}}, regex("name", "🍚|🍯")),
    Case("unicode-eq", {"name": "Gula Aren 🍯 ½ kg"}, lambda d: d["name"] == "Gula Aren 🍯 ½ kg"),
    Case("unicode-cjk-eq", {"name": "Ñame 山芋"}, lambda d: d["name"] == "Ñame 山芋"),
    # the orders list: $and of scope, day range and the keyset cursor's $or
    Case(
        "orders-page-after-cursor",
        {
            "$and": [
                {"pemda": {"$regex": scope("35")}},
                {"created_at": {"$gte": h(-7), "$lt": h(17)}},
                {"$or": [{"created_at": {"$lt": CURSOR_AT}}, {"created_at": CURSOR_AT, "_id": {"$lt": CURSOR_ID}}]},
            ]
        },
        lambda d: (
            regex("pemda", scope("35"))(d)
            and h(-7) <= d["created_at"] < h(17)
            and (d["created_at"], d["_id"]) < (CURSOR_AT, CURSOR_ID)
        ),
    ),
    Case(
        "deliveries-page-after-cursor",  # notifications webhooks: implicit and with $or
        {
            "provider.id": "cv-a",
            "$or": [{"created_at": {"$lt": h(3)}}, {"created_at": h(3), "_id": {"$lt": "ord-004"}}],
        },
        lambda d: get(d, "provider.id") == "cv-a" and (d["created_at"], d["_id"]) < (h(3), "ord-004"),
    ),
]


def expected_ids(case: Case) -> list[str]:
    return sorted(d["_id"] for d in DOCS if case.matches(d))


EMPTY_BY_DESIGN = {
    "id-eq-absent",
    "id-and-field-mismatch",
    "due-and-unleased",
    "inbox-guard-by-id",
    "outbox-exact-other-order",
    "outbox-exact-subset",
    "outbox-emptied-by-id",
    "lease-claim-moved",
}


def test_the_table_discriminates() -> None:
    """Guards the table itself: only the cases meant to find nothing find nothing, and the ids are unique."""
    assert {c.id for c in CASES if not expected_ids(c)} == EMPTY_BY_DESIGN
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_find_and_count(orders: AsyncCollection[Document], case: Case) -> None:
    found = await orders.find(case.filter).to_list()
    assert sorted(d["_id"] for d in found) == expected_ids(case)
    assert sorted(found, key=lambda d: d["_id"]) == [by_id(i) for i in expected_ids(case)]
    assert await orders.count_documents(case.filter) == len(expected_ids(case))
    one = await orders.find_one(case.filter)
    assert (one is None) == (not expected_ids(case))
    if one is not None:
        assert one["_id"] in expected_ids(case)


@pytest.mark.parametrize("doc_id", [d["_id"] for d in DOCS])
async def test_documents_round_trip(orders: AsyncCollection[Document], doc_id: str) -> None:
    """Stored and read back unchanged: int stays int, float stays float, datetimes come back tz-aware
    UTC and equal, unicode intact; `find_one(<id>)` with a bare id means `{_id: <id>}`."""
    expected = by_id(doc_id)
    for got in (await orders.find_one({"_id": doc_id}), await orders.find_one(doc_id)):
        assert got == expected
        assert got is not None
        assert list(got) == list(expected), "field order changed"
        for field in ("qty", "total"):
            assert type(got.get(field)) is type(expected.get(field)), field
        assert got["created_at"].tzinfo is not None
        assert got["created_at"].utcoffset() == timedelta(0)


@dataclass(frozen=True)
class Sorted:
    id: str
    case: Case
    sort: list[tuple[str, int]]
    skip: int
    limit: int  # 0: no limit
    key: Callable[[Document], Any]  # the order in plain Python
    reverse: bool = False


SORTS = [
    Sorted(
        "newest-first", CASES[0], [("created_at", -1), ("_id", -1)], 0, 4, lambda d: (d["created_at"], d["_id"]), True
    ),
    Sorted("id-asc-skip-limit", CASES[0], [("_id", 1)], 2, 3, lambda d: d["_id"]),
    Sorted("id-desc-first", CASES[0], [("_id", -1)], 0, 1, lambda d: d["_id"], True),
    Sorted(  # catalog providers: the page after a string id
        "id-gt-page",
        Case("", {"_id": {"$gt": "ord-003"}}, lambda d: d["_id"] > "ord-003"),
        [("_id", 1)],
        0,
        3,
        lambda d: d["_id"],
    ),
    Sorted(
        "total-desc-ties-by-id",
        Case(
            "",
            {"status": {"$in": ["paid", "approved", "PAID"]}},
            lambda d: d.get("status") in {"paid", "approved", "PAID"},
        ),
        [("total", -1), ("_id", 1)],
        0,
        0,
        lambda d: (-d["total"], d["_id"]),
    ),
    Sorted(
        "created-asc-in-scope",
        Case("", {"pemda": {"$regex": scope("35.15")}}, regex("pemda", scope("35.15"))),
        [("created_at", 1), ("_id", 1)],
        1,
        2,
        lambda d: (d["created_at"], d["_id"]),
    ),
]


@pytest.mark.parametrize("case", SORTS, ids=lambda s: s.id)
async def test_sort_skip_limit(orders: AsyncCollection[Document], case: Sorted) -> None:
    ordered = sorted((d for d in DOCS if case.case.matches(d)), key=case.key, reverse=case.reverse)[case.skip :]
    expected = [d["_id"] for d in (ordered[: case.limit] if case.limit else ordered)]
    cursor = orders.find(case.case.filter, {"_id": 1}).sort(case.sort).skip(case.skip)
    if case.limit:
        cursor = cursor.limit(case.limit)
    assert [d["_id"] for d in await cursor.to_list()] == expected


async def test_limit_without_sort(orders: AsyncCollection[Document]) -> None:
    """The orders timers: due ones, only ids, at most `limit` of them (any of them)."""
    due = {d["_id"] for d in DOCS if "due_at" in d and d["due_at"] <= NOW}
    got = await orders.find({"due_at": {"$lte": NOW}}, {"_id": 1}).limit(2).to_list()
    assert len(got) == 2
    assert all(list(d) == ["_id"] for d in got)
    assert {d["_id"] for d in got} <= due


PROJECTIONS = {
    "order-summary": {"history": 0, "inbox": 0, "outbox": 0},
    "without-outbox": {"outbox": 0, "outbox_pending": 0, "outbox_lease": 0},
    "relay-sweep": {"outbox": 1, "outbox_lease": 1},
    "ids-only": {"_id": 1},
    "stats-fields": {"pemda": 1, "total": 1, "paid_at": 1, "updated_at": 1},
    "no-id": {"_id": 0, "name": 1, "qty": 1},
    "status-version": {"status": 1, "version": 1},
}


@pytest.mark.parametrize("projection", PROJECTIONS.values(), ids=PROJECTIONS.keys())
async def test_projections(orders: AsyncCollection[Document], projection: Document) -> None:
    got = await orders.find({}, projection).sort("_id", 1).to_list()
    assert got == [project(d, projection) for d in sorted(DOCS, key=lambda d: d["_id"])]
    one = await orders.find_one({"_id": "ord-004"}, projection)
    assert one == project(by_id("ord-004"), projection)
    assert await orders.find_one({"_id": "ord-999"}, projection) is None


# The catalog feed: entries keyed by integer sequence numbers.
FEED = [{"_id": n, "change": f"c{n}", "at": h(n / 10)} for n in range(1, 31)]
FEED_CASES = [
    ("entry-by-seq", {"_id": 7}, [("_id", 1)], 0, [7]),
    ("entry-by-float-seq", {"_id": 7.0}, [("_id", 1)], 0, [7]),
    ("entry-absent", {"_id": 31}, [("_id", 1)], 0, []),
    ("after-cursor", {"_id": {"$gt": 25}}, [("_id", 1)], 3, [26, 27, 28]),
    ("after-last", {"_id": {"$gt": 30}}, [("_id", 1)], 3, []),
    ("head", {}, [("_id", -1)], 1, [30]),
    ("range", {"_id": {"$gte": 9, "$lte": 11}}, [("_id", 1)], 0, [9, 10, 11]),
]


@pytest.fixture(scope="module")
async def feed(module_db: AsyncDatabase[Document]) -> AsyncCollection[Document]:
    collection = module_db["feed"]
    await collection.insert_many([dict(entry) for entry in FEED])
    return collection


@pytest.mark.parametrize(
    ("filter_", "sort", "limit", "expected"), [c[1:] for c in FEED_CASES], ids=[c[0] for c in FEED_CASES]
)
async def test_integer_ids(
    feed: AsyncCollection[Document], filter_: Document, sort: list[tuple[str, int]], limit: int, expected: list[int]
) -> None:
    cursor = feed.find(filter_).sort(sort)
    got = await (cursor.limit(limit) if limit else cursor).to_list()
    assert got == [FEED[n - 1] for n in expected]
    assert all(type(d["_id"]) is int for d in got)
