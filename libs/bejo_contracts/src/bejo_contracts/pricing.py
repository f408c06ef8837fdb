"""Effective price of a product under its promotions.

Shared by the catalog (which owns promotions) and by consumers of product snapshots (orders' cap
check before reservation), so that both compute the same number. Pure: no I/O, no clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

DiscountKind = Literal["percent", "fixed", "none"]


class PromotionTerms(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    promotion_id: str
    name: str = ""
    discount_kind: DiscountKind
    # percent: whole percent 1..100; fixed: rupiah off the unit price; none: 0 (free shipping only)
    discount_value: int = 0
    free_shipping: bool = False
    starts_at: datetime
    ends_at: datetime

    def is_active(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at


def discounted_price(price: int, terms: PromotionTerms) -> int:
    """Unit price after one promotion, in whole rupiah, never below zero.

    Percent discounts round the discount down (the buyer never pays a fraction of a rupiah
    less than the advertised percentage would give, and the seller never loses more).
    """
    if terms.discount_kind == "percent":
        return max(0, price - price * terms.discount_value // 100)
    if terms.discount_kind == "fixed":
        return max(0, price - terms.discount_value)
    return price


def best_offer(price: int, promotions: list[PromotionTerms], at: datetime) -> tuple[int, PromotionTerms | None, bool]:
    """The lowest price among the promotions active at `at`, the promotion giving it, and free shipping.

    Promotions do not stack: the buyer gets the single best discount. Free shipping applies when
    any active promotion grants it.
    """
    active = [p for p in promotions if p.is_active(at)]
    best_price, best = price, None
    for terms in active:
        candidate = discounted_price(price, terms)
        if candidate < best_price:
            best_price, best = candidate, terms
    return best_price, best, any(p.free_shipping for p in active)


def effective_price(price: int, promotions: list[PromotionTerms], at: datetime) -> int:
    return best_offer(price, promotions, at)[0]
