"""Use cases of the payments service: load, decide (domain), write state and outbox events in one write.

Concurrency: every change of a payment holds `KeyedLocks` for its id and is a conditional update on
`{"status", "version"}`. On MongoDB the condition alone is atomic across replicas; on FerretDB it is
not, and the lock makes it safe within a replica (see docs/payments.md).

Ledger: a transition that moves money records the postings it owes (`pending_postings`) in the same
write as the new status; the postings are then inserted with deterministic `_id`s and the list is
cleared. A crash in between leaves `ledger_due` set and the periodic rescan finishes the job, so the
journal never misses nor doubles a posting.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

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
from bejo_kit.errors import Conflict, NotFound, Problem
from bejo_kit.logging import get_logger
from bejo_kit.mongo import Document, utcnow
from bejo_kit.store import KeyedLocks

from . import domain, snap
from .adapters import PaymentProvider
from .repository import PaymentsRepository
from .settings import PaymentsSettings

log = get_logger(__name__)

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
    return Actor(sub=principal.sub, role=principal.role, name=principal.name)  # type: ignore[arg-type]


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
        self.locks = KeyedLocks()
        # (expires_at, payment id, VA number): VAs this replica will expire when due.
        self._expiries: list[tuple[datetime, str, str]] = []

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
        await self.visible(payment_id, principal)
        return [
            {"account": leg["account"], "amount": leg["amount"], "kind": posting["kind"], "at": posting["at"]}
            for posting in await self.repo.postings(payment_id)
            for leg in posting["legs"]
        ]

    # -- invoicing --------------------------------------------------------------------------------

    async def on_order_received(self, order: OrderReceived) -> None:
        payment_id = payment_id_for(order.order_id)
        async with self.locks.hold(payment_id):
            if await self.repo.get(payment_id) is not None:
                return  # redelivery: this order is invoiced already
            base = domain.invoice_base([(line.quantity, line.unit_price) for line in order.lines], order.total)
            now = utcnow()
            year = order.occurred_at.astimezone(snap.WIB).year
            number = await self.repo.claim_invoice_number(order.pemda, year, order.order_id, now)
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
                "pending_postings": [],
                "ledger_due": False,
                "history": [{"status": "awaiting_payment", "at": now, "actor": "system"}],
            }
            events = [
                self._event(
                    InvoiceIssued, doc, invoice=InvoiceFigures(**asdict(invoice)), bast_number=order.bast_number
                )
            ]
            if order.payment_method == "va":
                va_number, expires_at = await self._open_va(payment_id, invoice.total, now)
                doc.update(va_number=va_number, va_expires_at=expires_at, virtual_accounts=[va_number])
                events.append(
                    self._event(
                        VirtualAccountIssued, doc, va_number=va_number, amount=invoice.total, expires_at=expires_at
                    )
                )
            if not await self.repo.insert(doc, events):
                return  # another replica invoiced it concurrently; its invoice number stays as a gap
            if doc["va_number"] is not None:
                self._schedule_expiry(doc)

    async def on_order_cancelled(self, order: OrderCancelled) -> None:
        payment_id = payment_id_for(order.order_id)
        async with self.locks.hold(payment_id):
            doc = await self.repo.get(payment_id)
            if doc is None:
                return  # cancelled before the BAST: nothing was invoiced
            if doc["status"] not in ("awaiting_payment", "va_expired"):
                log.warning("order cancelled after payment; an admin refund is needed", payment_id=payment_id)
                return
            await self._transition(
                doc, "cancelled", {"cancelled_at": utcnow(), "cancel_reason": order.reason}, [], "system"
            )

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
        async with self.locks.hold(payment_id):
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
            if not await self._write(doc, update, events):
                raise Conflict("the payment changed meanwhile; retry", code="concurrent_update")
            fresh = await self._reload(payment_id)
            self._schedule_expiry(fresh)
            return fresh

    def _schedule_expiry(self, doc: Document) -> None:
        heapq.heappush(self._expiries, (doc["va_expires_at"], doc["_id"], doc["va_number"]))

    async def expire_due(self, now: datetime) -> int:
        expired = 0
        while self._expiries and self._expiries[0][0] <= now:
            _, payment_id, va_number = heapq.heappop(self._expiries)
            if await self._expire(payment_id, va_number, now):
                expired += 1
        return expired

    async def _expire(self, payment_id: str, va_number: str, now: datetime) -> bool:
        async with self.locks.hold(payment_id):
            doc = await self.repo.get(payment_id)
            if (
                doc is None
                or doc["status"] != "awaiting_payment"
                or doc["va_number"] != va_number
                or doc["va_expires_at"] > now
            ):
                return False
            event = self._event(VirtualAccountExpired, doc, va_number=va_number)
            return await self._transition(doc, "va_expired", {"va_expired_at": now}, [event], "system")

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
        async with self.locks.hold(f"callback:{key}"):
            stored = await self.repo.stored_callback(key)
            if stored is None:
                outcome = await self._apply_notification(payload, external_id, key, now)
                stored = await self.repo.store_callback(
                    {
                        "_id": key,
                        "body_sha256": digest,
                        "http_status": outcome.http_status,
                        "response": outcome.body,
                        "at": now,
                    }
                )
            if stored["body_sha256"] != digest:
                return reply(snap.DUPLICATE_EXTERNAL_ID)
            return CallbackReply(stored["http_status"], stored["response"])

    async def _apply_notification(self, payload: Any, external_id: str, key: str, now: datetime) -> CallbackReply:
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
        va = await self.repo.get_va(va_number)
        if va is None:
            return reply(snap.UNKNOWN_BILL, **echo)
        payment_id = va["payment_id"]
        async with self.locks.hold(payment_id):
            doc = await self.repo.get(payment_id)
            if doc is None:
                return reply(snap.UNKNOWN_BILL, **echo)
            outcome = domain.decide_callback(
                status=doc["status"],
                current_va=doc["va_number"],
                va_expires_at=doc["va_expires_at"],
                total=doc["invoice"]["total"],
                va_number=va_number,
                paid_amount=int(paid),
                now=now,
            )
            if outcome != "pay":
                return reply(CALLBACK_CODES[outcome], **echo)
            if not await self._mark_paid(doc, reference=external_id, via=key, now=now):
                return reply(snap.PAID_BILL, "the payment changed meanwhile", **echo)
        await self._settle_quietly(payment_id)
        return reply(snap.SUCCESS, **echo)

    # -- KKPD -------------------------------------------------------------------------------------

    async def charge(self, payment_id: str, card_token: str, principal: Principal) -> Document:
        async with self.locks.hold(payment_id):
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
            authorisation = await self.provider.authorise_card(f"{payment_id}:{card_token}", total, card_token)
            if not authorisation.approved:
                raise CardDeclined(f"the card was declined: {authorisation.reason}", reason=authorisation.reason)
            if not await self._mark_paid(
                doc, reference=authorisation.reference, via=f"kkpd:{card_token}", now=utcnow()
            ):
                raise Conflict("the payment changed meanwhile; retry", code="concurrent_update")
        await self._settle_quietly(payment_id)
        return await self._reload(payment_id)

    # -- paying, settling, refunding --------------------------------------------------------------

    async def _mark_paid(self, doc: Document, *, reference: str, via: str, now: datetime) -> bool:
        total = doc["invoice"]["total"]
        event = self._event(PaymentSucceeded, doc, amount=total, paid_at=now, reference=reference)
        fields = {"paid_at": now, "paid_amount": total, "reference": reference, "paid_via": via}
        if not await self._transition(doc, "paid", fields, [event], "bank", postings=["payment_received"]):
            return False
        await self._flush_postings(doc["_id"])
        return True

    async def settle(self, payment_id: str) -> bool:
        """Pay the provider out of escrow (net of the taxes withheld). Runs right after a payment succeeds;
        the rescan re-drives it if that was interrupted."""
        async with self.locks.hold(payment_id):
            doc = await self.repo.get(payment_id)
            if doc is None or doc["status"] != "paid":
                return False
            invoice = invoice_of(doc)
            event = self._event(
                SettlementCompleted, doc, net_to_provider=invoice.net_to_provider, ppn=invoice.ppn, pph22=invoice.pph22
            )
            done = await self._transition(
                doc, "settled", {"settled_at": utcnow()}, [event], "system", postings=["settlement"]
            )
            if done:
                await self._flush_postings(payment_id)
        return done

    async def _settle_quietly(self, payment_id: str) -> None:
        try:
            await self.settle(payment_id)
        except Exception as exc:  # noqa: BLE001 - the payment stands; the rescan settles it later
            log.warning("settlement deferred to the rescan", payment_id=payment_id, error=str(exc))

    async def refund(self, payment_id: str, reason: str, principal: Principal) -> Document:
        async with self.locks.hold(payment_id):
            doc = await self.visible(payment_id, principal)
            if doc["status"] not in ("paid", "settled"):
                raise Conflict(
                    f"only a paid or settled payment can be refunded; this one is {doc['status']!r}",
                    code="illegal_transition",
                    current_status=doc["status"],
                )
            invoice = invoice_of(doc)
            kinds = [
                kind
                for kind, _ in domain.refund_postings(
                    invoice, doc["satker"], doc["provider_id"], doc["status"] == "settled"
                )
            ]
            event = self._event(RefundCompleted, doc, amount=invoice.total, reason=reason, actor=actor_of(principal))
            fields = {
                "refunded_at": utcnow(),
                "refund_reason": reason,
                "refunded_by": principal.sub,
                "settled_before_refund": doc["status"] == "settled",
            }
            if not await self._transition(doc, "refunded", fields, [event], principal.sub, postings=kinds):
                raise Conflict("the payment changed meanwhile; retry", code="concurrent_update")
            await self._flush_postings(payment_id)
        return await self._reload(payment_id)

    # -- ledger -----------------------------------------------------------------------------------

    def _legs(self, doc: Document, kind: domain.PostingKind) -> list[domain.Leg]:
        invoice = invoice_of(doc)
        if kind == "payment_received":
            return domain.payment_received_legs(invoice, doc["satker"])
        if kind == "settlement":
            return domain.settlement_legs(invoice, doc["provider_id"])
        settled = bool(doc.get("settled_before_refund"))
        return dict(domain.refund_postings(invoice, doc["satker"], doc["provider_id"], settled))[kind]

    _POSTED_AT = {
        "payment_received": "paid_at",
        "settlement": "settled_at",
        "settlement_reversal": "refunded_at",
        "refund": "refunded_at",
    }

    async def _flush_postings(self, payment_id: str) -> None:
        """Insert the postings a transition recorded as owed, then clear the list. Caller holds the lock."""
        doc = await self.repo.get(payment_id)
        if doc is None or not doc.get("pending_postings"):
            return
        for kind in doc["pending_postings"]:
            await self.repo.post(payment_id, kind, self._legs(doc, kind), doc[self._POSTED_AT[kind]])
        await self.repo.update(
            payment_id,
            {"$set": {"pending_postings": [], "ledger_due": False}},
            {"version": doc["version"]},
            [],
        )

    # -- background -------------------------------------------------------------------------------

    async def rescan(self) -> None:
        """Reload the expiry schedule and finish interrupted work (postings owed, settlements)."""
        schedule: list[tuple[datetime, str, str]] = []
        to_settle: list[str] = []
        to_post: list[str] = []
        async for doc in self.repo.open_payments():
            if doc.get("ledger_due"):
                to_post.append(doc["_id"])
            if doc["status"] == "awaiting_payment" and doc.get("va_number") and doc.get("va_expires_at"):
                schedule.append((doc["va_expires_at"], doc["_id"], doc["va_number"]))
            elif doc["status"] == "paid":
                to_settle.append(doc["_id"])
        schedule.extend(self._expiries)  # VAs issued while the scan ran
        heapq.heapify(schedule)
        self._expiries = schedule
        for payment_id in to_post:
            async with self.locks.hold(payment_id):
                await self._flush_postings(payment_id)
        for payment_id in to_settle:
            await self._settle_quietly(payment_id)

    async def run_background(self) -> None:
        loop = asyncio.get_running_loop()
        next_rescan = 0.0
        while True:
            if loop.time() >= next_rescan:
                await self.rescan()
                next_rescan = loop.time() + self.settings.rescan_interval_seconds
            await self.expire_due(utcnow())
            await asyncio.sleep(self.settings.expiry_check_interval_seconds)

    # -- helpers ----------------------------------------------------------------------------------

    async def _reload(self, payment_id: str) -> Document:
        doc = await self.repo.get(payment_id)
        if doc is None:
            raise NotFound(f"no payment {payment_id!r}", code="payment_not_found")
        return doc

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
        postings: Sequence[str] | None = None,
    ) -> bool:
        domain.ensure_transition(doc["status"], target)
        now = utcnow()
        update: Document = {
            "$set": {"status": target, "updated_at": now, **fields},
            "$push": {"history": {"status": target, "at": now, "actor": actor}},
            "$inc": {"version": 1},
        }
        if postings:
            # Keep what an interrupted earlier transition still owes: postings go in order.
            owed = [*(doc.get("pending_postings") or []), *postings]
            update["$set"].update(pending_postings=owed, ledger_due=True)
        return await self._write(doc, update, events)

    async def _write(self, doc: Document, update: Document, events: list[Any]) -> bool:
        return await self.repo.update(doc["_id"], update, {"status": doc["status"], "version": doc["version"]}, events)


CALLBACK_CODES: dict[str, snap.Code] = {
    "unknown_va": snap.UNKNOWN_BILL,
    "expired": snap.EXPIRED_BILL,
    "paid_bill": snap.PAID_BILL,
    "wrong_amount": snap.INVALID_AMOUNT,
    "cancelled": snap.TRANSACTION_CANCELLED,
}


def reply(code: snap.Code, detail: str | None = None, **extra: Any) -> CallbackReply:
    return CallbackReply(code.http_status, code.body(detail, **extra))
