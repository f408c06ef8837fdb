"""Mongo adapter of the orders service, shaped by FerretDB (see docs/orders.md).

Collections:
- `orders.pNN` (partitioned by order id): the aggregates, with their history, inbox and outbox;
- `products.pNN` (partitioned by product id): the catalog's product snapshots, our read model;
- `providers`: the catalog's provider standing (small);
- `checkouts`: idempotency records, `_id` = `<pp sub>:<Idempotency-Key>` (insert-only);
- `timers`: one document per reservation awaiting the PPK, `_id` = order id (small, deleted when done);
- `bast_numbers`: claimed BAST numbers, `_id` = `bast:<pemda>:<year>:<seq>` (insert-only);
- `counters`: per pemda/year hint of the next BAST sequence (small).
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from bejo_contracts import Envelope
from bejo_contracts.catalog import ProductSnapshot
from bejo_kit.inbox import guarded, is_duplicate_key
from bejo_kit.logging import get_logger
from bejo_kit.mongo import Document, utcnow
from bejo_kit.outbox import Outbox, PendingEvents, staged, with_events
from bejo_kit.store import KeyedLocks, PartitionedCollection

from .domain import Order

log = get_logger(__name__)

# Listing and stats never need the heavy arrays.
SUMMARY_PROJECTION = {"history": 0, "inbox": 0, "events": 0}


class Repository:
    def __init__(
        self, db: AsyncDatabase[Document], outbox: Outbox, *, order_partitions: int, product_partitions: int
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.orders = PartitionedCollection(db, "orders", partitions=order_partitions)
        self.products = PartitionedCollection(db, "products", partitions=product_partitions)
        self.providers = db["providers"]
        self.checkouts = db["checkouts"]
        self.timers = db["timers"]
        self.bast_numbers = db["bast_numbers"]
        self.counters = db["counters"]
        self._product_locks = KeyedLocks()
        self._bast_next: dict[str, int] = {}

    # -- orders ---------------------------------------------------------------------------------

    async def get_order(self, order_id: str) -> Order | None:
        doc = await self.orders.find_one(order_id, {"events": 0})
        return Order.model_validate(doc) if doc else None

    async def insert_order(self, document: Document, envelopes: Sequence[Envelope]) -> bool:
        """Insert a new order with its first events; False if it already exists (a replayed checkout)."""
        pending = await self._prepare(document["_id"], envelopes)
        try:
            await self.orders.insert_one(staged(document, pending))
        except Exception as exc:
            if is_duplicate_key(exc):
                # Another request of the same checkout wrote it, with its own events: drop ours.
                await self.outbox.settle(pending, applied=False)
                return False
            await self.outbox.settle(pending, applied=False)
            raise
        await self.outbox.settle(pending, applied=True)
        return True

    async def _prepare(self, order_id: str, envelopes: Sequence[Envelope]) -> PendingEvents:
        """Store the relay's hints before the state write (see bejo_kit.outbox)."""
        return await self.outbox.prepare(self.orders.partition_of(order_id).name, order_id, envelopes)

    async def save_transition(
        self, before: Order, after: Order, envelopes: Sequence[Envelope], event_id: str | None = None
    ) -> bool:
        """State, history entry and events in one conditional write; False if the order moved meanwhile."""
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
        condition: Document = {"version": before.version}
        if event_id is not None:
            condition, update = guarded(condition, update, event_id)
        pending = await self.outbox.prepare(self.orders.partition_of(before.id).name, before.id, envelopes)
        try:
            result = await self.orders.update_one(before.id, with_events(update, pending), condition=condition)
        except Exception:
            await self.outbox.settle(pending, applied=False)
            raise
        applied = result.modified_count == 1
        await self.outbox.settle(pending, applied=applied)
        return applied

    async def list_orders(self, filter_: Document, limit: int, *, projection: Document | None = None) -> list[Document]:
        """Newest first (created_at, then _id, descending) across every partition."""

        async def one(collection: Any) -> list[Document]:
            cursor = collection.find(filter_, projection or SUMMARY_PROJECTION)
            return await cursor.sort([("created_at", -1), ("_id", -1)]).limit(limit).to_list()  # type: ignore[no-any-return]

        pages = await asyncio.gather(*(one(c) for c in self.orders))
        merged = heapq.merge(*pages, key=lambda d: (d["created_at"], d["_id"]), reverse=True)
        return [doc for _, doc in zip(range(limit), merged, strict=False)]

    async def scan_orders(self, filter_: Document, projection: Document) -> list[Document]:
        pages = await asyncio.gather(*(c.find(filter_, projection).to_list() for c in self.orders))
        return [doc for page in pages for doc in page]

    # -- idempotency records --------------------------------------------------------------------

    async def get_checkout(self, record_id: str) -> Document | None:
        return await self.checkouts.find_one({"_id": record_id})

    async def insert_checkout(self, record: Document) -> bool:
        try:
            await self.checkouts.insert_one(record)
        except Exception as exc:
            if is_duplicate_key(exc):
                return False
            raise
        return True

    # -- product read model ---------------------------------------------------------------------

    async def get_products(self, product_ids: Sequence[str]) -> dict[str, ProductSnapshot | None]:
        docs = await asyncio.gather(*(self.products.find_one(pid) for pid in product_ids))
        return {
            pid: ProductSnapshot.model_validate(doc["snapshot"]) if doc else None
            for pid, doc in zip(product_ids, docs, strict=True)
        }

    async def upsert_product(self, snapshot: ProductSnapshot) -> bool:
        """Keep the newest version; an older or equal version (redelivery, reordering) is dropped."""
        doc = {
            "_id": snapshot.product_id,
            "version": snapshot.version,
            "snapshot": snapshot.model_dump(mode="json"),
            "stored_at": utcnow(),
        }
        async with self._product_locks.hold(snapshot.product_id):
            while True:
                current = await self.products.find_one(snapshot.product_id, {"version": 1})
                if current is None:
                    try:
                        await self.products.insert_one(doc)
                    except Exception as exc:
                        if is_duplicate_key(exc):
                            continue  # another replica inserted first: compare versions again
                        raise
                    return True
                if current["version"] >= snapshot.version:
                    return False
                result = await self.products.replace_one(
                    snapshot.product_id, doc, condition={"version": current["version"]}
                )
                if result.modified_count == 1:
                    return True

    async def provider_statuses(self, provider_ids: Sequence[str]) -> dict[str, str]:
        docs = await asyncio.gather(*(self.providers.find_one({"_id": pid}) for pid in set(provider_ids)))
        return {doc["_id"]: doc["status"] for doc in docs if doc}

    async def upsert_provider(self, provider_id: str, status: str, as_of: datetime) -> bool:
        """Provider events carry no version: the envelope time orders them; older ones are dropped."""
        async with self._product_locks.hold(f"provider:{provider_id}"):
            current = await self.providers.find_one({"_id": provider_id})
            if current is None:
                try:
                    await self.providers.insert_one({"_id": provider_id, "status": status, "as_of": as_of})
                except Exception as exc:
                    if not is_duplicate_key(exc):
                        raise
                    return await self.upsert_provider(provider_id, status, as_of)
                return True
            if current["as_of"] >= as_of:
                return False
            await self.providers.update_one(
                {"_id": provider_id, "as_of": current["as_of"]}, {"$set": {"status": status, "as_of": as_of}}
            )
            return True

    # -- expiry timers --------------------------------------------------------------------------

    async def arm_timer(self, order_id: str, due_at: datetime) -> None:
        try:
            await self.timers.insert_one({"_id": order_id, "due_at": due_at})
        except Exception as exc:
            if not is_duplicate_key(exc):
                raise

    async def due_timers(self, now: datetime, limit: int = 500) -> list[str]:
        docs = await self.timers.find({"due_at": {"$lte": now}}, {"_id": 1}).limit(limit).to_list()
        return [doc["_id"] for doc in docs]

    async def claim_timer(self, order_id: str) -> bool:
        """Delete by _id: exactly one caller (replica) sees deleted_count == 1, even on FerretDB."""
        result = await self.timers.delete_one({"_id": order_id})
        return result.deleted_count == 1

    # -- BAST numbers ---------------------------------------------------------------------------

    async def allocate_bast_sequence(self, pemda: str, year: int, order_id: str) -> int:
        """The next free sequence for a pemda and year, claimed by inserting a unique `_id`.

        Inserting a duplicate `_id` is atomic on FerretDB too, so two replicas can never claim the
        same number; the counter document is only a hint of where to start probing."""
        key = f"{pemda}:{year}"
        sequence = self._bast_next.get(key)
        if sequence is None:
            hint = await self.counters.find_one({"_id": f"bast:{key}"})
            sequence = int(hint["next"]) if hint else 1
        while True:
            try:
                await self.bast_numbers.insert_one(
                    {"_id": f"bast:{key}:{sequence:06d}", "order_id": order_id, "claimed_at": utcnow()}
                )
                break
            except Exception as exc:
                if not is_duplicate_key(exc):
                    raise
                sequence += 1
        self._bast_next[key] = sequence + 1
        try:
            await self.counters.update_one({"_id": f"bast:{key}"}, {"$max": {"next": sequence + 1}}, upsert=True)
        except Exception as exc:
            if not is_duplicate_key(exc):  # two first-ever upserts raced; the hint is advisory anyway
                raise
        return sequence
