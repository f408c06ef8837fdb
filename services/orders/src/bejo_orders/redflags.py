"""Red-flag indicators for auditors (see docs/redflags.md for each rule and its threshold).

Computed on request from the orders service's own state: the orders with their append-only
history, the catalog's product snapshots (category, HET) and the refused attempts recorded when
a rule turned a request or an event away. This module is pure: the indicators and their
thresholds. `auditing.RedFlags` loads the data of one pemda subtree and period and pages the flags.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from bejo_contracts.catalog import ProductSnapshot
from bejo_contracts.common import WIB
from bejo_kit.mongo import Document

from . import rules
from .domain import Order
from .settings import RedFlagSettings

if TYPE_CHECKING:
    pass

Indicator = Literal[
    "split_purchase",
    "supplier_concentration",
    "price_outlier",
    "above_het",
    "separation_of_duties",
    "out_of_sequence_money",
    "off_hours_approval",
]
INDICATORS: tuple[Indicator, ...] = (
    "split_purchase",
    "supplier_concentration",
    "price_outlier",
    "above_het",
    "separation_of_duties",
    "out_of_sequence_money",
    "off_hours_approval",
)
# Orders that never became a purchase (refused, withdrawn or lapsed) are not spending.
NOT_SPENDING = frozenset({"rejected", "cancelled", "expired"})
SPENT = frozenset({"paid", "completed"})
# Kinds of refused attempts, by indicator (written by checkout and transitions when they refuse).
ATTEMPT_INDICATOR: dict[str, Indicator] = {
    "sod_same_person_checkout": "separation_of_duties",
    "sod_self_approval": "separation_of_duties",
    "sod_not_order_ppk": "separation_of_duties",
    "money_without_bast": "out_of_sequence_money",
}


RULES: dict[Indicator, str] = {
    "split_purchase": (
        "{n}+ orders of one satker to one provider within {window} h, each between {near:.0%} of a cap "
        "and the cap, together over it"
    ),
    "supplier_concentration": (
        "one provider takes over {share:.0%} of a satker's or pemda's paid spend in the period "
        "(at least {min_orders} paid orders)"
    ),
    "price_outlier": (
        "a unit price over {factor}x the median ordered unit price of its category in the period "
        "(at least {samples} lines)"
    ),
    "above_het": "a unit price above the product's HET (harga eceran tertinggi)",
    "separation_of_duties": (
        "the same person places and approves or receives an order, or a refused attempt to (self-approval, "
        "naming oneself as PPK, acting on another PPK's order)"
    ),
    "out_of_sequence_money": (
        "money without a BAST, or settlement before payment: must never happen; the orders examined are counted, "
        "and refused payment events are listed"
    ),
    "off_hours_approval": "Surat Pesanan or BAST signed on a non-working day, a holiday or outside working hours (WIB)",
}


def rule_text(indicator: Indicator, s: RedFlagSettings) -> str:
    return RULES[indicator].format(
        n=s.split_min_orders,
        window=f"{s.split_window_hours:g}",
        near=s.split_near_cap,
        share=s.concentration_share,
        min_orders=s.concentration_min_orders,
        factor=f"{s.price_factor:g}",
        samples=s.price_min_samples,
    )


class RedFlag(BaseModel):
    id: str = Field(description="stable for the same evidence")
    indicator: Indicator
    rule: str
    pemda: str
    satker: str | None
    provider_id: str | None
    order_ids: list[str]
    amount: int | None = Field(description="integer rupiah: the sum the flag is about")
    at: datetime = Field(description="when it happened (the latest order or attempt involved)")
    evidence: dict[str, Any]


# -- the indicators (pure) ------------------------------------------------------------------------


@dataclass
class Found:
    flags: list[RedFlag]
    examined: int


def _flag(
    indicator: Indicator,
    s: RedFlagSettings,
    *,
    pemda: str,
    orders: Iterable[Order] = (),
    at: datetime,
    amount: int | None,
    satker: str | None = None,
    provider_id: str | None = None,
    key: str = "",
    **evidence: Any,
) -> RedFlag:
    ids = sorted(o.id for o in orders)
    digest = hashlib.sha256(f"{indicator}|{pemda}|{satker}|{provider_id}|{key}|{','.join(ids)}".encode()).hexdigest()
    return RedFlag(
        id=f"rf_{digest[:20]}",
        indicator=indicator,
        rule=rule_text(indicator, s),
        pemda=pemda,
        satker=satker,
        provider_id=provider_id,
        order_ids=ids,
        amount=amount,
        at=at,
        evidence=evidence,
    )


def _about_order(order: Order) -> dict[str, Any]:
    """Where a flag about one order belongs: its pemda, satker and provider."""
    return {"pemda": order.pemda, "satker": order.satker, "provider_id": order.provider_id, "orders": [order]}


def _caps_for(order: Order, caps: rules.Caps, s: RedFlagSettings) -> set[int]:
    method_cap = caps.kkpd if order.payment_method == "kkpd" else caps.va
    return {method_cap, s.toko_daring_cap}


def split_purchases(orders: list[Order], caps: rules.Caps, s: RedFlagSettings) -> Found:
    groups: dict[tuple[str, str, str, int], list[Order]] = defaultdict(list)
    examined = 0
    for order in orders:
        if order.status in NOT_SPENDING:
            continue
        examined += 1
        for cap in _caps_for(order, caps, s):
            if s.split_near_cap * cap <= order.total <= cap:
                groups[(order.pemda, order.satker, order.provider_id, cap)].append(order)
    window = timedelta(hours=s.split_window_hours)
    flags = []
    for (pemda, satker, provider_id, cap), near in groups.items():
        near.sort(key=lambda o: (o.created_at, o.id))
        start = 0
        # the longest runs inside the window: each flagged run is reported once, then skipped
        while start < len(near):
            end = start
            while end + 1 < len(near) and near[end + 1].created_at - near[start].created_at <= window:
                end += 1
            run = near[start : end + 1]
            combined = sum(o.total for o in run)
            if len(run) >= s.split_min_orders and combined > cap:
                flags.append(
                    _flag(
                        "split_purchase",
                        s,
                        pemda=pemda,
                        satker=satker,
                        provider_id=provider_id,
                        orders=run,
                        at=run[-1].created_at,
                        amount=combined,
                        cap=cap,
                        totals=[o.total for o in run],
                        first_at=run[0].created_at.isoformat(),
                        last_at=run[-1].created_at.isoformat(),
                    )
                )
                start = end + 1
            else:
                start += 1
    return Found(flags, examined)


def supplier_concentration(orders: list[Order], s: RedFlagSettings) -> Found:
    spent = [o for o in orders if o.status in SPENT]
    by_group: dict[tuple[str, str | None], list[Order]] = defaultdict(list)
    for order in spent:
        by_group[(order.pemda, order.satker)].append(order)
        by_group[(order.pemda, None)].append(order)
    flags = []
    for (pemda, satker), group in sorted(by_group.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        if len(group) < s.concentration_min_orders:
            continue
        total = sum(o.total for o in group)
        by_provider: dict[str, list[Order]] = defaultdict(list)
        for order in group:
            by_provider[order.provider_id].append(order)
        provider_id, theirs = max(by_provider.items(), key=lambda kv: (sum(o.total for o in kv[1]), kv[0]))
        amount = sum(o.total for o in theirs)
        if total > 0 and amount / total > s.concentration_share:
            flags.append(
                _flag(
                    "supplier_concentration",
                    s,
                    pemda=pemda,
                    satker=satker,
                    provider_id=provider_id,
                    orders=theirs,
                    at=max(o.paid_at or o.updated_at for o in theirs),
                    amount=amount,
                    key="pemda" if satker is None else "satker",
                    scope="pemda" if satker is None else "satker",
                    provider_name=theirs[0].provider_name,
                    provider_spend=amount,
                    total_spend=total,
                    share=round(amount / total, 4),
                    paid_orders=len(group),
                )
            )
    return Found(flags, len(by_group))


def price_flags(orders: list[Order], products: dict[str, ProductSnapshot | None], s: RedFlagSettings) -> list[Found]:
    """[price outliers, above HET]."""
    lines = [(o, line) for o in orders if o.status not in NOT_SPENDING for line in o.lines]
    by_category: dict[str, list[int]] = defaultdict(list)
    for _, line in lines:
        if snapshot := products.get(line.product_id):
            by_category[snapshot.category_id].append(line.unit_price)
    medians = {c: median(p) for c, p in by_category.items() if len(p) >= s.price_min_samples}
    outliers, above = [], []
    for order, line in lines:
        snapshot = products.get(line.product_id)
        if snapshot is None:
            continue
        amount = line.unit_price * line.quantity
        common = _about_order(order)
        # The line's facts, as both price flags report them.
        of_line: dict[str, Any] = {
            "at": order.created_at,
            "amount": amount,
            "key": line.product_id,
            "product_id": line.product_id,
            "product_name": line.name,
            "unit_price": line.unit_price,
        }
        middle = medians.get(snapshot.category_id)
        if middle is not None and line.unit_price > s.price_factor * middle:
            outliers.append(
                _flag(
                    "price_outlier",
                    s,
                    **common,
                    **of_line,
                    category_id=snapshot.category_id,
                    category_median=middle,
                    ratio=round(line.unit_price / middle, 2),
                    category_lines=len(by_category[snapshot.category_id]),
                )
            )
        if snapshot.het is not None and line.unit_price > snapshot.het:
            above.append(
                _flag(
                    "above_het",
                    s,
                    **common,
                    **of_line,
                    het=snapshot.het,
                    over_het=line.unit_price - snapshot.het,
                )
            )
    return [Found(outliers, len(lines)), Found(above, len(lines))]


def _first(order: Order, status: str) -> tuple[int, datetime] | None:
    return next(((i, h.at) for i, h in enumerate(order.history) if h.to_status == status), None)


def _actor(order: Order, status: str) -> str | None:
    return next((h.actor_sub for h in order.history if h.to_status == status), None)


def separation_of_duties(orders: list[Order], s: RedFlagSettings) -> Found:
    """From the history: the PP who placed an order also approved or received it (never allowed)."""
    flags = []
    for order in orders:
        for step in ("approved", "received"):
            actor = _actor(order, step)
            if actor is not None and actor == order.pp_id:
                when = _first(order, step)
                assert when is not None
                flags.append(
                    _flag(
                        "separation_of_duties",
                        s,
                        **_about_order(order),
                        at=when[1],
                        amount=order.total,
                        key=step,
                        kind=f"placed_and_{step}",
                        actor_sub=actor,
                        refused=False,
                    )
                )
    return Found(flags, len(orders))


def out_of_sequence_money(orders: list[Order], s: RedFlagSettings) -> Found:
    """Money facts against the BAST and each other, from the stored orders (never expected)."""
    flags = []
    for order in orders:
        received = _first(order, "received")
        paid = _first(order, "paid")
        settled = _first(order, "completed")
        problems = []
        money = order.paid_at is not None or paid is not None or settled is not None
        if money and (order.bast_number is None or received is None):
            problems.append("payment_without_bast")
        for step, label in ((paid, "paid_before_bast"), (settled, "settled_before_bast")):
            if step is not None and received is not None and step[0] < received[0]:
                problems.append(label)
        if settled is not None and order.paid_at is not None and order.paid_at > settled[1]:
            problems.append("settled_before_paid")
        if problems:
            flags.append(
                _flag(
                    "out_of_sequence_money",
                    s,
                    **_about_order(order),
                    at=order.paid_at or order.updated_at,
                    amount=order.paid_amount or order.total,
                    problems=problems,
                    bast_number=order.bast_number,
                    paid_at=order.paid_at.isoformat() if order.paid_at else None,
                    settled_at=settled[1].isoformat() if settled else None,
                    refused=False,
                )
            )
    return Found(flags, len(orders))


def off_hours(at: datetime, s: RedFlagSettings) -> str | None:
    local = at.astimezone(WIB)
    if local.date() in s.holidays:
        return "holiday"
    if local.weekday() not in s.working_days:
        return "non_working_day"
    if s.work_start_hour is not None and local.hour < s.work_start_hour:
        return "before_hours"
    if s.work_end_hour is not None and local.hour >= s.work_end_hour:
        return "after_hours"
    return None


def off_hours_approvals(orders: list[Order], s: RedFlagSettings) -> Found:
    flags, examined = [], 0
    for order in orders:
        for step, document in (("approved", "surat_pesanan"), ("received", "bast")):
            when = _first(order, step)
            if when is None:
                continue
            examined += 1
            if why := off_hours(when[1], s):
                flags.append(
                    _flag(
                        "off_hours_approval",
                        s,
                        **_about_order(order),
                        at=when[1],
                        amount=order.total,
                        key=step,
                        document=document,
                        why=why,
                        signed_by=_actor(order, step),
                        local_time=when[1].astimezone(WIB).isoformat(),
                    )
                )
    return Found(flags, examined)


def attempt_flags(attempts: list[Document], s: RedFlagSettings) -> dict[Indicator, Found]:
    found: dict[Indicator, Found] = {}
    for attempt in attempts:
        indicator = ATTEMPT_INDICATOR.get(attempt["kind"])
        if indicator is None:
            continue
        bucket = found.setdefault(indicator, Found([], 0))
        bucket.examined += 1
        at: datetime = attempt["at"]
        bucket.flags.append(
            RedFlag(
                id=f"rf_{attempt['_id']}",
                indicator=indicator,
                rule=rule_text(indicator, s),
                pemda=attempt["pemda"],
                satker=attempt.get("satker"),
                provider_id=attempt.get("provider_id"),
                order_ids=list(attempt.get("order_ids", [])),
                amount=attempt.get("amount"),
                at=at,
                evidence={"kind": attempt["kind"], "refused": True, **attempt.get("detail", {})},
            )
        )
    return found
