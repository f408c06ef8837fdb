"""A purchase from listing to settled payment, driven only through the gateway, as clients would
(the scenario is `e2e_harness.purchase_from_listing_to_completed_payment`, shared with the
two-replica platform)."""

from __future__ import annotations

import pytest
from e2e_harness import Platform, purchase_from_listing_to_completed_payment

pytestmark = pytest.mark.e2e


async def test_purchase_from_listing_to_completed_payment(platform: Platform) -> None:
    await purchase_from_listing_to_completed_payment(platform)
