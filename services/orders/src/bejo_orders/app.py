"""Composition root of the orders service: settings, clients, wiring."""

from __future__ import annotations

from aiohttp import web

from bejo_kit.runtime import Runtime, run_service

from . import api
from .settings import OrdersSettings


def build(settings: OrdersSettings | None = None) -> web.Application:
    settings = settings or OrdersSettings()
    runtime = Runtime(settings)
    app = runtime.create_app(title="bejo orders")
    api.router.install(app)
    return app


def main() -> None:
    settings = OrdersSettings()
    run_service(lambda: (build(settings), settings))
