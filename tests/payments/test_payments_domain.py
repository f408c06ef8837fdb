"""Pure rules of the payments service: tax arithmetic, postings, the state machine, callback decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bejo_contracts import errors
from bejo_payments import domain
from bejo_payments.domain import Invoice, Leg

PPN = Decimal("0.11")
PPH22 = Decimal("0.005")


def invoice(base: int, pkp: bool = True) -> Invoice:
    return domain.compute_invoice("INV/35.15/2026/000001", base, provider_pkp=pkp, ppn_rate=PPN, pph22_rate=PPH22)


# Hand-computed: ppn = floor(base x 11%), pph22 = floor(base x 0.5%), total = base + ppn, net = base - pph22.
@pytest.mark.parametrize(
    ("base", "pkp", "ppn", "pph22", "total", "net"),
    [
        (1_000_000, True, 110_000, 5_000, 1_110_000, 995_000),  # exact, no rounding
        (2_600_000, True, 286_000, 13_000, 2_886_000, 2_587_000),  # the seed's average order
        (1_000_000, False, 0, 5_000, 1_000_000, 995_000),  # not PKP: no PPN, PPh 22 still withheld
        (199, True, 21, 0, 220, 199),  # 21.89 -> 21; 0.995 -> 0 (floor, not half up)
        (1_999, True, 219, 9, 2_218, 1_990),  # 219.89 -> 219; 9.995 -> 9
        (100, True, 11, 0, 111, 100),  # 11.00 exact; 0.5 -> 0 (a half is floored too)
        (300, True, 33, 1, 333, 299),  # 1.5 -> 1
        (2_500_001, True, 275_000, 12_500, 2_775_001, 2_487_501),  # 275000.11 -> 275000; 12500.005 -> 12500
        (49_999_999, True, 5_499_999, 249_999, 55_499_998, 49_750_000),  # 5499999.89; 249999.995
        (1, True, 0, 0, 1, 1),
        (0, True, 0, 0, 0, 0),
    ],
)
def test_invoice_figures_against_hand_computed_values(
    base: int, pkp: bool, ppn: int, pph22: int, total: int, net: int
) -> None:
    figures = invoice(base, pkp)
    assert (figures.base, figures.ppn, figures.pph22, figures.total, figures.net_to_provider) == (
        base,
        ppn,
        pph22,
        total,
        net,
    )


def test_tax_amount_is_exact_where_a_float_would_not_be() -> None:
    # 0.005 * 1990 == 9.950000000000001 in binary floating point; Decimal gives 9.95 -> 9.
    assert domain.tax_amount(1_990, PPH22) == 9
    # 0.11 * 1_000_000_000_000 must not drift at large amounts.
    assert domain.tax_amount(1_000_000_000_000, PPN) == 110_000_000_000


def test_tax_amount_refuses_a_negative_base() -> None:
    with pytest.raises(ValueError, match="negative"):
        domain.tax_amount(-1, PPN)


def test_rates_are_configuration() -> None:
    figures = domain.compute_invoice(
        "X", 1_000, provider_pkp=True, ppn_rate=Decimal("0.12"), pph22_rate=Decimal("0.015")
    )
    assert (figures.ppn, figures.pph22) == (120, 15)


def test_invoice_base_sums_the_lines_and_must_agree_with_the_total() -> None:
    assert domain.invoice_base([(3, 12_500), (2, 7_250)], 52_000) == 52_000
    assert domain.invoice_base([], 80_000) == 80_000
    with pytest.raises(ValueError, match="sum to 52000 but the order total is 52001"):
        domain.invoice_base([(3, 12_500), (2, 7_250)], 52_001)


def test_invoice_number_format() -> None:
    assert domain.invoice_number("35.15", 2026, 42) == "INV/35.15/2026/000042"


def net_by_account(postings: list[list[Leg]]) -> dict[str, int]:
    balances: dict[str, int] = {}
    for legs in postings:
        for leg in legs:
            balances[leg.account] = balances.get(leg.account, 0) + leg.amount
    return {account: amount for account, amount in balances.items() if amount != 0}


def test_payment_and_settlement_postings_balance_and_land_where_expected() -> None:
    figures = invoice(1_999)
    received = domain.payment_received_legs(figures, "dinkes")
    settled = domain.settlement_legs(figures, "prov-1")
    assert received == [Leg("satker:dinkes", -2_218), Leg("escrow", 2_218)]
    assert settled == [Leg("escrow", -2_218), Leg("provider:prov-1", 1_990), Leg("tax:ppn", 219), Leg("tax:pph22", 9)]
    assert sum(leg.amount for leg in received + settled) == 0
    assert net_by_account([received, settled]) == {
        "satker:dinkes": -2_218,
        "provider:prov-1": 1_990,
        "tax:ppn": 219,
        "tax:pph22": 9,
    }


def test_non_pkp_settlement_omits_the_zero_ppn_leg() -> None:
    legs = domain.settlement_legs(invoice(1_000, pkp=False), "prov-1")
    assert [leg.account for leg in legs] == ["escrow", "provider:prov-1", "tax:pph22"]


@pytest.mark.parametrize("settled", [True, False])
def test_refund_reverses_everything_that_was_posted(settled: bool) -> None:
    figures = invoice(2_500_001)
    postings = [domain.payment_received_legs(figures, "dinkes")]
    if settled:
        postings.append(domain.settlement_legs(figures, "prov-1"))
    refund = domain.refund_postings(figures, "dinkes", "prov-1", settled)
    assert [kind for kind, _ in refund] == (["settlement_reversal", "refund"] if settled else ["refund"])
    assert net_by_account(postings + [legs for _, legs in refund]) == {}


def test_an_unbalanced_posting_is_refused() -> None:
    with pytest.raises(ValueError, match="does not balance"):
        domain.balanced([Leg("escrow", 10), Leg("satker:x", -9)])


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        ("awaiting_payment", "paid", True),
        ("awaiting_payment", "va_expired", True),
        ("va_expired", "awaiting_payment", True),
        ("va_expired", "paid", False),
        ("paid", "settled", True),
        ("paid", "refunded", True),
        ("settled", "refunded", True),
        ("settled", "paid", False),
        ("refunded", "paid", False),
        ("refunded", "refunded", False),
        ("cancelled", "paid", False),
        ("paid", "cancelled", False),
    ],
)
def test_state_machine(current: str, target: str, allowed: bool) -> None:
    if allowed:
        domain.ensure_transition(current, target)
    else:
        with pytest.raises(domain.IllegalTransition):
            domain.ensure_transition(current, target)


NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def decide(**overrides: object) -> str:
    arguments: dict[str, object] = {
        "status": "awaiting_payment",
        "current_va": "8808000000000001",
        "va_expires_at": NOW + timedelta(hours=1),
        "total": 1_110_000,
        "va_number": "8808000000000001",
        "paid_amount": 1_110_000,
        "now": NOW,
    }
    arguments.update(overrides)
    return domain.decide_callback(**arguments)  # type: ignore[arg-type]


def test_callback_decisions() -> None:
    assert decide() == "pay"
    assert decide(paid_amount=1_109_999) == "wrong_amount"
    assert decide(paid_amount=1_110_001) == "wrong_amount"
    assert decide(va_expires_at=NOW) == "expired"  # the expiry instant is already too late
    assert decide(status="va_expired") == "expired"
    assert decide(va_number="8808000000000000") == "expired"  # a replaced, earlier VA
    assert decide(status="paid") == "paid_bill"
    assert decide(status="settled", paid_amount=1) == "paid_bill"  # paid wins over a wrong amount
    assert decide(status="refunded") == "paid_bill"
    assert decide(status="cancelled") == "cancelled"
    assert decide(status="va_expired", paid_amount=5) == "expired"  # expiry is checked before the amount
    # The notification that paid it, applied again (a duplicate in flight), is a repeat, not a second payment.
    assert decide(status="settled", paid_via="k1", via="k1") == "repeat"
    assert decide(status="settled", paid_via="k1", via="k2") == "paid_bill"
    assert decide(status="awaiting_payment", paid_via=None, via="k1") == "pay"


# -- the Payment aggregate -------------------------------------------------------------------------


def payment(
    status: str = "awaiting_payment", *, base: int = 1_000_000, method: str = "va", **fields: object
) -> domain.Payment:
    values: dict[str, object] = {
        "_id": "pay-ord-1",
        "order_id": "ord-1",
        "pemda": "35.15",
        "satker": "dinkes",
        "provider_id": "prov-1",
        "provider_name": "CV Sumber Rejeki",
        "provider_pkp": True,
        "method": method,
        "bast_number": "BAST/35.15/2026/0001",
        "invoice": invoice(base),
        "status": status,
        "va_number": "8808000000000001" if method == "va" else None,
        "va_expires_at": NOW + timedelta(hours=1) if method == "va" else None,
        "created_at": NOW,
        "updated_at": NOW,
        "history": [{"status": "awaiting_payment", "at": NOW, "actor": "system"}],
        **fields,
    }
    return domain.Payment.model_validate(values)


def test_the_aggregate_round_trips_through_its_stored_document() -> None:
    paid = payment().pay(now=NOW, reference="EXT-1", via="k1")
    stored = {**paid.document(), "outbox": [{"id": "e1"}]}  # storage fields are ignored on load
    assert domain.Payment.model_validate(stored) == paid
    assert stored["_id"] == "pay-ord-1" and stored["invoice"]["total"] == 1_110_000


def test_pay_settle_refund_move_status_history_version_and_ledger_together() -> None:
    paid = payment().pay(now=NOW, reference="EXT-1", via="k1")
    settled = paid.settle(NOW + timedelta(seconds=1))
    refunded = settled.refund(now=NOW + timedelta(days=1), reason="barang rusak", by="admin-1")
    assert [h.status for h in refunded.history] == ["awaiting_payment", "paid", "settled", "refunded"]
    assert [p.kind for p in refunded.ledger] == ["payment_received", "settlement", "settlement_reversal", "refund"]
    assert (paid.version, settled.version, refunded.version) == (2, 3, 4)
    assert sum(leg.amount for posting in refunded.ledger for leg in posting.legs) == 0
    assert (paid.paid_amount, paid.reference, paid.paid_via) == (1_110_000, "EXT-1", "k1")
    assert refunded.refunded_by == "admin-1" and refunded.history[-1].actor == "admin-1"


@pytest.mark.parametrize(
    ("status", "command"),
    [
        ("awaiting_payment", lambda p: p.settle(NOW)),
        ("awaiting_payment", lambda p: p.refund(now=NOW, reason="r", by="a")),
        ("cancelled", lambda p: p.pay(now=NOW, reference="x", via="k")),
        ("refunded", lambda p: p.refund(now=NOW, reason="r", by="a")),
        ("settled", lambda p: p.cancel(now=NOW, reason="r")),
        ("paid", lambda p: p.expire_va(NOW)),
        ("settled", lambda p: p.reissue_va(number="8808000000000002", expires_at=NOW, now=NOW, actor="b")),
    ],
)
def test_a_command_in_the_wrong_status_is_an_illegal_transition_a_domain_error(status: str, command: object) -> None:
    """Never a 500: the kit renders every DomainError as a problem (IllegalTransition: 409)."""
    with pytest.raises(domain.IllegalTransition) as raised:
        command(payment(status))  # type: ignore[operator]
    assert isinstance(raised.value, errors.DomainError) and raised.value.code == "illegal_transition"
    assert raised.value.extra["current_status"] == status


def test_reissuing_a_va_expires_a_due_one_and_refuses_a_valid_one_or_a_card_payment() -> None:
    due = payment(va_expires_at=NOW - timedelta(seconds=1))
    renewed = due.reissue_va(number="8808000000000002", expires_at=NOW + timedelta(days=1), now=NOW, actor="bend-1")
    assert [h.status for h in renewed.history] == ["awaiting_payment", "va_expired", "awaiting_payment"]
    assert renewed.virtual_accounts == ["8808000000000002"] and renewed.va_number == "8808000000000002"
    with pytest.raises(errors.DomainError) as still_valid:
        payment().reissue_va(number="x", expires_at=NOW, now=NOW, actor="b")
    assert still_valid.value.code == "va_still_valid"
    with pytest.raises(errors.DomainError) as card:
        payment(method="kkpd").reissue_va(number="x", expires_at=NOW, now=NOW, actor="b")
    assert card.value.code == "wrong_method"


def test_a_zero_rupiah_invoice_settles_without_payment_with_postings_of_zero() -> None:
    free = payment(base=0, va_number=None, va_expires_at=None).settle_without_payment(NOW)
    assert free.status == "settled" and free.reference == domain.ZERO_AMOUNT_REFERENCE and free.paid_amount == 0
    assert [h.status for h in free.history] == ["awaiting_payment", "paid", "settled"]
    assert [(p.kind, [(leg.account, leg.amount) for leg in p.legs]) for p in free.ledger] == [
        ("payment_received", [("satker:dinkes", 0), ("escrow", 0)]),
        ("settlement", [("escrow", 0), ("provider:prov-1", 0), ("tax:ppn", 0), ("tax:pph22", 0)]),
    ]
    with pytest.raises(domain.IllegalTransition):
        payment().settle_without_payment(NOW)  # a bill of Rp 1,110,000 is paid, not waved through
