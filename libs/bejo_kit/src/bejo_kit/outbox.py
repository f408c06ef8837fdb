"""Transactional outbox without transactions, shaped for FerretDB's semantics.

Neither FerretDB nor a standalone mongod has multi-document transactions, and on FerretDB v1 an
update is a read-modify-write of the whole document that is not atomic against another writer
(see `store.py`). So the relay must never write the aggregate documents; it only reads them.

Writing a state change with its events is two steps, in this order:

1. `pending = await outbox.prepare(collection, doc_id, envelopes)` inserts one *hint* per event
   into a time-bucketed hint collection `outbox.<bucket>` (inserts are cheap and atomic on every
   server; on FerretDB deletes and updates scan, so hints are never deleted one by one: a bucket is
   dropped whole once every hint in it is resolved);
2. the state change is ONE document write that embeds the same events in the document's
   append-only `events` array: `insert_one(staged(doc, pending))` or
   `update_one(filter, with_events(update, pending))`; then `outbox.settle(pending, applied)`.

The relay publishes an event only once the document proves it was written (its id is in the
document's `events`), then records a `done:<id>` marker next to the hint. `settle(applied=True)`
lets it skip that check for writes this process saw succeed; `applied=False` marks the hints done
unpublished. A crash anywhere loses nothing: a hint whose document holds the event is published by
the next sweep (of any replica); a hint whose write never happened is given up after a grace
period; an event published but not yet marked is published again, and consumers drop the
duplicate by event id.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from bejo_contracts import Envelope
from bejo_contracts.topology import EVENTS_EXCHANGE

from . import metrics
from .bus import Bus, encode_json
from .inbox import is_duplicate_key
from .logging import get_logger
from .mongo import Document, utcnow
from .settings import KitSettings

log = get_logger(__name__)

EVENTS = "events"
HINT_PREFIX = "outbox."
DONE = "done:"
CLAIM = "claim:"
BUCKET_SECONDS = 10


def bucket_of(at: datetime) -> int:
    return int(at.timestamp()) // BUCKET_SECONDS


def bucket_collection(bucket: int) -> str:
    return f"{HINT_PREFIX}{bucket:012d}"


@dataclass(frozen=True)
class PendingEvents:
    """Events whose hints are stored; embed them in the state write with `staged` / `with_events`."""

    collection: str
    doc_id: str
    entries: tuple[Document, ...]
    bucket: str

    @property
    def ids(self) -> list[str]:
        return [e["id"] for e in self.entries]


def _entry(envelope: Envelope, exchange: str) -> Document:
    return {"id": envelope.id, "exchange": exchange, "envelope": envelope.model_dump(mode="json")}


def _require_pending(pending: object) -> PendingEvents:
    if not isinstance(pending, PendingEvents):
        raise TypeError(
            "pass the PendingEvents returned by `await runtime.outbox.prepare(collection, doc_id, envelopes)`; "
            "the hint must be stored before the state write (see bejo_kit.outbox)"
        )
    return pending


def staged(document: Document, pending: PendingEvents) -> Document:
    """A new document carrying its first events, for insert_one."""
    events = _require_pending(pending).entries
    return {**document, EVENTS: list(events)}


def with_events(update: Document, pending: PendingEvents) -> Document:
    """Add the events to an update, so that the state change and its events are one write."""
    events = _require_pending(pending).entries
    merged = {op: dict(fields) for op, fields in update.items()}
    if events:
        merged.setdefault("$push", {})[EVENTS] = {"$each": list(events)}
    return merged


class Outbox:
    """Stores the hints the relay works from, before the state write."""

    def __init__(self, db: AsyncDatabase[Document], relay: OutboxRelay | None = None) -> None:
        self._db = db
        self._relay = relay

    async def prepare(
        self,
        collection: AsyncCollection[Document] | str,
        doc_id: str,
        envelopes: Sequence[Envelope],
        exchange: str = EVENTS_EXCHANGE,
    ) -> PendingEvents:
        name = collection if isinstance(collection, str) else collection.name
        entries = tuple(_entry(e, exchange) for e in envelopes)
        now = utcnow()
        bucket = bucket_collection(bucket_of(now))
        if entries:
            await self._db[bucket].insert_many(
                [{"_id": e["id"], "collection": name, "doc_id": doc_id, "entry": e, "at": now} for e in entries]
            )
        return PendingEvents(name, doc_id, entries, bucket)

    async def settle(self, pending: PendingEvents, applied: bool) -> None:
        """Tell the relay how the state write went: publish now, or give the hints up."""
        if not pending.entries:
            return
        if applied:
            if self._relay is not None:
                self._relay.ready(pending)
        else:
            await self._db[pending.bucket].insert_many([{"_id": DONE + i, "published": False} for i in pending.ids])


class OutboxRelay:
    """Publishes the events of written documents; one per replica."""

    def __init__(
        self,
        db: AsyncDatabase[Document],
        collections: Iterable[str],
        bus: Bus,
        settings: KitSettings,
        abandon_after: timedelta = timedelta(seconds=60),
        claim_window: timedelta = timedelta(seconds=30),
        settle_grace: timedelta = timedelta(seconds=5),
    ) -> None:
        self._db = db
        # Collections whose documents carry events: a hint naming another one is a wiring mistake.
        self._collections = set(collections)
        self._bus = bus
        self._settings = settings
        self._abandon_after = abandon_after
        self._claim_window = claim_window
        self._settle_grace = settle_grace
        self._ready: dict[str, tuple[str, Document]] = {}  # event id -> (bucket, entry)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def ready(self, pending: PendingEvents) -> None:
        for entry in pending.entries:
            self._ready[entry["id"]] = (pending.bucket, entry)
        self._wakeup.set()

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, flush_timeout: float = 10.0) -> None:
        """Stop, after publishing what is publishable now (bounded by `flush_timeout`)."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), flush_timeout)

    async def flush(self) -> int:
        """Publish until nothing publishable is left, open buckets included. Returns how many went out."""
        total = 0
        while True:
            sent = await self.publish_ready() + await self.sweep(min_age=timedelta(0))
            total += sent
            if sent == 0:
                return total

    async def backlog(self) -> int:
        """Hints not yet resolved (published or given up), over every bucket."""
        total = 0
        for name in await self._buckets():
            docs = await self._db[name].find({}, {"_id": 1}).to_list()
            ids = {d["_id"] for d in docs}
            total += sum(1 for i in ids if not i.startswith((DONE, CLAIM)) and DONE + i not in ids)
        metrics.OUTBOX_BACKLOG.labels("hints").set(total)
        return total

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = 0.0
        while not self._stopping:
            try:
                sent = await self.publish_ready()
                if loop.time() >= next_sweep:
                    sent += await self.sweep()
                    await self.backlog()  # keeps the bejo_outbox_backlog gauge current
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
        """Publish events whose writes this process saw succeed.

        Marking a batch done overlaps with publishing the next one: the broker and the database
        work at the same time.
        """
        sent = 0
        marking: asyncio.Task[None] | None = None
        try:
            while self._ready:
                batch = list(self._ready.items())[: self._settings.outbox_batch_size]
                for event_id, _ in batch:
                    del self._ready[event_id]
                published = await self._publish([(bucket, entry) for _, (bucket, entry) in batch], "settled")
                if marking is not None:
                    await marking
                marking = asyncio.create_task(self._mark_done(published))
                sent += len(published)
        finally:
            if marking is not None:
                await marking
        return sent

    async def sweep(self, min_age: timedelta | None = None) -> int:
        """Resolve the hints of buckets older than `min_age` (default: the settle grace, leaving
        fresh hints to the replica that wrote them): publish those whose documents hold the event,
        give up those whose write never happened, and drop buckets with nothing left to do."""
        now = utcnow()
        horizon = bucket_of(now - (self._settle_grace if min_age is None else min_age))
        # A bucket is dropped only when no writer can still be adding to it.
        closed = bucket_of(now - self._settle_grace)
        sent = 0
        for name in await self._buckets():
            bucket = int(name.removeprefix(HINT_PREFIX))
            if bucket <= horizon:
                sent += await self._sweep_bucket(name, now, may_drop=bucket < closed)
        return sent

    async def _buckets(self) -> list[str]:
        names = await self._db.list_collection_names()
        return sorted(n for n in names if n.startswith(HINT_PREFIX))

    async def _sweep_bucket(self, name: str, now: datetime, may_drop: bool) -> int:
        docs = await self._db[name].find({}).to_list()
        ids = {d["_id"] for d in docs}
        open_hints = [
            d
            for d in docs
            if not d["_id"].startswith((DONE, CLAIM)) and DONE + d["_id"] not in ids and d["_id"] not in self._ready
        ]
        if not open_hints:
            if may_drop and not any(i in self._ready for i in ids):
                await self._db.drop_collection(name)
            return 0
        unknown = {h["collection"] for h in open_hints} - self._collections
        if unknown and self._collections:
            log.warning("outbox hints name collections the relay was not told about", collections=sorted(unknown))
        written = await self._written_event_ids(open_hints)
        abandoned = [h["_id"] for h in open_hints if h["_id"] not in written and now - h["at"] > self._abandon_after]
        if abandoned:
            await self._db[name].insert_many([{"_id": DONE + i, "published": False} for i in abandoned], ordered=False)
            log.warning("gave up hints of writes that never happened", count=len(abandoned), bucket=name)
        claimed = await self._claim(name, [h["entry"] for h in open_hints if h["_id"] in written], now)
        if not claimed:
            return 0
        published = await self._publish([(name, e) for e in claimed], "sweep")
        await self._mark_done(published)
        return len(published)

    async def _claim(self, bucket: str, entries: list[Document], now: datetime) -> list[Document]:
        """Entries this relay may publish: replicas sweeping together each get a disjoint share.

        A claim is an insert of `claim:<event id>@<time window>`; a duplicate `_id` loses, which is
        atomic on every server. A claimer that dies frees the event at the next window.
        """
        if not entries:
            return []
        window = int(now.timestamp() // self._claim_window.total_seconds())
        claims = [f"{CLAIM}{e['id']}@{window}" for e in entries]
        try:
            await self._db[bucket].insert_many([{"_id": c} for c in claims], ordered=False)
        except BulkWriteError as exc:
            if not is_duplicate_key(exc):
                raise
            lost = {claims[err["index"]] for err in exc.details["writeErrors"]}
            return [e for e, c in zip(entries, claims, strict=True) if c not in lost]
        return entries

    async def _written_event_ids(self, hints: list[Document]) -> set[str]:
        """Ids of hinted events that their documents hold (reads by `_id` only: the fast path)."""
        keys = {(h["collection"], h["doc_id"]) for h in hints}
        limit = asyncio.Semaphore(16)

        async def events_of(collection: str, doc_id: str) -> set[str]:
            async with limit:
                doc = await self._db[collection].find_one({"_id": doc_id}, {EVENTS: 1})
            return {e["id"] for e in (doc or {}).get(EVENTS) or []}

        found = await asyncio.gather(*(events_of(c, d) for c, d in keys))
        return set().union(*found) if found else set()

    async def _publish(self, items: list[tuple[str, Document]], path: str) -> list[tuple[str, str]]:
        """Publish with pipelined confirms; returns (bucket, event id) of what the broker confirmed."""
        results = await asyncio.gather(*(self._publish_one(e) for _, e in items), return_exceptions=True)
        published = [(bucket, entry["id"]) for (bucket, entry), r in zip(items, results, strict=True) if r is None]
        failures = [r for r in results if r is not None]
        if published:
            metrics.OUTBOX_PUBLISHED.labels(path).inc(len(published))
        if failures:
            # The hints stay open; the next sweep retries them.
            metrics.OUTBOX_FAILED.labels(path).inc(len(failures))
            log.warning("outbox publish failed", failed=len(failures), error=repr(failures[0]), path=path)
        return published

    async def _mark_done(self, published: list[tuple[str, str]]) -> None:
        by_bucket: dict[str, list[str]] = {}
        for bucket, event_id in published:
            by_bucket.setdefault(bucket, []).append(event_id)
        for bucket, event_ids in by_bucket.items():
            try:
                await self._db[bucket].insert_many(
                    [{"_id": DONE + i, "published": True} for i in event_ids], ordered=False
                )
            except BulkWriteError as exc:
                if not is_duplicate_key(exc):  # another replica marked some first
                    raise

    async def _publish_one(self, entry: Document) -> None:
        envelope = entry["envelope"]
        await self._bus.publish_message(
            encode_json(envelope), envelope["type"], exchange=entry.get("exchange") or EVENTS_EXCHANGE
        )
