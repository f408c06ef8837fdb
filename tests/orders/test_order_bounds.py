"""Checkout input past the bounds is a 422 naming the field, on the real orders service, and
nothing is stored for it."""

from __future__ import annotations

import uuid

import pytest
from orders_harness import Harness

from bejo_contracts.common import MAX_CART_LINES, MAX_QUANTITY
from bejo_orders.repository import ORDERS

pytestmark = pytest.mark.integration


def fields_of(problem: dict[str, object]) -> list[str]:
    return [str(e["field"]) for e in problem["errors"]]  # type: ignore[attr-defined]


async def test_huge_quantities_long_carts_and_control_characters_are_422(harness: Harness) -> None:
    h = harness
    await h.seed_product("p-1", "prov-a", 10_000)
    await h.wait_products("p-1")
    for quantity in (2**63, 2**64, MAX_QUANTITY + 1, 0):
        status, problem = await h.place([("p-1", quantity)], uuid.uuid4().hex)
        assert status == 422 and fields_of(problem) == ["lines.0.quantity"], (quantity, problem)
    status, problem = await h.place([("p-1", 1)] * (MAX_CART_LINES + 1), uuid.uuid4().hex)
    assert status == 422 and fields_of(problem) == ["lines"], problem
    status, problem = await h.place([("p-1", 1)], uuid.uuid4().hex, delivery_address="Jl. Pahlawan\x00 1")
    assert status == 422 and fields_of(problem) == ["delivery_address"], problem
    assert await h.db[ORDERS].count_documents({}) == 0
    # The bound itself is accepted (at Rp 1 a unit, well inside the checkout caps).
    await h.seed_product("p-cheap", "prov-a", 1)
    await h.wait_products("p-cheap")
    status, checkout = await h.place([("p-cheap", MAX_QUANTITY)], uuid.uuid4().hex)
    assert status == 201, checkout
