"""The national e-catalog sync feed: order, resumption, pages, concurrent writers, recovery, and
the same changes on the `catalog.sync` exchange."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from catalog_harness import ADMIN, Catalog, bind_event_sink, catalog_settings, penyedia
from pymongo import AsyncMongoClient
from support import serve, wait_until

from bejo_catalog.api import SERVICE
from bejo_catalog.app import build
from bejo_catalog.feed import Change, Feed
from bejo_contracts.topology import CATALOG_SYNC_EXCHANGE, QueueSpec
from bejo_kit.bus import Bus, IncomingEvent

pytestmark = pytest.mark.integration

PAGE = 4


@pytest.fixture
async def paged_catalog(
    amqp_url: str, mongodb_url: str, unique: str, mongo_client: AsyncMongoClient[dict[str, object]]
) -> AsyncIterator[Catalog]:
    """A catalog whose feed pages hold 4 changes, so a few changes exercise the page documents."""
    settings = catalog_settings(amqp_url, mongodb_url, unique, feed_page_size=PAGE)
    await bind_event_sink(settings, unique)
    app = build(settings)
    try:
        async with serve(app) as base, aiohttp.ClientSession(base_url=base) as http:
            yield Catalog(http, app[SERVICE], settings)
    finally:
        await mongo_client.drop_database(settings.database_name)


async def read_feed(catalog: Catalog, after: str | None, limit: int, pages: int | None = None) -> tuple[list[Any], str]:
    """Follow the feed from `after` until it is drained (or for `pages` pages); returns items and cursor."""
    items: list[Any] = []
    cursor = after
    while pages is None or pages > 0:
        params = {"limit": str(limit), **({"after": cursor} if cursor else {})}
        status, page = await catalog.call("GET", "/api/v1/catalog/feed", params=params)
        assert status == 200, page
        items += page["items"]
        cursor = page["next_cursor"]
        if not page["items"]:
            break
        if pages is not None:
            pages -= 1
    assert cursor is not None
    return items, cursor


def replay(items: list[Any]) -> dict[tuple[str, str], dict[str, Any] | None]:
    """What a consumer holds after applying the items in order."""
    state: dict[tuple[str, str], dict[str, Any] | None] = {}
    for item in items:
        state[(item["kind"], item["id"])] = item["document"] if item["op"] == "upsert" else None
    return state


async def test_full_sync_then_resume_after_an_interrupted_sync(paged_catalog: Catalog) -> None:
    catalog = paged_catalog
    await catalog.provider("prv-a")  # registered (pending: a delete), then verified (an upsert)
    products = [await catalog.product("prv-a", name=f"Beras Premium {i} kg", price=10000 + i) for i in range(5)]

    # A consumer syncs two small pages, then "crashes", keeping only its last cursor.
    first, saved_cursor = await read_feed(catalog, None, limit=3, pages=2)
    assert [i["seq"] for i in first] == list(range(1, 7))

    # Changes happen while it is down.
    await catalog.call(
        "PATCH", f"/api/v1/products/{products[0]['id']}", json={"price": 9000}, headers=penyedia("prv-a")
    )
    await catalog.call("DELETE", f"/api/v1/products/{products[1]['id']}", headers=penyedia("prv-a"))
    await catalog.provider("prv-b")
    gula = await catalog.product("prv-b", name="Gula Pasir 1 kg")

    rest, cursor = await read_feed(catalog, saved_cursor, limit=3)
    items = first + rest
    assert [i["seq"] for i in items] == list(range(1, len(items) + 1))  # nothing missing, nothing twice

    # Following from the last cursor: nothing new yet, then exactly the next change.
    assert (await read_feed(catalog, cursor, limit=3))[0] == []
    await catalog.call("PATCH", f"/api/v1/products/{products[2]['id']}", json={"stock": 9}, headers=penyedia("prv-a"))
    (latest,), _ = await read_feed(catalog, cursor, limit=3, pages=1)
    assert latest["seq"] == len(items) + 1 and latest["document"]["stock"] == 9

    # Full pages are stored as page documents once the feed tailer saw them complete.
    await wait_until(lambda: catalog.service.applied_seq >= latest["seq"])
    pages = catalog.service.store.feed_pages

    async def all_full_pages_written() -> bool:
        return await pages.count_documents({}) == latest["seq"] // PAGE

    await wait_until(all_full_pages_written)
    # Reading through the page documents gives the same items as the entries did.
    assert (await read_feed(catalog, None, limit=7))[0] == [*items, latest]

    # The replica's copy equals what the public API says.
    synced = replay([*items, latest])
    assert synced[("product", products[1]["id"])] is None  # deactivated: deleted from the public catalog
    assert synced[("product", products[0]["id"])]["price"] == 9000  # type: ignore[index]
    assert synced[("provider", "prv-b")]["status"] == "verified"  # type: ignore[index]
    public = (await catalog.call("GET", "/api/v1/products", params={"limit": "100"}))[1]["items"]
    assert {p["id"] for p in public} == {k[1] for k, v in synced.items() if k[0] == "product" and v is not None}
    # Suspension deletes the provider and its products from the public catalog.
    await catalog.call("POST", "/api/v1/providers/prv-b/suspend", json={"reason": "izin dicabut"}, headers=ADMIN)
    after_suspension = replay([*items, latest, *(await read_feed(catalog, cursor, limit=50))[0]])
    assert after_suspension[("provider", "prv-b")] is None
    assert synced[("product", gula["id"])] is not None and after_suspension[("product", gula["id"])] is None


async def test_malformed_feed_cursor_is_rejected(catalog: Catalog) -> None:
    for bad in ("not-a-cursor!", "eyJzZXEiOiAiYSJ9"):  # the second is {"seq": "a"}
        status, problem = await catalog.call("GET", "/api/v1/catalog/feed", params={"after": bad})
        assert status == 422 and problem["errors"][0]["field"] == "after"
    status, problem = await catalog.call("GET", "/api/v1/catalog/feed", params={"limit": "5000"})
    assert status == 422 and problem["errors"][0]["field"] == "limit"


async def test_concurrent_writers_get_distinct_gapless_numbers(catalog: Catalog) -> None:
    """Two Feed instances stand for two replicas appending at the same time."""
    store = catalog.service.store
    replicas = [catalog.service.feed, Feed(store)]

    async def write(feed: Feed, n: int) -> list[int]:
        return await feed.append([Change("provider", f"x-{n}", 1, {"status": "pending"})])

    results = await asyncio.gather(*(write(replicas[n % 2], n) for n in range(24)))
    seqs = sorted(s for r in results for s in r)
    assert seqs == list(range(1, 25))
    assert await Feed(store).find_head() == 24


async def test_a_change_whose_feed_entry_was_lost_is_recovered(catalog: Catalog) -> None:
    await catalog.provider("prv-a")
    product = await catalog.product("prv-a", stock=4)
    service = catalog.service
    head = await service.feed.find_head()
    # The writer died after its state write and before its feed append.
    await service.feed.intend([("product", product["id"])])
    await service.store.products.update_one(product["id"], {"$set": {"stock": 40}, "$inc": {"version": 1}})
    assert await service.recover_intents(timedelta(0)) == 1
    (entry,) = await service.feed.read(head, 10)
    assert entry["id"] == product["id"] and entry["document"]["stock"] == 40 and entry["version"] == 2
    assert await service.store.feed_pending.count_documents({}) == 0


async def test_changes_are_published_to_the_catalog_sync_exchange(catalog: Catalog, unique: str) -> None:
    received: list[dict[str, Any]] = []

    async def collect(event: IncomingEvent) -> None:
        received.append(event.envelope.data)

    consumer = Bus(catalog.settings, source="bejo/test-national-catalog")
    consumer.subscribe(
        QueueSpec(f"ecatalog.{unique}", ("bejo.catalog.sync.#",)), collect, exchange=CATALOG_SYNC_EXCHANGE
    )
    await consumer.connect()
    await consumer.start_consuming()
    try:
        await catalog.provider("prv-a")
        await catalog.product("prv-a", name="Kursi Lipat Chitose")
        feed, _ = await read_feed(catalog, None, limit=100)
        await wait_until(lambda: len({r["seq"] for r in received}) >= len(feed))
    finally:
        await consumer.close()
    by_seq = {r["seq"]: r for r in received}  # at-least-once: a duplicate carries the same seq
    assert [by_seq[i["seq"]]["id"] for i in feed] == [i["id"] for i in feed]
    assert [by_seq[i["seq"]]["op"] for i in feed] == [i["op"] for i in feed]
