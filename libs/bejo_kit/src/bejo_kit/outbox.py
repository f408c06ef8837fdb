"""Transactional outbox inside the aggregate document: state and its events in one write.

bejo runs without multi-document transactions, so a state change and the events it raises are
written by ONE document write. `Outbox` is the unit of work every service writes through:

    await outbox.update_one(orders, {"_id": id, "version": v}, {"$set": ...}, [event])

appends the events to the document's `outbox` array and sets `outbox_pending: true` (indexed) in
the same single-document update, so either both happen or neither does. Services never write that
sequence out by hand.

`OutboxRelay` (one per replica) publishes them:
- at once, for writes this process saw succeed, then removes exactly those entries from the
  document and drops the marker when nothing is left (fast path);
- by a sweep over every registered collection for documents still marked after a grace period,
  i.e. whose writer died between its write and the publish. A sweeper first takes a short lease on
  the document with `find_one_and_update`, so replicas sweeping together don't publish the same
  events twice.
Delivery is at-least-once: a crash between publish and clean-up publishes again, and consumers
drop the duplicate by event id (see `bejo_kit.inbox`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pymongo import IndexModel, ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.results import InsertOneResult, UpdateResult

from bejo_contracts import Envelope
from bejo_contracts.topology import EVENTS_EXCHANGE

from . import metrics
from .bus import Bus, encode_json
from .logging import get_logger
from .mongo import Document, utcnow
from .settings import KitSettings

log = get_logger(__name__)

OUTBOX = "outbox"
PENDING = "outbox_pending"
LEASE = "outbox_lease"
# Reads of an aggregate never need its unpublished events.
WITHOUT_OUTBOX: Document = {OUTBOX: 0, PENDING: 0, LEASE: 0}
PENDING_INDEX = IndexModel([(PENDING, 1)], name="outbox_pending")


def entries_of(envelopes: Sequence[Envelope], exchange: str = EVENTS_EXCHANGE) -> list[Document]:
    at = utcnow()
    return [{"id": e.id, "exchange": exchange, "at": at, "envelope": e.model_dump(mode="json")} for e in envelopes]


def with_events(update: Document, entries: Sequence[Document]) -> Document:
    """The update plus the events it raises, as one update document."""
    if not entries:
        return update
    merged = {op: dict(fields) for op, fields in update.items()}
    if OUTBOX in merged.get("$push", {}) or PENDING in merged.get("$set", {}):
        raise ValueError("the update already writes the outbox")
    merged.setdefault("$push", {})[OUTBOX] = {"$each": list(entries)}
    merged.setdefault("$set", {})[PENDING] = True
    return merged


def without_outbox(doc: Document) -> Document:
    return {name: value for name, value in doc.items() if name not in WITHOUT_OUTBOX}


def _doc_id(filter_: Document) -> str:
    doc_id = filter_.get("_id")
    if not isinstance(doc_id, str):
        raise ValueError("an outbox write must name its document by a string `_id` in the filter")
    return doc_id


class Outbox:
    """The one write path for state that raises events (see the module docstring)."""

    def __init__(self, relay: OutboxRelay | None = None) -> None:
        self._relay = relay

    async def insert_one(
        self, collection: AsyncCollection[Document], document: Document, events: Sequence[Envelope] = ()
    ) -> InsertOneResult:
        """Insert a new document with its first events. A duplicate `_id` raises DuplicateKeyError."""
        entries = entries_of(events)
        doc = {**document, OUTBOX: entries, PENDING: True} if entries else document
        result = await collection.insert_one(doc)
        self._written(collection, _doc_id(document), entries)
        return result

    async def update_one(
        self,
        collection: AsyncCollection[Document],
        filter_: Document,
        update: Document,
        events: Sequence[Envelope] = (),
        *,
        upsert: bool = False,
    ) -> bool:
        """Apply a (conditional) update and its events; True if a document was modified or upserted."""
        entries = entries_of(events)
        result: UpdateResult = await collection.update_one(filter_, with_events(update, entries), upsert=upsert)
        applied = result.modified_count == 1 or result.upserted_id is not None
        if applied:
            self._written(collection, _doc_id(filter_), entries)
        return applied

    async def find_one_and_update(
        self,
        collection: AsyncCollection[Document],
        filter_: Document,
        update: Document,
        events: Sequence[Envelope] = (),
        *,
        upsert: bool = False,
    ) -> Document | None:
        """Apply an update and its events; the document as it is afterwards (without its outbox),
        or None if none matched."""
        entries = entries_of(events)
        doc: Document | None = await collection.find_one_and_update(
            filter_, with_events(update, entries), return_document=ReturnDocument.AFTER, upsert=upsert
        )
        if doc is None:
            return None
        self._written(collection, doc["_id"], entries)
        return without_outbox(doc)

    def _written(self, collection: AsyncCollection[Document], doc_id: str, entries: list[Document]) -> None:
        if entries and self._relay is not None:
            self._relay.ready(collection.name, doc_id, entries)


@dataclass
class _Ready:
    """Entries written by this process and not yet published, per document."""

    entries: dict[tuple[str, str], list[Document]] = field(default_factory=dict)

    def add(self, key: tuple[str, str], entries: list[Document]) -> None:
        self.entries.setdefault(key, []).extend(entries)

    def take(self, limit: int) -> dict[tuple[str, str], list[Document]]:
        taken: dict[tuple[str, str], list[Document]] = {}
        count = 0
        for key in list(self.entries):
            if count >= limit:
                break
            taken[key] = self.entries.pop(key)
            count += len(taken[key])
        return taken

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)


class OutboxRelay:
    """Publishes the events of written documents and removes them from the documents; one per replica."""

    def __init__(
        self,
        db: AsyncDatabase[Document],
        collections: Iterable[str],
        bus: Bus,
        settings: KitSettings,
        grace: timedelta = timedelta(seconds=5),
        lease: timedelta = timedelta(seconds=30),
    ) -> None:
        self._db = db
        self.collections = sorted(set(collections))
        for name in self.collections:
            metrics.prepare_outbox(name)
        self._bus = bus
        self._settings = settings
        self._grace = grace
        self._lease = lease
        self._ready = _Ready()
        self._in_flight: set[tuple[str, str]] = set()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def indexes(self) -> dict[str, list[IndexModel]]:
        """The marker index the sweep reads by, for every outbox collection."""
        return {name: [PENDING_INDEX] for name in self.collections}

    def ready(self, collection: str, doc_id: str, entries: list[Document]) -> None:
        self._ready.add((collection, doc_id), entries)
        self._wakeup.set()

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, flush_timeout: float = 10.0) -> None:
        """Stop, after publishing what this process wrote (bounded by `flush_timeout`)."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.publish_ready(), flush_timeout)

    async def flush(self) -> int:
        """Publish every pending event now, fresh ones included (tests, shutdown). Returns how many."""
        total = await self.publish_ready()
        while sent := await self.sweep(grace=timedelta(0)):  # a sweep takes one batch per collection
            total += sent
        return total

    async def backlog(self) -> int:
        """Documents holding unpublished events, over every outbox collection."""
        total = 0
        for name in self.collections:
            count = await self._db[name].count_documents({PENDING: True})
            metrics.OUTBOX_BACKLOG.labels(name).set(count)
            total += count
        return total

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = 0.0
        while not self._stopping:
            try:
                sent = await self.publish_ready()
                if loop.time() >= next_sweep:
                    sent += await self.sweep()
                    await self.backlog()
                    next_sweep = loop.time() + self._settings.outbox_poll_interval
            except Exception as exc:  # noqa: BLE001 - the relay must outlive broker or database blips
                log.warning("outbox relay pass failed", error=str(exc))
                sent = 0
                await asyncio.sleep(1.0)
            if sent == 0 and not self._ready and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), max(0.0, next_sweep - loop.time()))
                self._wakeup.clear()

    async def publish_ready(self) -> int:
        """Publish the events this process wrote, batch by batch, and clear them from their documents.

        Clearing a batch overlaps with publishing the next: the broker and the database work at
        the same time. Events that fail to publish stay in their documents for the sweep; a failed
        clear only means they are published again (consumers drop duplicates).
        """
        sent = 0
        clearing: asyncio.Task[None] | None = None
        try:
            while self._ready:
                batch = self._ready.take(self._settings.outbox_batch_size)
                self._in_flight.update(batch)
                try:
                    published = await self._publish(batch, "settled")
                except BaseException:
                    self._in_flight.difference_update(batch)  # the sweep takes them
                    raise
                sent += sum(len(e) for e in published.values())
                # Start this batch's clear before waiting on the previous one: if that one fails,
                # this batch still leaves `_in_flight`, where the sweep would skip it for good.
                previous, clearing = clearing, asyncio.create_task(self._clear_in_flight(published))
                if previous is not None:
                    await previous
        finally:
            if clearing is not None:
                await clearing
        return sent

    async def _clear_in_flight(self, published: dict[tuple[str, str], list[Document]]) -> None:
        try:
            await self._clear(published)
        finally:
            self._in_flight.difference_update(published)

    async def sweep(self, grace: timedelta | None = None) -> int:
        """Publish the events of marked documents older than the grace period (their writer is gone)."""
        now = utcnow()
        horizon = now - (self._grace if grace is None else grace)
        sent = 0
        for name in self.collections:
            collection = self._db[name]
            docs = (
                await collection.find({PENDING: True}, {OUTBOX: 1, LEASE: 1})
                .limit(self._settings.outbox_batch_size)
                .to_list()
            )
            claimed: dict[tuple[str, str], list[Document]] = {}
            for doc in docs:
                key = (name, doc["_id"])
                entries: list[Document] = doc.get(OUTBOX) or []
                if key in self._ready or key in self._in_flight:
                    continue
                if not entries:  # emptied by a clean-up that stopped half-way: drop the marker
                    await collection.update_one(
                        {"_id": doc["_id"], "$or": [{OUTBOX: {"$size": 0}}, {OUTBOX: {"$exists": False}}]},
                        {"$unset": {OUTBOX: "", PENDING: "", LEASE: ""}},
                    )
                    continue
                if min(e["at"] for e in entries) > horizon:
                    continue  # fresh: its writer publishes it
                if not await self._claim(collection, doc, now):
                    continue
                claimed[key] = entries
            if claimed:
                published = await self._publish(claimed, "sweep")
                await self._clear(published)
                sent += sum(len(e) for e in published.values())
        return sent

    async def _claim(self, collection: AsyncCollection[Document], doc: Document, now: datetime) -> bool:
        """Lease the document for this sweeper; of replicas sweeping together exactly one wins."""
        lease = doc.get(LEASE)
        if lease is not None and lease > now:
            return False
        won = await collection.find_one_and_update(
            {"_id": doc["_id"], LEASE: lease}, {"$set": {LEASE: now + self._lease}}
        )
        return won is not None

    async def _publish(
        self, batch: dict[tuple[str, str], list[Document]], path: str
    ) -> dict[tuple[str, str], list[Document]]:
        """Publish with pipelined confirms; returns, per document, the entries the broker confirmed."""
        items = [(key, entry) for key, entries in batch.items() for entry in entries]
        results = await asyncio.gather(*(self._publish_one(entry) for _, entry in items), return_exceptions=True)
        published: dict[tuple[str, str], list[Document]] = {key: [] for key in batch}
        failures: list[BaseException] = []
        # Counted per collection (the label's meaning), not per path.
        ok_by, failed_by = Counter[str](), Counter[str]()
        for (key, entry), result in zip(items, results, strict=True):
            if result is None:
                published[key].append(entry)
                ok_by[key[0]] += 1
            else:
                failures.append(result)
                failed_by[key[0]] += 1
        for name, count in failed_by.items():
            metrics.OUTBOX_FAILED.labels(name).inc(count)
        for name, count in ok_by.items():
            metrics.OUTBOX_PUBLISHED.labels(name).inc(count)
        if failures:
            log.warning("outbox publish failed", failed=len(failures), error=repr(failures[0]), path=path)
        return published

    async def _publish_one(self, entry: Document) -> None:
        envelope = entry["envelope"]
        await self._bus.publish_message(encode_json(envelope), envelope["type"], exchange=entry["exchange"])

    async def _clear(self, published: dict[tuple[str, str], list[Document]]) -> None:
        """Remove published entries from their documents.

        Usually the document holds exactly those entries, and one conditional update drops the
        array and its marker. If more events arrived meanwhile, only the published ones are pulled.
        """
        by_collection: dict[str, list[tuple[str, list[Document]]]] = {}
        for (name, doc_id), entries in published.items():
            if entries:
                by_collection.setdefault(name, []).append((doc_id, entries))
        for name, docs in by_collection.items():
            collection = self._db[name]
            exact = [
                UpdateOne({"_id": doc_id, OUTBOX: entries}, {"$unset": {OUTBOX: "", PENDING: "", LEASE: ""}})
                for doc_id, entries in docs
            ]
            result = await collection.bulk_write(exact, ordered=False)
            if result.matched_count == len(docs):
                continue
            for doc_id, entries in docs:
                cleared = await collection.update_one(
                    {"_id": doc_id, OUTBOX: entries}, {"$unset": {OUTBOX: "", PENDING: "", LEASE: ""}}
                )
                if cleared.matched_count == 0:
                    await collection.update_one({"_id": doc_id}, {"$pullAll": {OUTBOX: entries}})
