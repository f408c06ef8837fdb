"""Promotions change the effective price inside their window only (Asia/Jakarta times)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from catalog_harness import Catalog, penyedia

pytestmark = pytest.mark.integration


def window(start: timedelta, end: timedelta) -> dict[str, str]:
    now = datetime.now(UTC)
    return {"starts_at": (now + start).isoformat(), "ends_at": (now + end).isoformat()}


async def promote(catalog: Catalog, provider_id: str, **fields: Any) -> dict[str, Any]:
    status, body = await catalog.call("POST", "/api/v1/promotions", json=fields, headers=penyedia(provider_id))
    assert status == 201, body
    return dict(body)


async def test_effective_price_follows_the_promotion_window(catalog: Catalog) -> None:
    await catalog.provider("prv-a")
    kopi = await catalog.product("prv-a", name="Kopi Arabika Ijen", price=100000, het=None)
    teh = await catalog.product("prv-a", name="Teh Hitam Wonosari", price=40000, het=None)
    hour = timedelta(hours=1)

    await promote(
        catalog,
        "prv-a",
        name="Sudah lewat",
        scope="products",
        product_ids=[kopi["id"]],
        discount_kind="percent",
        discount_value=50,
        **window(-2 * hour, -hour),
    )
    await promote(
        catalog,
        "prv-a",
        name="Belum mulai",
        scope="products",
        product_ids=[kopi["id"]],
        discount_kind="fixed",
        discount_value=60000,
        **window(hour, 2 * hour),
    )
    running = await promote(
        catalog,
        "prv-a",
        name="Harbolnas 12.12",
        scope="products",
        product_ids=[kopi["id"]],
        discount_kind="percent",
        discount_value=20,
        **window(-hour, hour),
    )
    store_wide = await promote(
        catalog,
        "prv-a",
        name="Gratis ongkir se-toko",
        scope="provider",
        discount_kind="fixed",
        discount_value=5000,
        free_shipping=True,
        **window(-hour, hour),
    )
    assert running["starts_at"].endswith("+07:00")  # shown in Asia/Jakarta time

    status, body = await catalog.call("GET", f"/api/v1/products/{kopi['id']}")
    assert status == 200
    # The best single running promotion wins (20% beats Rp 5,000); free shipping from any of them.
    assert (body["price"], body["effective_price"], body["promotion_id"], body["free_shipping"]) == (
        100000,
        80000,
        running["id"],
        True,
    )
    teh_now = (await catalog.call("GET", f"/api/v1/products/{teh['id']}"))[1]
    assert (teh_now["effective_price"], teh_now["promotion_id"]) == (35000, store_wide["id"])

    # Search filters on the effective price, and shows it.
    found = (await catalog.call("GET", "/api/v1/products", params={"max_price": "85000", "sort": "price_asc"}))[1]
    assert [(p["id"], p["effective_price"]) for p in found["items"]] == [(teh["id"], 35000), (kopi["id"], 80000)]

    active = (await catalog.call("GET", "/api/v1/promotions", params={"active": "true"}))[1]["items"]
    assert {p["name"] for p in active} == {"Harbolnas 12.12", "Gratis ongkir se-toko"}
    inactive = (await catalog.call("GET", "/api/v1/promotions", params={"active": "false"}))[1]["items"]
    assert {p["name"] for p in inactive} == {"Sudah lewat", "Belum mulai"}


async def test_wall_clock_times_without_offset_are_jakarta_time(catalog: Catalog) -> None:
    await catalog.provider("prv-a")
    product = await catalog.product("prv-a")
    promotion = await promote(
        catalog,
        "prv-a",
        name="Harbolnas",
        scope="products",
        product_ids=[product["id"]],
        discount_kind="none",
        free_shipping=True,
        starts_at="2026-12-12T00:00:00",
        ends_at="2026-12-13T00:00:00",
    )
    assert promotion["starts_at"] == "2026-12-12T00:00:00+07:00"
    stored = await catalog.service.store.promotions.find_one({"_id": promotion["id"]})
    assert stored is not None and stored["starts_at"] == datetime(2026, 12, 11, 17, 0, tzinfo=UTC)


async def test_a_penyedia_promotes_only_its_own_products(catalog: Catalog) -> None:
    await catalog.provider("prv-a")
    await catalog.provider("prv-b")
    theirs = await catalog.product("prv-b")
    status, problem = await catalog.call(
        "POST",
        "/api/v1/promotions",
        headers=penyedia("prv-a"),
        json={
            "name": "Curang",
            "scope": "products",
            "product_ids": [theirs["id"]],
            "discount_kind": "percent",
            "discount_value": 90,
            **window(timedelta(0), timedelta(hours=1)),
        },
    )
    assert status == 422 and problem["errors"][0]["field"] == "product_ids.0"
    assert (await catalog.call("GET", f"/api/v1/products/{theirs['id']}"))[1]["effective_price"] == theirs["price"]
