"""Use cases of the payments service: load, decide (domain), then ONE conditional write of the new
state, the ledger postings it owes and its events.

Every write of a payment is conditional on the version it was read at, so of replicas racing on
one payment exactly one wins and the others run again on fresh state (`retry_on_conflict`). The
postings go onto the payment's append-only `ledger` in that same write: the ledger can neither miss
nor double a posting, whichever replica wins and whenever one dies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
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
from bejo_kit.mongo import Document, utcnow

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


def invoice_of(doc: Document) -> domain.Invoice:
    return domain.Invoice(**doc["invoice"])


def can_see(principal: Principal, doc: Document) -> bool:
    if principal.role in BUYER_ROLES:
        return bool(principal.satker == doc["satker"])
    if principal.role == "penyedia":
        return bool(principal.provider_id == doc["provider_id"])
    return principal.oversees_pemda(doc["pemda"])


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

    async def visible(self, payment_id: str, principal: Principal) -> Document:
        doc = await self.repo.get(payment_id)
        if doc is None or not can_see(principal, doc):
            raise NotFound(f"no payment {payment_id!r}", code="payment_not_found")
        return doc

    async def for_order(self, order_id: str, principal: Principal) -> list[Document]:
        doc = await self.repo.get(payment_id_for(order_id))
        return [doc] if doc is not None and can_see(principal, doc) else []

    async def ledger(self, payment_id: str, principal: Principal) -> list[dict[str, Any]]:
        doc = await self.visible(payment_id, principal)
        return ledger.lines(doc)

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
        doc: Document = {
            "_id": payment_id,
            "order_id": order.order_id,
            "pemda": order.pemda,
            "satker": order.satker,
            "provider_id": order.provider_id,
            "provider_name": order.provider_name,
            "provider_pkp": order.provider_pkp,
            "method": order.payment_method,
            "bast_number": order.bast_number,
            "invoice": asdict(invoice),
            "status": "awaiting_payment",
            "va_number": None,
            "va_expires_at": None,
            "virtual_accounts": [],
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "ledger": [],
            "history": [{"status": "awaiting_payment", "at": now, "actor": "system"}],
        }
        events = [
            self.event(InvoiceIssued, doc, invoice=InvoiceFigures(**asdict(invoice)), bast_number=order.bast_number)
        ]
        if order.payment_method == "va":
            va_number, expires_at = await self._open_va(payment_id, invoice.total, now)
            doc.update(va_number=va_number, va_expires_at=expires_at, virtual_accounts=[va_number])
            events.append(
                self.event(VirtualAccountIssued, doc, va_number=va_number, amount=invoice.total, expires_at=expires_at)
            )
        if not await self.repo.insert(doc, events):
            # Invoiced concurrently by another consumer; this number stays unused (a gap).
            log.info("order invoiced concurrently", payment_id=payment_id, unused_number=number)

    async def on_order_cancelled(self, order: OrderCancelled) -> None:
        payment_id = payment_id_for(order.order_id)

        async def cancel() -> None:
            doc = await self.repo.get(payment_id)
            if doc is None or doc["status"] == "cancelled":
                return  # not invoiced (cancelled before the BAST), or a redelivery
            if doc["status"] not in ("awaiting_payment", "va_expired"):
                log.warning("order cancelled after payment; an admin refund is needed", payment_id=payment_id)
                return
            fields = {"cancelled_at": utcnow(), "cancel_reason": order.reason}
            await self.transition(doc, "cancelled", fields, [], "system")

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

    async def reissue_va(self, payment_id: str, principal: Principal) -> Document:
        async def reissue() -> Document:
            doc = await self.visible(payment_id, principal)  # the route requires the bendahara role
            if doc["method"] != "va":
                raise Conflict("this payment is by KKPD card, not by virtual account", code="wrong_method")
            now = utcnow()
            events: list[Any] = []
            if doc["status"] == "awaiting_payment":
                if doc["va_expires_at"] > now:
                    raise Conflict(
                        "the current virtual account is still valid",
                        code="va_still_valid",
                        va_expires_at=doc["va_expires_at"].isoformat(),
                    )
                # Due but not yet swept: expire it here, in the same write as the new VA.
                events.append(self.event(VirtualAccountExpired, doc, va_number=doc["va_number"]))
            elif doc["status"] != "va_expired":
                raise domain.IllegalTransition(
                    doc["status"],
                    "awaiting_payment",
                    f"a payment in status {doc['status']!r} gets no new virtual account",
                )
            total = doc["invoice"]["total"]
            # A VA opened by an attempt that then loses the race is never shown; paying it is refused.
            va_number, expires_at = await self._open_va(payment_id, total, now)
            events.append(
                self.event(VirtualAccountIssued, doc, va_number=va_number, amount=total, expires_at=expires_at)
            )
            update = {
                "$set": {
                    "status": "awaiting_payment",
                    "va_number": va_number,
                    "va_expires_at": expires_at,
                    "updated_at": now,
                },
                "$push": {
                    "virtual_accounts": va_number,
                    "history": {"status": "awaiting_payment", "at": now, "actor": principal.sub},
                },
                "$inc": {"version": 1},
            }
            return await self._write(doc, update, events)

        return await as_user_command(reissue)

    # -- KKPD -------------------------------------------------------------------------------------

    async def charge(self, payment_id: str, card_token: str, principal: Principal) -> Document:
        async def pay() -> Document:
            doc = await self.visible(payment_id, principal)  # the route requires the bendahara role
            if doc["method"] != "kkpd":
                raise Conflict("this payment is by virtual account, not by KKPD card", code="wrong_method")
            if doc["status"] != "awaiting_payment":
                raise domain.IllegalTransition(
                    doc["status"], "paid", f"a payment in status {doc['status']!r} cannot be charged"
                )
            total = doc["invoice"]["total"]
            # Keyed by payment and card: a retry after a lost race gets the same authorisation back.
            authorisation = await self.provider.authorise_card(f"{payment_id}:{card_token}", total, card_token)
            if not authorisation.approved:
                raise CardDeclined(f"the card was declined: {authorisation.reason}", reason=authorisation.reason)
            return await self.mark_paid(doc, reference=authorisation.reference, via=f"kkpd:{card_token}", now=utcnow())

        paid = await as_user_command(pay)
        return await self.settle_quietly(payment_id) or paid

    # -- paying, settling, refunding --------------------------------------------------------------

    async def mark_paid(self, doc: Document, *, reference: str, via: str, now: datetime) -> Document:
        invoice = invoice_of(doc)
        event = self.event(PaymentSucceeded, doc, amount=invoice.total, paid_at=now, reference=reference)
        fields = {"paid_at": now, "paid_amount": invoice.total, "reference": reference, "paid_via": via}
        entry = ledger.payment_received(invoice, doc["satker"], now)
        return await self.transition(doc, "paid", fields, [event], "bank", [entry])

    async def settle(self, payment_id: str) -> Document | None:
        """Pay the provider out of escrow (net of the taxes withheld); the payment afterwards. Runs right
        after a payment succeeds; the settlement sweep re-drives it if that was interrupted."""

        async def once() -> Document | None:
            doc = await self.repo.get(payment_id)
            if doc is None or doc["status"] != "paid":
                return doc  # settled (or refunded) already, perhaps by another replica
            invoice = invoice_of(doc)
            now = utcnow()
            event = self.event(
                SettlementCompleted, doc, net_to_provider=invoice.net_to_provider, ppn=invoice.ppn, pph22=invoice.pph22
            )
            entry = ledger.settlement(invoice, doc["provider_id"], now)
            return await self.transition(doc, "settled", {"settled_at": now}, [event], "system", [entry])

        return await retry_on_conflict(once)

    async def settle_quietly(self, payment_id: str) -> Document | None:
        try:
            return await self.settle(payment_id)
        except Exception as exc:  # noqa: BLE001 - the payment stands; the sweep settles it later
            log.warning("settlement deferred to the sweep", payment_id=payment_id, error=str(exc))
            return None

    async def refund(self, payment_id: str, reason: str, principal: Principal) -> Document:
        async def once() -> Document:
            doc = await self.visible(payment_id, principal)
            if doc["status"] not in ("paid", "settled"):
                raise domain.IllegalTransition(
                    doc["status"],
                    "refunded",
                    f"only a paid or settled payment can be refunded; this one is {doc['status']!r}",
                )
            invoice = invoice_of(doc)
            now = utcnow()
            settled = doc["status"] == "settled"
            entries = ledger.refund(invoice, doc["satker"], doc["provider_id"], settled, now)
            event = self.event(RefundCompleted, doc, amount=invoice.total, reason=reason, actor=actor_of(principal))
            fields = {"refunded_at": now, "refund_reason": reason, "refunded_by": principal.sub}
            return await self.transition(doc, "refunded", fields, [event], principal.sub, entries)

        return await as_user_command(once)

    # -- helpers ----------------------------------------------------------------------------------

    def event(self, model: type[PaymentEvent], doc: Document, **fields: Any) -> Any:
        data = model(
            payment_id=doc["_id"],
            order_id=doc["order_id"],
            pemda=doc["pemda"],
            satker=doc["satker"],
            provider_id=doc["provider_id"],
            provider_name=doc["provider_name"],
            method=doc["method"],
            **fields,
        )
        return self.bus.envelope(data)

    async def transition(
        self,
        doc: Document,
        target: str,
        fields: Document,
        events: list[Any],
        actor: str,
        postings: Sequence[Document] = (),
    ) -> Document:
        """Move the payment as read in `doc` to `target`, with the postings and events that go with it."""
        domain.ensure_transition(doc["status"], target)
        now = utcnow()
        update: Document = {
            "$set": {"status": target, "updated_at": now, **fields},
            "$push": {"history": {"status": target, "at": now, "actor": actor}},
            "$inc": {"version": 1},
        }
        if postings:
            update["$push"]["ledger"] = {"$each": list(postings)}
        return await self._write(doc, update, events)

    async def _write(self, doc: Document, update: Document, events: list[Any]) -> Document:
        after = await self.repo.update(doc, update, events)
        if after is None:
            raise WriteConflict(f"payment {doc['_id']} changed since version {doc['version']}")
        return after
