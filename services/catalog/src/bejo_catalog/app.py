"""Composition root of the catalog service: settings, clients, wiring."""

from __future__ import annotations

from aiohttp import web

from bejo_kit.runtime import Runtime, run_service

from . import api
from .settings import CatalogSettings


def build(settings: CatalogSettings | None = None) -> web.Application:
    settings = settings or CatalogSettings()
    runtime = Runtime(settings)
    app = runtime.create_app(title="bejo catalog")
    api.router.install(app)
    return app


def main() -> None:
    settings = CatalogSettings()
    run_service(lambda: (build(settings), settings))
