"""A product discounted 100% gives a 0-rupiah order: on the real servers, through the gateway, its
invoice settles at once with no payment and the order completes instead of waiting in
payment_pending for a bank that will never be asked for Rp 0."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import support
from e2e_harness import (
    Platform,
    cast_of,
    list_product,
    order_body,
    order_status_is,
    register_verified_provider,
)

pytestmark = pytest.mark.integration


async def test_a_fully_discounted_order_is_invoiced_at_zero_and_completes(platform: Platform) -> None:
    cast = cast_of(platform)
    await register_verified_provider(platform, cast)
    product = await list_product(platform, cast, stock=5)
    now = datetime.now(UTC)
    await platform.ok(
        "POST",
        "/api/v1/promotions",
        cast.seller,
        {
            "name": "Harbolnas 12.12 gratis",
            "scope": "products",
            "product_ids": [product["id"]],
            "discount_kind": "percent",
            "discount_value": 100,
            "starts_at": (now - timedelta(hours=1)).isoformat(),
            "ends_at": (now + timedelta(days=1)).isoformat(),
        },
    )

    # The promotion's own ProductUpserted carries the product's unchanged version, which the orders
    # read model drops as a repeat; an edit of the product publishes its terms with a new version.
    await platform.ok("PATCH", f"/api/v1/products/{product['id']}", cast.seller, {"description": "promo 100%"})

    # Orders learns the product and its promotion from catalog events: until then an order is
    # either unknown (422) or priced in full (cancelled again, releasing its stock).
    async def free_order() -> dict[str, Any] | None:
        status, body = await platform.call(
            "POST",
            "/api/v1/orders",
            cast.pp,
            order_body(product["id"], 1),
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        if status != 201:
            return None
        [order] = body["orders"]
        if order["total"] == 0:
            return dict(order)
        await support.wait_until(lambda: order_status_is(platform, cast.pp, order["id"], "reserved"), within=30)
        await platform.ok("POST", f"/api/v1/orders/{order['id']}/cancel", cast.pp, {"reason": "harga belum promo"})
        return None

    order = await support.wait_until(free_order, within=60, interval=0.5)
    order_id = order["id"]
    await support.wait_until(lambda: order_status_is(platform, cast.pp, order_id, "reserved"), within=30)
    await platform.ok("POST", f"/api/v1/orders/{order_id}/approve", cast.ppk)
    await platform.ok("POST", f"/api/v1/orders/{order_id}/accept", cast.seller)
    await platform.ok("POST", f"/api/v1/orders/{order_id}/ship", cast.seller, {"tracking_note": "diantar sendiri"})
    await platform.ok("POST", f"/api/v1/orders/{order_id}/receive", cast.ppk)

    # No VA, no card, no bank: the order completes on its own.
    await support.wait_until(lambda: order_status_is(platform, cast.pp, order_id, "completed"), within=45)
    [payment] = (await platform.ok("GET", f"/api/v1/payments?order_id={order_id}", cast.treasurer))["items"]
    assert payment["status"] == "settled" and payment["invoice"]["total"] == 0
    assert payment["va_number"] is None and payment["reference"] == "ZERO-AMOUNT"
    ledger = (await platform.ok("GET", f"/api/v1/payments/{payment['id']}/ledger", cast.treasurer))["items"]
    assert {entry["kind"] for entry in ledger} == {"payment_received", "settlement"}
    assert all(entry["amount"] == 0 for entry in ledger)
    history = [h["to"] for h in (await platform.ok("GET", f"/api/v1/orders/{order_id}/history", cast.pp))["items"]]
    assert history[:6] == ["placed", "reserved", "approved", "accepted", "shipped", "received"]
    assert history[-1] == "completed"
