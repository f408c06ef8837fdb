"""Use cases of the payments service: load, decide (domain), then ONE conditional write of the new
state, the ledger postings it owes and its events.

Every write of a payment is conditional on the version it was read at, so of replicas racing on
one payment exactly one wins and the others run again on fresh state (`retry_on_conflict`). The
postings go onto the payment's append-only `ledger` in that same write: the ledger can neither miss
nor double a posting, whichever replica wins and whenever one dies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any, TypeVar

from bejo_contracts import WIB, Actor
from bejo_contracts.orders import OrderCancelled, OrderReceived
from bejo_contracts.payments import (
    InvoiceFigures,
    InvoiceIssued,
    PaymentEvent,
    PaymentSucceeded,
    RefundCompleted,
    SettlementCompleted,
    VirtualAccountExpired,
    VirtualAccountIssued,
)
from bejo_kit.auth import Principal
from bejo_kit.bus import Bus
from bejo_kit.concurrency import WriteConflict, retry_on_conflict
from bejo_kit.errors import Conflict, NotFound, Problem
from bejo_kit.logging import get_logger
from bejo_kit.mongo import utcnow

from . import domain, ledger
from .adapters import PaymentProvider
from .repository import PaymentsRepository
from .settings import PaymentsSettings

log = get_logger(__name__)

T = TypeVar("T")
BUYER_ROLES = frozenset({"pp", "ppk", "bendahara"})


class CardDeclined(Problem):
    status = 402
    code = "card_declined"
    title = "Card declined"


def payment_id_for(order_id: str) -> str:
    """One payment per order: the id is derived from the order, so a redelivered event cannot make two."""
    return f"pay-{order_id}"


def can_see(principal: Principal, payment: domain.Payment) -> bool:
    if principal.role in BUYER_ROLES:
        # Satker codes are unique only within a pemda: 36.03's "dinkes" is not 35.15's.
        return bool(principal.pemda == payment.pemda and principal.satker == payment.satker)
    if principal.role == "penyedia":
        return bool(principal.provider_id == payment.provider_id)
    return principal.oversees_pemda(payment.pemda)


def actor_of(principal: Principal) -> Actor:
    return Actor(sub=principal.sub, role=principal.role, name=principal.name)


async def as_user_command(operation: Callable[[], Awaitable[T]]) -> T:
    """A person's command that keeps losing races to other writers gets a 409 to retry."""
    try:
        return await retry_on_conflict(operation)
    except WriteConflict as exc:
        raise Conflict("the payment changed meanwhile; retry", code="concurrent_update") from exc


