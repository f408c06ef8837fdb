"""Transactional outbox without transactions.

Neither FerretDB nor a standalone mongod has multi-document transactions, so a state change and
the events it emits are written in ONE document write: events are staged in the aggregate
document's own `outbox` array. A relay, safe to run in every replica, later claims documents with
pending events under a lease, publishes the events with broker confirms, and pulls exactly the
published ones out of the array. A crash anywhere loses nothing: unpublished events stay in the
document; an event published but not yet pulled is published again and consumers drop the
duplicate by event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta

from pymongo import IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from bejo_contracts import Envelope
from bejo_contracts.topology import EVENTS_EXCHANGE

from . import metrics
from .bus import Bus
from .logging import get_logger
from .mongo import Document, utcnow
from .settings import KitSettings

log = get_logger(__name__)

OUTBOX = "outbox"
PENDING = "outbox_pending"
LEASE = "outbox_lease"
OWNER = "outbox_owner"
LAST_ERROR = "outbox_error"

OUTBOX_INDEXES = [IndexModel([(PENDING, 1)], name="outbox_pending")]


def _entry(envelope: Envelope, exchange: str) -> Document:
    return {"id": envelope.id, "exchange": exchange, "envelope": envelope.model_dump(mode="json")}


def staged(document: Document, envelopes: Sequence[Envelope], exchange: str = EVENTS_EXCHANGE) -> Document:
    """A new document carrying its first events, for insert_one."""
    return {**document, OUTBOX: [_entry(e, exchange) for e in envelopes], PENDING: bool(envelopes)}


def with_events(update: Document, envelopes: Sequence[Envelope], exchange: str = EVENTS_EXCHANGE) -> Document:
    """Add events to an update document, so that the state change and its events are one write."""
    if not envelopes:
        return update
    merged = {op: dict(fields) for op, fields in update.items()}
    merged.setdefault("$push", {})[OUTBOX] = {"$each": [_entry(e, exchange) for e in envelopes]}
    merged.setdefault("$set", {})[PENDING] = True
    return merged


class OutboxRelay:
    """Publishes staged events of the given collections; run one per replica."""

    def __init__(
        self,
        db: AsyncDatabase[Document],
        collections: Iterable[str],
        bus: Bus,
        settings: KitSettings,
        lease: timedelta = timedelta(seconds=30),
    ) -> None:
        self._db = db
        self._collections = list(collections)
        self._bus = bus
        self._settings = settings
        self._lease = lease
        self._owner = uuid.uuid4().hex
        self._wakeup = asyncio.Event()
        self._dirty: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def ensure_indexes(self) -> None:
        for name in self._collections:
            await self._db[name].create_indexes(OUTBOX_INDEXES)

    def wake(self, collection: str | None = None) -> None:
        """Called after a local write so its events go out now rather than at the next full sweep.

        Naming the collection lets the relay visit only that one: on FerretDB every visit scans.
        """
        if collection is not None:
            self._dirty.add(collection)
        self._wakeup.set()

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, flush_timeout: float = 10.0) -> None:
        """Stop polling after publishing what is pending now (bounded by `flush_timeout`)."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), flush_timeout)

    async def flush(self) -> int:
        """Publish until nothing publishable is pending. Returns how many events went out."""
        total = 0
        while True:
            sent = await self.relay_once()
            total += sent
            if sent == 0:
                return total

    async def relay_once(self) -> int:
        sent = 0
        for name in self._collections:
            sent += await self._relay_collection(name)
        return sent

    async def backlog(self) -> dict[str, int]:
        counts = {}
        for name in self._collections:
            counts[name] = await self._db[name].count_documents({PENDING: True})
            metrics.OUTBOX_BACKLOG.labels(name).set(counts[name])
        return counts

    async def _run(self) -> None:
        """Publish what local writes flagged at once; sweep every collection now and then for the
        rest (other replicas' leftovers, a crashed process's events, failed publishes)."""
        loop = asyncio.get_running_loop()
        next_sweep = 0.0
        while not self._stopping:
            try:
                if loop.time() >= next_sweep:
                    self._dirty.clear()
                    sent = await self.relay_once()
                    await self.backlog()
                    next_sweep = loop.time() + self._settings.outbox_poll_interval
                else:
                    dirty, self._dirty = self._dirty, set()
                    sent = 0
                    for name in dirty:
                        sent += await self._relay_collection(name)
                    if sent:
                        self._dirty.update(dirty)  # more may wait behind a full batch
            except Exception as exc:  # noqa: BLE001 - the relay must outlive broker or database blips
                log.warning("outbox relay pass failed", error=str(exc))
                sent = 0
                await asyncio.sleep(1.0)
            if sent == 0 and not self._dirty and not self._stopping:
                timeout = max(0.0, next_sweep - loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
                self._wakeup.clear()

    async def _relay_collection(self, name: str) -> int:
        collection = self._db[name]
        now = utcnow()
        candidates = (
            await collection.find({PENDING: True}, {"_id": 1, LEASE: 1})
            .limit(self._settings.outbox_batch_size)
            .to_list()
        )
        ids = [d["_id"] for d in candidates if d.get(LEASE) is None or d[LEASE] < now]
        if not ids:
            return 0
        # Claim under a lease, so replicas do not publish the same documents at the same time.
        owner = f"{self._owner}:{uuid.uuid4().hex[:8]}"
        await collection.update_many(
            {"_id": {"$in": ids}, "$or": [{LEASE: None}, {LEASE: {"$lt": now}}]},
            {"$set": {LEASE: now + self._lease, OWNER: owner}},
        )
        claimed = await collection.find({"_id": {"$in": ids}, OWNER: owner}, {OUTBOX: 1}).to_list()
        entries = [(doc["_id"], entry) for doc in claimed for entry in doc.get(OUTBOX) or []]
        if not entries:
            await collection.update_many(
                {"_id": {"$in": ids}, OWNER: owner, OUTBOX: {"$size": 0}}, {"$set": {PENDING: False}}
            )
            return 0
        results = await asyncio.gather(*(self._publish(entry) for _, entry in entries), return_exceptions=True)
        # FerretDB v1 cannot $pull by a condition, so pull the exact entries that went out.
        published = [entry for (_, entry), error in zip(entries, results, strict=True) if error is None]
        failed_docs = {doc_id for (doc_id, _), error in zip(entries, results, strict=True) if error is not None}
        claimed_ids = [doc["_id"] for doc in claimed]
        if published:
            await collection.update_many(
                {"_id": {"$in": claimed_ids}, OWNER: owner},
                {"$pullAll": {OUTBOX: published}, "$set": {LEASE: None}},
            )
            await collection.update_many(
                {"_id": {"$in": claimed_ids}, OUTBOX: {"$size": 0}}, {"$set": {PENDING: False}}
            )
            metrics.OUTBOX_PUBLISHED.labels(name).inc(len(published))
        if failed_docs:
            first_error = next(e for e in results if e is not None)
            # Leave the events in place and back off: the lease keeps this relay from spinning on them.
            await collection.update_many(
                {"_id": {"$in": list(failed_docs)}},
                {"$set": {LEASE: utcnow() + timedelta(seconds=5), LAST_ERROR: repr(first_error)[:1000]}},
            )
            metrics.OUTBOX_FAILED.labels(name).inc(len(entries) - len(published))
            log.warning(
                "outbox publish failed", collection=name, failed=len(entries) - len(published), error=repr(first_error)
            )
        return len(published)

    async def _publish(self, entry: Document) -> None:
        envelope = Envelope.model_validate(entry["envelope"])
        await self._bus.publish(envelope, exchange=entry.get("exchange") or EVENTS_EXCHANGE)
