"""Test helpers of the orders tests: a client of the orders app, an observer of its events on the
real bus, and a publisher of the counterpart services' contract events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import support
from pymongo import AsyncMongoClient

from bejo_cli.samples import order_body
from bejo_contracts import Envelope, EventData
from bejo_contracts.catalog import ProductSnapshot, ProductUpserted, ReservedLine, StockReserved
from bejo_contracts.topology import QueueSpec
from bejo_kit.bus import Bus, IncomingEvent
from bejo_kit.settings import KitSettings
from bejo_orders.api import SERVICE
from bejo_orders.app import build
from bejo_orders.service import OrdersService
from bejo_orders.settings import OrdersSettings

PEMDA = "35.15"
SATKER = "dinkes"


@dataclass
class Harness:
    base: str
    http: aiohttp.ClientSession
    bus: Bus
    settings: OrdersSettings
    mongo: AsyncMongoClient[dict[str, Any]]
    seen: list[Envelope] = field(default_factory=list)
    # Every replica of the app (same settings, database and queues), and the base URL of each.
    services: list[OrdersService] = field(default_factory=list)
    bases: list[str] = field(default_factory=list)

    def replica(self, n: int) -> Harness:
        """This harness talking to replica `n` over HTTP (the bus and the observer are shared)."""
        return replace(self, base=self.bases[n])

    @property
    def db(self) -> Any:
        return self.mongo[self.settings.database_name]

    # -- tokens ---------------------------------------------------------------------------------

    def auth(self, role: str, sub: str, **claims: Any) -> dict[str, str]:
        claims.setdefault("pemda", PEMDA)
        if role in ("pp", "ppk", "bendahara"):
            claims.setdefault("satker", SATKER)
        return support.bearer(support.token(role, sub, **claims))

    @property
    def pp(self) -> dict[str, str]:
        return self.auth("pp", "pp-ani", name="Ani")

    @property
    def ppk(self) -> dict[str, str]:
        return self.auth("ppk", "ppk-budi", name="Budi")

    def seller(self, provider_id: str) -> dict[str, str]:
        return self.auth("penyedia", f"owner-{provider_id}", provider_id=provider_id)

    # -- HTTP -----------------------------------------------------------------------------------

    async def call(
        self, method: str, path: str, headers: dict[str, str], json: Any = None
    ) -> tuple[int, dict[str, Any], aiohttp.typedefs.LooseHeaders]:
        reply = await support.Api(self.http, self.base).call(method, path, json=json, headers=headers)
        return reply.status, reply.body, reply.headers

    async def place(
        self, lines: list[tuple[str, int]], key: str | None, *, headers: dict[str, str] | None = None, **overrides: Any
    ) -> tuple[int, dict[str, Any]]:
        body = order_body(lines, **overrides)
        sent = dict(headers or self.pp)
        if key:
            sent["Idempotency-Key"] = key
        status, payload, _ = await self.call("POST", "/api/v1/orders", sent, body)
        return status, payload

    async def order(self, order_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        status, payload, _ = await self.call("GET", f"/api/v1/orders/{order_id}", headers or self.pp)
        assert status == 200, payload
        return payload

    async def wait_status(self, order_id: str, status: str) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            order = await self.order(order_id)
            return order if order["status"] == status else None

        result: dict[str, Any] = await support.wait_until(reached)
        return result

    async def act(self, order_id: str, action: str, headers: dict[str, str], **body: Any) -> tuple[int, dict[str, Any]]:
        status, payload, _ = await self.call("POST", f"/api/v1/orders/{order_id}/{action}", headers, body or None)
        return status, payload

    # -- bus ------------------------------------------------------------------------------------

    async def publish(self, data: EventData, envelope_id: str | None = None) -> Envelope:
        envelope = self.bus.envelope(data)
        if envelope_id:
            envelope = envelope.model_copy(update={"id": envelope_id})
        await self.bus.publish(envelope)
        return envelope

    async def wait_event(self, order_id: str, kind: str, count: int = 1) -> list[Envelope]:
        def matched() -> list[Envelope] | None:
            found = [e for e in self.seen if e.subject == order_id and e.type.split(".")[3] == kind]
            return found if len(found) >= count else None

        result: list[Envelope] = await support.wait_until(matched)
        return result

    async def seed_product(self, product_id: str, provider_id: str, price: int, **overrides: Any) -> ProductSnapshot:
        snapshot = product(product_id, provider_id, price, **overrides)
        await self.publish(ProductUpserted(product=snapshot))
        return snapshot

    async def stored_product(self, product_id: str) -> dict[str, Any] | None:
        """The orders service's copy of a catalog product (its read model)."""
        found: dict[str, Any] | None = await self.db["products"].find_one({"_id": product_id})
        return found

    async def wait_products(self, *product_ids: str) -> None:
        async def stored() -> bool:
            return all([await self.stored_product(pid) for pid in product_ids])

        await support.wait_until(stored)

    async def reserve(self, order: dict[str, Any], unit_prices: dict[str, int] | None = None) -> Envelope:
        lines = [
            ReservedLine(
                product_id=line["product_id"],
                name=line["name"],
                unit=line["unit"],
                quantity=line["quantity"],
                list_price=line["unit_price"],
                unit_price=(unit_prices or {}).get(line["product_id"], line["unit_price"]),
            )
            for line in order["lines"]
        ]
        return await self.publish(
            StockReserved(
                order_id=order["id"],
                pemda=order["pemda"],
                provider_id=order["provider_id"],
                provider_name=order["provider_name"],
                provider_pkp=True,
                lines=lines,
                total=sum(line.unit_price * line.quantity for line in lines),
            )
        )


