"""Registration → verification → listing → search, through the HTTP API on the real servers."""

from __future__ import annotations

import gzip

import pytest
from catalog_harness import ADMIN, Catalog, penyedia
from support import bearer, token

from bejo_cli.samples import provider_body

pytestmark = pytest.mark.integration


async def test_registration_verification_listing_and_search(catalog: Catalog) -> None:
    status, registered = await catalog.call(
        "POST", "/api/v1/providers", json=provider_body(), headers=penyedia("prv-sumber")
    )
    assert status == 201, registered
    assert registered["id"] == "prv-sumber" and registered["status"] == "pending"

    product = await catalog.product("prv-sumber", name="Kopi Robusta Dampit 1kg")
    assert product["orderable"] is False and product["effective_price"] == 95000

    # Pending: neither the provider nor its products are public yet.
    assert (await catalog.call("GET", "/api/v1/providers/prv-sumber"))[0] == 404
    assert (await catalog.call("GET", f"/api/v1/products/{product['id']}"))[0] == 404
    assert (await catalog.call("GET", "/api/v1/products", params={"q": "kopi"}))[1]["items"] == []
    status, own = await catalog.call("GET", f"/api/v1/products/{product['id']}", headers=penyedia("prv-sumber"))
    assert status == 200 and own["orderable"] is False

    status, verified = await catalog.call(
        "POST", "/api/v1/providers/prv-sumber/verify", json={"reason": "NIB dan NPWP sesuai"}, headers=ADMIN
    )
    assert status == 200, verified
    assert verified["status"] == "verified" and verified["status_reason"] == "NIB dan NPWP sesuai"

    status, listing = await catalog.call("GET", "/api/v1/providers", params={"pemda_code": "35", "status": "verified"})
    assert status == 200 and [p["id"] for p in listing["items"]] == ["prv-sumber"]
    assert "npwp" not in listing["items"][0] or listing["items"][0]["npwp"] is None

    status, found = await catalog.call("GET", "/api/v1/products", params={"q": "KOPI dampit"})
    assert status == 200 and [p["id"] for p in found["items"]] == [product["id"]]
    # prefix and provider-name matches
    assert [p["id"] for p in (await catalog.call("GET", "/api/v1/products", params={"q": "robus"}))[1]["items"]] == [
        product["id"]
    ]
    by_provider = (await catalog.call("GET", "/api/v1/products", params={"q": "sumber rejeki"}))[1]
    assert [p["id"] for p in by_provider["items"]] == [product["id"]]
    assert (await catalog.call("GET", "/api/v1/products", params={"q": "teh hijau"}))[1]["items"] == []

    # Suspension hides the products at once.
    status, _ = await catalog.call(
        "POST", "/api/v1/providers/prv-sumber/suspend", json={"reason": "NPWP tidak aktif"}, headers=ADMIN
    )
    assert status == 200
    assert (await catalog.call("GET", "/api/v1/products", params={"q": "kopi"}))[1]["items"] == []
    assert (await catalog.call("GET", f"/api/v1/products/{product['id']}"))[0] == 404


