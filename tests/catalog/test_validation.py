"""Bad input gets a 4xx problem+json naming the field, never a 500 and never silent acceptance."""

from __future__ import annotations

from typing import Any

import pytest
from catalog_harness import ADMIN, Catalog, penyedia

from bejo_cli.samples import product_body, provider_body

pytestmark = pytest.mark.integration

PRODUCT_CASES = [
    ({"price": -5000}, "price"),
    ({"price": 0}, "price"),
    ({"price": 95000.5}, "price"),
    ({"price": 130000, "het": 120000}, "price"),
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "x" * 500}, "name"),
    ({"category": "senjata-api"}, "category"),
    ({"stock": -1}, "stock"),
    ({"min_order_qty": 0}, "min_order_qty"),
    ({"regions": ["jatim"]}, "regions"),
    ({"images": ["ftp://x"]}, "images"),
    ({"colour": "merah"}, "colour"),
]

PROVIDER_CASES = [
    ({"nib": "12345"}, "nib"),
    ({"npwp": "01-234-567"}, "npwp"),
    ({"pemda_code": "3515"}, "pemda_code"),
    ({"email": "bukan-email"}, "email"),
    ({"phone": "12345"}, "phone"),
    ({"legal_entity": "Perorangan"}, "legal_entity"),
    ({"name": "x" * 201}, "name"),
]

SEARCH_CASES = [
    ({"limit": "10000"}, "limit"),
    ({"limit": "0"}, "limit"),
    ({"cursor": "%%%garbage"}, "cursor"),
    ({"cursor": "eyJzb3J0IjogIm5ld2VzdCJ9"}, "cursor"),  # {"sort": "newest"}: no key
    ({"sort": "cheapest"}, "sort"),
    ({"min_price": "-1"}, "min_price"),
    ({"min_price": "5000", "max_price": "100"}, "min_price"),
    ({"category": "tidak-ada"}, "category"),
    ({"region": "Surabaya"}, "region"),
    ({"in_stock": "mungkin"}, "in_stock"),
]


def field_of(problem: dict[str, Any]) -> str:
    return str(problem["errors"][0]["field"])


async def test_bad_products_are_rejected_naming_the_field(catalog: Catalog) -> None:
    await catalog.provider("prv-a")
    for change, field in PRODUCT_CASES:
        status, problem = await catalog.call(
            "POST", "/api/v1/products", json=product_body(**change), headers=penyedia("prv-a")
        )
        assert status == 422, (change, problem)
        assert field_of(problem).split(".")[0] == field, (change, problem)
    product = await catalog.product("prv-a", price=95000, het=120000)
    patches = [
        ({"price": 150000}, "price"),
        ({"het": 50000}, "price"),
        ({"name": None}, "name"),
        ({"images": ["ftp://x"]}, "images"),
        ({"regions": ["jatim"]}, "regions"),
    ]
    for change, field in patches:
        status, problem = await catalog.call(
            "PATCH", f"/api/v1/products/{product['id']}", json=change, headers=penyedia("prv-a")
        )
        assert status == 422, (change, problem)
        assert field_of(problem).split(".")[0] == field, (change, problem)
    status, problem = await catalog.call(
        "PATCH", f"/api/v1/products/{product['id']}", json={"stock": 1}, headers={**penyedia("prv-a"), "If-Match": "v1"}
    )
    assert status == 422 and field_of(problem) == "If-Match"
    # Nothing of the above changed the product.
    assert (await catalog.call("GET", f"/api/v1/products/{product['id']}"))[1]["version"] == 1


async def test_bad_providers_are_rejected_naming_the_field(catalog: Catalog) -> None:
    for change, field in PROVIDER_CASES:
        status, problem = await catalog.call(
            "POST", "/api/v1/providers", json=provider_body(**change), headers=penyedia("prv-new")
        )
        assert status == 422, (change, problem)
        assert field_of(problem) == field, (change, problem)
    await catalog.provider("prv-new", verify=False, npwp="0123456789012345", phone="0315550100")
    status, problem = await catalog.call("POST", "/api/v1/providers", json=provider_body(), headers=penyedia("prv-new"))
    assert status == 409 and problem["code"] == "already_registered"
    admin = ADMIN
    status, problem = await catalog.call(
        "POST", "/api/v1/providers/prv-new/suspend", json={"reason": ""}, headers=admin
    )
    assert status == 422 and field_of(problem) == "reason"
    await catalog.call("POST", "/api/v1/providers/prv-new/verify", json={}, headers=admin)
    status, problem = await catalog.call("POST", "/api/v1/providers/prv-new/verify", json={}, headers=admin)
    assert status == 409 and problem["code"] == "illegal_transition"
    status, _ = await catalog.call("POST", "/api/v1/products", json=product_body(), headers=penyedia("prv-unknown"))
    assert status == 409


async def test_bad_search_queries_are_rejected_naming_the_parameter(catalog: Catalog) -> None:
    for params, field in SEARCH_CASES:
        status, problem = await catalog.call("GET", "/api/v1/products", params=params)
        assert status == 422, (params, problem)
        assert field_of(problem) == field, (params, problem)


async def test_bad_promotions_are_rejected_naming_the_field(catalog: Catalog) -> None:
    await catalog.provider("prv-a")
    product = await catalog.product("prv-a")
    base = {
        "name": "Harbolnas",
        "scope": "products",
        "product_ids": [product["id"]],
        "discount_kind": "percent",
        "discount_value": 10,
        "starts_at": "2026-12-12T00:00:00+07:00",
        "ends_at": "2026-12-13T00:00:00+07:00",
    }
    cases = [
        ({"discount_value": 150}, "discount_value"),
        ({"discount_kind": "fixed", "discount_value": 0}, "discount_value"),
        ({"discount_kind": "none", "discount_value": 0}, "free_shipping"),
        ({"ends_at": "2026-12-11T00:00:00+07:00"}, "ends_at"),
        ({"starts_at": "besok"}, "starts_at"),
        ({"product_ids": []}, "product_ids"),
        ({"scope": "provider"}, "product_ids"),
        ({"product_ids": ["prd-nope"]}, "product_ids.0"),
    ]
    for change, field in cases:
        status, problem = await catalog.call(
            "POST", "/api/v1/promotions", json={**base, **change}, headers=penyedia("prv-a")
        )
        assert status == 422, (change, problem)
        assert field_of(problem) == field, (change, problem)
