"""Two replicas of every service behind the gateway: the full purchase, and a flash sale where 200
buyers race for 10 units and the replicas must neither oversell nor apply anything twice."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any
from urllib.parse import quote

import pytest
import support
from e2e_harness import (
    PEMDA,
    SATKER,
    Platform,
    cast_of,
    list_product,
    order_body,
    purchase_from_listing_to_completed_payment,
    register_verified_provider,
    wait_until_orders_knows,
)

pytestmark = pytest.mark.e2e

STOCK = 10
BUYERS = 200
CONCURRENCY = 50
# Correctness bound, not a speed assertion: every order must settle within it.
SETTLE_WITHIN = 120.0
# The states an order of a flash sale comes to rest in before anyone acts on it: stock reserved
# (awaiting the PPK's approval) or rejected by the catalog.
RESTING = {"reserved", "rejected"}


async def test_purchase_through_two_replicas_of_everything(platform_two_replicas: Platform) -> None:
    assert all(len(urls) == 2 for urls in platform_two_replicas.services.values())
    await purchase_from_listing_to_completed_payment(platform_two_replicas)


async def test_flash_sale_on_two_replicas_neither_oversells_nor_duplicates(platform_two_replicas: Platform) -> None:
    platform = platform_two_replicas
    cast = cast_of(platform)
    await register_verified_provider(platform, cast)
    product = await list_product(platform, cast, stock=STOCK)
    product_id = product["id"]
    buyers = [support.token("pp", f"pp-flash-{i:03d}", pemda=PEMDA, satker=SATKER) for i in range(BUYERS)]
    await wait_until_orders_knows(platform, buyers[0], product_id)

    # 200 buyers order one unit each, 50 at a time, through the gateway (round-robin over replicas).
    gate = asyncio.Semaphore(CONCURRENCY)

    async def buy(pp: str) -> tuple[int, Any]:
        async with gate:
            answer: tuple[int, Any] = await platform.call(
                "POST",
                "/api/v1/orders",
                pp,
                order_body(product_id, 1),
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            return answer

    answers = await asyncio.gather(*(buy(pp) for pp in buyers))
    refused = [(status, body) for status, body in answers if not 200 <= status < 300]
    assert not refused, f"{len(refused)} buyers got no order, e.g. {refused[:3]}"
    placed: dict[str, str] = {}  # order id → buyer
    for index, (_, checkout) in enumerate(answers):
        [order] = checkout["orders"]
        placed[order["id"]] = f"pp-flash-{index:03d}"
    assert len(placed) == BUYERS

    # Every order comes to rest; the stock seen on either catalog replica (asked directly, as the
    # seller: a sold-out product may be hidden from others) never goes below zero.
    as_seller = support.bearer(cast.seller)
    lowest_stock: list[int] = []

    async def settled() -> dict[str, dict[str, Any]] | None:
        for base in platform.services["catalog"]:
            async with platform.http.get(f"{base}/api/v1/products/{product_id}", headers=as_seller) as response:
                if response.status == 200:
                    lowest_stock.append((await response.json())["stock"])
        orders = await all_orders_of_provider(platform, cast.seller)
        if {o["id"] for o in orders} != set(placed):
            return None
        return {o["id"]: o for o in orders} if all(o["status"] in RESTING for o in orders) else None

    try:
        orders = await support.wait_until(settled, within=SETTLE_WITHIN, interval=0.5)
    except AssertionError:
        stuck = Counter(o["status"] for o in await all_orders_of_provider(platform, cast.seller))
        raise AssertionError(f"orders not at rest within {SETTLE_WITHIN:g}s: {dict(stuck)}") from None

    statuses = Counter(o["status"] for o in orders.values())
    facts = f"orders {dict(statuses)}, catalog stock seen {sorted(set(lowest_stock))} (of {STOCK})"
    assert lowest_stock and min(lowest_stock) >= 0, f"stock went negative (or was never seen): {facts}"
    assert statuses == {"reserved": STOCK, "rejected": BUYERS - STOCK}, facts
    for order in orders.values():
        assert order["pp_id"] == placed[order["id"]]  # one order per buyer, each the buyer's own
        if order["status"] == "rejected":
            assert "out_of_stock" in (order["reason"] or ""), order  # rejected by the catalog, for stock

    # Each order went through its one transition exactly once (no duplicated history, hence no
    # duplicated effect such as a second reservation or rejection).
    gate = asyncio.Semaphore(CONCURRENCY)

    async def history(order_id: str) -> list[dict[str, Any]]:
        async with gate:
            items: list[dict[str, Any]] = (await platform.ok("GET", f"/api/v1/orders/{order_id}/history", cast.admin))[
                "items"
            ]
            return items

    histories = dict(zip(orders, await asyncio.gather(*(history(i) for i in orders)), strict=True))
    for order_id, entries in histories.items():
        assert [(h["from"], h["to"]) for h in entries] == [(None, "placed"), ("placed", orders[order_id]["status"])], (
            order_id,
            entries,
        )

    # Ten units reserved, none left, on both catalog replicas; the stock never went below zero.
    async def sold_out_everywhere() -> bool:
        levels = []
        for base in platform.services["catalog"]:
            async with platform.http.get(f"{base}/api/v1/products/{product_id}", headers=as_seller) as response:
                assert response.status == 200
                levels.append((await response.json())["stock"])
        lowest_stock.extend(levels)
        return levels == [0, 0]

    await support.wait_until(sold_out_everywhere, within=30)
    assert min(lowest_stock) >= 0
    status, page = await platform.call(
        "GET", f"/api/v1/orders?provider_id={cast.provider_id}&status=placed", cast.admin
    )
    assert status == 200 and page["items"] == []  # nothing left in a non-terminal state of this stage


async def all_orders_of_provider(platform: Platform, seller: str) -> list[dict[str, Any]]:
    """Every order the provider can see, following the cursor."""
    orders: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        path = "/api/v1/orders?limit=100" + (f"&cursor={quote(cursor, safe='')}" if cursor else "")
        page = await platform.ok("GET", path, seller)
        orders.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return orders
