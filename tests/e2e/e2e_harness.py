"""The whole platform in one process: catalog, orders, payments, notifications and the gateway,
on the real RabbitMQ and Mongo-wire server, sharing one bus namespace, plus a real SMTP sink."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import support

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


@dataclass
class Platform:
    gateway: str
    http: aiohttp.ClientSession
    sink: SmtpSink
    unique: str

    async def call(
        self, method: str, path: str, token: str | None = None, json: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        sent = dict(headers or {})
        if token:
            sent.update(support.bearer(token))
        async with self.http.request(method, self.gateway + path, json=json, headers=sent) as response:
            return response.status, await response.json(content_type=None)

    async def ok(self, method: str, path: str, token: str | None = None, json: Any = None, **kw: Any) -> Any:
        status, body = await self.call(method, path, token, json, **kw)
        assert 200 <= status < 300, f"{method} {path} -> {status}: {body}"
        return body


@pytest.fixture
async def platform(amqp_url: str, mongodb_url: str, unique: str, tmp_path: Path) -> AsyncIterator[Platform]:
    common = {"amqp_url": amqp_url, "mongodb_url": mongodb_url, "namespace": unique}
    async with AsyncExitStack() as stack:
        sink = await stack.enter_async_context(SmtpSink(tmp_path / "mail"))
        urls = {}
        for name, build, settings in (
            ("catalog", build_catalog, support.service_settings(CatalogSettings, **common)),
            ("orders", build_orders, support.service_settings(OrdersSettings, **common)),
            ("payments", build_payments, support.service_settings(PaymentsSettings, sandbox_enabled=True, **common)),
            (
                "notifications",
                build_notifications,
                support.service_settings(NotificationsSettings, smtp_port=sink.port, **common),
            ),
        ):
            urls[name] = await stack.enter_async_context(support.serve(build(settings)))  # type: ignore[operator]
        gateway_settings = GatewaySettings(
            catalog_urls=[urls["catalog"]],
            orders_urls=[urls["orders"]],
            payments_urls=[urls["payments"]],
            notifications_urls=[urls["notifications"]],
            rate_limit_per_second=1000,
            rate_limit_burst=1000,
            environment="test",
            log_level="WARNING",
        )
        gateway = await stack.enter_async_context(support.serve(build_gateway(gateway_settings)))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        yield Platform(gateway, http, sink, unique)
        clients = [
            support.service_settings(s, **common)
            for s in (CatalogSettings, OrdersSettings, PaymentsSettings, NotificationsSettings)
        ]
        from pymongo import AsyncMongoClient

        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
        for settings in clients:
            await mongo.drop_database(settings.database_name)
        await mongo.close()
