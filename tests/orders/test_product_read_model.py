"""The orders service's copy of catalog products keeps the newest snapshot: a higher version, or, at
an equal version, a later one (a new promotion or a provider's standing changes a product's public
facts without a new product version)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from orders_harness import Harness, product
from support import holds_for, wait_until

from bejo_contracts.catalog import ProductUpserted
from bejo_contracts.pricing import PromotionTerms

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 12, 0, 0, tzinfo=UTC)
HARBOLNAS = PromotionTerms(
    promotion_id="promo-1212",
    name="Harbolnas 12.12",
    discount_kind="percent",
    discount_value=12,
    free_shipping=True,
    starts_at=T0,
    ends_at=T0 + timedelta(days=1),
)


async def stored_snapshot(h: Harness, product_id: str) -> dict[str, object]:
    found = await h.stored_product(product_id)
    assert found is not None
    return dict(found["snapshot"])


async def test_an_equal_version_taken_later_replaces_an_earlier_one_and_never_the_reverse(harness: Harness) -> None:
    h = harness
    await h.publish(ProductUpserted(product=product("p-kopi", "prov-a", 95_000, as_of=T0)))
    await h.wait_products("p-kopi")

    # A promotion is created: same product version, later snapshot.
    await h.publish(
        ProductUpserted(
            product=product("p-kopi", "prov-a", 95_000, as_of=T0 + timedelta(minutes=1), promotions=[HARBOLNAS])
        )
    )
    await wait_until(lambda: _has_promotion(h))

    # A redelivered earlier snapshot of the same version, and an older version, change nothing.
    await h.publish(ProductUpserted(product=product("p-kopi", "prov-a", 95_000, as_of=T0)))
    await h.publish(
        ProductUpserted(product=product("p-kopi", "prov-a", 90_000, version=0, as_of=T0 + timedelta(hours=1)))
    )
    await holds_for(lambda: _has_promotion(h), seconds=1.0)

    # The provider is suspended: same version again, later still, not orderable.
    await h.publish(
        ProductUpserted(
            product=product(
                "p-kopi", "prov-a", 95_000, as_of=T0 + timedelta(minutes=2), promotions=[HARBOLNAS], orderable=False
            )
        )
    )
    await wait_until(lambda: _orderable(h, False))


async def _has_promotion(h: Harness) -> bool:
    snapshot = await stored_snapshot(h, "p-kopi")
    return snapshot["price"] == 95_000 and [p["promotion_id"] for p in snapshot["promotions"]] == ["promo-1212"]  # type: ignore[attr-defined]


async def _orderable(h: Harness, wanted: bool) -> bool:
    return (await stored_snapshot(h, "p-kopi"))["orderable"] is wanted
