"""Fixtures of the payments tests: the service running on the real bus and store (as one replica or
several sharing one database and one set of queues), a publisher of order events in the same bus
namespace, and a listener that records what payments publishes."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from support import Api, AppSpec, bearer, run_apps, service_settings, token, wait_until

from bejo_contracts import SYSTEM, Envelope
from bejo_contracts.orders import OrderCancelled, OrderLine, OrderReceived
from bejo_contracts.topology import QueueSpec
from bejo_kit.bus import Bus, IncomingEvent
from bejo_kit.settings import KitSettings
from bejo_payments import api
from bejo_payments.access import TOKEN_PATH
from bejo_payments.app import build
from bejo_payments.callbacks import CALLBACK_PATH
from bejo_payments.sandbox import obtain_access_token, send_payment_callback
from bejo_payments.service import PaymentsService
from bejo_payments.settings import PaymentsSettings

PEMDA = "35.15"


@dataclass
class Payments:
    base_url: str
    settings: PaymentsSettings
    service: PaymentsService
    bus: Bus
    http: aiohttp.ClientSession
    satker: str
    provider_id: str
    events: list[Envelope] = field(default_factory=list)
    # Every replica of the service, this one first; they share the database, queues and listener.
    replicas: list[Payments] = field(default_factory=list)

    # -- tokens -----------------------------------------------------------------------------------

    def bendahara(self, satker: str | None = None) -> dict[str, str]:
        return bearer(token("bendahara", "bend-1", pemda=PEMDA, satker=satker or self.satker))

    def admin(self, pemda: str = "35") -> dict[str, str]:
        return bearer(token("admin", "admin-1", pemda=pemda))

    # -- order events -----------------------------------------------------------------------------

    def received(
        self, *, lines: list[tuple[int, int]], pkp: bool = True, method: str = "va", order_id: str | None = None
    ) -> OrderReceived:
        return OrderReceived(
            order_id=order_id or f"ord-{uuid.uuid4().hex[:8]}",
            checkout_id="chk-1",
            pemda=PEMDA,
            satker=self.satker,
            pp_id="pp-1",
            pp_name="Pejabat Pengadaan",
            ppk_id="ppk-1",
            provider_id=self.provider_id,
            provider_name="CV Sumber Rejeki",
            provider_pkp=pkp,
            payment_method=method,  # type: ignore[arg-type]
            rup_code="RUP-2026-0001",
            delivery_address="Jl. Pahlawan 1, Sidoarjo",
            lines=[
                OrderLine(product_id=f"p{i}", name=f"Barang {i}", unit="pcs", quantity=q, unit_price=p)
                for i, (q, p) in enumerate(lines)
            ],
            total=sum(q * p for q, p in lines),
            from_status="shipped",
            status="received",
            actor=SYSTEM,
            occurred_at=datetime.now(UTC),
            bast_number="BAST/35.15/2026/0001",
        )

    async def publish(self, data: OrderReceived | OrderCancelled) -> Envelope:
        envelope = self.bus.envelope(data)
        await self.bus.publish(envelope)
        return envelope

    async def invoiced(self, order: OrderReceived) -> dict[str, Any]:
        """Publish the OrderReceived and wait until its payment exists."""
        await self.publish(order)
        return await self.payment_of(order.order_id)

    async def payment_of(self, order_id: str) -> dict[str, Any]:
        async def found() -> dict[str, Any] | None:
            body = await self.get(f"/api/v1/payments?order_id={order_id}", self.admin())
            return body["items"][0] if body["items"] else None

        result: dict[str, Any] = await wait_until(found)
        return result

    # -- HTTP -------------------------------------------------------------------------------------

    async def get(self, path: str, headers: dict[str, str], status: int = 200) -> Any:
        reply = await Api(self.http, self.base_url).call("GET", path, headers=headers)
        assert reply.status == status, reply.body
        return reply.body

    async def post(self, path: str, headers: dict[str, str], json: Any = None, status: int = 200) -> Any:
        reply = await Api(self.http, self.base_url).call("POST", path, json=json, headers=headers)
        assert reply.status == status, reply.body
        return reply.body

    async def ledger(self, payment_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self.get(f"/api/v1/payments/{payment_id}/ledger", self.admin()))["items"]
        return items

    async def sandbox_pay(self, va_number: str, amount: int) -> dict[str, Any]:
        result: dict[str, Any] = await self.post(
            f"/api/v1/sandbox/va/{va_number}/pay", self.admin(), {"amount": amount}
        )
        return result

    def events_of(self, payment_id: str, event_type: str | None = None) -> list[Envelope]:
        """Distinct events (by id) about a payment: the outbox delivers at least once, so a consumer may
        see an event twice and must drop the repeat, as this does."""
        distinct = {e.id: e for e in self.events}
        return [
            e for e in distinct.values() if e.subject == payment_id and (event_type is None or e.type == event_type)
        ]


StartPayments = Callable[..., Any]


def ledger_sum(items: list[dict[str, Any]]) -> int:
    return sum(item["amount"] for item in items)


def by_account(items: list[dict[str, Any]]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for item in items:
        totals[item["account"]] += item["amount"]
    return {account: amount for account, amount in totals.items() if amount != 0}


async def callback(p: Payments, va: str, amount: int, **overrides: Any) -> tuple[int, dict[str, Any]]:
    """A bank callback to replica `p`, signed as the sandbox bank signs it."""
    arguments: dict[str, Any] = {
        "callback_url": p.base_url + CALLBACK_PATH,
        "va_number": va,
        "amount": amount,
        "partner_id": p.settings.sandbox_partner_id,
        "secret": p.settings.snap_client_secrets[p.settings.sandbox_partner_id],
        "private_key": p.settings.sandbox_private_key,
        "va_prefix": p.settings.va_prefix,
        **overrides,
    }
    result = await send_payment_callback(**arguments)
    return result.http_status, result.body


async def access_token(p: Payments, partner_id: str | None = None) -> str:
    """A SNAP B2B access token of replica `p`, obtained as the sandbox bank obtains one."""
    return await obtain_access_token(
        p.http,
        p.base_url + TOKEN_PATH,
        partner_id or p.settings.sandbox_partner_id,
        p.settings.sandbox_private_key,
    )


@pytest.fixture
def start_payments(amqp_url: str, mongodb_url: str, unique: str) -> StartPayments:
    @asynccontextmanager
    async def start(replicas: int = 1, **overrides: Any) -> AsyncIterator[Payments]:
        settings = service_settings(
            PaymentsSettings,
            amqp_url=amqp_url,
            mongodb_url=mongodb_url,
            namespace=unique,
            sandbox_enabled=True,
            expiry_check_interval_seconds=0.05,
            **overrides,
        )
        listener_settings = KitSettings(
            service_name="payments-test",
            amqp_url=amqp_url,
            bus_namespace=settings.bus_namespace,
            bus_queue_expires_ms=120_000,
            retry_delays_ms=[50],
        )
        bus = Bus(listener_settings, source="bejo/orders-test")
        harness_events: list[Envelope] = []

        async def record(event: IncomingEvent) -> None:
            harness_events.append(event.envelope)

        bus.subscribe(QueueSpec(f"test-listener-{unique}", ("bejo.payments.#",)), record)
        await bus.connect()
        await bus.start_consuming()
        async with AsyncExitStack() as closing:
            closing.push_async_callback(bus.close)
            async with (
                # The same settings for every replica: one database, competing consumers.
                run_apps([AppSpec("payments", build, settings, replicas=replicas)], stack=closing) as running,
                aiohttp.ClientSession() as http,
            ):
                started: list[Payments] = []
                for base_url, app in zip(running.urls["payments"], running.apps["payments"], strict=True):
                    started.append(
                        Payments(
                            base_url=base_url,
                            settings=settings,
                            service=app[api.SERVICE],
                            bus=bus,
                            http=http,
                            satker=f"dinkes-{unique}",
                            provider_id=f"prov-{unique}",
                            events=harness_events,
                            replicas=started,
                        )
                    )
                yield started[0]

    return start
