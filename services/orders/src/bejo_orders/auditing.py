"""The red-flag use case: load one pemda subtree's orders and refused attempts for a period, run the
indicators (`redflags`), page the flags newest first; and the record of a refused attempt."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bejo_contracts.pemda import covers
from bejo_kit.auth import Principal
from bejo_kit.errors import Forbidden
from bejo_kit.mongo import Document, utcnow
from bejo_kit.paging import encode_cursor

from . import rules
from .queries import cursor_position
from .redflags import (
    INDICATORS,
    Found,
    Indicator,
    attempt_flags,
    off_hours_approvals,
    out_of_sequence_money,
    price_flags,
    rule_text,
    separation_of_duties,
    split_purchases,
    supplier_concentration,
)
from .views import IndicatorSummary, RedFlagList, RedFlagQuery

if TYPE_CHECKING:
    from .repository import Repository
    from .settings import OrdersSettings


def attempt(
    kind: str,
    *,
    pemda: str,
    satker: str | None,
    actor_sub: str,
    role: str,
    order_ids: list[str] | None = None,
    provider_id: str | None = None,
    amount: int | None = None,
    at: datetime | None = None,
    attempt_id: str | None = None,
    **detail: Any,
) -> Document:
    """A refused attempt as stored: recorded by the rule that refused it, for the auditors. An
    `attempt_id` derived from an event id keeps a redelivered event from being counted twice."""
    return {
        "_id": attempt_id or uuid.uuid4().hex,
        "kind": kind,
        "pemda": pemda,
        "satker": satker,
        "provider_id": provider_id,
        "order_ids": order_ids or [],
        "amount": amount,
        "at": at or utcnow(),
        "detail": {"actor_sub": actor_sub, "role": role, **detail},
    }


class RedFlags:
    def __init__(self, repo: Repository, settings: OrdersSettings) -> None:
        self.repo = repo
        self.settings = settings

    async def list_flags(self, principal: Principal, query: RedFlagQuery) -> RedFlagList:
        s = self.settings.redflags
        within = query.pemda or principal.pemda
        if not covers(principal.pemda, within):
            raise Forbidden(
                f"pemda {within} is outside the caller's pemda {principal.pemda}", code="pemda_out_of_scope"
            )
        created = rules.wib_day_bounds(query.from_, query.to)
        orders = await self.repo.orders_for_audit(within=within, created=created, limit=s.max_orders + 1)
        truncated = len(orders) > s.max_orders
        orders = orders[: s.max_orders]
        attempts = await self.repo.attempts(within=within, at=created)
        product_ids = sorted({line.product_id for o in orders for line in o.lines})
        products = await self.repo.get_products(product_ids) if product_ids else {}

        outliers, above = price_flags(orders, products, s)
        found: dict[Indicator, Found] = {
            "split_purchase": split_purchases(orders, self.settings.caps, s),
            "supplier_concentration": supplier_concentration(orders, s),
            "price_outlier": outliers,
            "above_het": above,
            "separation_of_duties": separation_of_duties(orders, s),
            "out_of_sequence_money": out_of_sequence_money(orders, s),
            "off_hours_approval": off_hours_approvals(orders, s),
        }
        for indicator, refused in attempt_flags(attempts, s).items():
            found[indicator].flags.extend(refused.flags)
            found[indicator].examined += refused.examined
        summary = [
            IndicatorSummary(indicator=i, rule=rule_text(i, s), examined=found[i].examined, flags=len(found[i].flags))
            for i in INDICATORS
        ]
        wanted = [query.indicator] if query.indicator else list(INDICATORS)
        flags = sorted((f for i in wanted for f in found[i].flags), key=lambda f: (f.at, f.id), reverse=True)
        if (position := cursor_position(query.cursor, "next_cursor")) is not None:
            flags = [f for f in flags if (f.at, f.id) < position]
        page = flags[: query.limit]
        next_cursor = None
        if len(flags) > query.limit:
            next_cursor = encode_cursor({"at": page[-1].at.isoformat(), "id": page[-1].id})
        return RedFlagList(
            items=page, next_cursor=next_cursor, summary=summary, orders_examined=len(orders), truncated=truncated
        )
