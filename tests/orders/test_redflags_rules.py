"""The red-flag rules as pure functions: thresholds and their edges."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from bejo_orders import redflags
from bejo_orders.domain import Order
from bejo_orders.rules import Caps
from bejo_orders.settings import RedFlagSettings

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)  # Tuesday 10:00 WIB
S = RedFlagSettings()


def order(order_id: str, total: int, *, at: datetime = T0, steps: tuple[str, ...] = (), **extra: Any) -> Order:
    history = [{"actor_sub": "pp-ani", "role": "pp", "at": at, "from": None, "to": "placed"}]
    for i, step in enumerate(steps, start=1):
        before = history[-1]["to"]
        history.append(
            {"actor_sub": "ppk-budi", "role": "ppk", "at": at + timedelta(hours=i), "from": before, "to": step}
        )
    values: dict[str, Any] = {
        "_id": order_id,
        "checkout_id": "chk",
        "pemda": "35.15",
        "satker": "dinkes",
        "pp_id": "pp-ani",
        "ppk_id": "ppk-budi",
        "provider_id": "prov-a",
        "provider_name": "CV A",
        "provider_pkp": True,
        "payment_method": "va",
        "rup_code": "RUP-1",
        "delivery_address": "Jl. A 1",
        "lines": [{"product_id": "p", "name": "P", "unit": "pcs", "quantity": 1, "unit_price": total}],
        "total": total,
        "status": steps[-1] if steps else "placed",
        "created_at": at,
        "updated_at": at,
        "history": history,
        **extra,
    }
    return Order.model_validate(values)


def test_split_needs_the_orders_inside_the_window_and_together_over_the_cap() -> None:
    week = timedelta(hours=S.split_window_hours)
    inside = [order("a", 45_000_000), order("b", 45_000_000, at=T0 + week)]
    assert len(redflags.split_purchases(inside, Caps(), S).flags) == 1
    apart = [order("a", 45_000_000), order("b", 45_000_000, at=T0 + week + timedelta(seconds=1))]
    assert redflags.split_purchases(apart, Caps(), S).flags == []
    # 2 x 24 juta: near no cap (under 80% of 50 juta)
    assert redflags.split_purchases([order("a", 24_000_000), order("b", 24_000_000)], Caps(), S).flags == []
    # a KKPD cap is the method's own: 2 x 9.5 juta under a 10 juta KKPD cap
    kkpd = [order(x, 9_500_000, payment_method="kkpd") for x in "ab"]
    [flag] = redflags.split_purchases(kkpd, Caps(kkpd=10_000_000), S).flags
    assert flag.evidence["cap"] == 10_000_000 and flag.amount == 19_000_000


def test_concentration_is_over_the_share_not_at_it() -> None:
    def spend(provider_totals: list[tuple[str, int]]) -> list[Order]:
        return [
            order(f"o{i}", total, provider_id=p, steps=("completed",), paid_at=T0)
            for i, (p, total) in enumerate(provider_totals)
        ]

    s = S.model_copy(update={"concentration_min_orders": 4})
    even = spend([("a", 100), ("a", 100), ("b", 100), ("b", 100)])
    assert redflags.supplier_concentration(even, s).flags == []  # exactly 50%
    just_over = spend([("a", 101), ("a", 101), ("b", 100), ("b", 100)])
    assert len(redflags.supplier_concentration(just_over, s).flags) == 2  # 202/402, satker and pemda
    few = spend([("a", 300), ("a", 300), ("b", 100)])
    assert redflags.supplier_concentration(few, s).flags == []  # too few paid orders
    more = spend([("a", 300), ("a", 300), ("b", 100), ("c", 100)])
    flags = redflags.supplier_concentration(more, s).flags
    assert {f.evidence["scope"] for f in flags} == {"satker", "pemda"} and flags[0].evidence["share"] == 0.75


def test_off_hours_weekend_holiday_and_working_hours() -> None:
    saturday = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
    assert redflags.off_hours(saturday, S) == "non_working_day"
    assert redflags.off_hours(T0, S) is None
    assert redflags.off_hours(T0, S.model_copy(update={"holidays": [date(2026, 12, 1)]})) == "holiday"
    hours = S.model_copy(update={"work_start_hour": 7, "work_end_hour": 16})
    assert redflags.off_hours(T0, hours) is None
    assert redflags.off_hours(datetime(2026, 12, 1, 9, 30, tzinfo=UTC), hours) == "after_hours"  # 16:30 WIB
    assert redflags.off_hours(datetime(2026, 11, 30, 23, 0, tzinfo=UTC), hours) == "before_hours"  # 06:00 WIB
    # a Friday 23:30 UTC is Saturday in WIB
    assert redflags.off_hours(datetime(2026, 12, 4, 23, 30, tzinfo=UTC), S) == "non_working_day"


def test_money_order_follows_the_bast() -> None:
    good = order("g", 1_000, steps=("received", "paid", "completed"), bast_number="BAST/1", paid_at=T0)
    assert redflags.out_of_sequence_money([good], S).flags == []
    early = order("e", 1_000, steps=("paid", "received"), bast_number="BAST/2", paid_at=T0)
    [flag] = redflags.out_of_sequence_money([early], S).flags
    assert flag.evidence["problems"] == ["paid_before_bast"]


def test_flag_ids_are_stable_for_the_same_evidence() -> None:
    orders = [order("a", 45_000_000), order("b", 45_000_000)]
    first = redflags.split_purchases(orders, Caps(), S).flags
    again = redflags.split_purchases(list(reversed(orders)), Caps(), S).flags
    assert [f.id for f in first] == [f.id for f in again]
