"""The change feed: every change to a product or provider gets the next sequence number.

Storage, shaped by FerretDB (only `{_id: x}` look-ups are fast, inserts are cheap, updates scan):
- `feed_entries`: one document per change, `_id` = the zero-padded sequence number. A writer
  claims number n by inserting `_id` n; a duplicate key means another writer (another replica)
  took it, so it tries n+1. An insert is atomic, so two changes never share a number, and a writer
  only tries n+1 after n exists, so the numbers have no holes.
- `feed_pages`: when the entries of a page (1000 by default) all exist, any replica inserts them as one page
  document (`_id` = zero-padded page number; identical content, so a duplicate insert is harmless).
  A full sync reads one document per page instead of one per change.
- `feed_pending`: an intent record written before a state change and deleted after its feed entry
  is written. If a process dies in between, a sweep re-appends the current state of what the
  record names (an extra upsert of the same state, never a lost change).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson
from pymongo.errors import DuplicateKeyError

from bejo_contracts.catalog import CatalogChange, CatalogProductChanged, CatalogProviderChanged
from bejo_contracts.topology import CATALOG_SYNC_EXCHANGE
from bejo_kit.bus import Bus
from bejo_kit.inbox import is_duplicate_key
from bejo_kit.logging import get_logger
from bejo_kit.mongo import Document, utcnow

from .repository import CatalogStore

log = get_logger(__name__)

# A page is stored as one compressed blob (~100 kB for 1000 changes): FerretDB reads a blob far
# faster than as many nested documents, and a full sync costs one look-up per page.
PAGE_SIZE = 1000
PAGE_CACHE = 64  # decoded pages kept per replica (pages never change)
Kind = Literal["product", "provider"]
SYNC_PUBLISHER = "sync-publisher"


def entry_id(seq: int) -> str:
    return f"{seq:012d}"


def page_id(page: int) -> str:
    return f"{page:08d}"


@dataclass(frozen=True)
class Change:
    kind: Kind
    id: str
    version: int
    document: dict[str, Any]  # the object's public document, with its status fields


def page_document(page: int, entries: list[Document]) -> Document:
    """A full page as stored: its entries as one zlib-compressed JSON blob."""
    items = [{k: v for k, v in e.items() if k != "_id"} for e in entries]
    return {"_id": page_id(page), "count": len(items), "z": zlib.compress(orjson.dumps(items), 1)}


def _time(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def revive(item: Document) -> Document:
    """Restore the datetimes that JSON turned into strings, so page items equal stored entries."""
    item["at"] = _time(item["at"])
    document = item["document"]
    for key in ("created_at", "updated_at"):
        if key in document:
            document[key] = _time(document[key])
    for terms in document.get("promotions") or []:
        terms["starts_at"], terms["ends_at"] = _time(terms["starts_at"]), _time(terms["ends_at"])
    return item


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
    item = render(entry)
    model = CatalogProductChanged if entry["kind"] == "product" else CatalogProviderChanged
    return model.model_validate(_jsonable(item))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


class Feed:
    def __init__(self, store: CatalogStore, page_size: int = PAGE_SIZE) -> None:
        self._store = store
        self.page_size = page_size
        self._append_lock = asyncio.Lock()
        self._head: int | None = None
        # Recent entries by seq: serves the tail of the feed and page compaction without reads.
        self._recent: dict[int, Document] = {}
        self._pages: OrderedDict[int, list[Document]] = OrderedDict()

    # -- writing --------------------------------------------------------------------------

    async def intend(self, refs: list[tuple[Kind, str]]) -> str:
        """Record that these objects are about to change; returns the record id for `append`."""
        intent_id = uuid.uuid4().hex
        # FerretDB stores no nested arrays: one sub-document per object.
        refs_doc = [{"kind": kind, "id": object_id} for kind, object_id in refs]
        await self._store.feed_pending.insert_one({"_id": intent_id, "refs": refs_doc, "at": utcnow()})
        return intent_id

    async def append(self, changes: list[Change], intent_id: str | None = None) -> list[int]:
        """Give each change the next sequence number, in order; then drop the intent record."""
        seqs = []
        async with self._append_lock:
            if self._head is None:
                self._head = await self.find_head()
            for change in changes:
                seq = self._head + 1
                while True:
                    entry = {
                        "_id": entry_id(seq),
                        "seq": seq,
                        "kind": change.kind,
                        "id": change.id,
                        "version": change.version,
                        "document": change.document,
                        "at": utcnow(),
                    }
                    try:
                        await self._store.feed_entries.insert_one(entry)
                    except DuplicateKeyError:
                        seq += 1  # another replica took it
                        continue
                    break
                self._head = seq
                self.remember(entry)
                seqs.append(seq)
        if intent_id is not None:
            await self._store.feed_pending.delete_one({"_id": intent_id})
        return seqs

    def remember(self, entry: Document) -> None:
        self._recent[entry["seq"]] = entry
        if self._head is None or entry["seq"] > self._head:
            self._head = entry["seq"]
        if len(self._recent) > 3 * self.page_size:
            floor = max(self._recent) - 2 * self.page_size
            for seq in [s for s in self._recent if s <= floor]:
                del self._recent[seq]

    async def stale_intents(self, older_than: timedelta) -> list[Document]:
        cutoff = utcnow() - older_than
        pending = await self._store.feed_pending.find({}).to_list()
        return [p for p in pending if p["at"] < cutoff]

    async def drop_intent(self, intent_id: str) -> None:
        await self._store.feed_pending.delete_one({"_id": intent_id})

    # -- reading --------------------------------------------------------------------------

    def page_of(self, seq: int) -> int:
        """Page k holds sequence numbers k*size+1 … (k+1)*size."""
        return (seq - 1) // self.page_size

    async def _exists(self, seq: int) -> bool:
        if seq in self._recent:
            return True
        return await self._store.feed_entries.find_one({"_id": entry_id(seq)}, {"_id": 1}) is not None

    async def find_head(self) -> int:
        """The highest sequence number written (0 for an empty feed). Complete pages first, then
        an exponential and binary search over entry `_id` look-ups past them; valid because the
        numbers have no holes."""
        known = (await self.first_missing_page()) * self.page_size  # every seq up to here exists
        if not await self._exists(known + 1):
            return known
        low, step = known + 1, 1
        while await self._exists(low + step):
            low, step = low + step, step * 2
        high = low + step  # low exists, high does not
        while high - low > 1:
            middle = (low + high) // 2
            if await self._exists(middle):
                low = middle
            else:
                high = middle
        return low

    async def read(self, after: int, limit: int) -> list[Document]:
        """Entries after `after`, in order, at most `limit`; stops at the first number not yet written."""
        out: list[Document] = []
        seq = after + 1
        while len(out) < limit:
            cached = self._recent.get(seq)
            if cached is not None:
                out.append(cached)
                seq += 1
                continue
            page = await self._page(self.page_of(seq))
            if page is not None:
                offset = seq - 1 - self.page_of(seq) * self.page_size
                taken = page[offset : offset + limit - len(out)]
                out.extend(taken)
                seq += len(taken)
                continue
            entry = await self._store.feed_entries.find_one({"_id": entry_id(seq)})
            if entry is None:
                break
            out.append(entry)
            seq += 1
        return out

    async def first_missing_page(self) -> int:
        """Pages are written in order, so the first missing one is found by binary search."""
        if await self._store.feed_pages.find_one({"_id": page_id(0)}, {"_id": 1}) is None:
            return 0
        low, high = 0, 1
        while await self._store.feed_pages.find_one({"_id": page_id(high)}, {"_id": 1}) is not None:
            low, high = high, high * 2
        while high - low > 1:
            middle = (low + high) // 2
            if await self._store.feed_pages.find_one({"_id": page_id(middle)}, {"_id": 1}) is not None:
                low = middle
            else:
                high = middle
        return high

    async def compact(self, page: int) -> bool:
        """Write page `page` if all of its entries exist. Returns whether the page now exists."""
        first = page * self.page_size + 1
        items = await self.read(first - 1, self.page_size)
        if len(items) < self.page_size:
            return False
        # A duplicate means another replica wrote the same (identical) page.
        with contextlib.suppress(DuplicateKeyError):
            await self._store.feed_pages.insert_one(page_document(page, items))
        return True

    async def _page(self, page: int) -> list[Document] | None:
        cached = self._pages.get(page)
        if cached is not None:
            self._pages.move_to_end(page)
            return cached
        stored = await self._store.feed_pages.find_one({"_id": page_id(page)})
        if stored is None:
            return None
        items = [revive(item) for item in orjson.loads(zlib.decompress(stored["z"]))]
        self._pages[page] = items
        if len(self._pages) > PAGE_CACHE:
            self._pages.popitem(last=False)
        return items


class SyncPublisher:
    """Publishes feed entries, in order, to the `catalog.sync` exchange.

    One replica at a time holds a lease on the `sync-publisher` record and advances its
    `published_seq` after the broker confirmed a batch. A crash republishes at most one batch
    (consumers drop a `seq` already applied). On FerretDB the lease claim is not atomic across
    connections, so two replicas may rarely both publish for a moment: duplicates, never gaps.
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
        self._store = store
        self._feed = feed
        self._bus = bus
        self._batch = batch
        self._lease = lease
        self._idle = idle_seconds
        self._owner = uuid.uuid4().hex

    async def claim(self) -> bool:
        now = utcnow()
        state = self._store.feed_state
        with contextlib.suppress(DuplicateKeyError):
            await state.insert_one({"_id": SYNC_PUBLISHER, "published_seq": 0, "owner": None, "lease_until": now})
        result = await state.update_one(
            {"_id": SYNC_PUBLISHER, "$or": [{"lease_until": {"$lt": now}}, {"owner": self._owner}]},
            {"$set": {"owner": self._owner, "lease_until": now + self._lease}},
        )
        return result.matched_count == 1

    async def publish_once(self) -> int:
        """Publish the next batch if this replica holds the lease; returns how many went out."""
        if not await self.claim():
            return 0
        state = await self._store.feed_state.find_one({"_id": SYNC_PUBLISHER})
        after = int(state["published_seq"]) if state else 0
        entries = await self._feed.read(after, self._batch)
        if not entries:
            return 0
        envelopes = []
        for entry in entries:
            envelope = self._bus.envelope(as_event(entry))
            # The id follows the sequence number, so a republished item carries the same id.
            envelopes.append(envelope.model_copy(update={"id": f"catalog-sync-{entry['seq']}"}))
        errors = await self._bus.publish_many(envelopes, exchange=CATALOG_SYNC_EXCHANGE, mandatory=False)
        confirmed = 0
        for error in errors:
            if error is not None:
                log.warning("catalog.sync publish failed", error=repr(error))
                break
            confirmed += 1
        if confirmed:
            await self._store.feed_state.update_one(
                {"_id": SYNC_PUBLISHER, "owner": self._owner},
                {"$set": {"published_seq": entries[confirmed - 1]["seq"]}},
            )
        return confirmed

    async def run(self) -> None:
        while True:
            try:
                sent = await self.publish_once()
            except Exception as exc:  # noqa: BLE001 - keep publishing after a broker or store blip
                if not is_duplicate_key(exc):
                    log.warning("catalog.sync pass failed", error=str(exc))
                sent = 0
            if sent == 0:
                await asyncio.sleep(self._idle)


IntentHandler = Callable[[Document], Awaitable[None]]
