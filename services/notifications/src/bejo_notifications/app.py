"""Composition root of the notifications service: settings, clients, wiring."""

from __future__ import annotations

from aiohttp import web

from bejo_kit.runtime import Runtime, run_service

from . import api
from .settings import NotificationsSettings


def build(settings: NotificationsSettings | None = None) -> web.Application:
    settings = settings or NotificationsSettings()
    runtime = Runtime(settings)
    app = runtime.create_app(title="bejo notifications")
    api.router.install(app)
    return app


def main() -> None:
    settings = NotificationsSettings()
    run_service(lambda: (build(settings), settings))
