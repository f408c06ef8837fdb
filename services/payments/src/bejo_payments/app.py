"""Composition root of the payments service: settings, clients, wiring."""

from __future__ import annotations

from aiohttp import web

from bejo_kit.runtime import Runtime, run_service

from . import api, consumers, repository, scheduler
from .access import AccessTokens
from .adapters import SandboxBank
from .callbacks import SnapCallbacks
from .service import PaymentsService
from .settings import PaymentsSettings


def build(settings: PaymentsSettings | None = None) -> web.Application:
    settings = settings or PaymentsSettings()
    runtime = Runtime(settings, outbox_collections=repository.OUTBOX_COLLECTIONS, indexes=repository.INDEXES)
    payments = repository.PaymentsRepository(runtime.db, runtime.outbox)
    # The only provider shipped is the sandbox bank; a real bank adapter plugs in here.
    provider = SandboxBank(settings.va_prefix, settings.kkpd_limit)
    service = PaymentsService(settings, payments, runtime.bus, provider)
    consumers.subscribe(runtime.bus, service)
    runtime.add_loop("va-expiry-and-settlement", lambda: scheduler.run(service))

    app = runtime.create_app(
        title="bejo payments",
        description="Invoices with tax withholding, VA and KKPD payments, signed SNAP callbacks, ledger, settlement.",
    )
    app[api.SERVICE] = service
    tokens = AccessTokens(settings, payments)
    app[api.TOKENS] = tokens
    app[api.CALLBACKS] = SnapCallbacks(service, tokens)
    app[api.SETTINGS] = settings
    api.router.install(app)
    api.install_snap(app)
    if settings.sandbox_enabled:
        api.sandbox_router.install(app)
    return app


def main() -> None:
    settings = PaymentsSettings()
    run_service(settings, lambda: build(settings))