def key() -> str:
    """A fresh Idempotency-Key."""
    return uuid.uuid4().hex


def payment_fields(order: dict[str, Any], payment_id: str) -> dict[str, Any]:
    """The fields every payment event about `order` carries (paid by virtual account)."""
    return {
        "payment_id": payment_id,
        "order_id": order["id"],
        "pemda": order["pemda"],
        "satker": order["satker"],
        "provider_id": order["provider_id"],
        "provider_name": order["provider_name"],
        "method": "va",
    }


def product(product_id: str, provider_id: str, price: int, **overrides: Any) -> ProductSnapshot:
    values: dict[str, Any] = {
        "product_id": product_id,
        "provider_id": provider_id,
        "provider_name": f"CV {provider_id}",
        "provider_pkp": True,
        "provider_pemda_code": PEMDA,
        "name": f"Barang {product_id}",
        "category_id": "atk",
        "unit": "pcs",
        "price": price,
        "het": None,
        "min_order_qty": 1,
        "regions": [],
        "status": "active",
        "orderable": True,
        "promotions": [],
        "version": 1,
        "updated_at": datetime.now(UTC) - timedelta(minutes=1),
    }
    return ProductSnapshot(**{**values, **overrides})


@asynccontextmanager
async def start_harness(
    amqp_url: str, mongodb_url: str, namespace: str, *, replicas: int = 1, **overrides: Any
) -> AsyncIterator[Harness]:
    """The orders app (own database, bus namespace `namespace`) and an observer of its events.

    With `replicas` > 1, that many instances of the app run with the same settings: one database,
    competing consumers on the same queues, each running its own expiry sweep and outbox relay."""
    knobs: dict[str, Any] = {
        "approval_timeout_seconds": 600,
        "expiry_sweep_interval": 0.2,
        "outbox_poll_interval": 0.2,
        **overrides,
    }
    settings = support.service_settings(
        OrdersSettings, amqp_url=amqp_url, mongodb_url=mongodb_url, namespace=namespace, **knobs
    )
    observer_settings = KitSettings(
        service_name="orders-test",
        amqp_url=amqp_url,
        bus_namespace=settings.bus_namespace,
        bus_queue_expires_ms=120_000,
    )
    bus = Bus(observer_settings)
    await bus.connect()
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, tz_aware=True)
    seen: list[Envelope] = []

    async def observe(event: IncomingEvent) -> None:
        seen.append(event.envelope)

    bus.subscribe(QueueSpec("test.order-events", ("bejo.orders.#",)), observe)
    await bus.start_consuming()
    async with AsyncExitStack() as closing:
        closing.push_async_callback(mongo.close)
        closing.push_async_callback(bus.close)
        async with (
            support.run_apps([support.AppSpec("orders", build, settings, replicas=replicas)], stack=closing) as running,
            aiohttp.ClientSession() as http,
        ):
            bases = running.urls["orders"]
            yield Harness(
                base=bases[0],
                http=http,
                bus=bus,
                settings=settings,
                mongo=mongo,
                seen=seen,
                services=[app[SERVICE] for app in running.apps["orders"]],
                bases=bases,
            )
