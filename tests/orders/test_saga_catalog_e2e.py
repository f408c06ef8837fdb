"""The checkout saga end to end with the REAL catalog service in-process, on the real bus and store.

Provider and product are created through the catalog's API; orders are placed through the orders
API; stock is reserved and released by the catalog's consumers reacting to the orders' events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
import support
from orders_harness import PEMDA, Harness, key, start_harness

from bejo_catalog.app import build as build_catalog
from bejo_catalog.settings import CatalogSettings
from bejo_cli.samples import product_body, provider_body

pytestmark = pytest.mark.e2e


@dataclass
class Saga:
    orders: Harness
    catalog: str

    async def create_product(self, provider_id: str, stock: int, price: int = 25_000) -> str:
        h = self.orders
        seller = h.seller(provider_id)
        provider = provider_body(name=f"CV {provider_id}", pemda_code=PEMDA, email=f"{provider_id}@example.id")
        status, body, _ = await h.call("POST", f"{self.catalog}/api/v1/providers", seller, provider)
        assert status == 201, body
        admin = h.auth("admin", "biro-pbj", pemda=PEMDA)
        status, body, _ = await h.call(
            "POST", f"{self.catalog}/api/v1/providers/{provider_id}/verify", admin, {"reason": "dokumen sesuai"}
        )
        assert status == 200, body
        product = product_body(
            name="Air Mineral 600ml (dus)",
            category=await self.a_category(),
            unit="dus",
            price=price,
            stock=stock,
            het=None,
        )
        status, body, _ = await h.call("POST", f"{self.catalog}/api/v1/products", seller, product)
        assert status == 201, body
        product_id: str = body["id"]

        async def orderable() -> bool:  # the orders service learnt it from ProductUpserted
            found = await h.stored_product(product_id)
            return bool(found and found["snapshot"]["orderable"])

        await support.wait_until(orderable)
        return product_id

    async def a_category(self) -> str:
        status, body, _ = await self.orders.call("GET", f"{self.catalog}/api/v1/categories", {})
        assert status == 200
        leaves = [c["id"] for c in body["items"] if c["parent_id"] is not None]
        return str(leaves[0])

    async def stock(self, product_id: str, provider_id: str) -> int:
        seller = self.orders.seller(provider_id)
        status, body, _ = await self.orders.call("GET", f"{self.catalog}/api/v1/products/{product_id}", seller)
        assert status == 200, body
        return int(body["stock"])

    async def wait_stock(self, product_id: str, provider_id: str, expected: int) -> None:
        async def reached() -> bool:
            return await self.stock(product_id, provider_id) == expected

        await support.wait_until(reached)


@pytest.fixture
async def saga(amqp_url: str, mongodb_url: str, unique: str, request: pytest.FixtureRequest) -> AsyncIterator[Saga]:
    catalog_settings = support.service_settings(
        CatalogSettings, amqp_url=amqp_url, mongodb_url=mongodb_url, namespace=unique
    )
    async with (
        support.run_apps([support.AppSpec("catalog", build_catalog, catalog_settings)]) as running,
        start_harness(amqp_url, mongodb_url, unique, **getattr(request, "param", {})) as orders,
    ):
        yield Saga(orders=orders, catalog=running.url("catalog"))


async def test_flash_sale_200_checkouts_for_10_units(saga: Saga) -> None:
    h = saga.orders
    product_id = await saga.create_product("prov-flash", stock=10)
    buyers = [h.auth("pp", f"pp-{n}", satker="dinkes") for n in range(200)]
    stock_seen: list[int] = []
    placing = asyncio.gather(*(h.place([(product_id, 1)], key(), headers=buyer) for buyer in buyers))

    async def watch_stock() -> None:
        while not placing.done():
            stock_seen.append(await saga.stock(product_id, "prov-flash"))
            await asyncio.sleep(0.05)

    _, results = await asyncio.gather(watch_stock(), placing)
    assert [status for status, _ in results] == [201] * 200
    order_ids = [body["orders"][0]["id"] for _, body in results]
    admin = h.auth("admin", "biro", pemda="35")

    def outcomes() -> dict[str, str] | None:
        """Each order's saga outcome, from the orders service's own events, once all are known."""
        outcome = {e.subject: e.type.split(".")[3] for e in h.seen if e.type.split(".")[3] in ("reserved", "rejected")}
        return outcome if all(oid in outcome for oid in order_ids) else None

    async def sample_stock() -> None:
        while outcomes() is None:
            stock_seen.append(await saga.stock(product_id, "prov-flash"))
            await asyncio.sleep(0.1)

    await asyncio.wait_for(sample_stock(), timeout=120)
    counts: dict[str, int] = {}
    for oid in order_ids:
        status = (await h.order(oid, admin))["status"]
        counts[status] = counts.get(status, 0) + 1
    assert counts == {"reserved": 10, "rejected": 190}
    for oid in order_ids:  # every order's audit trail is complete
        status, history, _ = await h.call("GET", f"/api/v1/orders/{oid}/history", admin)
        steps = [(e["from"], e["to"]) for e in history["items"]]
        assert steps in ([(None, "placed"), ("placed", "reserved")], [(None, "placed"), ("placed", "rejected")])
    assert min(stock_seen) >= 0
    assert await saga.stock(product_id, "prov-flash") == 0


async def test_cancellation_and_ppk_rejection_release_the_stock(saga: Saga) -> None:
    h = saga.orders
    product_id = await saga.create_product("prov-a", stock=10)

    _, first = await h.place([(product_id, 3)], key())
    cancelled = first["orders"][0]["id"]
    await h.wait_status(cancelled, "reserved")
    await saga.wait_stock(product_id, "prov-a", 7)
    assert (await h.act(cancelled, "cancel", h.pp, reason="salah jumlah"))[0] == 200
    await saga.wait_stock(product_id, "prov-a", 10)

    _, second = await h.place([(product_id, 4)], key())
    rejected = second["orders"][0]["id"]
    await h.wait_status(rejected, "reserved")
    await saga.wait_stock(product_id, "prov-a", 6)
    assert (await h.act(rejected, "reject", h.ppk, reason="anggaran belum tersedia"))[0] == 200
    await saga.wait_stock(product_id, "prov-a", 10)

    status, too_many = await h.place([(product_id, 11)], key())
    assert status == 201
    refused = await h.wait_status(too_many["orders"][0]["id"], "rejected")
    assert "out_of_stock" in refused["reason"]
    assert await saga.stock(product_id, "prov-a") == 10

    for oid in (cancelled, rejected):
        status, history, _ = await h.call("GET", f"/api/v1/orders/{oid}/history", h.pp)
        assert [e["to"] for e in history["items"]][:2] == ["placed", "reserved"]
        assert history["items"][-1]["reason"]


async def test_expiry_releases_the_stock(saga: Saga) -> None:
    h = saga.orders
    product_id = await saga.create_product("prov-b", stock=5)
    _, checkout = await h.place([(product_id, 5)], key())
    oid = checkout["orders"][0]["id"]
    reserved = await h.wait_status(oid, "reserved")
    await saga.wait_stock(product_id, "prov-b", 0)
    # expire by the test's clock, just past the deadline, rather than racing a short real timeout
    due = datetime.fromisoformat(reserved["approval_due_at"])
    assert await h.services[0].transitions.expire_due(due + timedelta(seconds=1)) == 1
    await h.wait_status(oid, "expired")
    await saga.wait_stock(product_id, "prov-b", 5)


async def test_shipping_commits_the_reservation_through_to_completed(saga: Saga) -> None:
    h = saga.orders
    product_id = await saga.create_product("prov-c", stock=4)
    _, checkout = await h.place([(product_id, 2)], key())
    oid = checkout["orders"][0]["id"]
    await h.wait_status(oid, "reserved")
    for action, who, body in (
        ("approve", h.ppk, {}),
        ("accept", h.seller("prov-c"), {}),
        ("ship", h.seller("prov-c"), {"tracking_note": "kurir internal"}),
        ("receive", h.ppk, {}),
    ):
        status, result = await h.act(oid, action, who, **body)
        assert status == 200, result
    assert result["bast_number"].startswith(f"BAST/{PEMDA}/")
    assert await saga.stock(product_id, "prov-c") == 2
