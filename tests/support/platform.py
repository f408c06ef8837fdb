"""The whole platform in one process: catalog, orders, payments, notifications and the gateway, on
the real RabbitMQ and Mongo-wire server, sharing one bus namespace, plus a real SMTP sink. Used by
the end-to-end and the security tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bejo_catalog.app import build as build_catalog
from bejo_catalog.settings import CatalogSettings
from bejo_gateway.app import build as build_gateway
from bejo_gateway.settings import GatewaySettings
from bejo_notifications.app import build as build_notifications
from bejo_notifications.settings import NotificationsSettings
from bejo_notifications.smtp_sink import SmtpSink
from bejo_orders.app import build as build_orders
from bejo_orders.settings import OrdersSettings
from bejo_payments.app import build as build_payments
from bejo_payments.settings import PaymentsSettings

from .apps import AppSpec, run_apps, service_settings
from .http import Api

SERVICES = ("catalog", "orders", "payments", "notifications")


@dataclass
class Platform:
    gateway: str
    http: aiohttp.ClientSession
    sink: SmtpSink
    unique: str
    # Base URLs of each service's replicas (what the gateway was given), for checks per replica.
    services: dict[str, list[str]] = field(default_factory=dict)

    @property
    def api(self) -> Api:
        return Api(self.http, self.gateway)

    async def call(
        self, method: str, path: str, token: str | None = None, json: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        reply = await self.api.call(method, path, token, json, headers=headers)
        return reply.status, reply.body

    async def ok(self, method: str, path: str, token: str | None = None, json: Any = None, **kw: Any) -> Any:
        return await self.api.ok(method, path, token, json, **kw)


def _service_settings(name: str, common: dict[str, Any], smtp_port: int) -> Any:
    if name == "catalog":
        return service_settings(CatalogSettings, **common)
    if name == "orders":
        return service_settings(OrdersSettings, **common)
    if name == "payments":
        return service_settings(PaymentsSettings, sandbox_enabled=True, **common)
    return service_settings(NotificationsSettings, smtp_port=smtp_port, **common)


_BUILDERS: dict[str, Any] = {
    "catalog": build_catalog,
    "orders": build_orders,
    "payments": build_payments,
    "notifications": build_notifications,
}


@asynccontextmanager
async def start_platform(
    amqp_url: str, mongodb_url: str, unique: str, mail_dir: Path, *, replicas: int = 1
) -> AsyncIterator[Platform]:
    """Every service `replicas` times (each a separate app, with its own connections), then the gateway."""
    common = {"amqp_url": amqp_url, "mongodb_url": mongodb_url, "namespace": unique}
    async with AsyncExitStack() as closing:
        sink = await closing.enter_async_context(SmtpSink(mail_dir))
        services = [
            AppSpec(name, _BUILDERS[name], _service_settings(name, common, sink.port), replicas=replicas)
            for name in SERVICES
        ]
        async with run_apps(services, stack=closing) as running:
            gateway_settings = GatewaySettings(
                catalog_urls=running.urls["catalog"],
                orders_urls=running.urls["orders"],
                payments_urls=running.urls["payments"],
                notifications_urls=running.urls["notifications"],
                rate_limit_per_second=1000,
                rate_limit_burst=1000,
                environment="test",
                log_level="WARNING",
                access_log=False,  # a line per request would bury the test output (the fuzzer sends thousands)
            )
            gateway_spec = AppSpec("gateway", build_gateway, gateway_settings, owns_database=False)
            # The gateway stops first: `run_apps` stops what it started last first.
            async with run_apps([gateway_spec]) as edge, aiohttp.ClientSession() as http:
                yield Platform(edge.url("gateway"), http, sink, unique, dict(running.urls))
