"""A small fixed data set for the query conformance tests, and the plain-Python helpers the tests
use to compute each expected answer (never by asking the server)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

Document = dict[str, Any]

T = datetime(2025, 3, 10, 0, 0, tzinfo=UTC)
NOW = T + timedelta(hours=2)
MISSING = object()


def h(hours: float) -> datetime:
    return T + timedelta(hours=hours)


def entry(event_id: str, kind: str, at: datetime | None = None) -> Document:
    """An outbox entry as bejo_kit.outbox writes it: nested envelope, tz-aware time."""
    return {
        "id": event_id,
        "exchange": "bejo.events",
        "at": at or h(0),
        "envelope": {"id": event_id, "type": kind, "source": "bejo/orders", "data": {"n": 1, "tags": ["a", "b"]}},
    }


# Orders-like documents. Deliberate traps: qty is 5 / 5.0 / "5" / 5.5 / null / missing; some fields
# are null vs missing; tags are equal as sets but not as arrays; names are unicode and carry regex
# metacharacters; two orders share created_at (a cursor tie); outbox_pending is true / false / 1 /
# missing; outbox_lease is null / a time / missing; pemda codes that a careless prefix regex would
# confuse ("35.15" vs "35.151").
DOCS: list[Document] = [
    {
        "_id": "ord-001",
        "status": "placed",
        "pemda": "35.15",
        "total": 100,
        "qty": 5,
        "created_at": h(1),
        "lease_until": None,
        "due_at": h(1.5),
        "tags": ["kopi", "teh"],
        "inbox": ["evt-1"],
        "provider": {"id": "cv-a", "region": "35.15"},
        "history": [{"status": "placed", "at": h(1)}],
        "members": {"u-1": {"role": "pp"}},
        "name": "Kopi Robusta Dampit",
        "outbox_pending": True,
        "outbox": [entry("e1", "order.placed")],
        "outbox_lease": None,
        "ledger_due": False,
    },
    {
        "_id": "ord-002",
        "status": "approved",
        "pemda": "35.15.01",
        "total": 250,
        "qty": 5.0,
        "created_at": h(2),
        "lease_until": h(-1),
        "due_at": h(2),
        "tags": ["teh", "kopi"],
        "inbox": ["evt-1", "evt-2"],
        "provider": {"id": "cv-b", "region": "35.15"},
        "history": [{"status": "placed", "at": h(2)}, {"status": "approved", "at": h(2.5)}],
        "name": "Teh Melati — Ñusantara",
        "outbox_pending": False,
        "outbox": [],
        "ledger_due": True,
    },
    {
        "_id": "ord-003",
        "status": "paid",
        "pemda": "35.151",
        "total": 75,
        "qty": "5",
        "created_at": h(3),
        "lease_until": h(5),
        "due_at": h(8),
        "tags": ["kopi"],
        "inbox": [],
        "provider": {"id": "cv-a", "region": "35.16"},
        "history": [{"status": "placed", "at": h(3)}, {"status": "paid", "at": h(4)}],
        "name": "Beras Premium 5 kg 🍚",
        "ledger_due": True,
    },
    {
        "_id": "ord-004",
        "status": "paid",
        "pemda": "35",
        "total": 1000,
        "qty": 6,
        "created_at": h(17),  # 00:00 WIB on 11 March: the first instant of the next WIB day
        "tags": [],
        "provider": {"id": "cv-c"},
        "history": [{"status": "paid", "at": h(17)}],
        "members": {"u-2": {"role": "bendahara"}, "u-3": {"role": "pp"}},
        "name": "kertas A4",
        "outbox_pending": True,
        "outbox": [entry("e2", "order.paid"), entry("e3", "order.approved", h(1))],
        "outbox_lease": h(3),
        "ledger_due": False,
    },
    {
        "_id": "ord-005",
        "status": "cancelled",
        "pemda": "36.01",
        "total": 0,
        "qty": None,
        "created_at": h(-1),  # 06:00 WIB on 10 March, still 9 March in UTC
        "lease_until": None,
        "name": "Kopi Luwak (premium) [grade-1]",
        "outbox_pending": 1,
        "outbox": [entry("e1", "order.placed"), entry("e4", "order.cancelled")],
    },
    {
        "_id": "ord-006",
        "status": "placed",
        "pemda": "35.15",
        "total": 100,
        "qty": 4,
        "created_at": h(1),  # the same instant as ord-001
        "tags": ["KOPI"],
        "name": "kopi robusta",
        "outbox": [entry("e1", "order.placed")],
    },
    {
        "_id": "ord-007",
        "status": "approved",
        "pemda": "35.78",
        "total": 99.5,
        "qty": 5.5,
        "created_at": h(5),
        "due_at": h(2),
        "tags": ["kopi", "teh", "gula"],
        "inbox": ["evt-2"],
        "provider": {"id": "cv-b", "region": "35.78"},
        "history": [{"status": "approved", "at": h(5)}],
        "name": "Gula Aren 🍯 ½ kg",
        "outbox_pending": False,
        "outbox_lease": h(1),
        "ledger_due": True,
    },
    {
        "_id": "ord-008",
        "status": "PAID",
        "pemda": "35.15",
        "total": 250.0,
        "qty": "05",
        "created_at": h(23),
        "lease_until": h(1),
        "tags": ["gula"],
        "name": "Überweisung ✓",
        "ledger_due": False,
    },
    {
        "_id": "ord-ñ01",
        "created_at": h(4),
        "name": "Ñame 山芋",
    },
]


def dataset() -> list[Document]:
    return copy.deepcopy(DOCS)


def by_id(doc_id: str) -> Document:
    return copy.deepcopy(next(d for d in DOCS if d["_id"] == doc_id))


def get(doc: Document, path: str) -> Any:
    """The value at a dotted path through embedded documents (no array traversal), or MISSING."""
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def nullish(value: Any) -> bool:
    """What `{field: null}` matches: null or missing."""
    return value is None or value is MISSING


def project(doc: Document, projection: Document) -> Document:
    """MongoDB's projection of top-level fields: all-inclusion (with _id unless excluded) or all-exclusion."""
    included = {k for k, v in projection.items() if v and k != "_id"}
    if included or projection == {"_id": 1}:
        keep = included | ({"_id"} if projection.get("_id", 1) else set())
        return {k: v for k, v in doc.items() if k in keep}
    dropped = {k for k, v in projection.items() if not v}
    return {k: v for k, v in doc.items() if k not in dropped}
