"""Mongo adapter of the orders service (see docs/orders.md, "Storage").

Collections:
- `orders`: the aggregates, with their history, inbox and outbox;
- `products`: the catalog's product snapshots, our read model (newest `version` wins);
- `providers`: the catalog's provider standing (newest envelope time wins);
- `checkouts`: idempotency records, `_id` = `<pp sub>:<Idempotency-Key>` (insert-only);
- `counters`: BAST sequences, `_id` = `bast:<pemda>:<year>`;
- `attempts`: refused attempts kept for the red-flag indicators (self-approval, money without BAST).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bejo_contracts import Envelope
from bejo_contracts.catalog import ProductSnapshot
from bejo_contracts.pemda import subtree_regex
from bejo_kit.inbox import guarded
from bejo_kit.mongo import Document, Indexes, utcnow
from bejo_kit.outbox import WITHOUT_OUTBOX, Outbox

from .domain import Order

ORDERS = "orders"
NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]
# Indexes for every query below; the outbox marker index comes from the runtime.
INDEXES = Indexes(
    {
        ORDERS: [
            # listing, newest first: a buyer's satker, a provider's orders, an admin's pemda prefix
            # (walked newest first and filtered, so a page never sorts the whole province)
            IndexModel([("pemda", ASCENDING), ("satker", ASCENDING), *NEWEST_FIRST], name="satker_newest"),
            IndexModel([("provider_id", ASCENDING), *NEWEST_FIRST], name="provider_newest"),
            IndexModel(NEWEST_FIRST, name="newest"),
            # expiry sweep: reserved orders past their approval deadline
            IndexModel([("status", ASCENDING), ("approval_due_at", ASCENDING)], name="status_due"),
            # stats (paid orders by pemda and payment time) and OCDS (published, most recently changed)
            IndexModel([("status", ASCENDING), ("pemda", ASCENDING), ("paid_at", ASCENDING)], name="status_paid"),
            IndexModel([("status", ASCENDING), ("updated_at", DESCENDING), ("_id", DESCENDING)], name="status_changed"),
        ],
        "attempts": [IndexModel([("pemda", ASCENDING), ("at", ASCENDING)], name="pemda_at")],
    }
)
PAID_STATUSES = ("paid", "completed")
# A [start, end) time range, either end open; a page position: the last row's (time, _id).
Bounds = tuple[datetime | None, datetime | None]
Position = tuple[datetime, str]
# Listing and stats never need the heavy arrays.
SUMMARY = {"history": 0, "inbox": 0, **WITHOUT_OUTBOX}


class Repository:
    def __init__(self, db: AsyncDatabase[Document], outbox: Outbox) -> None:
        self.outbox = outbox
        self.orders = db[ORDERS]
        self.products = db["products"]
        self.providers = db["providers"]
        self.checkouts = db["checkouts"]
        self.counters = db["counters"]
        self.refused_attempts = db["attempts"]

    # -- orders ---------------------------------------------------------------------------------

    async def get_order(self, order_id: str) -> Order | None:
        doc = await self.orders.find_one({"_id": order_id}, WITHOUT_OUTBOX)
        return Order.model_validate(doc) if doc else None

    async def insert_order(self, document: Document, envelopes: Sequence[Envelope]) -> bool:
        """Insert a new order with its first events; False if it already exists (a replayed checkout)."""
        try:
            await self.outbox.insert_one(self.orders, document, envelopes)
        except DuplicateKeyError:
            return False
        return True

    async def save_transition(
        self, before: Order, after: Order, envelopes: Sequence[Envelope], event_id: str | None = None
    ) -> bool:
        """State, history entry and events in one write, on the version read; False if the order moved."""
        old, new = before.document(), after.document()
        changed = {
            name: value
            for name, value in new.items()
            if name not in ("_id", "history", "inbox") and value != old.get(name)
        }
        new_entries = [e.model_dump(by_alias=True) for e in after.history[len(before.history) :]]
        update: Document = {"$set": changed} if changed else {}
        if new_entries:
            update["$push"] = {"history": {"$each": new_entries}}
        condition: Document = {"_id": before.id, "version": before.version}
        if event_id is not None:
            condition, update = guarded(condition, update, event_id)
        return await self.outbox.update_one(self.orders, condition, update, envelopes)

    async def list_orders(
        self,
        *,
        limit: int,
        pemda: str | None = None,
        within: str | None = None,
        satker: str | None = None,
        provider_id: str | None = None,
        status: str | None = None,
        created: Bounds = (None, None),
        after: Position | None = None,
    ) -> list[Order]:
        """Newest first (created_at, then _id, descending); `within` is a pemda and those under it."""
        filter_: Document = {}
        if pemda is not None:
            filter_["pemda"] = pemda
        if within is not None:
            filter_["pemda"] = _pemda_and_below(within)
        if satker:
            filter_["satker"] = satker
        if provider_id:
            filter_["provider_id"] = provider_id
        if status:
            filter_["status"] = status
        if between := _between(created):
            filter_["created_at"] = between
        filter_.update(_after("created_at", after))
        docs = await self.orders.find(filter_, SUMMARY).sort(NEWEST_FIRST).limit(limit).to_list()
        return [Order.model_validate(doc) for doc in docs]

    async def paid_orders(self, *, within: str | None = None, paid: Bounds = (None, None)) -> list[Document]:
        """Pemda, total and payment time of the paid and completed orders, optionally in a pemda and period."""
        filter_: Document = {"status": {"$in": list(PAID_STATUSES)}}
        if within:
            filter_["pemda"] = _pemda_and_below(within)
        if between := _between(paid):
            filter_["paid_at"] = between  # `pay` and `settle` both set it
        projection = {"pemda": 1, "total": 1, "paid_at": 1, "provider_id": 1, "provider_name": 1, "lines": 1}
        return await self.orders.find(filter_, projection).to_list()

    async def recently_changed(
        self, statuses: Sequence[str], *, within: str | None = None, after: Position | None = None, limit: int
    ) -> list[Order]:
        """Orders in `statuses`, most recently changed first (updated_at, then _id, descending)."""
        filter_: Document = {"status": {"$in": list(statuses)}}
        if within:
            filter_["pemda"] = _pemda_and_below(within)
        filter_.update(_after("updated_at", after))
        projection = {"inbox": 0, **WITHOUT_OUTBOX}
        cursor = self.orders.find(filter_, projection).sort([("updated_at", DESCENDING), ("_id", DESCENDING)])
        return [Order.model_validate(doc) for doc in await cursor.limit(limit).to_list()]

    async def orders_for_audit(self, *, within: str, created: Bounds, limit: int) -> list[Order]:
        """Orders of a pemda subtree placed in a period, with their history, newest first."""
        filter_: Document = {"pemda": _pemda_and_below(within)}
        if between := _between(created):
            filter_["created_at"] = between
        projection = {"inbox": 0, **WITHOUT_OUTBOX}
        docs = await self.orders.find(filter_, projection).sort(NEWEST_FIRST).limit(limit).to_list()
        return [Order.model_validate(doc) for doc in docs]

    # -- refused attempts (red flags) -------------------------------------------------------------

    async def record_attempt(self, attempt: Document) -> None:
        """Insert once: the same `_id` again (a redelivered event) is already recorded."""
        with contextlib.suppress(DuplicateKeyError):
            await self.refused_attempts.insert_one(attempt)

    async def attempts(self, *, within: str, at: Bounds) -> list[Document]:
        filter_: Document = {"pemda": _pemda_and_below(within)}
        if between := _between(at):
            filter_["at"] = between
        return await self.refused_attempts.find(filter_).to_list()

    async def overdue_reservations(self, now: datetime, limit: int = 500) -> list[str]:
        filter_ = {"status": "reserved", "approval_due_at": {"$lte": now}}
        docs = await self.orders.find(filter_, {"_id": 1}).limit(limit).to_list()
        return [doc["_id"] for doc in docs]

    # -- idempotency records --------------------------------------------------------------------

    async def get_checkout(self, record_id: str) -> Document | None:
        return await self.checkouts.find_one({"_id": record_id})

    async def insert_checkout(self, record: Document) -> bool:
        try:
            await self.checkouts.insert_one(record)
        except DuplicateKeyError:
            return False
        return True

    # -- product and provider read models -------------------------------------------------------

    async def get_products(self, product_ids: Sequence[str]) -> dict[str, ProductSnapshot | None]:
        docs = await self.products.find({"_id": {"$in": list(product_ids)}}).to_list()
        found = {doc["_id"]: ProductSnapshot.model_validate(doc["snapshot"]) for doc in docs}
        return {pid: found.get(pid) for pid in product_ids}

    async def upsert_product(self, snapshot: ProductSnapshot) -> bool:
        """Keep the newest snapshot: the higher version, or among equal versions the later `as_of`
        (a provider's standing or a new promotion); a redelivered or reordered older one is dropped."""
        fields = {"version": snapshot.version, "snapshot": snapshot.model_dump(mode="json"), "stored_at": utcnow()}
        older: Document = {"version": {"$lt": snapshot.version}}
        if snapshot.as_of is not None:
            fields["as_of"] = snapshot.as_of
            same_version = {"version": snapshot.version}
            older = {
                "$or": [
                    older,
                    {**same_version, "as_of": {"$lt": snapshot.as_of}},
                    {**same_version, "as_of": {"$exists": False}},
                ]
            }
        return await _keep_newest(self.products, snapshot.product_id, older, fields)

    async def product_categories(self, product_ids: Sequence[str]) -> dict[str, str]:
        """Category id of each product in the read model (products never seen are left out)."""
        docs = await self.products.find({"_id": {"$in": list(product_ids)}}, {"snapshot.category_id": 1}).to_list()
        return {doc["_id"]: doc["snapshot"]["category_id"] for doc in docs}

    async def provider_statuses(self, provider_ids: Sequence[str]) -> dict[str, str]:
        docs = await self.providers.find({"_id": {"$in": sorted(set(provider_ids))}}).to_list()
        return {doc["_id"]: doc["status"] for doc in docs}

    async def upsert_provider(self, provider_id: str, status: str, as_of: datetime) -> bool:
        """Provider events carry no version: the envelope time orders them; older ones are dropped."""
        older: Document = {"as_of": {"$lt": as_of}}
        return await _keep_newest(self.providers, provider_id, older, {"as_of": as_of, "status": status})

    # -- BAST numbers ---------------------------------------------------------------------------

    async def next_bast_sequence(self, pemda: str, year: int) -> int:
        """The next BAST sequence of a pemda and year: one atomic `$inc`, so no two orders share one."""
        for _ in range(2):
            try:
                doc = await self.counters.find_one_and_update(
                    {"_id": f"bast:{pemda}:{year}"},
                    {"$inc": {"seq": 1}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                continue  # two first-ever upserts raced; the counter exists now
            assert doc is not None  # upserted
            return int(doc["seq"])
        raise RuntimeError("BAST counter upsert kept colliding")  # pragma: no cover


async def _keep_newest(collection: AsyncCollection[Document], doc_id: str, older: Document, fields: Document) -> bool:
    """Upsert `fields` unless the stored document is not `older` (equal or newer); True if written.

    A duplicate key on the upsert means the document exists and did not match, i.e. is not older,
    unless it was first inserted (by a racing older event) between our match and our insert: one
    more attempt settles that case."""
    for _ in range(2):
        try:
            result = await collection.update_one({"_id": doc_id, **older}, {"$set": fields}, upsert=True)
        except DuplicateKeyError:
            continue
        return result.modified_count == 1 or result.upserted_id is not None
    return False


def _pemda_and_below(pemda: str) -> Document:
    """A pemda code and the codes under it (`35` matches `35` and `35.15`, not `351`)."""
    return {"$regex": subtree_regex(pemda)}


def _between(bounds: Bounds) -> Document:
    start, end = bounds
    return {op: at for op, at in (("$gte", start), ("$lt", end)) if at is not None}


def _after(field: str, position: Position | None) -> Document:
    """The rows after `position` in (`field`, `_id`) descending order, as a filter."""
    if position is None:
        return {}
    at, last_id = position
    return {"$or": [{field: {"$lt": at}}, {field: at, "_id": {"$lt": last_id}}]}
