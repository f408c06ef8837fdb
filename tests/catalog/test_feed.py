"""The national e-catalog sync feed: order, resumption, racing sequencers, a writer that died
after its write, and the same changes on the `catalog.sync` exchange."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from catalog_harness import ADMIN, Catalog, fed, penyedia
from support import wait_until

from bejo_catalog.feed import Feed, Sequencer
from bejo_catalog.repository import FEED_PENDING, fed_document
from bejo_catalog.repository import fed as marked
from bejo_contracts.topology import CATALOG_SYNC_EXCHANGE, QueueSpec
from bejo_kit.bus import Bus, IncomingEvent

pytestmark = pytest.mark.integration


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


async def test_full_sync_then_resume_after_an_interrupted_sync(catalog: Catalog) -> None:
    await catalog.provider("prv-a")  # registered (pending: a delete), then verified (an upsert)
    products = [await catalog.product("prv-a", name=f"Beras Premium {i} kg", price=10000 + i) for i in range(5)]
    assert await fed(catalog) >= 6  # the provider and its 5 products at least

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
    await fed(catalog)

    rest, cursor = await read_feed(catalog, saved_cursor, limit=3)
    items = first + rest
    assert [i["seq"] for i in items] == list(range(1, len(items) + 1))  # nothing missing, nothing twice

    # Following from the last cursor: nothing new yet, then exactly the next change.
    assert (await read_feed(catalog, cursor, limit=3))[0] == []
    await catalog.call("PATCH", f"/api/v1/products/{products[2]['id']}", json={"stock": 9}, headers=penyedia("prv-a"))
    assert await fed(catalog) == len(items) + 1
    (latest,), _ = await read_feed(catalog, cursor, limit=3, pages=1)
    assert latest["seq"] == len(items) + 1 and latest["document"]["stock"] == 9
    # Reading again from the start, in other page sizes, gives the same items.
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
    await fed(catalog)
    after_suspension = replay([*items, latest, *(await read_feed(catalog, cursor, limit=50))[0]])
    assert after_suspension[("provider", "prv-b")] is None
    assert synced[("product", gula["id"])] is not None and after_suspension[("product", gula["id"])] is None


async def test_malformed_feed_cursor_is_rejected(catalog: Catalog) -> None:
    for bad in ("not-a-cursor!", "eyJzZXEiOiAiYSJ9"):  # the second is {"seq": "a"}
        status, problem = await catalog.call("GET", "/api/v1/catalog/feed", params={"after": bad})
        assert status == 422 and problem["errors"][0]["field"] == "after"
    status, problem = await catalog.call("GET", "/api/v1/catalog/feed", params={"limit": "5000"})
    assert status == 422 and problem["errors"][0]["field"] == "limit"


async def test_racing_sequencers_write_every_change_once_per_number_without_holes(catalog: Catalog) -> None:
    """Two more sequencers whose leases lapse at once stand for replicas that both believe they
    hold the lease (a stalled holder waking up): the numbers stay 1..head, and every change is fed."""
    store = catalog.service.store
    racers = [Sequencer(store, Feed(store), lease=timedelta(0)) for _ in range(2)]
    ids = [f"x-{n:02d}" for n in range(24)]

    async def write(n: int) -> None:
        provider_id = ids[n]
        doc = {"_id": provider_id, "name": provider_id, "pkp": False, "pemda_code": "35", "status": "pending"}
        await store.providers.insert_one(fed_document({**doc, "version": 1}))
        await store.providers.update_one(
            {"_id": provider_id}, marked({"$set": {"status": "verified"}, "$inc": {"version": 1}})
        )

    async def sequence(racer: Sequencer) -> None:
        for _ in range(40):
            await racer.run_once()
            await asyncio.sleep(0)

    await asyncio.gather(*(write(n) for n in range(24)), *(sequence(r) for r in racers))
    head = await fed(catalog)
    entries = await catalog.service.feed.read(0, 1000)
    assert [e["seq"] for e in entries] == list(range(1, head + 1))
    last = {e["id"]: e for e in entries}
    assert all(last[i]["version"] == 2 and last[i]["document"]["status"] == "verified" for i in ids)


async def test_a_change_whose_writer_died_after_its_write_is_fed(catalog: Catalog) -> None:
    await catalog.provider("prv-a")
    product = await catalog.product("prv-a", stock=4)
    head = await fed(catalog)
    # Another replica wrote (and marked) the product, then died: its sequencer never ran.
    store = catalog.service.store
    await store.products.update_one({"_id": product["id"]}, marked({"$set": {"stock": 40}, "$inc": {"version": 1}}))
    assert await fed(catalog) == head + 1
    (entry,) = await catalog.service.feed.read(head, 10)
    assert entry["id"] == product["id"] and entry["document"]["stock"] == 40 and entry["version"] == 2
    assert await store.products.count_documents({FEED_PENDING: True}) == 0
    # The search model of this replica applied it from the feed.
    assert catalog.service.index.products[product["id"]].doc["stock"] == 40


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
        await fed(catalog)
        feed, _ = await read_feed(catalog, None, limit=100)
        await wait_until(lambda: len({r["seq"] for r in received}) >= len(feed))
    finally:
        await consumer.close()
    by_seq = {r["seq"]: r for r in received}  # at-least-once: a duplicate carries the same seq
    assert [by_seq[i["seq"]]["id"] for i in feed] == [i["id"] for i in feed]
    assert [by_seq[i["seq"]]["op"] for i in feed] == [i["op"] for i in feed]