class PaymentsService:
    def __init__(
        self,
        settings: PaymentsSettings,
        repository: PaymentsRepository,
        bus: Bus,
        provider: PaymentProvider,
    ) -> None:
        self.settings = settings
        self.repo = repository
        self.bus = bus
        self.provider = provider

    # -- reading ----------------------------------------------------------------------------------

    async def visible(self, payment_id: str, principal: Principal) -> domain.Payment:
        payment = await self.repo.get(payment_id)
        if payment is None or not can_see(principal, payment):
            raise NotFound(f"no payment {payment_id!r}", code="payment_not_found")
        return payment

    async def for_order(self, order_id: str, principal: Principal) -> list[domain.Payment]:
        payment = await self.repo.get(payment_id_for(order_id))
        return [payment] if payment is not None and can_see(principal, payment) else []

    async def ledger(self, payment_id: str, principal: Principal) -> list[dict[str, Any]]:
        return ledger.lines(await self.visible(payment_id, principal))

    # -- invoicing --------------------------------------------------------------------------------

    async def on_order_received(self, order: OrderReceived) -> None:
        payment_id = payment_id_for(order.order_id)
        if await self.repo.get(payment_id) is not None:
            return  # redelivery: this order is invoiced already
        base = domain.invoice_base([(line.quantity, line.unit_price) for line in order.lines], order.total)
        now = utcnow()
        year = order.occurred_at.astimezone(WIB).year
        number = await self.repo.next_invoice_number(order.pemda, year)
        invoice = domain.compute_invoice(
            number,
            base,
            provider_pkp=order.provider_pkp,
            ppn_rate=self.settings.ppn_rate,
            pph22_rate=self.settings.pph22_rate,
        )
        payment = domain.Payment(
            id=payment_id,
            order_id=order.order_id,
            pemda=order.pemda,
            satker=order.satker,
            provider_id=order.provider_id,
            provider_name=order.provider_name,
            provider_pkp=order.provider_pkp,
            method=order.payment_method,
            bast_number=order.bast_number,
            invoice=invoice,
            status="awaiting_payment",
            created_at=now,
            updated_at=now,
            history=[domain.HistoryEntry(status="awaiting_payment", at=now, actor="system")],
        )
        events = [
            self.event(InvoiceIssued, payment, invoice=InvoiceFigures(**asdict(invoice)), bast_number=order.bast_number)
        ]
        if invoice.total == 0:
            # Nothing to pay (say, a 100% discount): no VA or card, paid and settled in this write.
            payment = payment.settle_without_payment(now)
            events += [self._succeeded(payment), self._settled(payment)]
            log.info("zero-rupiah invoice settled without payment", payment_id=payment_id, invoice=number)
        elif order.payment_method == "va":
            va_number, expires_at = await self._open_va(payment_id, invoice.total, now)
            payment = payment.model_copy(
                update={"va_number": va_number, "va_expires_at": expires_at, "virtual_accounts": [va_number]}
            )
            events.append(
                self.event(
                    VirtualAccountIssued, payment, va_number=va_number, amount=invoice.total, expires_at=expires_at
                )
            )
        if not await self.repo.insert(payment, events):
            # Invoiced concurrently by another consumer; this number stays unused (a gap).
            log.info("order invoiced concurrently", payment_id=payment_id, unused_number=number)

    async def on_order_cancelled(self, order: OrderCancelled) -> None:
        payment_id = payment_id_for(order.order_id)

        async def cancel() -> None:
            payment = await self.repo.get(payment_id)
            if payment is None or payment.status == "cancelled":
                return  # not invoiced (cancelled before the BAST), or a redelivery
            if payment.status not in ("awaiting_payment", "va_expired"):
                log.warning("order cancelled after payment; an admin refund is needed", payment_id=payment_id)
                return
            await self._save(payment, payment.cancel(now=utcnow(), reason=order.reason), [])

        await retry_on_conflict(cancel)

    # -- virtual accounts -------------------------------------------------------------------------

    async def _open_va(self, payment_id: str, amount: int, now: datetime) -> tuple[str, datetime]:
        expires_at = now + timedelta(seconds=self.settings.va_validity_seconds)
        expires_at = expires_at.replace(microsecond=expires_at.microsecond // 1000 * 1000)
        for _ in range(5):
            va = await self.provider.issue_virtual_account(payment_id, amount, expires_at)
            if await self.repo.register_va(va.number, payment_id, amount, va.expires_at):
                return va.number, va.expires_at
        raise RuntimeError("the bank kept issuing VA numbers that are already in use")

    async def reissue_va(self, payment_id: str, principal: Principal) -> domain.Payment:
        async def reissue() -> domain.Payment:
            payment = await self.visible(payment_id, principal)  # the route requires the bendahara role
            now = utcnow()
            payment.ensure_reissuable(now)  # before asking the bank for a number
            # A VA opened by an attempt that then loses the race is never shown; paying it is refused.
            va_number, expires_at = await self._open_va(payment_id, payment.invoice.total, now)
            after = payment.reissue_va(number=va_number, expires_at=expires_at, now=now, actor=principal.sub)
            events: list[Any] = []
            if payment.status == "awaiting_payment":  # due but not yet swept: expired in this write
                events.append(self.event(VirtualAccountExpired, payment, va_number=payment.va_number))
            events.append(
                self.event(
                    VirtualAccountIssued, after, va_number=va_number, amount=after.invoice.total, expires_at=expires_at
                )
            )
            return await self._save(payment, after, events)

        return await as_user_command(reissue)

    async def expire_va(self, payment: domain.Payment, now: datetime) -> domain.Payment:
        event = self.event(VirtualAccountExpired, payment, va_number=payment.va_number)
        return await self._save(payment, payment.expire_va(now), [event])

    # -- KKPD -------------------------------------------------------------------------------------

    async def charge(self, payment_id: str, card_token: str, principal: Principal) -> domain.Payment:
        async def pay() -> domain.Payment:
            payment = await self.visible(payment_id, principal)  # the route requires the bendahara role
            if payment.method != "kkpd":
                raise Conflict("this payment is by virtual account, not by KKPD card", code="wrong_method")
            if payment.status != "awaiting_payment":
                raise domain.IllegalTransition(
                    payment.status, "paid", f"a payment in status {payment.status!r} cannot be charged"
                )
            total = payment.invoice.total
            # Keyed by payment and card: a retry after a lost race gets the same authorisation back.
            authorisation = await self.provider.authorise_card(f"{payment_id}:{card_token}", total, card_token)
            if not authorisation.approved:
                raise CardDeclined(f"the card was declined: {authorisation.reason}", reason=authorisation.reason)
            return await self.mark_paid(
                payment, reference=authorisation.reference, via=f"kkpd:{card_token}", now=utcnow()
            )

        paid = await as_user_command(pay)
        return await self.settle_quietly(payment_id) or paid

    # -- paying, settling, refunding --------------------------------------------------------------

    async def mark_paid(self, payment: domain.Payment, *, reference: str, via: str, now: datetime) -> domain.Payment:
        after = payment.pay(now=now, reference=reference, via=via)
        return await self._save(payment, after, [self._succeeded(after)])

    async def settle(self, payment_id: str) -> domain.Payment | None:
        """Pay the provider out of escrow (net of the taxes withheld); the payment afterwards. Runs right
        after a payment succeeds; the settlement sweep re-drives it if that was interrupted."""

        async def once() -> domain.Payment | None:
            payment = await self.repo.get(payment_id)
            if payment is None or payment.status != "paid":
                return payment  # settled (or refunded) already, perhaps by another replica
            after = payment.settle(utcnow())
            return await self._save(payment, after, [self._settled(after)])

        return await retry_on_conflict(once)

    async def settle_quietly(self, payment_id: str) -> domain.Payment | None:
        try:
            return await self.settle(payment_id)
        except Exception as exc:  # noqa: BLE001 - the payment stands; the sweep settles it later
            log.warning("settlement deferred to the sweep", payment_id=payment_id, error=str(exc))
            return None

    async def refund(self, payment_id: str, reason: str, principal: Principal) -> domain.Payment:
        async def once() -> domain.Payment:
            payment = await self.visible(payment_id, principal)
            after = payment.refund(now=utcnow(), reason=reason, by=principal.sub)
            event = self.event(
                RefundCompleted, payment, amount=payment.invoice.total, reason=reason, actor=actor_of(principal)
            )
            return await self._save(payment, after, [event])

        return await as_user_command(once)

    # -- helpers ----------------------------------------------------------------------------------

    def _succeeded(self, paid: domain.Payment) -> Any:
        assert paid.paid_at is not None and paid.reference is not None
        return self.event(
            PaymentSucceeded, paid, amount=paid.invoice.total, paid_at=paid.paid_at, reference=paid.reference
        )

    def _settled(self, settled: domain.Payment) -> Any:
        invoice = settled.invoice
        return self.event(
            SettlementCompleted, settled, net_to_provider=invoice.net_to_provider, ppn=invoice.ppn, pph22=invoice.pph22
        )

    def event(self, model: type[PaymentEvent], payment: domain.Payment, **fields: Any) -> Any:
        data = model(
            payment_id=payment.id,
            order_id=payment.order_id,
            pemda=payment.pemda,
            satker=payment.satker,
            provider_id=payment.provider_id,
            provider_name=payment.provider_name,
            method=payment.method,
            **fields,
        )
        return self.bus.envelope(data)

    async def _save(self, before: domain.Payment, after: domain.Payment, events: list[Any]) -> domain.Payment:
        saved = await self.repo.save(before, after, events)
        if saved is None:
            raise WriteConflict(f"payment {before.id} changed since version {before.version}")
        return saved
