"""Two catalog replicas (two `build(settings)` apps with the same settings: same database, competing
consumers on the same queues, both running the sequencer, the feed tail and the sync publisher)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from catalog_harness import (
    ADMIN,
    Catalog,
    StockEvents,
    bind_event_sink,
    catalog_settings,
    fed,
    order_event,
    penyedia,
)
from support import Api, AppSpec, run_apps, wait_until

from bejo_catalog.api import SERVICE
from bejo_catalog.app import build
from bejo_cli.samples import provider_body
from bejo_contracts.orders import OrderCancelled, OrderPlaced
from bejo_contracts.topology import QueueSpec
from bejo_kit.bus import Bus

pytestmark = pytest.mark.integration


@pytest.fixture
async def replicas(amqp_url: str, mongodb_url: str, unique: str) -> AsyncIterator[tuple[Catalog, Catalog]]:
    settings = catalog_settings(amqp_url, mongodb_url, unique)
    await bind_event_sink(settings, unique)
    async with run_apps([AppSpec("catalog", build, settings, replicas=2)]) as running, aiohttp.ClientSession() as http:
        first, second = (
            Catalog(Api(http, url), app[SERVICE], settings)
            for url, app in zip(running.urls["catalog"], running.apps["catalog"], strict=True)
        )
        yield first, second


def counting(catalog: Catalog, method: str) -> Counter[str]:
    """Count the calls the consumers make to a reservation use case (looked up per call)."""
    calls: Counter[str] = Counter()
    original: Callable[..., Awaitable[str]] = getattr(catalog.service.reservations, method)

    async def counted(*args: Any, **kwargs: Any) -> str:
        calls[method] += 1
        return await original(*args, **kwargs)

    setattr(catalog.service.reservations, method, counted)
    return calls


async def stock_and_holds(catalog: Catalog, product_id: str, stock: int, holds: int) -> bool:
    stored = await catalog.service.store.product(product_id)
    assert stored is not None and stored.stock >= 0
    return bool(stored.stock == stock and len(stored.holds) == holds)


async def test_flash_sale_over_both_replicas_reserves_exactly_the_stock_once_per_order(
    replicas: tuple[Catalog, Catalog], unique: str
) -> None:
    """Harbolnas: 200 buyers, 10 units, every OrderPlaced delivered twice, both replicas consuming."""
    a, b = replicas
    await a.provider("prv-a")
    product = await b.product("prv-a", name="Masker KN95", stock=10)
    handled = [counting(a, "reserve"), counting(b, "reserve")]
    orders = [f"ord-{n:03d}" for n in range(200)]
    publisher = Bus(a.settings, source="bejo/test-orders")
    events = StockEvents()
    publisher.subscribe(QueueSpec(f"probe.{unique}", ("bejo.catalog.stock.*.v1",)), events.handle)
    await publisher.connect()
    await publisher.start_consuming()
    try:
        placed = [
            publisher.envelope(order_event(OrderPlaced, order_id, "prv-a", [(product["id"], 1)])) for order_id in orders
        ]
        await asyncio.gather(*(publisher.publish(envelope) for envelope in placed + placed))
        await wait_until(
            lambda: all(events.types(o) for o in orders) and sum(h["reserve"] for h in handled) == 400, within=60
        )
        decisions = Counter(events.types(o)[0] for o in orders)
        assert decisions == {"reserved": 10, "rejected": 190}
        assert all(len(events.types(o)) == 1 for o in orders)  # the duplicates decided nothing twice
        assert all(h["reserve"] > 0 for h in handled)  # both replicas took part
        await wait_until(lambda: stock_and_holds(a, product["id"], 0, 10))

        # Every winner cancels, each cancellation delivered twice: the stock comes back exactly once.
        winners = [o for o in orders if events.types(o) == ["reserved"]]
        cancelled = [
            publisher.envelope(order_event(OrderCancelled, o, "prv-a", [(product["id"], 1)], reason="batal"))
            for o in winners
        ]
        await asyncio.gather(*(publisher.publish(envelope) for envelope in cancelled + cancelled))
        await wait_until(lambda: all(events.types(o) == ["reserved", "released"] for o in winners))
        # Each release is decided (and announced) first, then its stock comes back.
        await wait_until(lambda: stock_and_holds(a, product["id"], 10, 0))
        stored = await a.service.store.product(product["id"])
        assert stored is not None and stored.stock == 10 and stored.holds == []
    finally:
        await publisher.close()
    # Both replicas' search models end with the stock the store holds.
    await fed(a)
    await fed(b)
    assert a.service.index.products[product["id"]].doc["stock"] == 10
    assert b.service.index.products[product["id"]].doc["stock"] == 10


async def test_writes_on_one_replica_are_searchable_and_fed_on_the_other(replicas: tuple[Catalog, Catalog]) -> None:
    a, b = replicas
    await a.provider("prv-a")
    kopi = await a.product("prv-a", name="Kopi Arabika Ijen 250 gr")

    async def found_on(replica: Catalog, q: str, **expected: Any) -> bool:
        status, page = await replica.call("GET", "/api/v1/products", params={"q": q})
        assert status == 200
        return any(p["id"] == kopi["id"] and all(p[k] == v for k, v in expected.items()) for p in page["items"])

    await wait_until(lambda: found_on(b, "arabika"))
    await b.call("PATCH", f"/api/v1/products/{kopi['id']}", json={"price": 42000}, headers=penyedia("prv-a"))
    await wait_until(lambda: found_on(a, "arabika", price=42000))
    await b.call("POST", "/api/v1/providers/prv-a/suspend", json={"reason": "izin dicabut"}, headers=ADMIN)
    await wait_until(lambda: not_found(a, "arabika"))

    head = await fed(a)
    assert head == await fed(b)
    feeds = [(await r.call("GET", "/api/v1/catalog/feed", params={"limit": "1000"}))[1]["items"] for r in (a, b)]
    assert feeds[0] == feeds[1] and [i["seq"] for i in feeds[0]] == list(range(1, head + 1))


async def not_found(replica: Catalog, q: str) -> bool:
    status, page = await replica.call("GET", "/api/v1/products", params={"q": q})
    return status == 200 and page["items"] == []


async def test_racing_user_commands_through_both_replicas(replicas: tuple[Catalog, Catalog]) -> None:
    a, b = replicas
    await a.provider("prv-a")
    product = await a.product("prv-a", stock=5)

    # Two edits of the same version (If-Match), one through each replica: exactly one wins.
    async def edit(replica: Catalog, price: int) -> int:
        status, _ = await replica.call(
            "PATCH",
            f"/api/v1/products/{product['id']}",
            json={"price": price},
            headers={**penyedia("prv-a"), "If-Match": f'"{product["version"]}"'},
        )
        return status

    assert sorted(await asyncio.gather(edit(a, 90000), edit(b, 91000))) == [200, 409]

    # Two edits without If-Match do not overwrite each other's fields.
    async def patch(replica: Catalog, body: dict[str, Any]) -> int:
        return (await replica.call("PATCH", f"/api/v1/products/{product['id']}", json=body, headers=penyedia("prv-a")))[
            0
        ]

    assert await asyncio.gather(patch(a, {"stock": 77}), patch(b, {"name": "Kopi Lanang"})) == [200, 200]
    _, now = await a.call("GET", f"/api/v1/products/{product['id']}")
    assert (now["stock"], now["name"], now["version"]) == (77, "Kopi Lanang", product["version"] + 3)

    # The same provider registered through both replicas at once: one 201, one 409.
    async def register(replica: Catalog) -> int:
        body = provider_body(name="CV Kembar")
        return (await replica.call("POST", "/api/v1/providers", json=body, headers=penyedia("prv-twin")))[0]

    assert sorted(await asyncio.gather(register(a), register(b))) == [201, 409]
    # Verified through both replicas at once: one 200, one 409 (already verified).
    verify = {"json": {"reason": "dokumen lengkap"}, "headers": ADMIN}
    results = await asyncio.gather(*(r.call("POST", "/api/v1/providers/prv-twin/verify", **verify) for r in (a, b)))
    assert sorted(status for status, _ in results) == [200, 409]
