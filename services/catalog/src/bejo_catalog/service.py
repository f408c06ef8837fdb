"""The catalog's use cases behind one object for the composition root, the HTTP API and the
consumers: `providers`, `products`, `promotions`, `reservations` (stock), and this replica's
search model (`projection`), all over one shared `CatalogContext`.

Every write is safe with several replicas: it is conditional on what was read (`version` or
state), and a lost race is retried on fresh state (`retry_on_conflict`) or, for stock, decided by
the atomic conditional decrement itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from bejo_kit.bus import Bus
from bejo_kit.mongo import Document
from bejo_kit.outbox import Outbox

from . import domain
from .context import CatalogContext
from .feed import Feed
from .products import Products
from .projection import SearchProjection
from .promotions import Promotions
from .providers import Providers
from .repository import CatalogStore
from .reservations import Reservations
from .search import CatalogIndex, SearchQuery

# A search result: the product's state, its provider, and its price now.
Found = tuple[Document, Document, domain.Offer]


class CatalogService:
    def __init__(
        self,
        store: CatalogStore,
        feed: Feed,
        index: CatalogIndex,
        bus: Bus,
        outbox: Outbox,
        wake_sequencer: Callable[[], None] = lambda: None,
    ) -> None:
        self.ctx = CatalogContext(store, feed, index, bus, outbox, wake_sequencer)
        self.providers = Providers(self.ctx)
        self.products = Products(self.ctx)
        self.promotions = Promotions(self.ctx)
        self.reservations = Reservations(self.ctx)
        self.projection = SearchProjection(self.ctx)

    @property
    def store(self) -> CatalogStore:
        return self.ctx.store

    @property
    def feed(self) -> Feed:
        return self.ctx.feed

    @property
    def index(self) -> CatalogIndex:
        return self.ctx.index

    @index.setter
    def index(self, index: CatalogIndex) -> None:
        self.ctx.index = index

    @property
    def applied_seq(self) -> int:
        """The last feed entry this replica's search model has applied."""
        return self.projection.applied_seq

    async def load(self, now: datetime) -> None:
        await self.projection.load(now)

    async def tail_forever(self, interval: float) -> None:
        await self.projection.tail_forever(interval)

    # -- reads served from this replica's search model and the feed ------------------------

    def search(self, query: SearchQuery, now: datetime) -> tuple[list[Found], tuple[Any, ...] | None]:
        """Orderable products matching `query`, and the sort key to continue after (None: last page)."""
        index = self.ctx.index
        page = index.search(query, now)
        found = [(indexed.doc, index.providers[indexed.doc["provider_id"]], offer) for indexed, offer in page.items]
        return found, page.next_key

    def stats(self, pemda: str | None) -> dict[str, Any]:
        return self.ctx.index.stats(pemda)

    async def feed_page(self, after: int, limit: int) -> list[Document]:
        return await self.ctx.feed.read(after, limit)
