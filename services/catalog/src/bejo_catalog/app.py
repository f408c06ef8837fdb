"""Composition root of the catalog service: settings, clients, wiring."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aiohttp import web

from bejo_kit.mongo import utcnow
from bejo_kit.runtime import Runtime, run_service

from . import api, consumers
from .feed import Feed, SyncPublisher
from .repository import CatalogStore, outbox_collections
from .search import CatalogIndex
from .service import CatalogService
from .settings import CatalogSettings

DESCRIPTION = (
    "Providers (penyedia), categories, products, promotions and stock of bejo; keyword search; "
    "the national e-catalog sync feed."
)


def build(settings: CatalogSettings | None = None) -> web.Application:
    settings = settings or CatalogSettings()
    runtime = Runtime(settings, outbox_collections=outbox_collections(settings.product_partitions))
    store = CatalogStore(runtime.db, settings.product_partitions)
    assert store.event_collections == outbox_collections(settings.product_partitions)
    feed = Feed(store, settings.feed_page_size)
    service = CatalogService(store, feed, CatalogIndex(), runtime.bus, runtime.outbox)

    async def load() -> None:
        await service.load(utcnow())

    async def recover_intents() -> None:
        while True:
            await service.recover_intents(timedelta(seconds=settings.feed_recovery_after))
            await asyncio.sleep(settings.feed_recovery_interval)

    runtime.on_start(load)
    runtime.add_loop("feed-tail", lambda: service.tail_forever(settings.feed_tail_interval))
    runtime.add_loop("feed-recovery", recover_intents)
    if settings.sync_publish:
        runtime.add_loop("catalog-sync", SyncPublisher(store, feed, runtime.bus).run)
    consumers.register(runtime.bus, service)

    app = runtime.create_app(title="bejo catalog", description=DESCRIPTION)
    app[api.SERVICE] = service
    api.router.install(app)
    return app


def main() -> None:
    settings = CatalogSettings()
    run_service(lambda: (build(settings), settings))
