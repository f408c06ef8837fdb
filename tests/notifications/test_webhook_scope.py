"""Webhooks never carry one pemda's events to another's admin (real bus, store and HTTP receivers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from aiohttp import web
from notifications_harness import Receiver, Service, eventually
from notifications_samples import PLACED_AT, envelope_of, order_fields
from support import serve, token

from bejo_contracts import EventData
from bejo_contracts import catalog as cat
from bejo_contracts import notifications as notif
from bejo_contracts import orders as ords
from bejo_contracts.pricing import PromotionTerms
from bejo_notifications.repository import DELIVERIES

pytestmark = pytest.mark.integration

JATIM_ADMIN = token("admin", "admin-35", pemda="35")
BANTEN_ADMIN = token("admin", "admin-36", pemda="36")


@asynccontextmanager
async def receiving(secret: str) -> AsyncIterator[Receiver]:
    hook = Receiver(secret=secret)
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    async with serve(app) as url:
        hook.url = url + "/hook"
        yield hook


def sidoarjo_events() -> list[EventData]:
    """Events of pemda 35.15 whose contracts used to name no pemda."""
    line = cat.ReservedLine(
        product_id="p-1", name="Kertas A4", unit="rim", quantity=20, list_price=55_700, unit_price=55_700
    )
    terms = PromotionTerms(
        promotion_id="promo-1",
        discount_kind="percent",
        discount_value=10,
        starts_at=PLACED_AT,
        ends_at=PLACED_AT + timedelta(days=1),
    )
    return [
        cat.StockReserved(
            order_id="ORD-1",
            pemda="35.15",
            provider_id="prov-1",
            provider_name="CV Maju Jaya",
            provider_pkp=True,
            lines=[line],
            total=1_114_000,
        ),
        cat.StockReleased(order_id="ORD-1", pemda="35.15"),
        cat.PromotionCreated(provider_id="prov-1", provider_pemda_code="35.15", product_ids=["p-1"], terms=terms),
        notif.WebhookDisabled(
            webhook_id="wh-x",
            owner_sub="admin-x",
            owner_pemda="35.15",
            url="https://x.example/h",
            consecutive_failures=15,
        ),
    ]


async def subscribe(service: Service, jwt: str, hook: Receiver) -> None:
    body = {"url": hook.url, "secret": hook.secret, "event_types": ["bejo.#"]}
    status, created = await service.call("POST", "/api/v1/webhooks", jwt, body)
    assert status == 201, created


async def test_an_admin_gets_only_the_events_of_the_pemdas_they_oversee(service: Service) -> None:
    async with receiving("jatim-secret-0123456789") as jatim, receiving("banten-secret-0123456789") as banten:
        await subscribe(service, JATIM_ADMIN, jatim)
        await subscribe(service, BANTEN_ADMIN, banten)
        sidoarjo = [envelope_of(event) for event in sidoarjo_events()]
        for envelope in sidoarjo:
            await service.publish(envelope)
        # The last event is Banten's: once its delivery arrived, the ones before it were handled
        # (one replica, one message at a time).
        serang = envelope_of(ords.OrderApproved(**order_fields("9", pemda="36.04", status="approved")))
        await service.publish(serang)

        await eventually(lambda: [r["event_id"] for r in banten.received] == [serang.id])
        await eventually(lambda: len(jatim.received) == len(sidoarjo))
        assert sorted(r["event_id"] for r in jatim.received) == sorted(e.id for e in sidoarjo)
        assert all(r["verified"] for r in jatim.received + banten.received)
        # Nothing of 35.15 was even queued for Banten's subscription.
        deliveries = await service.db[DELIVERIES].find({}, {"event_id": 1, "webhook_id": 1}).to_list()
        assert len(deliveries) == len(sidoarjo) + 1


async def test_patterns_longer_than_a_routing_key_are_refused(service: Service) -> None:
    body = {"url": "http://127.0.0.1:9/hook", "secret": "0123456789abcdef", "event_types": ["#." * 150 + "v1"]}
    status, problem = await service.call("POST", "/api/v1/webhooks", JATIM_ADMIN, body)
    assert status == 422 and problem["errors"][0]["field"] == "event_types.0", problem
