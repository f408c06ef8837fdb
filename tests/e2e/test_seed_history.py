"""`bejo seed --history`: the plan is the seed's table, and after driving it through the sagas the
services' public figures show exactly that table."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

import aio_pika
import pytest

from bejo_catalog.seed import generate
from bejo_catalog.seed_tables import PEMDAS
from bejo_cli.history import ORDERS, VALUE, Product, Refused, make_plan, run, year_ending
from bejo_gateway.stats import CatalogStats, OrderStats, StatsQuery, compose

TODAY = date(2026, 12, 1)


def catalog_products(providers: int, products: int) -> list[Product]:
    data = generate(providers, products, 0, 20211130, datetime(2026, 12, 1, tzinfo=UTC))
    verified = {p["_id"]: p for p in data.providers if p["status"] == "verified"}
    return [
        Product(p["_id"], p["provider_id"], verified[p["provider_id"]]["name"], p["category"], p["price"],
                p["min_order_qty"], tuple(p["regions"]), p["stock"])
        for p in data.products
        if p["status"] == "active" and p["provider_id"] in verified and p["stock"] >= p["min_order_qty"]
    ]  # fmt: skip


def test_the_full_plan_is_the_programs_table() -> None:
    start, end = year_ending(TODAY)
    assert (start, end) == (date(2025, 12, 1), date(2026, 11, 30))
    plan = make_plan(
        catalog_products(1659, 29477), [(c, w) for c, _, w in PEMDAS], orders=ORDERS, value=VALUE, start=start, end=end
    )
    table = plan.table()
    assert table["orders"] == 13_701
    assert abs(table["transaction_value"] - 35_800_000_000) < 1_000_000  # Rp 35,8 miliar
    assert table["participating_pemda"] == 24 and "35" in table["by_pemda"]  # 24 pemkab/pemkot and the province
    assert next(iter(table["by_category"])) == "makanan-minuman"  # food and drink is the largest category
    busiest = Counter(o.day for o in plan.orders).most_common(1)[0][0]
    assert busiest == date(2025, 12, 12)  # Harbolnas 12-12
    assert all(start <= o.day <= end for o in plan.orders)
    assert all(o.value <= (45_000_000 if o.method == "kkpd" else 200_000_000) for o in plan.orders)


@pytest.mark.e2e
async def test_history_through_the_sagas_reproduces_its_table(amqp_url: str, mongodb_url: str, unique: str) -> None:
    lines: list[str] = []
    result: dict[str, Any] = await run(
        orders=30,
        value=80_000_000,
        today=TODAY,
        namespace=f"t{unique}.",
        database_suffix=f"_h{unique}",
        catalog_size=(30, 400, 0),
        report=lines.append,
        concurrency=8,
    )
    plan, stats = result["plan"], result["stats"]
    assert stats["orders"] == plan["orders"] == 30
    assert stats["transaction_value"] == plan["transaction_value"]
    assert {r["pemda"]: (r["orders"], r["transaction_value"]) for r in stats["by_pemda"]} == plan["by_pemda"]
    assert {r["period"]: (r["orders"], r["transaction_value"]) for r in stats["by_period"]} == plan["by_period"]
    assert {c["category"]: c["transaction_value"] for c in stats["by_category"]} == plan["by_category"]
    assert any("orders/s" in line for line in lines)  # progress with its rate
    # the gateway's public figures: 24 regencies/cities, and the catalog's verified providers and listed products
    catalog = CatalogStats.model_validate(result["catalog_stats"])
    public = compose(catalog, OrderStats.model_validate(stats), StatsQuery(), datetime.now(UTC))
    assert public.participating_pemda == plan["participating_pemda"] == 24
    assert (public.providers, public.products) == (30, 400)
    assert public.by_category[0].category == next(iter(plan["by_category"]))


async def test_history_refuses_while_the_services_consume(amqp_url: str, unique: str) -> None:
    """Running services would take half of the events under today's clock: it must not start."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"t{unique}.orders.catalog-events", auto_delete=True)

        async def take(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.ack()

        await queue.consume(take)
        with pytest.raises(Refused, match="services are running"):
            await run(orders=1, value=1_000_000, namespace=f"t{unique}.", report=lambda _: None)


async def test_history_refuses_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEJO_ENV", "production")
    with pytest.raises((Refused, ValueError)):
        await run(orders=1, value=1_000_000, report=lambda _: None)
