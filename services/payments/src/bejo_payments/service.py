"""Use cases of the payments service: load, decide (domain), then ONE conditional write of the new
state, the ledger postings it owes and its events.

Every write of a payment is conditional on the version it was read at, so of replicas racing on
one payment exactly one wins and the others run again on fresh state (`retry_on_conflict`). The
postings go onto the payment's append-only `ledger` in that same write: the ledger can neither miss
nor double a posting, whichever replica wins and whenever one dies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import orjson

from bejo_contracts import Actor
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

from . import domain, snap
from .adapters import PaymentProvider
from .repository import PaymentsRepository
from .settings import PaymentsSettings

log = get_logger(__name__)

T = TypeVar("T")
BUYER_ROLES = frozenset({"pp", "ppk", "bendahara"})
SWEEP_BATCH = 100
# A payment still `paid` this long after its write lost its settlement (the writer died or failed).
SETTLEMENT_GRACE = timedelta(seconds=30)


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
    return Actor(sub=principal.sub, role=principal.role, name=principal.name)  # type: ignore[arg-type]


def posting(kind: domain.PostingKind, legs: list[domain.Leg], at: datetime) -> Document:
    return {"kind": kind, "at": at, "legs": [{"account": leg.account, "amount": leg.amount} for leg in legs]}


async def as_user_command(operation: Callable[[], Awaitable[T]]) -> T:
    """A person's command that keeps losing races to other writers gets a 409 to retry."""
    try:
        return await retry_on_conflict(operation)
    except WriteConflict as exc:
        raise Conflict("the payment changed meanwhile; retry", code="concurrent_update") from exc


