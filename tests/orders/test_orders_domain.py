"""Pure rules of the order aggregate: no servers, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bejo_contracts import orders as events
from bejo_contracts.common import WIB
from bejo_contracts.errors import IllegalTransition, NotPermitted
from bejo_contracts.orders import OrderLine
from bejo_kit.errors import ValidationProblem
from bejo_orders import domain, rules
from bejo_orders.domain import (
    RULES,
    SYSTEM_CALLER,
    Caller,
    Order,
)
from bejo_orders.rules import Caps, CartLine, ProductFacts

NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)  # a Friday, 10:00 WIB
PP = Caller(sub="pp-1", role="pp", name="Ani", pemda="35.15", satker="dinkes")
PPK = Caller(sub="ppk-1", role="ppk", name="Budi", pemda="35.15", satker="dinkes")
SELLER = Caller(sub="seller-1", role="penyedia", pemda="35.15", provider_id="prov-1")


def make_order(status: str = "placed", **overrides: object) -> Order:
    base = Order(
        id="ord-1",
        checkout_id="chk-1",
        pemda="35.15",
        satker="dinkes",
        pp_id="pp-1",
        pp_name="Ani",
        ppk_id="ppk-1",
        provider_id="prov-1",
        provider_name="CV Maju",
        provider_pkp=True,
        payment_method="va",
        rup_code="RUP-1",
        delivery_address="Jl. Pahlawan 1",
        lines=[OrderLine(product_id="p1", name="Kertas", unit="rim", quantity=2, unit_price=50_000)],
        total=100_000,
        status="placed",
        version=1,
        created_at=NOW,
        updated_at=NOW,
        history=[domain.placed_entry(PP, NOW)],
    )
    return base.model_copy(update={"status": status, **overrides})


# -- state machine ------------------------------------------------------------------------------


def test_happy_path_walks_every_status_and_records_history() -> None:
    order = make_order()
    steps: list[tuple[domain.Action, Caller]] = [
        ("reserve", SYSTEM_CALLER),
        ("approve", PPK),
        ("accept", SELLER),
        ("ship", SELLER),
        ("receive", PPK),
        ("invoice", SYSTEM_CALLER),
        ("pay", SYSTEM_CALLER),
        ("settle", SYSTEM_CALLER),
    ]
    for action, caller in steps:
        order = domain.transition(order, action, caller, NOW)
    assert order.status == "completed"
    assert [(h.from_status, h.to_status) for h in order.history] == [
        (None, "placed"),
        ("placed", "reserved"),
        ("reserved", "approved"),
        ("approved", "accepted"),
        ("accepted", "shipped"),
        ("shipped", "received"),
        ("received", "payment_pending"),
        ("payment_pending", "paid"),
        ("paid", "completed"),
    ]
    assert order.version == 9


@pytest.mark.parametrize("status", ["placed", "approved", "shipped", "completed", "cancelled"])
def test_approve_outside_reserved_is_illegal_and_names_the_status(status: str) -> None:
    with pytest.raises(IllegalTransition) as exc:
        domain.transition(make_order(status), "approve", PPK, NOW)
    assert exc.value.code == "illegal_transition"
    assert exc.value.extra["current_status"] == status


def test_every_rule_targets_a_contract_status_and_has_an_event() -> None:
    for rule in RULES.values():
        order = make_order(next(iter(rule.sources())))
        assert domain._EVENT_BY_STATUS[rule.target]
        assert order.status in rule.sources()


def test_cancel_rules_per_role() -> None:
    assert domain.transition(make_order("accepted"), "cancel", PP, NOW, reason="x").status == "cancelled"
    assert domain.transition(make_order("accepted"), "cancel", PPK, NOW, reason="x").status == "cancelled"
    assert domain.transition(make_order("approved"), "cancel", SELLER, NOW, reason="x").status == "cancelled"
    with pytest.raises(IllegalTransition):
        domain.transition(make_order("accepted"), "cancel", SELLER, NOW, reason="x")  # provider accepted already
    with pytest.raises(IllegalTransition):
        domain.transition(make_order("shipped"), "cancel", PP, NOW, reason="x")  # after shipping: no cancel


def test_only_the_placing_pp_may_cancel() -> None:
    other_pp = Caller(sub="pp-2", role="pp", pemda="35.15", satker="dinkes")
    with pytest.raises(NotPermitted) as exc:
        domain.transition(make_order("reserved"), "cancel", other_pp, NOW, reason="x")
    assert exc.value.code == "not_order_pp"


def test_roles_outside_the_rule_are_forbidden() -> None:
    bendahara = Caller(sub="b-1", role="bendahara", pemda="35.15", satker="dinkes")
    with pytest.raises(NotPermitted) as exc:
        domain.transition(make_order("reserved"), "approve", bendahara, NOW)
    assert exc.value.code == "role_not_allowed"
    with pytest.raises(NotPermitted):
        domain.transition(make_order("reserved"), "approve", SYSTEM_CALLER, NOW)


def test_out_of_order_payment_events_still_move_forward() -> None:
    received = make_order("received")
    assert domain.transition(received, "pay", SYSTEM_CALLER, NOW).status == "paid"
    assert domain.transition(received, "settle", SYSTEM_CALLER, NOW).status == "completed"
    with pytest.raises(IllegalTransition):
        domain.transition(make_order("paid"), "invoice", SYSTEM_CALLER, NOW)  # stale: dropped by the consumer


# -- separation of duties and object level ------------------------------------------------------


def test_ppk_who_placed_cannot_approve() -> None:
    order = make_order("reserved", ppk_id="pp-1")
    same_person = Caller(sub="pp-1", role="ppk", pemda="35.15", satker="dinkes")
    with pytest.raises(NotPermitted) as exc:
        domain.transition(order, "approve", same_person, NOW)
    assert exc.value.code == "separation_of_duties"


def test_only_the_named_ppk_may_approve_reject_receive() -> None:
    other = Caller(sub="ppk-2", role="ppk", pemda="35.15", satker="dinkes")
    for status, action in (("reserved", "approve"), ("reserved", "reject"), ("shipped", "receive")):
        with pytest.raises(NotPermitted) as exc:
            domain.transition(make_order(status), action, other, NOW, reason="r")  # type: ignore[arg-type]
        assert exc.value.code == "not_order_ppk"


def test_visibility() -> None:
    order = make_order()
    assert domain.can_see(order, PP)
    assert not domain.can_see(order, Caller(sub="x", role="pp", pemda="35.15", satker="other"))
    assert not domain.can_see(order, Caller(sub="x", role="ppk", pemda="35.16", satker="dinkes"))
    assert domain.can_see(order, SELLER)
    assert not domain.can_see(order, Caller(sub="s2", role="penyedia", pemda="35.15", provider_id="prov-2"))
    assert domain.can_see(order, Caller(sub="a", role="admin", pemda="35"))
    assert domain.can_see(order, Caller(sub="a", role="auditor", pemda="35.15"))
    assert not domain.can_see(order, Caller(sub="a", role="admin", pemda="35.16"))
    assert not domain.can_see(order, Caller(sub="a", role="admin", pemda="3"))


# -- events -------------------------------------------------------------------------------------


def test_events_carry_the_order_facts_and_the_actor() -> None:
    order = domain.transition(
        make_order("shipped"), "receive", PPK, NOW, changes={"bast_number": "BAST/35.15/2026/000001"}
    )
    event = domain.event_for(order)
    assert isinstance(event, events.OrderReceived)
    assert event.bast_number == "BAST/35.15/2026/000001"
    assert (event.from_status, event.status) == ("shipped", "received")
    assert event.actor.sub == "ppk-1" and event.actor.role == "ppk"
    assert (event.pemda, event.satker, event.provider_id, event.total) == ("35.15", "dinkes", "prov-1", 100_000)
    rejected = domain.transition(
        make_order("reserved"), "reject", PPK, NOW, reason="budget", changes={"reason": "budget", "rejected_by": "ppk"}
    )
    rejected_event = domain.event_for(rejected)
    assert isinstance(rejected_event, events.OrderRejected)
    assert rejected_event.rejected_by == "ppk" and rejected_event.reason == "budget"


# -- caps ---------------------------------------------------------------------------------------


def test_caps_per_method_and_per_supplier() -> None:
    caps = Caps(va=200, kkpd=100, kkpd_per_supplier=50)
    assert rules.cap_breach("va", {"a": 200, "b": 150}, caps) is None
    breach = rules.cap_breach("va", {"a": 201}, caps)
    assert breach is not None and breach.cap == "va" and breach.limit == 200
    per_supplier = rules.cap_breach("kkpd", {"a": 40, "b": 60}, caps)
    assert per_supplier is not None and per_supplier.cap == "kkpd_per_supplier" and per_supplier.provider_id == "b"
    assert rules.cap_breach("kkpd", {"a": 101}, caps).cap == "kkpd"  # type: ignore[union-attr]


def test_default_caps_follow_the_domain_brief() -> None:
    caps = Caps()
    assert rules.cap_breach("kkpd", {"a": 50_000_000}, caps) is None
    assert rules.cap_breach("kkpd", {"a": 50_000_001}, caps) is not None
    assert rules.cap_breach("va", {"a": 200_000_000}, caps) is None
    assert "Rp 200.000.000" in rules.cap_breach("va", {"a": 200_000_001}, caps).message()  # type: ignore[union-attr]


# -- cart splitting -----------------------------------------------------------------------------


def facts(pid: str, provider: str, price: int = 1000, **kw: object) -> ProductFacts:
    base = {
        "product_id": pid,
        "provider_id": provider,
        "provider_name": provider.upper(),
        "provider_pkp": False,
        "name": pid,
        "unit": "pcs",
        "unit_price": price,
        "min_order_qty": 1,
        "regions": (),
        "orderable": True,
    }
    return ProductFacts(**{**base, **kw})  # type: ignore[arg-type]


def test_split_cart_by_provider() -> None:
    products = {"a": facts("a", "p1", 10), "b": facts("b", "p2", 20), "c": facts("c", "p1", 30)}
    carts = rules.split_cart([CartLine("a", 1), CartLine("b", 2), CartLine("c", 3)], products, "35.15")  # type: ignore[arg-type]
    assert [(c.provider_id, [line.product_id for line in c.lines], c.total) for c in carts] == [
        ("p1", ["a", "c"], 100),
        ("p2", ["b"], 40),
    ]


def test_split_cart_names_every_bad_line() -> None:
    products = {
        "gone": None,
        "off": facts("off", "p1", orderable=False),
        "far": facts("far", "p1", regions=("35.16",)),
        "bulk": facts("bulk", "p1", min_order_qty=10),
        "ok": facts("ok", "p1"),
    }
    cart = [CartLine("gone", 1), CartLine("off", 1), CartLine("far", 1), CartLine("bulk", 2), CartLine("ok", 1)]
    cart.append(CartLine("ok", 1))
    with pytest.raises(ValidationProblem) as exc:
        rules.split_cart(cart, products, "35.15")
    fields = [(e["field"], e["type"]) for e in exc.value.extra["errors"]]
    assert fields == [
        ("lines.0.product_id", "not_found"),
        ("lines.1.product_id", "not_orderable"),
        ("lines.2.product_id", "region"),
        ("lines.3.quantity", "below_min_qty"),
        ("lines.5.product_id", "duplicate"),
    ]


def test_region_covers_children() -> None:
    assert rules.in_region(("35",), "35.15")
    assert rules.in_region((), "35.15")
    assert not rules.in_region(("35.1",), "35.15")


# -- working days -------------------------------------------------------------------------------


def wib(y: int, m: int, d: int, h: int = 0) -> datetime:
    return datetime(y, m, d, h, tzinfo=WIB)


@pytest.mark.parametrize(
    ("start", "days", "due"),
    [
        (wib(2026, 11, 23, 10), 3, wib(2026, 11, 26, 10)),  # Mon -> Thu
        (wib(2026, 11, 27, 10), 3, wib(2026, 12, 2, 10)),  # Fri -> Wed (skips the weekend)
        (wib(2026, 11, 28, 15), 3, wib(2026, 12, 3, 0)),  # Sat counts from Mon 00:00
        (wib(2026, 11, 29, 23), 1, wib(2026, 12, 1, 0)),  # Sun
        (wib(2026, 11, 25, 9), 0, wib(2026, 11, 25, 9)),
    ],
)
def test_working_days_in_wib(start: datetime, days: int, due: datetime) -> None:
    assert rules.add_working_days(start, days) == due


def test_working_day_counting_uses_wib_not_utc() -> None:
    # Friday 23:00 UTC is already Saturday 06:00 in Jakarta: counting starts Monday 00:00 WIB.
    start = datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
    assert rules.add_working_days(start, 1) == wib(2026, 12, 1, 0)


def test_approval_due_at_prefers_a_seconds_timeout() -> None:
    assert rules.approval_due_at(NOW, working_days=3, timeout_seconds=2) == NOW + timedelta(seconds=2)
    assert rules.approval_due_at(NOW, working_days=3, timeout_seconds=None) == wib(2026, 12, 2, 10)


# -- BAST and periods ---------------------------------------------------------------------------


def test_bast_number_format() -> None:
    assert rules.bast_number("35.15", 2026, 123) == "BAST/35.15/2026/000123"
    with pytest.raises(ValueError):
        rules.bast_number("35.15", 2026, 1_000_000)
    assert rules.bast_year(datetime(2026, 12, 31, 18, tzinfo=UTC)) == 2027  # 01:00 WIB on 1 January


def test_wib_day_bounds_and_periods() -> None:
    start, end = rules.wib_day_bounds(wib(2026, 11, 1).date(), wib(2026, 11, 30).date())
    assert start == datetime(2026, 10, 31, 17, tzinfo=UTC)
    assert end == datetime(2026, 11, 30, 17, tzinfo=UTC)
    assert rules.period_of(datetime(2026, 11, 30, 18, tzinfo=UTC)) == "2026-12"
