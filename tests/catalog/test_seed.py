"""`bejo seed` at a small scale: repeatable, browsable by a service started on it, refuses to reseed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiohttp
import pytest
from catalog_harness import catalog_settings
from pymongo import AsyncMongoClient
from support import serve

from bejo_catalog import categories, domain
from bejo_catalog.app import build
from bejo_catalog.seed import generate, seed
from bejo_catalog.seed_tables import PEMDAS
from bejo_contracts.catalog import ProductUpserted
from bejo_contracts.topology import QueueSpec
from bejo_kit.bus import Bus, namespaced, namespaced_spec


def test_generation_is_repeatable_and_valid() -> None:
    now = datetime(2026, 11, 27, tzinfo=UTC)
    first = generate(40, 400, 8, 7, now)
    assert first == generate(40, 400, 8, 7, now)
    assert first != generate(40, 400, 8, 8, now)
    codes = {code for code, _, _ in PEMDAS}
    assert len(codes) == 25 and all(code == "35" or domain.PEMDA_PATTERN.match(code) for code in codes)
    for provider in first.providers:
        assert provider["pemda_code"] in codes and domain.NIB_PATTERN.match(provider["nib"])
        domain.normalize_npwp(provider["npwp"])
        domain.normalize_phone(provider["phone"])
    for product in first.products:
        domain.check_name("name", product["name"])
        domain.check_price(product["price"], product["het"])
        assert product["category"] in categories.BY_ID and product["stock"] >= 0


async def count_messages(amqp_url: str, queue_name: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        queue = await (await connection.channel()).get_queue(queue_name)
        count = 0
        while await queue.get(no_ack=True, fail=False, timeout=5) is not None:
            count += 1
        return count


@pytest.mark.integration
async def test_seed_then_serve(
    amqp_url: str, mongodb_url: str, unique: str, mongo_client: AsyncMongoClient[dict[str, object]]
) -> None:
    settings = catalog_settings(amqp_url, mongodb_url, unique)
    lines: list[str] = []
    # Stand in for the orders service's product queue, to count the seed's announcements.
    announced = QueueSpec(f"announced.{unique}", (ProductUpserted.TYPE,))
    bus = Bus(settings)
    await bus.connect()
    await bus.declare_queue(namespaced_spec(settings, announced))
    try:
        data = await seed(settings, providers=30, products=240, promotions=6, report=lines.append)
        assert data is not None
        # `providers` and `products` count what the public sees; unverified and unlisted ones come on top
        total = len(data.products)
        assert any(f"products: {total}/{total}" in line for line in lines)
        assert any(f"announced: {total}/{total}" in line for line in lines)
        assert not any("warning" in line for line in lines)
        assert await count_messages(settings.amqp_url, namespaced(settings, announced.name)) == total
        assert await seed(settings, providers=30, products=240, report=lines.append) is None
        assert "already holds data" in lines[-1]

        async with serve(build(settings)) as base, aiohttp.ClientSession(base_url=base) as http:

            async def get(path: str, **params: Any) -> Any:
                async with http.get(path, params=params) as resp:
                    assert resp.status == 200
                    return await resp.json()

            verified = {p["_id"] for p in data.providers if p["status"] == "verified"}
            visible = [p for p in data.products if p["status"] == "active" and p["provider_id"] in verified]
            stats = await get("/api/v1/catalog/stats")
            assert (stats["providers"], stats["products"]) == (len(verified), len(visible)) == (30, 240)
            feed = await get("/api/v1/catalog/feed", limit="1000")
            assert [i["seq"] for i in feed["items"]] == list(range(1, len(data.providers) + total + 1))
            word = visible[0]["name"].split()[0]
            found = await get("/api/v1/products", q=word, limit="100")
            expected = {
                p["_id"] for p in visible if word.lower() in domain.tokenize(p["name"] + " " + p["description"])
            }
            assert expected <= {p["id"] for p in found["items"]}
    finally:
        await bus.close()
        await mongo_client.drop_database(settings.database_name)
