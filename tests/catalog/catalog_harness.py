"""Fixtures for the catalog tests: a catalog service on the real servers, in its own database and
bus namespace, plus helpers to register providers and list products through its HTTP API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from support import Api, AppSpec, bearer, run_apps, service_settings, token, wait_until

from bejo_catalog.api import SERVICE
from bejo_catalog.app import build
from bejo_catalog.repository import FEED_PENDING
from bejo_catalog.service import CatalogService
from bejo_catalog.settings import CatalogSettings
from bejo_cli.samples import product_body, provider_body
from bejo_contracts import SYSTEM, Envelope, EventData
from bejo_contracts.orders import OrderLine
from bejo_contracts.topology import QueueSpec
from bejo_kit.bus import Bus, IncomingEvent, namespaced_spec

ADMIN = bearer(token("admin", "admin-biro-pbj", pemda="35"))


def penyedia(provider_id: str) -> dict[str, str]:
    return bearer(token("penyedia", f"user-{provider_id}", provider_id=provider_id))


@dataclass
class Catalog:
    api: Api
    service: CatalogService
    settings: CatalogSettings

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        reply = await self.api.call(method, path, **kw)
        return reply.status, reply.body

    async def provider(self, provider_id: str, *, verify: bool = True, **fields: Any) -> dict[str, Any]:
        status, body = await self.call(
            "POST", "/api/v1/providers", json=provider_body(**fields), headers=penyedia(provider_id)
        )
        assert status == 201, body
        if verify:
            status, body = await self.call(
                "POST", f"/api/v1/providers/{provider_id}/verify", json={"reason": "dokumen lengkap"}, headers=ADMIN
            )
            assert status == 200, body
        return dict(body)

    async def product(self, provider_id: str, **fields: Any) -> dict[str, Any]:
        status, body = await self.call(
            "POST", "/api/v1/products", json=product_body(**fields), headers=penyedia(provider_id)
        )
        assert status == 201, body
        return dict(body)


async def fed(catalog: Catalog) -> int:
    """Wait until every change is on the feed and this replica's search model applied it; the head."""
    store = catalog.service.store

    async def nothing_marked() -> bool:
        for collection in (store.providers, store.products, store.promotions):
            if await collection.find_one({FEED_PENDING: True}, {"_id": 1}) is not None:
                return False
        return True

    await wait_until(nothing_marked)
    head = await catalog.service.feed.head()
    await wait_until(lambda: catalog.service.applied_seq >= head)
    return head


def catalog_settings(amqp_url: str, mongodb_url: str, unique: str, **overrides: Any) -> CatalogSettings:
    return service_settings(
        CatalogSettings,
        amqp_url=amqp_url,
        mongodb_url=mongodb_url,
        namespace=unique,
        feed_tail_interval=0.05,
        feed_sequence_interval=0.05,
        **overrides,
    )


@pytest.fixture
async def catalog(amqp_url: str, mongodb_url: str, unique: str) -> AsyncIterator[Catalog]:
    settings = catalog_settings(amqp_url, mongodb_url, unique)
    await bind_event_sink(settings, unique)
    async with run_apps([AppSpec("catalog", build, settings)]) as running, aiohttp.ClientSession() as http:
        yield Catalog(Api(http, running.url("catalog")), running.app("catalog")[SERVICE], settings)


async def bind_event_sink(settings: CatalogSettings, unique: str) -> None:
    """Bind a queue to every catalog event in the test's namespace, as the orders service would;
    otherwise the broker returns the events as unroutable and the relay keeps retrying them."""
    bus = Bus(settings, source="bejo/test-sink")
    await bus.connect()
    try:
        await bus.declare_queue(namespaced_spec(settings, QueueSpec(f"sink.{unique}", ("bejo.catalog.#",))))
    finally:
        await bus.close()


class StockEvents:
    """Collects the catalog's stock events from a queue of the test's own, per order id."""

    def __init__(self) -> None:
        self.by_order: dict[str, list[Envelope]] = {}

    async def handle(self, event: IncomingEvent) -> None:
        self.by_order.setdefault(event.envelope.data["order_id"], []).append(event.envelope)

    def types(self, order_id: str) -> list[str]:
        return [e.type.split(".")[-2] for e in self.by_order.get(order_id, [])]

    def last(self, order_id: str) -> dict[str, Any]:
        return self.by_order[order_id][-1].data


def order_event(
    model: type[EventData], order_id: str, provider_id: str, lines: list[tuple[str, int]], **extra: Any
) -> EventData:
    return model(
        order_id=order_id,
        checkout_id=f"co-{order_id}",
        pemda="35.15",
        satker="dinkes-sidoarjo",
        pp_id="pp-1",
        pp_name="Budi",
        ppk_id="ppk-1",
        provider_id=provider_id,
        provider_name="CV Uji",
        provider_pkp=True,
        payment_method="va",
        rup_code="RUP-2026-001",
        delivery_address="Jl. Pahlawan 1, Sidoarjo",
        lines=[OrderLine(product_id=p, name="x", unit="pak", quantity=q, unit_price=1000) for p, q in lines],
        total=1000 * sum(q for _, q in lines),
        from_status=None,
        status="placed",
        actor=SYSTEM,
        occurred_at=datetime.now(UTC),
        **extra,
    )
