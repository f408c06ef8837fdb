"""The change feed for national e-catalog sync: every change to a provider or product, numbered
1, 2, 3, … with no holes, so a reader resumes from the last number it applied and misses nothing.

Why one sequencer instead of a counter. Numbers taken from a `$inc` counter are allocated before
their entries are written, so a reader could pass a number whose entry is still on its way (or
whose writer died) and skip it for good. Here numbers are assigned only when entries are written:
- a use case marks the document it writes (`feed_pending`, `feed_rev`) in the same single-document
  write as the state and its events, so no change is lost between its write and its entry;
- one replica at a time, holding the `sequencer` lease, reads the marked documents and writes
  their current public documents as entries `_id` = head+1, head+2, … in one ordered insert, then
  unmarks each document unless it changed meanwhile (`feed_rev`). A provider's entry brings
  entries for its products (their `orderable` follows it); a new promotion brings entries for the
  products it covers. Rapid changes to one object may share one entry (the latest state);
- the unique `_id` is the arbiter: entry n+1 is only inserted once n exists, so the entries are
  always 1..head. A replica that lost its lease without knowing it fails on a taken number and
  stops; a crash between the entries and the unmarking feeds the same state again (an extra
  upsert, never a lost change).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pymongo import ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from bejo_contracts.catalog import CatalogChange, CatalogProductChanged, CatalogProviderChanged
from bejo_contracts.pricing import PromotionTerms
from bejo_contracts.topology import CATALOG_SYNC_EXCHANGE
from bejo_kit.bus import Bus
from bejo_kit.inbox import INBOX, duplicate_keys_only
from bejo_kit.logging import get_logger
from bejo_kit.mongo import Document, utcnow
from bejo_kit.outbox import WITHOUT_OUTBOX

from . import domain
from .repository import (
    FEED_PENDING,
    FEED_REV,
    HOLDS,
    PRODUCTS,
    PROMOTIONS,
    PROVIDERS,
    CatalogStore,
    clean,
    public_provider,
)

log = get_logger(__name__)

Kind = Literal["product", "provider"]
SEQUENCER, SYNC_PUBLISHER = "sequencer", "sync-publisher"


@dataclass(frozen=True)
class Change:
    kind: Kind
    id: str
    version: int
    document: dict[str, Any]  # the object's public document, with its status fields


def product_document(product: Document, provider: Document, promotions: list[PromotionTerms]) -> dict[str, Any]:
    """The public document of a product, as the feed carries it (readers compute the effective
    price from `promotions`, because it depends on the time of reading)."""
    state = {k: v for k, v in clean(product).items() if k != "_id"}
    return {
        "id": product["_id"],
        **state,
        "provider_name": provider["name"],
        "provider_pkp": provider["pkp"],
        "provider_pemda_code": provider["pemda_code"],
        "provider_status": provider["status"],
        "orderable": domain.is_orderable(product["status"], provider["status"]),
        "promotions": [t.model_dump() for t in promotions],
    }


def state_from_document(document: dict[str, Any]) -> tuple[Document, list[PromotionTerms]]:
    """Inverse of `product_document`, for the read model."""
    derived = {"provider_name", "provider_pkp", "provider_pemda_code", "provider_status", "orderable", "promotions"}
    state = {k: v for k, v in document.items() if k not in derived and k != "id"}
    state["_id"] = document["id"]
    return state, [PromotionTerms.model_validate(p) for p in document.get("promotions", [])]


def provider_from_document(document: dict[str, Any]) -> Document:
    return {"_id": document["id"], **{k: v for k, v in document.items() if k != "id"}}


def entry_document(seq: int, change: Change, at: datetime) -> Document:
    return {
        "_id": seq,
        "kind": change.kind,
        "id": change.id,
        "version": change.version,
        "document": change.document,
        "at": at,
    }


def is_public(kind: str, document: dict[str, Any]) -> bool:
    if kind == "provider":
        return bool(document["status"] == "verified")
    return bool(document["orderable"])


def render(entry: Document) -> dict[str, Any]:
    """An entry as consumers see it: an upsert of a public document, or a delete when the object
    left the public catalog (deactivated product, provider not or no longer verified)."""
    public = is_public(entry["kind"], entry["document"])
    return {
        "seq": entry["seq"],
        "op": "upsert" if public else "delete",
        "kind": entry["kind"],
        "id": entry["id"],
        "version": entry["version"],
        "document": entry["document"] if public else None,
    }


def as_event(entry: Document) -> CatalogChange:
    model = CatalogProductChanged if entry["kind"] == "product" else CatalogProviderChanged
    return model.model_validate(_jsonable(render(entry)))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


class Lease:
    """A named lease in `feed_state`: at most one live replica holds it; it lapses if not renewed."""

    def __init__(self, state: AsyncCollection[Document], name: str, duration: timedelta) -> None:
        self._state = state
        self._name = name
        self._duration = duration
        self.owner = uuid.uuid4().hex

    async def claim(self) -> Document | None:
        """Take or renew the lease; the lease document if this replica holds it now, else None."""
        now = utcnow()
        try:
            doc: Document | None = await self._state.find_one_and_update(
                {"_id": self._name, "$or": [{"lease_until": {"$lt": now}}, {"owner": self.owner}]},
                {"$set": {"owner": self.owner, "lease_until": now + self._duration}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:  # held by another replica: the upsert met its document
            return None
        return doc


class Feed:
    def __init__(self, store: CatalogStore) -> None:
        self._entries = store.feed

    async def head(self) -> int:
        """The highest sequence number written (0 for an empty feed)."""
        last = await self._entries.find({}, {"_id": 1}).sort("_id", -1).limit(1).to_list()
        return int(last[0]["_id"]) if last else 0

    async def read(self, after: int, limit: int) -> list[Document]:
        """Entries after `after`, in order, at most `limit`."""
        # A caught-up reader (most polls) costs one `_id` look-up.
        if await self._entries.find_one({"_id": after + 1}, {"_id": 1}) is None:
            return []
        # Numbers have no holes, so the page is exactly this range: an index range read.
        docs = await self._entries.find({"_id": {"$gt": after, "$lte": after + limit}}).sort("_id", 1).to_list()
        entries = []
        for expected, doc in enumerate(docs, start=after + 1):
            if doc["_id"] != expected:  # never expected (see the module docstring); never skip past one
                break
            entries.append({"seq": doc.pop("_id"), **doc})
        return entries


class Sequencer:
    """Writes the feed entries of marked documents; runs on every replica, acts under the lease."""

    def __init__(
        self,
        store: CatalogStore,
        feed: Feed,
        *,
        lease: timedelta = timedelta(seconds=10),
        interval: float = 0.2,
        batch: int = 500,
    ) -> None:
        self._store = store
        self._feed = feed
        self._lease = Lease(store.feed_state, SEQUENCER, lease)
        self._interval = interval
        self._batch = batch
        self._head: int | None = None
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """A write on this replica marked a document: sequence it now rather than at the next poll."""
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            try:
                written = await self.run_once()
            except Exception as exc:  # noqa: BLE001 - keep sequencing after a database blip
                log.warning("feed sequencing failed", error=str(exc))
                self._head = None
                written = 0
                await asyncio.sleep(1.0)
            if written == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._interval)
                self._wakeup.clear()

    async def run_once(self) -> int:
        """One pass if this replica holds the lease; returns how many entries it wrote."""
        if await self._lease.claim() is None:
            self._head = None  # another replica writes entries meanwhile
            return 0
        marked = {
            name: await self._store.db[name]
            .find({FEED_PENDING: True}, {**WITHOUT_OUTBOX, INBOX: 0, HOLDS: 0})
            .limit(self._batch)
            .to_list()
            for name in (PROVIDERS, PROMOTIONS, PRODUCTS)
        }
        if not any(marked.values()):
            return 0
        changes = await self._changes(marked[PROVIDERS], marked[PROMOTIONS], marked[PRODUCTS])
        if not await self._append(changes):
            return 0
        for name, docs in marked.items():
            if docs:
                await self._store.db[name].bulk_write(
                    [UpdateOne({"_id": d["_id"], FEED_REV: d[FEED_REV]}, {"$unset": {FEED_PENDING: ""}}) for d in docs],
                    ordered=False,
                )
        return len(changes)

    async def _changes(
        self, providers: list[Document], promotions: list[Document], products: list[Document]
    ) -> list[Change]:
        """Current public documents of the marked objects and of the products they affect."""
        store = self._store
        provider_of = {p["_id"]: p for p in providers}
        affected: dict[str, Document] = {}
        for provider in providers:
            affected.update((p.id, p.document()) for p in await store.products_of(provider["_id"]))
        for promotion in promotions:
            if promotion["scope"] == "provider":
                affected.update((p.id, p.document()) for p in await store.products_of(promotion["provider_id"]))
            else:
                found = await store.products_by_id(promotion["product_ids"])
                affected.update((product_id, p.document()) for product_id, p in found.items())
        affected.update((p["_id"], p) for p in products)  # read last: the freshest
        changes = [Change("provider", p["_id"], p["version"], public_provider(p)) for p in providers]
        promotions_of: dict[str, list[Document]] = {}
        now = utcnow()
        for product in affected.values():
            provider_id = product["provider_id"]
            if provider_id not in provider_of:
                stored = await store.provider(provider_id)
                if stored is None:
                    continue
                provider_of[provider_id] = stored.document()
            provider = provider_of[provider_id]
            if provider_id not in promotions_of:
                promotions_of[provider_id] = await store.promotions_of(provider_id)
            terms = domain.terms_for(promotions_of[provider_id], product["_id"], provider_id, now)
            document = product_document(product, provider, terms)
            changes.append(Change("product", product["_id"], product["version"], document))
        return changes

    async def _append(self, changes: Iterable[Change]) -> bool:
        """Write the entries after the head; False if another replica took those numbers."""
        if self._head is None:
            self._head = await self._feed.head()
        at = utcnow()
        entries = [entry_document(self._head + n, change, at) for n, change in enumerate(changes, start=1)]
        try:
            await self._store.feed.insert_many(entries, ordered=True)
        except BulkWriteError as exc:
            if not duplicate_keys_only(exc):
                raise
            log.info("feed numbers taken by another replica; re-reading the head")
            self._head = None
            return False
        self._head += len(entries)
        return True


class SyncPublisher:
    """Publishes feed entries, in order, to the `catalog.sync` exchange.

    The replica holding the `sync-publisher` lease publishes the entries after `published_seq`
    and advances it once the broker confirmed them. A crash republishes at most one batch
    (consumers drop a `seq` already applied); a lapsed lease hands the work to another replica.
    """

    def __init__(
        self,
        store: CatalogStore,
        feed: Feed,
        bus: Bus,
        *,
        batch: int = 200,
        lease: timedelta = timedelta(seconds=15),
        idle_seconds: float = 0.5,
    ) -> None:
        self._state = store.feed_state
        self._feed = feed
        self._bus = bus
        self._batch = batch
        self._lease = Lease(store.feed_state, SYNC_PUBLISHER, lease)
        self._idle = idle_seconds

    async def publish_once(self) -> int:
        """Publish the next batch if this replica holds the lease; returns how many went out."""
        state = await self._lease.claim()
        if state is None:
            return 0
        entries = await self._feed.read(int(state.get("published_seq", 0)), self._batch)
        if not entries:
            return 0
        envelopes = [
            # The id follows the sequence number, so a republished item carries the same id.
            self._bus.envelope(as_event(e)).model_copy(update={"id": f"catalog-sync-{e['seq']}"})
            for e in entries
        ]
        errors = await self._bus.publish_many(envelopes, exchange=CATALOG_SYNC_EXCHANGE, mandatory=False)
        confirmed = 0
        for error in errors:
            if error is not None:
                log.warning("catalog.sync publish failed", error=repr(error))
                break
            confirmed += 1
        if confirmed:
            await self._state.update_one(
                {"_id": SYNC_PUBLISHER, "owner": self._lease.owner},
                {"$max": {"published_seq": entries[confirmed - 1]["seq"]}},
            )
        return confirmed

    async def run(self) -> None:
        while True:
            try:
                sent = await self.publish_once()
            except Exception as exc:  # noqa: BLE001 - keep publishing after a broker or store blip
                log.warning("catalog.sync pass failed", error=str(exc))
                sent = 0
            if sent == 0:
                await asyncio.sleep(self._idle)
