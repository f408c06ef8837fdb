"""The payment aggregate and its rules: tax arithmetic, the state machine, ledger postings, callback
decisions. Pure: no I/O, no clock (callers pass `now`).

`Payment` is the aggregate as stored; each of its commands (`pay`, `settle`, `refund`, `cancel`,
`expire_va`, `reissue_va`, `settle_without_payment`) returns the payment after the change, with its
history entry and ledger postings, or raises `IllegalTransition` (a 409 problem, never a 500).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bejo_contracts import errors
from bejo_contracts.common import PaymentMethod

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
    """The legs, checked to sum to zero, without their zero legs (a non-PKP settlement has no PPN
    leg). A posting of nothing at all (a zero-rupiah invoice) keeps its legs at 0, so the ledger
    still shows that it happened and to whom."""
    if sum(leg.amount for leg in legs) != 0:
        raise ValueError(f"posting does not balance: {legs}")
    return [leg for leg in legs if leg.amount != 0] or legs


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


# -- the aggregate --------------------------------------------------------------------------------

ZERO_AMOUNT_REFERENCE = "ZERO-AMOUNT"  # the reference of a payment settled without money moving


class HistoryEntry(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    status: PaymentStatus
    at: datetime
    actor: str = Field(description="`system`, `bank`, or the `sub` of the person who acted")


class Posting(BaseModel):
    """A balanced ledger posting; a payment's postings are only ever appended to."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: PostingKind
    at: datetime
    legs: list[Leg]

    @classmethod
    def of(cls, kind: PostingKind, legs: list[Leg], at: datetime) -> Posting:
        return cls(kind=kind, at=at, legs=legs)


class Payment(BaseModel):
    """The payment of one order, as stored (`_id` = `pay-<order id>`; storage fields such as
    `outbox` are ignored on load)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: str = Field(alias="_id")
    order_id: str
    pemda: str
    satker: str
    provider_id: str
    provider_name: str
    provider_pkp: bool
    method: PaymentMethod
    bast_number: str
    invoice: Invoice
    status: PaymentStatus
    va_number: str | None = None
    va_expires_at: datetime | None = None
    virtual_accounts: list[str] = Field(default_factory=list)
    version: int = 1
    created_at: datetime
    updated_at: datetime
    reference: str | None = None
    paid_at: datetime | None = None
    paid_amount: int | None = None
    paid_via: str | None = None
    settled_at: datetime | None = None
    refunded_at: datetime | None = None
    refund_reason: str | None = None
    refunded_by: str | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    va_expired_at: datetime | None = None
    ledger: list[Posting] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)

    # -- the one way a status changes --------------------------------------------------------------

    def transition(
        self,
        target: PaymentStatus,
        now: datetime,
        actor: str,
        changes: dict[str, Any] | None = None,
        postings: Sequence[Posting] = (),
    ) -> Payment:
        ensure_transition(self.status, target)
        return self.model_copy(
            update={
                **(changes or {}),
                "status": target,
                "updated_at": now,
                "version": self.version + 1,
                "history": [*self.history, HistoryEntry(status=target, at=now, actor=actor)],
                "ledger": [*self.ledger, *postings],
            }
        )

    # -- commands ----------------------------------------------------------------------------------

    def pay(self, *, now: datetime, reference: str, via: str, actor: str = "bank") -> Payment:
        posting = Posting.of("payment_received", payment_received_legs(self.invoice, self.satker), now)
        changes = {"paid_at": now, "paid_amount": self.invoice.total, "reference": reference, "paid_via": via}
        return self.transition("paid", now, actor, changes, [posting])

    def settle(self, now: datetime) -> Payment:
        posting = Posting.of("settlement", settlement_legs(self.invoice, self.provider_id), now)
        return self.transition("settled", now, "system", {"settled_at": now}, [posting])

    def settle_without_payment(self, now: datetime) -> Payment:
        """A zero-rupiah invoice (say, a 100% discount) is paid and settled at once, no money moving:
        a VA or a card charge of Rp 0 cannot exist, and the order must not wait for one."""
        if self.invoice.total != 0:
            raise IllegalTransition(
                self.status,
                "paid",
                f"only a zero-rupiah invoice settles without payment; this one is {self.invoice.total}",
            )
        return self.pay(now=now, reference=ZERO_AMOUNT_REFERENCE, via="zero-amount", actor="system").settle(now)

    def refund(self, *, now: datetime, reason: str, by: str) -> Payment:
        if self.status not in ("paid", "settled"):
            raise IllegalTransition(
                self.status, "refunded", f"only a paid or settled payment can be refunded; this one is {self.status!r}"
            )
        postings = [
            Posting.of(kind, legs, now)
            for kind, legs in refund_postings(self.invoice, self.satker, self.provider_id, self.status == "settled")
        ]
        changes = {"refunded_at": now, "refund_reason": reason, "refunded_by": by}
        return self.transition("refunded", now, by, changes, postings)

    def cancel(self, *, now: datetime, reason: str | None) -> Payment:
        return self.transition("cancelled", now, "system", {"cancelled_at": now, "cancel_reason": reason})

    def expire_va(self, now: datetime) -> Payment:
        return self.transition("va_expired", now, "system", {"va_expired_at": now})

    def va_due(self, now: datetime) -> bool:
        return self.status == "awaiting_payment" and (self.va_expires_at is None or self.va_expires_at <= now)

    def ensure_reissuable(self, now: datetime) -> None:
        """Raise unless `reissue_va` may give this payment a new VA now."""
        if self.method != "va":
            raise errors.DomainError(
                "this payment is by KKPD card, not by virtual account", code="wrong_method", method=self.method
            )
        if self.status == "awaiting_payment":
            if not self.va_due(now):
                assert self.va_expires_at is not None
                raise errors.DomainError(
                    "the current virtual account is still valid",
                    code="va_still_valid",
                    va_expires_at=self.va_expires_at.isoformat(),
                )
        elif self.status != "va_expired":
            raise IllegalTransition(
                self.status, "awaiting_payment", f"a payment in status {self.status!r} gets no new virtual account"
            )

    def reissue_va(self, *, number: str, expires_at: datetime, now: datetime, actor: str) -> Payment:
        """A new VA after the previous one expired (expiring a due one not yet swept on the way)."""
        self.ensure_reissuable(now)
        current = self.expire_va(now) if self.status == "awaiting_payment" else self
        changes = {
            "va_number": number,
            "va_expires_at": expires_at,
            "virtual_accounts": [*current.virtual_accounts, number],
        }
        return current.transition("awaiting_payment", now, actor, changes)

    def decide_callback(self, va_number: str, paid_amount: int, now: datetime, *, via: str) -> CallbackOutcome:
        return decide_callback(
            status=self.status,
            current_va=self.va_number,
            va_expires_at=self.va_expires_at,
            total=self.invoice.total,
            va_number=va_number,
            paid_amount=paid_amount,
            now=now,
            paid_via=self.paid_via,
            via=via,
        )


def invoice_figures(invoice: Invoice) -> dict[str, int | str]:
    return asdict(invoice)
