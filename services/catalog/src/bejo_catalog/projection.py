"""This replica's search model: built from the store at start-up, then kept current from the
change feed, which carries every replica's writes."""

from __future__ import annotations

import asyncio
from datetime import datetime

from bejo_kit.logging import get_logger
from bejo_kit.mongo import Document

from . import domain
from .context import CatalogContext
from .feed import provider_from_document, state_from_document
from .repository import STATE_ONLY, public_provider

log = get_logger(__name__)


class SearchProjection:
    def __init__(self, ctx: CatalogContext) -> None:
        self.ctx = ctx
        self.applied_seq = 0

    async def load(self, now: datetime) -> None:
        """Build the search model from the store. The feed head is read first, so a change made
        while loading is applied again by the tailer (applying is idempotent)."""
        store, index = self.ctx.store, self.ctx.index
        head = await self.ctx.feed.head()
        providers = await store.providers.find({}, STATE_ONLY).to_list()
        for provider in providers:
            index.put_provider(provider_from_document(public_provider(provider)))
        # Ended promotions cover nothing: leave them in the store.
        promotions_of = domain.by_provider(await store.promotions.find({"ends_at": {"$gt": now}}, STATE_ONLY).to_list())
        loaded = 0
        async for product in store.products.find({}, STATE_ONLY):
            loaded += 1
            if loaded % 2000 == 0:
                await asyncio.sleep(0)  # indexing is CPU work: keep heartbeats and requests flowing
            provider_id = product["provider_id"]
            index.put_product(
                product, domain.terms_for(promotions_of.get(provider_id, []), product["_id"], provider_id, now)
            )
        self.applied_seq = head
        log.info("catalog loaded", providers=len(providers), products=len(index.products), feed_head=head)

    def apply_entry(self, entry: Document) -> None:
        if entry["kind"] == "provider":
            self.ctx.index.put_provider(provider_from_document(entry["document"]))
        else:
            self.ctx.index.put_product(*state_from_document(entry["document"]))

    async def tail_once(self, limit: int = 500) -> int:
        """Apply the feed entries written since the last pass: every replica's changes reach
        every replica's search model this way."""
        entries = await self.ctx.feed.read(self.applied_seq, limit)
        for entry in entries:
            self.apply_entry(entry)
            self.applied_seq = entry["seq"]
        return len(entries)

    async def tail_forever(self, interval: float) -> None:
        while True:
            if await self.tail_once() == 0:
                await asyncio.sleep(interval)