async def test_filters_sorting_paging_etag_and_gzip(catalog: Catalog) -> None:
    await catalog.provider("prv-a", name="UD Makmur Jaya", pemda_code="35.78")
    await catalog.provider("prv-b", name="CV Kertas Abadi", pemda_code="35.15")
    prices = [12000, 45000, 30000, 8000]
    coffee = [
        await catalog.product("prv-a", name=f"Kopi Bubuk Nomor {i}", price=p, het=None) for i, p in enumerate(prices)
    ]
    paper = await catalog.product(
        "prv-b", name="Kertas HVS A4 70gsm", category="alat-tulis-kantor.kertas", price=52000, het=None, stock=0
    )

    async def ids(**params: object) -> list[str]:
        status, body = await catalog.call("GET", "/api/v1/products", params={k: str(v) for k, v in params.items()})
        assert status == 200, body
        return [p["id"] for p in body["items"]]

    assert await ids(sort="price_asc") == [
        coffee[3]["id"],
        coffee[0]["id"],
        coffee[2]["id"],
        coffee[1]["id"],
        paper["id"],
    ]
    assert await ids(category="alat-tulis-kantor") == [paper["id"]]
    assert await ids(in_stock="true", sort="price_desc") == [
        coffee[1]["id"],
        coffee[2]["id"],
        coffee[0]["id"],
        coffee[3]["id"],
    ]
    assert await ids(min_price=10000, max_price=40000, sort="price_asc") == [coffee[0]["id"], coffee[2]["id"]]
    assert await ids(provider_id="prv-b") == [paper["id"]]
    assert await ids(region="35.15") == [paper["id"]]  # default region: the provider's pemda
    assert await ids(region="35.78", sort="price_asc", limit=10) == [
        c["id"] for c in sorted(coffee, key=lambda c: c["price"])
    ]

    # Paging with the opaque cursor walks every result once, in order.
    seen, cursor = [], None
    while True:
        params = {"sort": "price_asc", "limit": "2", **({"cursor": cursor} if cursor else {})}
        status, page = await catalog.call("GET", "/api/v1/products", params=params)
        assert status == 200
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == await ids(sort="price_asc")

    async with catalog.api.http.get(
        catalog.api.base + "/api/v1/products", params={"q": "kopi"}, headers={"Accept-Encoding": "gzip"}
    ) as resp:
        assert resp.status == 200 and resp.headers["Content-Encoding"] == "gzip"
        etag = resp.headers["ETag"]
        raw = await resp.read()  # aiohttp decompresses transparently
        assert b"Kopi Bubuk" in raw
    async with catalog.api.http.get(
        catalog.api.base + "/api/v1/products", params={"q": "kopi"}, headers={"If-None-Match": etag}
    ) as resp:
        assert resp.status == 304
    await catalog.product("prv-a", name="Kopi Luwak Premium", price=250000, het=None)
    async with catalog.api.http.get(
        catalog.api.base + "/api/v1/products", params={"q": "kopi"}, headers={"If-None-Match": etag}
    ) as resp:
        assert resp.status == 200 and resp.headers["ETag"] != etag
    async with catalog.api.http.get(
        catalog.api.base + "/api/v1/products",
        params={"q": "kopi"},
        headers={"Accept-Encoding": "gzip"},
        auto_decompress=False,
    ) as resp:
        assert b"Kopi Luwak" in gzip.decompress(await resp.read())


async def test_only_the_penyedia_changes_its_products(catalog: Catalog) -> None:
    await catalog.provider("prv-a")
    await catalog.provider("prv-b")
    product = await catalog.product("prv-a")
    patch = {"price": 90000}
    assert (await catalog.call("PATCH", f"/api/v1/products/{product['id']}", json=patch, headers=penyedia("prv-b")))[
        0
    ] == 404
    pp = bearer(token("pp", "pp-1", satker="dinkes"))
    assert (await catalog.call("PATCH", f"/api/v1/products/{product['id']}", json=patch, headers=pp))[0] == 403
    assert (
        await catalog.call("POST", "/api/v1/providers/prv-a/suspend", json={"reason": "x"}, headers=penyedia("prv-a"))
    )[0] == 403

    status, changed = await catalog.call(
        "PATCH", f"/api/v1/products/{product['id']}", json=patch, headers={**penyedia("prv-a"), "If-Match": '"1"'}
    )
    assert status == 200 and changed["price"] == 90000 and changed["version"] == 2
    status, stale = await catalog.call(
        "PATCH",
        f"/api/v1/products/{product['id']}",
        json={"stock": 1},
        headers={**penyedia("prv-a"), "If-Match": '"1"'},
    )
    assert status == 409 and stale["code"] == "version_conflict"

    status, gone = await catalog.call("DELETE", f"/api/v1/products/{product['id']}", headers=penyedia("prv-a"))
    assert status == 200 and gone["status"] == "inactive" and gone["orderable"] is False
    assert (await catalog.call("GET", f"/api/v1/products/{product['id']}"))[0] == 404
    status, back = await catalog.call("GET", f"/api/v1/products/{product['id']}", headers=penyedia("prv-a"))
    assert status == 200 and back["status"] == "inactive"


async def test_stats_count_verified_providers_and_their_active_products(catalog: Catalog) -> None:
    await catalog.provider("prv-sby", pemda_code="35.78")
    await catalog.provider("prv-sda", pemda_code="35.15")
    await catalog.provider("prv-pending", pemda_code="35.15", verify=False)
    await catalog.product("prv-sby")
    gone = await catalog.product("prv-sby")
    await catalog.product("prv-sda")
    await catalog.product("prv-pending")
    await catalog.call("DELETE", f"/api/v1/products/{gone['id']}", headers=penyedia("prv-sby"))

    status, stats = await catalog.call("GET", "/api/v1/catalog/stats")
    assert status == 200
    assert stats == {
        "providers": 2,
        "products": 2,
        "by_pemda": [
            {"pemda": "35.15", "providers": 1, "products": 1},
            {"pemda": "35.78", "providers": 1, "products": 1},
        ],
    }
    status, sidoarjo = await catalog.call("GET", "/api/v1/catalog/stats", params={"pemda": "35.15"})
    assert sidoarjo["providers"] == 1 and sidoarjo["products"] == 1
