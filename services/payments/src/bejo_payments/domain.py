"""Payment rules: tax arithmetic, the state machine, ledger postings, callback decisions. Pure: no I/O,
no clock (callers pass `now`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Literal

from bejo_contracts import errors

PaymentStatus = Literal["awaiting_payment", "va_expired", "paid", "settled", "refunded", "cancelled"]

# status -> the statuses it may move to
TRANSITIONS: dict[str, frozenset[str]] = {
    "awaiting_payment": frozenset({"va_expired", "paid", "cancelled"}),
    "va_expired": frozenset({"awaiting_payment", "cancelled"}),
    "paid": frozenset({"settled", "refunded"}),
    "settled": frozenset({"refunded"}),
    "refunded": frozenset(),
    "cancelled": frozenset(),
}


class IllegalTransition(errors.IllegalTransition):
    """Named by the two statuses; the kit renders it as a 409 problem wherever a use case raises it."""

    def __init__(self, current: str, target: str, detail: str | None = None) -> None:
        super().__init__(
            detail or f"a payment in status {current!r} cannot become {target!r}",
            current_status=current,
            target_status=target,
        )
        self.current = current
        self.target = target


def ensure_transition(current: str, target: str) -> None:
    if target not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(current, target)


# -- invoice ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invoice:
    number: str
    base: int
    ppn: int
    pph22: int
    total: int  # what the buyer pays: base + ppn
    net_to_provider: int  # base - pph22


def tax_amount(base: int, rate: Decimal) -> int:
    """`rate` of `base`, rounded DOWN to the whole rupiah.

    Floor, because a tax amount must never exceed rate x base: neither the buyer (PPN) nor the
    provider (PPh 22 withheld) is charged a fraction of a rupiah the rate does not justify. Decimal
    keeps the product exact, so 0.5% of 199 is 0.995 -> 0, never a float's 0.99499...
    """
    if base < 0:
        raise ValueError("base must not be negative")
    return int((Decimal(base) * rate).to_integral_value(rounding=ROUND_FLOOR))


def compute_invoice(number: str, base: int, *, provider_pkp: bool, ppn_rate: Decimal, pph22_rate: Decimal) -> Invoice:
    ppn = tax_amount(base, ppn_rate) if provider_pkp else 0
    pph22 = tax_amount(base, pph22_rate)
    return Invoice(number=number, base=base, ppn=ppn, pph22=pph22, total=base + ppn, net_to_provider=base - pph22)


def invoice_base(lines: list[tuple[int, int]], order_total: int) -> int:
    """The sum of quantity x unit price over the lines; the order total when there are no lines.

    When both are present they must agree: an invoice that silently disagrees with the order it bills
    would be worse than refusing it.
    """
    if not lines:
        return order_total
    base = sum(quantity * unit_price for quantity, unit_price in lines)
    if base != order_total:
        raise ValueError(f"order lines sum to {base} but the order total is {order_total}")
    return base


def invoice_number(pemda: str, year: int, sequence: int) -> str:
    return f"INV/{pemda}/{year}/{sequence:06d}"


# -- ledger -----------------------------------------------------------------------------------

PostingKind = Literal["payment_received", "settlement", "settlement_reversal", "refund"]


@dataclass(frozen=True)
class Leg:
    account: str
    amount: int  # signed integer rupiah: + debit to the account's holdings, - credit


def satker_account(satker: str) -> str:
    return f"satker:{satker}"


def provider_account(provider_id: str) -> str:
    return f"provider:{provider_id}"


ESCROW = "escrow"
TAX_PPN = "tax:ppn"
TAX_PPH22 = "tax:pph22"


def balanced(legs: list[Leg]) -> list[Leg]:
    if sum(leg.amount for leg in legs) != 0:
        raise ValueError(f"posting does not balance: {legs}")
    return [leg for leg in legs if leg.amount != 0]


def payment_received_legs(invoice: Invoice, satker: str) -> list[Leg]:
    return balanced([Leg(satker_account(satker), -invoice.total), Leg(ESCROW, invoice.total)])


def settlement_legs(invoice: Invoice, provider_id: str) -> list[Leg]:
    return balanced(
        [
            Leg(ESCROW, -invoice.total),
            Leg(provider_account(provider_id), invoice.net_to_provider),
            Leg(TAX_PPN, invoice.ppn),
            Leg(TAX_PPH22, invoice.pph22),
        ]
    )


def reversal(legs: list[Leg]) -> list[Leg]:
    return balanced([Leg(leg.account, -leg.amount) for leg in legs])


def refund_postings(
    invoice: Invoice, satker: str, provider_id: str, settled: bool
) -> list[tuple[PostingKind, list[Leg]]]:
    """Reversing entries of a refund: undo the settlement (if it happened), then return the money."""
    postings: list[tuple[PostingKind, list[Leg]]] = []
    if settled:
        postings.append(("settlement_reversal", reversal(settlement_legs(invoice, provider_id))))
    postings.append(("refund", reversal(payment_received_legs(invoice, satker))))
    return postings


# -- bank callbacks ---------------------------------------------------------------------------

CallbackOutcome = Literal["pay", "repeat", "unknown_va", "expired", "paid_bill", "wrong_amount", "cancelled"]


def decide_callback(
    *,
    status: str,
    current_va: str | None,
    va_expires_at: datetime | None,
    total: int,
    va_number: str,
    paid_amount: int,
    now: datetime,
    paid_via: str | None = None,
    via: str | None = None,
) -> CallbackOutcome:
    """What a (verified) payment notification for `va_number` does to a payment. Order matters: a
    paid bill stays paid whatever the amount, an expired VA is refused before its amount is looked at.
    `via` names the notification; one that already paid this payment (`paid_via`) is a `repeat`."""
    if via is not None and paid_via == via:
        return "repeat"
    if status in ("paid", "settled", "refunded"):
        return "paid_bill"
    if status == "cancelled":
        return "cancelled"
    if va_number != current_va:
        # A VA is only replaced after it expired, so an earlier VA of this payment is an expired one.
        return "expired"
    if status == "va_expired" or va_expires_at is None or now >= va_expires_at:
        return "expired"
    if paid_amount != total:
        return "wrong_amount"
    return "pay"
