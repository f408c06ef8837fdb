"""Stock reservation driven by real order events on the bus, and the no-overselling guarantee."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from catalog_harness import ADMIN, Catalog, StockEvents, order_event, penyedia
from support import wait_until

from bejo_catalog.domain import RequestedLine
from bejo_contracts.orders import OrderCancelled, OrderPlaced, OrderShipped
from bejo_contracts.topology import QueueSpec
from bejo_kit.bus import Bus

pytestmark = pytest.mark.integration


@pytest.fixture
async def bus(catalog: Catalog, unique: str) -> AsyncIterator[tuple[Bus, StockEvents]]:
    bus = Bus(catalog.settings, source="bejo/test-orders")
    events = StockEvents()
    bus.subscribe(QueueSpec(f"probe.{unique}", ("bejo.catalog.stock.*.v1",)), events.handle)
    await bus.connect()
    await bus.start_consuming()
    yield bus, events
    await bus.close()


async def stock_of(catalog: Catalog, product_id: str) -> int:
    product = await catalog.service.store.product(product_id)
    assert product is not None
    return product.stock


async def stocks_are(catalog: Catalog, expected: dict[str, int]) -> bool:
    return {product_id: await stock_of(catalog, product_id) for product_id in expected} == expected


async def test_all_or_nothing_reservation_release_and_redelivery(
    catalog: Catalog, bus: tuple[Bus, StockEvents]
) -> None:
    publisher, events = bus
    await catalog.provider("prv-a")
    kopi = await catalog.product("prv-a", name="Kopi", price=50000, het=None, stock=5)
    teh = await catalog.product("prv-a", name="Teh", price=20000, het=None, stock=2)
    now = datetime.now(UTC)
    status, _ = await catalog.call(
        "POST",
        "/api/v1/promotions",
        headers=penyedia("prv-a"),
        json={
            "name": "Harbolnas",
            "scope": "products",
            "product_ids": [kopi["id"]],
            "discount_kind": "percent",
            "discount_value": 10,
            "free_shipping": True,
            "starts_at": (now.replace(year=now.year - 1)).isoformat(),
            "ends_at": (now.replace(year=now.year + 1)).isoformat(),
        },
    )
    assert status == 201

    # One line cannot be served: nothing is reserved.
    too_much = order_event(OrderPlaced, "ord-1", "prv-a", [(kopi["id"], 3), (teh["id"], 3)])
    await publisher.publish(publisher.envelope(too_much))
    await wait_until(lambda: events.types("ord-1"))
    assert events.types("ord-1") == ["rejected"]
    assert [(r["product_id"], r["code"]) for r in events.last("ord-1")["rejections"]] == [(teh["id"], "out_of_stock")]
    assert (await stock_of(catalog, kopi["id"]), await stock_of(catalog, teh["id"])) == (5, 2)

    placed = publisher.envelope(order_event(OrderPlaced, "ord-2", "prv-a", [(kopi["id"], 3), (teh["id"], 2)]))
    await publisher.publish(placed)
    await wait_until(lambda: events.types("ord-2"))
    reserved = events.last("ord-2")
    assert events.types("ord-2") == ["reserved"]
    assert [
        (x["product_id"], x["quantity"], x["list_price"], x["unit_price"], x["free_shipping"])
        for x in reserved["lines"]
    ] == [
        (kopi["id"], 3, 50000, 45000, True),
        (teh["id"], 2, 20000, 20000, False),
    ]
    assert reserved["total"] == 3 * 45000 + 2 * 20000
    assert reserved["provider_name"] == "CV Sumber Rejeki" and reserved["provider_pkp"] is True
    assert (await stock_of(catalog, kopi["id"]), await stock_of(catalog, teh["id"])) == (2, 0)

    # The same OrderPlaced delivered again has no second effect.
    await publisher.publish(placed)
    cancelled = order_event(OrderCancelled, "ord-2", "prv-a", [(kopi["id"], 3), (teh["id"], 2)], reason="batal")
    await publisher.publish(publisher.envelope(cancelled))
    await wait_until(lambda: "released" in events.types("ord-2"))
    # The release is decided (and announced) first, then the stock follows.
    await wait_until(lambda: stocks_are(catalog, {kopi["id"]: 5, teh["id"]: 2}))
    # ... not even after the release: the record says the order is done.
    await publisher.publish(placed)
    await publisher.publish(publisher.envelope(cancelled))
    await publisher.publish(publisher.envelope(order_event(OrderPlaced, "ord-3", "prv-a", [(teh["id"], 1)])))
    await wait_until(lambda: events.types("ord-3"))
    assert events.types("ord-2") == ["reserved", "released"]
    assert (await stock_of(catalog, kopi["id"]), await stock_of(catalog, teh["id"])) == (5, 1)

    # Shipping makes the reservation final: a later cancel gives nothing back.
    shipped = order_event(OrderShipped, "ord-3", "prv-a", [(teh["id"], 1)], tracking_note="JNE 123")
    await publisher.publish(publisher.envelope(shipped))
    await wait_until(lambda: "committed" in events.types("ord-3"))
    assert (
        await catalog.service.reservations.release("ord-3", "prv-a", [RequestedLine(teh["id"], 1)], pemda="35.15")
        == "committed"
    )
    assert await stock_of(catalog, teh["id"]) == 1
    product = await catalog.service.store.product(teh["id"])
    assert product is not None and product.holds == []


async def test_rejection_reasons_per_line(catalog: Catalog, bus: tuple[Bus, StockEvents]) -> None:
    publisher, events = bus
    await catalog.provider("prv-a")
    await catalog.provider("prv-suspended")
    await catalog.provider("prv-pending", verify=False)
    inactive = await catalog.product("prv-a", name="Map Plastik")
    await catalog.call("DELETE", f"/api/v1/products/{inactive['id']}", headers=penyedia("prv-a"))
    bulk = await catalog.product("prv-a", name="Air Mineral 600ml", min_order_qty=24, stock=100)
    scarce = await catalog.product("prv-a", name="Toner HP 85A", stock=1)
    suspended = await catalog.product("prv-suspended")
    await catalog.call(
        "POST",
        "/api/v1/providers/prv-suspended/suspend",
        json={"reason": "izin dicabut"},
        headers=ADMIN,
    )
    pending = await catalog.product("prv-pending")

    orders = {
        "ord-a": ("prv-a", [("prd-missing", 1), (inactive["id"], 1), (bulk["id"], 12), (scarce["id"], 2)]),
        "ord-s": ("prv-suspended", [(suspended["id"], 1)]),
        "ord-p": ("prv-pending", [(pending["id"], 1)]),
        "ord-x": ("prv-a", [(suspended["id"], 1)]),  # someone else's product
    }
    for order_id, (provider_id, lines) in orders.items():
        await publisher.publish(publisher.envelope(order_event(OrderPlaced, order_id, provider_id, lines)))
    await wait_until(lambda: all(events.types(o) for o in orders))
    codes = {o: [r["code"] for r in events.last(o)["rejections"]] for o in orders}
    assert codes == {
        "ord-a": ["not_found", "inactive", "below_min_qty", "out_of_stock"],
        "ord-s": ["provider_suspended"],
        "ord-p": ["provider_not_verified"],
        "ord-x": ["not_found"],
    }
    assert await stock_of(catalog, bulk["id"]) == 100 and await stock_of(catalog, scarce["id"]) == 1


async def test_cancel_before_placement_leaves_a_tombstone(catalog: Catalog) -> None:
    await catalog.provider("prv-a")
    product = await catalog.product("prv-a", stock=3)
    lines = [RequestedLine(product["id"], 2)]
    assert await catalog.service.reservations.release("ord-late", "prv-a", lines, pemda="35.15") == "released"
    assert await catalog.service.reservations.reserve("ord-late", "prv-a", lines, pemda="35.15") == "released"
    assert await stock_of(catalog, product["id"]) == 3


async def test_interrupted_reservation_resumes_without_double_taking(catalog: Catalog) -> None:
    """A crash after taking one line's stock: the redelivered OrderPlaced finishes the job and
    does not take that line twice (the product's `holds` records the order)."""
    await catalog.provider("prv-a")
    first = await catalog.product("prv-a", stock=5)
    second = await catalog.product("prv-a", stock=5)
    store = catalog.service.store
    await store.reservations.insert_one(
        {"_id": "ord-crash", "state": "reserving", "provider_id": "prv-a", "lines": [], "created_at": datetime.now(UTC)}
    )
    await store.products.update_one({"_id": first["id"]}, {"$inc": {"stock": -2}, "$push": {"holds": "ord-crash"}})
    lines = [RequestedLine(first["id"], 2), RequestedLine(second["id"], 3)]
    assert await catalog.service.reservations.reserve("ord-crash", "prv-a", lines, pemda="35.15") == "reserved"
    assert (await stock_of(catalog, first["id"]), await stock_of(catalog, second["id"])) == (3, 2)


async def test_200_concurrent_reservations_on_stock_10_reserve_exactly_10(catalog: Catalog) -> None:
    await catalog.provider("prv-a")
    product = await catalog.product("prv-a", name="Masker KN95", stock=10)
    outcomes = await asyncio.gather(
        *(
            catalog.service.reservations.reserve(
                f"ord-{uuid.uuid4().hex[:8]}", "prv-a", [RequestedLine(product["id"], 1)], pemda="35.15"
            )
            for _ in range(200)
        )
    )
    assert outcomes.count("reserved") == 10 and outcomes.count("rejected") == 190
    stored = await catalog.service.store.product(product["id"])
    assert stored is not None and stored.stock == 0 and len(stored.holds) == 10
