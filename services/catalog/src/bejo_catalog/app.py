"""Composition root of the catalog service: settings, clients, wiring."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from bejo_kit.mongo import utcnow
from bejo_kit.runtime import Runtime, run_service

from . import api, consumers
from .feed import Feed, Sequencer, SyncPublisher
from .repository import INDEXES, OUTBOX_COLLECTIONS, CatalogStore
from .search import CatalogIndex
from .service import CatalogService
from .settings import CatalogSettings

DESCRIPTION = (
    "Providers (penyedia), categories, products, promotions and stock of bejo; keyword search; "
    "the national e-catalog sync feed."
)


def build(settings: CatalogSettings | None = None) -> web.Application:
    settings = settings or CatalogSettings()
    runtime = Runtime(settings, outbox_collections=OUTBOX_COLLECTIONS, indexes=INDEXES)
    store = CatalogStore(runtime.db)
    feed = Feed(store)
    sequencer = Sequencer(
        store, feed, lease=timedelta(seconds=settings.feed_lease_seconds), interval=settings.feed_sequence_interval
    )
    service = CatalogService(store, feed, CatalogIndex(), runtime.bus, runtime.outbox, sequencer.wake)

    async def load() -> None:
        await service.load(utcnow())

    runtime.on_start(load)
    runtime.add_loop("feed-sequencer", sequencer.run)
    runtime.add_loop("feed-tail", lambda: service.tail_forever(settings.feed_tail_interval))
    if settings.sync_publish:
        runtime.add_loop("catalog-sync", SyncPublisher(store, feed, runtime.bus).run)
    consumers.register(runtime.bus, service)

    app = runtime.create_app(title="bejo catalog", description=DESCRIPTION)
    app[api.SERVICE] = service
    api.router.install(app)
    return app


def main() -> None:
    settings = CatalogSettings()
    run_service(settings, lambda: build(settings))