@dataclass(frozen=True)
class CallbackReply:
    http_status: int
    body: dict[str, Any]


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
        return [
            {"account": leg["account"], "amount": leg["amount"], "kind": entry["kind"], "at": entry["at"]}
            for entry in doc["ledger"]
            for leg in entry["legs"]
        ]

    # -- invoicing --------------------------------------------------------------------------------

    async def on_order_received(self, order: OrderReceived) -> None:
        payment_id = payment_id_for(order.order_id)
        if await self.repo.get(payment_id) is not None:
            return  # redelivery: this order is invoiced already
        base = domain.invoice_base([(line.quantity, line.unit_price) for line in order.lines], order.total)
        now = utcnow()
        year = order.occurred_at.astimezone(snap.WIB).year
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
            self._event(InvoiceIssued, doc, invoice=InvoiceFigures(**asdict(invoice)), bast_number=order.bast_number)
        ]
        if order.payment_method == "va":
            va_number, expires_at = await self._open_va(payment_id, invoice.total, now)
            doc.update(va_number=va_number, va_expires_at=expires_at, virtual_accounts=[va_number])
            events.append(
                self._event(VirtualAccountIssued, doc, va_number=va_number, amount=invoice.total, expires_at=expires_at)
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
            await self._transition(doc, "cancelled", fields, [], "system")

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
                events.append(self._event(VirtualAccountExpired, doc, va_number=doc["va_number"]))
            elif doc["status"] != "va_expired":
                raise Conflict(
                    f"a payment in status {doc['status']!r} gets no new virtual account",
                    code="illegal_transition",
                    current_status=doc["status"],
                )
            total = doc["invoice"]["total"]
            # A VA opened by an attempt that then loses the race is never shown; paying it is refused.
            va_number, expires_at = await self._open_va(payment_id, total, now)
            events.append(
                self._event(VirtualAccountIssued, doc, va_number=va_number, amount=total, expires_at=expires_at)
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

    async def expire_due(self, now: datetime) -> int:
        """Expire the VAs due at `now`. Every replica sweeps; the conditional transition lets exactly
        one of them expire each VA, and a payment paid meanwhile is left alone."""
        expired = 0
        for doc in await self.repo.due_expiries(now, SWEEP_BATCH):
            event = self._event(VirtualAccountExpired, doc, va_number=doc["va_number"])
            try:
                await self._transition(doc, "va_expired", {"va_expired_at": now}, [event], "system")
            except WriteConflict:
                continue  # changed since the query (paid, cancelled, expired elsewhere): the next pass re-reads
            expired += 1
        return expired

    # -- bank callbacks ---------------------------------------------------------------------------

    async def handle_callback(self, headers: dict[str, str], body: bytes, now: datetime) -> CallbackReply:
        """Authenticate a SNAP payment notification, then apply it once per X-EXTERNAL-ID and day."""
        for name in ("X-TIMESTAMP", "X-SIGNATURE", "X-PARTNER-ID", "X-EXTERNAL-ID"):
            if not headers.get(name):
                return reply(snap.MISSING_MANDATORY_FIELD, name)
        try:
            timestamp = snap.parse_timestamp(headers["X-TIMESTAMP"])
        except ValueError:
            return reply(snap.INVALID_FIELD_FORMAT, "X-TIMESTAMP")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return reply(snap.BAD_REQUEST, "body is not JSON")
        if not snap.within_window(timestamp, now, self.settings.snap_timestamp_window_seconds):
            return reply(snap.STALE_TIMESTAMP)
        partner = headers["X-PARTNER-ID"]
        secret = self.settings.snap_client_secrets.get(partner)
        if secret is None or not snap.verify(
            secret,
            headers["X-SIGNATURE"],
            "POST",
            "/api/v1/payments/callbacks/snap",
            self.settings.snap_callback_token,
            body,
            headers["X-TIMESTAMP"],
        ):
            return reply(snap.UNAUTHORIZED_SIGNATURE)
        external_id = headers["X-EXTERNAL-ID"]
        if not snap.valid_external_id(external_id):
            return reply(snap.INVALID_FIELD_FORMAT, "X-EXTERNAL-ID")
        # Authenticated from here on: every answer is stored and a duplicate gets it back.
        key = snap.idempotency_key(partner, timestamp, external_id)
        digest = snap.body_digest(body)
        record = await self.repo.callback_record(key, digest, now)
        if record["body_sha256"] != digest:
            return reply(snap.DUPLICATE_EXTERNAL_ID)
        if "response" not in record:
            # Duplicates in flight together (on any replica) each apply it, as of the first receipt:
            # one pays, the others see it paid by this key (`repeat`), so all reach the same answer.
            outcome = await self._apply_notification(payload, external_id, key, record["at"])
            record = await self.repo.answer_callback(key, outcome.http_status, outcome.body)
        return CallbackReply(record["http_status"], record["response"])

    async def _apply_notification(self, payload: Any, external_id: str, key: str, at: datetime) -> CallbackReply:
        if not isinstance(payload, dict):
            return reply(snap.BAD_REQUEST, "body must be a JSON object")
        va_number = payload.get("virtualAccountNo")
        amount_field = payload.get("paidAmount")
        if not isinstance(va_number, str) or not va_number.strip():
            return reply(snap.MISSING_MANDATORY_FIELD, "virtualAccountNo")
        if not isinstance(amount_field, dict) or not isinstance(amount_field.get("value"), str):
            return reply(snap.MISSING_MANDATORY_FIELD, "paidAmount.value")
        if amount_field.get("currency") != "IDR":
            return reply(snap.INVALID_FIELD_FORMAT, "paidAmount.currency must be IDR")
        try:
            paid = Decimal(amount_field["value"])
        except InvalidOperation:
            return reply(snap.INVALID_FIELD_FORMAT, "paidAmount.value")
        va_number = va_number.strip()
        echo: dict[str, Any] = {"virtualAccountData": {"virtualAccountNo": va_number, "paidAmount": amount_field}}
        if not paid.is_finite() or paid != paid.to_integral_value():
            return reply(snap.INVALID_AMOUNT, "whole rupiah only", **echo)
        payment_id = await self.repo.payment_of_va(va_number)
        if payment_id is None:
            return reply(snap.UNKNOWN_BILL, **echo)

        async def apply() -> domain.CallbackOutcome:
            doc = await self.repo.get(payment_id)
            if doc is None:
                return "unknown_va"
            outcome = domain.decide_callback(
                status=doc["status"],
                current_va=doc["va_number"],
                va_expires_at=doc["va_expires_at"],
                total=doc["invoice"]["total"],
                va_number=va_number,
                paid_amount=int(paid),
                now=at,
                paid_via=doc.get("paid_via"),
                via=key,
            )
            if outcome == "pay":
                await self._mark_paid(doc, reference=external_id, via=key, now=at)
            return outcome

        outcome = await retry_on_conflict(apply)
        if outcome not in ("pay", "repeat"):
            return reply(CALLBACK_CODES[outcome], **echo)
        await self._settle_quietly(payment_id)
        return reply(snap.SUCCESS, **echo)

    # -- KKPD -------------------------------------------------------------------------------------

    async def charge(self, payment_id: str, card_token: str, principal: Principal) -> Document:
        async def pay() -> Document:
            doc = await self.visible(payment_id, principal)  # the route requires the bendahara role
            if doc["method"] != "kkpd":
                raise Conflict("this payment is by virtual account, not by KKPD card", code="wrong_method")
            if doc["status"] != "awaiting_payment":
                raise Conflict(
                    f"a payment in status {doc['status']!r} cannot be charged",
                    code="illegal_transition",
                    current_status=doc["status"],
                )
            total = doc["invoice"]["total"]
            # Keyed by payment and card: a retry after a lost race gets the same authorisation back.
            authorisation = await self.provider.authorise_card(f"{payment_id}:{card_token}", total, card_token)
            if not authorisation.approved:
                raise CardDeclined(f"the card was declined: {authorisation.reason}", reason=authorisation.reason)
            return await self._mark_paid(doc, reference=authorisation.reference, via=f"kkpd:{card_token}", now=utcnow())

        paid = await as_user_command(pay)
        return await self._settle_quietly(payment_id) or paid

    # -- paying, settling, refunding --------------------------------------------------------------

    async def _mark_paid(self, doc: Document, *, reference: str, via: str, now: datetime) -> Document:
        invoice = invoice_of(doc)
        event = self._event(PaymentSucceeded, doc, amount=invoice.total, paid_at=now, reference=reference)
        fields = {"paid_at": now, "paid_amount": invoice.total, "reference": reference, "paid_via": via}
        entry = posting("payment_received", domain.payment_received_legs(invoice, doc["satker"]), now)
        return await self._transition(doc, "paid", fields, [event], "bank", [entry])

    async def settle(self, payment_id: str) -> Document | None:
        """Pay the provider out of escrow (net of the taxes withheld); the payment afterwards. Runs right
        after a payment succeeds; the settlement sweep re-drives it if that was interrupted."""

        async def once() -> Document | None:
            doc = await self.repo.get(payment_id)
            if doc is None or doc["status"] != "paid":
                return doc  # settled (or refunded) already, perhaps by another replica
            invoice = invoice_of(doc)
            now = utcnow()
            event = self._event(
                SettlementCompleted, doc, net_to_provider=invoice.net_to_provider, ppn=invoice.ppn, pph22=invoice.pph22
            )
            entry = posting("settlement", domain.settlement_legs(invoice, doc["provider_id"]), now)
            return await self._transition(doc, "settled", {"settled_at": now}, [event], "system", [entry])

        return await retry_on_conflict(once)

    async def _settle_quietly(self, payment_id: str) -> Document | None:
        try:
            return await self.settle(payment_id)
        except Exception as exc:  # noqa: BLE001 - the payment stands; the sweep settles it later
            log.warning("settlement deferred to the sweep", payment_id=payment_id, error=str(exc))
            return None

    async def refund(self, payment_id: str, reason: str, principal: Principal) -> Document:
        async def once() -> Document:
            doc = await self.visible(payment_id, principal)
            if doc["status"] not in ("paid", "settled"):
                raise Conflict(
                    f"only a paid or settled payment can be refunded; this one is {doc['status']!r}",
                    code="illegal_transition",
                    current_status=doc["status"],
                )
            invoice = invoice_of(doc)
            now = utcnow()
            settled = doc["status"] == "settled"
            entries = [
                posting(kind, legs, now)
                for kind, legs in domain.refund_postings(invoice, doc["satker"], doc["provider_id"], settled)
            ]
            event = self._event(RefundCompleted, doc, amount=invoice.total, reason=reason, actor=actor_of(principal))
            fields = {"refunded_at": now, "refund_reason": reason, "refunded_by": principal.sub}
            return await self._transition(doc, "refunded", fields, [event], principal.sub, entries)

        return await as_user_command(once)

    # -- background -------------------------------------------------------------------------------

    async def settle_stalled(self, now: datetime) -> int:
        """Settle payments left `paid` by a writer that died or failed before settling them."""
        stalled = await self.repo.stalled_paid(now - SETTLEMENT_GRACE, SWEEP_BATCH)
        for doc in stalled:
            await self._settle_quietly(doc["_id"])
        return len(stalled)

    async def run_background(self) -> None:
        """Every replica runs this; see `expire_due` and `settle` for why that is safe."""
        loop = asyncio.get_running_loop()
        next_settlement_sweep = 0.0
        while True:
            now = utcnow()
            if loop.time() >= next_settlement_sweep:
                await self.settle_stalled(now)
                next_settlement_sweep = loop.time() + self.settings.rescan_interval_seconds
            await self.expire_due(now)
            await asyncio.sleep(self.settings.expiry_check_interval_seconds)

    # -- helpers ----------------------------------------------------------------------------------

    def _event(self, model: type[PaymentEvent], doc: Document, **fields: Any) -> Any:
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

    async def _transition(
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


CALLBACK_CODES: dict[str, snap.Code] = {
    "unknown_va": snap.UNKNOWN_BILL,
    "expired": snap.EXPIRED_BILL,
    "paid_bill": snap.PAID_BILL,
    "wrong_amount": snap.INVALID_AMOUNT,
    "cancelled": snap.TRANSACTION_CANCELLED,
}


def reply(code: snap.Code, detail: str | None = None, **extra: Any) -> CallbackReply:
    return CallbackReply(code.http_status, code.body(detail, **extra))
