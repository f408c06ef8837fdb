"""Gateway behaviour that needs the real services behind it."""

from __future__ import annotations

import uuid

import pytest
import support
from e2e_harness import Platform

pytestmark = pytest.mark.e2e


async def test_bad_bodies_get_problems_from_the_real_services(platform: Platform) -> None:
    seller = support.token("penyedia", "owner-x", pemda="35.15", provider_id=f"prov-{platform.unique}")
    async with platform.http.post(
        platform.gateway + "/api/v1/providers",
        data=b'{"name": "CV Rusak",',
        headers={**support.bearer(seller), "Content-Type": "application/json"},
    ) as response:
        problem = await response.json(content_type=None)
        assert response.status == 400 and response.content_type == "application/problem+json"
        assert problem["code"] == "malformed_json"

    status, problem = await platform.call(
        "POST",
        "/api/v1/products",
        seller,
        {"name": "x" * 500, "price": -1, "category": "nope", "unit": "pak", "stock": 1},
    )
    assert status == 422
    assert {"name", "price"} <= {e["field"] for e in problem["errors"]}

    status, problem = await platform.call("GET", "/api/v1/products?limit=10000")
    assert status == 422 and [e["field"] for e in problem["errors"]] == ["limit"]

    huge = {"name": "x", "description": "y" * (2 * 1024 * 1024)}
    status, problem = await platform.call("POST", "/api/v1/products", seller, huge)
    assert status == 413 and problem["code"] == "payload_too_large"


async def test_an_order_for_an_unknown_product_is_refused_before_anything_is_reserved(platform: Platform) -> None:
    pp = support.token("pp", "pp-ani", pemda="35.15", satker="dinkes-sidoarjo")
    status, problem = await platform.call(
        "POST",
        "/api/v1/orders",
        pp,
        {
            "lines": [{"product_id": "no-such-product", "quantity": 1}],
            "delivery_address": "Jl. A 1",
            "rup_code": "RUP-1",
            "ppk_id": "ppk-budi",
            "payment_method": "va",
        },
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert status == 422 and problem["status"] == 422
