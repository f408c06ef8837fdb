"""Composition root of the orders service: settings, clients, wiring."""

from __future__ import annotations

from aiohttp import web

from bejo_kit.mongo import Indexes
from bejo_kit.runtime import Runtime, run_service

from . import api
from .consumers import Consumers
from .repository import Repository
from .service import OrdersService
from .settings import OrdersSettings


def build(settings: OrdersSettings | None = None) -> web.Application:
    settings = settings or OrdersSettings()
    names = [f"orders.p{i:02d}" for i in range(settings.order_partitions)]
    runtime = Runtime(settings, outbox_collections=names, indexes=Indexes({}))
    repo = Repository(
        runtime.db,
        runtime.outbox,
        order_partitions=settings.order_partitions,
        product_partitions=settings.product_partitions,
    )
    service = OrdersService(repo, runtime.bus, settings)
    Consumers(service, repo).subscribe(runtime.bus)
    runtime.add_loop("order-expiry", service.expiry_loop)
    app = runtime.create_app(
        title="bejo orders",
        description="Government checkout saga: PPK approval, BAST, timeouts, audit trail.",
    )
    app[api.SERVICE] = service
    api.router.install(app)
    return app


def main() -> None:
    settings = OrdersSettings()
    run_service(lambda: (build(settings), settings))
