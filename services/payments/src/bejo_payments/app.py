"""Composition root of the payments service: settings, clients, wiring."""

from __future__ import annotations

from aiohttp import web

from bejo_kit.runtime import Runtime, run_service

from . import api
from .settings import PaymentsSettings


def build(settings: PaymentsSettings | None = None) -> web.Application:
    settings = settings or PaymentsSettings()
    runtime = Runtime(settings)
    app = runtime.create_app(title="bejo payments")
    api.router.install(app)
    return app


def main() -> None:
    settings = PaymentsSettings()
    run_service(lambda: (build(settings), settings))
