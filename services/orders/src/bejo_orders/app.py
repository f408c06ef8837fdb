"""Composition root of the orders service: settings, clients, wiring."""

from __future__ import annotations

from aiohttp import web

from bejo_kit.runtime import Runtime, run_service

from . import api
from .consumers import Consumers
from .repository import INDEXES, ORDERS, Repository
from .service import OrdersService
from .settings import OrdersSettings


def build(settings: OrdersSettings | None = None) -> web.Application:
    settings = settings or OrdersSettings()
    runtime = Runtime(settings, outbox_collections=[ORDERS], indexes=INDEXES)
    repo = Repository(runtime.db, runtime.outbox)
    service = OrdersService(repo, runtime.bus, settings)
    Consumers(service.transitions, repo).subscribe(runtime.bus)
    runtime.add_loop("order-expiry", service.transitions.expiry_loop)
    app = runtime.create_app(
        title="bejo orders",
        description="Government checkout saga: PPK approval, BAST, timeouts, audit trail.",
    )
    app[api.SERVICE] = service
    api.router.install(app)
    return app


def main() -> None:
    settings = OrdersSettings()
    run_service(settings, lambda: build(settings))
