"""Composition root of the notifications service: settings, clients, wiring."""

from __future__ import annotations

from aiohttp import web

from bejo_kit.runtime import Runtime, run_service

from . import api, consumers
from .repository import INDEXES, WEBHOOKS, Store
from .service import Notifier
from .settings import NotificationsSettings
from .webhooks import Webhooks


def build(settings: NotificationsSettings | None = None) -> web.Application:
    settings = settings or NotificationsSettings()
    runtime = Runtime(settings, outbox_collections=[WEBHOOKS], indexes=INDEXES)
    store = Store(runtime.db)
    notifier = Notifier(store, settings)
    webhooks = Webhooks(store, settings, runtime.bus, runtime.outbox)
    runtime.add_loop("email-delivery", notifier.mailer.run)
    runtime.add_loop("webhook-delivery", webhooks.run)
    consumers.subscribe(runtime.bus, notifier, webhooks)
    app = runtime.create_app(
        title="bejo notifications",
        description="In-app inbox, e-mail and signed webhooks, fed by every event on the bus.",
    )
    app[api.NOTIFIER] = notifier
    app[api.WEBHOOKS] = webhooks
    api.router.install(app)
    return app


def main() -> None:
    settings = NotificationsSettings()
    run_service(settings, lambda: build(settings))
