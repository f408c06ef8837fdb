"""Transitions: people's actions, saga steps and the expiry timer, all through the one write path.

Every mutation of an order writes conditionally on the version it read; a write that lost a race
with another request or replica is retried on fresh state (`retry_on_conflict`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from bejo_contracts import Envelope
from bejo_contracts.catalog import StockRejected, StockReserved
from bejo_contracts.errors import IllegalTransition, NotPermitted
from bejo_contracts.orders import OrderLine
from bejo_contracts.payments import InvoiceIssued, PaymentSucceeded, RefundCompleted, SettlementCompleted
from bejo_kit.auth import Principal
from bejo_kit.bus import Bus
from bejo_kit.concurrency import WriteConflict, retry_on_conflict
from bejo_kit.errors import Conflict, NotFound
from bejo_kit.logging import get_logger
from bejo_kit.mongo import utcnow

from . import auditing, domain, rules
from .domain import SYSTEM_CALLER, Action, Caller, Order
from .repository import Repository
from .settings import OrdersSettings

log = get_logger(__name__)


# Refusals of the separation of duties kept as red flags: self-approval, acting on another PPK's order.
SOD_REFUSALS = {"separation_of_duties": "sod_self_approval", "not_order_ppk": "sod_not_order_ppk"}
MONEY_ACTIONS = frozenset({"invoice", "pay", "settle"})
# Statuses in which no BAST was ever signed (cancelling is possible only before shipping).
BEFORE_BAST = frozenset({"placed", "reserved", "approved", "accepted", "shipped", "rejected", "cancelled", "expired"})


class ConcurrentUpdate(Conflict):
    code = "concurrent_update"


def caller_of(principal: Principal) -> Caller:
    return Caller(
        sub=principal.sub,
        role=principal.role,
        name=principal.name,
        pemda=principal.pemda,
        satker=principal.satker,
        provider_id=principal.provider_id,
    )


class Transitions:
    def __init__(self, repo: Repository, bus: Bus, settings: OrdersSettings) -> None:
        self.repo = repo
        self.bus = bus
        self.settings = settings

    # -- transitions by people --------------------------------------------------------------------

    async def act(
        self,
        principal: Principal,
        order_id: str,
        action: Action,
        *,
        reason: str | None = None,
        tracking_note: str | None = None,
    ) -> Order:
        caller = caller_of(principal)

        async def changes(order: Order, now: datetime) -> dict[str, Any]:
            if action in ("reject", "cancel"):
                return {"reason": reason, **({"rejected_by": "ppk"} if action == "reject" else {})}
            if action == "ship":
                return {"tracking_note": tracking_note}
            if action == "receive":
                year = rules.bast_year(now)
                sequence = await self.repo.next_bast_sequence(order.pemda, year)
                return {"bast_number": rules.bast_number(order.pemda, year, sequence)}
            return {}

        try:
            return await self._apply(order_id, caller, action, changes, reason=reason)
        except NotPermitted as exc:
            if exc.code in SOD_REFUSALS and action in ("approve", "reject", "receive"):
                await self._record_refusal(SOD_REFUSALS[exc.code], order_id, principal, action=action)
            raise

    async def _record_refusal(
        self, kind: str, order_id: str, principal: Principal | None, *, attempt_id: str | None = None, **detail: Any
    ) -> None:
        """A refused attempt kept for the auditors' red flags (the order itself is unchanged)."""
        order = await self.repo.get_order(order_id)
        if order is None:
            return
        if kind == "sod_not_order_ppk" and principal is not None and principal.sub == order.pp_id:
            kind = "sod_self_approval"  # the PP who placed it, holding a PPK token: acting on their own order
        await self.repo.record_attempt(
            auditing.attempt(
                kind,
                pemda=order.pemda,
                satker=order.satker,
                actor_sub=principal.sub if principal else "system",
                role=principal.role if principal else "system",
                order_ids=[order.id],
                provider_id=order.provider_id,
                amount=order.total,
                attempt_id=attempt_id,
                status=order.status,
                **detail,
            )
        )

    # -- transitions from the saga and timers -----------------------------------------------------

    async def on_stock_reserved(self, event_id: str, event: StockReserved) -> None:
        lines = [
            OrderLine(
                product_id=line.product_id,
                name=line.name,
                unit=line.unit,
                quantity=line.quantity,
                unit_price=line.unit_price,
            )
            for line in event.lines
        ]
        total = rules.order_total(lines)
        snapshot = {
            "lines": lines,
            "total": total,
            "provider_name": event.provider_name,
            "provider_pkp": event.provider_pkp,
        }

        def outcome(order: Order) -> Action:
            # Prices may have moved between checkout and reservation: over the cap, refuse (the
            # catalog releases on OrderRejected).
            breach = rules.cap_breach(order.payment_method, {order.provider_id: total}, self.settings.caps)
            return "reject_cap" if breach else "reserve"

        async def changes(order: Order, now: datetime) -> dict[str, Any]:
            breach = rules.cap_breach(order.payment_method, {order.provider_id: total}, self.settings.caps)
            if breach is not None:
                return {**snapshot, "reason": breach.message(), "rejected_by": "cap"}
            due = rules.approval_due_at(
                now,
                working_days=self.settings.approval_working_days,
                timeout_seconds=self.settings.approval_timeout_seconds,
            )
            return {**snapshot, "approval_due_at": due}

        try:
            await self._apply_system(event_id, event.order_id, outcome, changes)
        except IllegalTransition as exc:
            await self._late_reservation(event_id, event.order_id, exc)

    async def _late_reservation(self, event_id: str, order_id: str, exc: IllegalTransition) -> None:
        """A reservation that arrives after the order was cancelled (cancel raced the catalog): tell
        the catalog again, so the units it just reserved are released."""

        async def attempt() -> str | None:
            order = await self.repo.get_order(order_id)
            if order is None or order.status not in ("cancelled", "expired") or event_id in order.inbox:
                return None
            envelope = self.bus.envelope(domain.event_for(order))
            if not await self.repo.save_transition(order, order, [envelope], event_id):
                raise WriteConflict(order_id)
            return order.status

        status = await retry_on_conflict(attempt)
        if status is None:
            log.info("stale stock reservation ignored", order_id=order_id, detail=exc.detail)
        else:
            log.info("late reservation: release requested again", order_id=order_id, status=status)

    async def on_stock_rejected(self, event_id: str, event: StockRejected) -> None:
        reason = "; ".join(f"{r.product_id}: {r.code} ({r.message})" for r in event.rejections) or "stock rejected"
        await self._apply_system(
            event_id,
            event.order_id,
            "reject_stock",
            lambda o, n: _const({"reason": reason, "rejected_by": "catalog"}),
            reason=reason,
        )

    async def on_invoice_issued(self, event_id: str, event: InvoiceIssued) -> None:
        await self._apply_system(
            event_id, event.order_id, "invoice", lambda o, n: _const({"payment_id": event.payment_id})
        )

    async def on_payment_succeeded(self, event_id: str, event: PaymentSucceeded) -> None:
        await self._apply_system(
            event_id,
            event.order_id,
            "pay",
            lambda o, n: _const(
                {"payment_id": event.payment_id, "paid_at": event.paid_at, "paid_amount": event.amount}
            ),
        )

    async def on_settlement_completed(self, event_id: str, event: SettlementCompleted) -> None:
        def changes(order: Order, now: datetime) -> Awaitable[dict[str, Any]]:
            return _const({"payment_id": event.payment_id, "paid_at": order.paid_at or now})

        await self._apply_system(event_id, event.order_id, "settle", changes)

    async def on_refund_completed(self, event_id: str, event: RefundCompleted) -> None:
        await self._apply_system(
            event_id,
            event.order_id,
            "refund",
            lambda o, n: _const({"payment_id": event.payment_id, "refund_amount": event.amount}),
            reason=event.reason,
        )

    async def expire_due(self, now: datetime | None = None) -> int:
        """Expire reservations the PPK left past their deadline; returns how many expired here.

        Every replica sweeps. The conditional transition is the claim: of replicas expiring one
        order, one write matches its version and the others find it expired on retry. An order
        whose expiry failed is still reserved and overdue, so a later sweep (any replica) retries."""
        expired = 0
        for order_id in await self.repo.overdue_reservations(now or utcnow()):
            try:
                await self._apply(
                    order_id,
                    SYSTEM_CALLER,
                    "expire",
                    lambda o, n: _const({"reason": "the PPK did not act before the approval deadline"}),
                    reason="approval deadline passed",
                )
                expired += 1
            except (IllegalTransition, NotFound):
                pass  # approved, rejected, cancelled or expired meanwhile (by this replica or another)
        return expired

    async def expiry_loop(self) -> None:
        while True:
            try:
                await self.expire_due()
            except Exception as exc:  # noqa: BLE001 - keep sweeping; what failed is still overdue
                log.warning("expiry sweep failed", error=str(exc))
            await asyncio.sleep(self.settings.expiry_sweep_interval)

    # -- the one write path -----------------------------------------------------------------------

    async def _apply_system(
        self,
        event_id: str,
        order_id: str,
        action: Action | Callable[[Order], Action],
        changes: Callable[[Order, datetime], Awaitable[dict[str, Any]]],
        *,
        reason: str | None = None,
    ) -> None:
        """A saga step: idempotent per event id; a stale or out-of-order event is logged and dropped."""
        try:
            await self._apply(order_id, SYSTEM_CALLER, action, changes, reason=reason, event_id=event_id)
        except NotFound:
            log.warning("event for an unknown order; ignored", order_id=order_id, action=action)
        except IllegalTransition as exc:
            if exc.extra.get("action") in ("reserve", "reject_cap"):
                raise  # the caller decides what a late reservation means
            if exc.extra.get("action") in MONEY_ACTIONS and exc.extra.get("current_status") in BEFORE_BAST:
                # money for goods nobody signed a BAST for: refused, and kept for the auditors
                await self._record_refusal(
                    "money_without_bast",
                    order_id,
                    None,
                    attempt_id=f"money:{event_id}",
                    action=exc.extra.get("action"),
                    event_id=event_id,
                )
            log.info("stale event ignored", order_id=order_id, action=exc.extra.get("action"), detail=exc.detail)

    async def _apply(
        self,
        order_id: str,
        caller: Caller,
        action: Action | Callable[[Order], Action],
        changes: Callable[[Order, datetime], Awaitable[dict[str, Any]]],
        *,
        reason: str | None = None,
        event_id: str | None = None,
    ) -> Order:
        async def attempt() -> Order:
            order = await self.repo.get_order(order_id)
            if order is None or not domain.can_see(order, caller):
                raise NotFound(f"no order {order_id}", code="order_not_found")
            if event_id is not None and event_id in order.inbox:
                log.info("duplicate event ignored", order_id=order_id, event_id=event_id)
                return order
            chosen = action(order) if callable(action) else action
            domain.authorize(order, chosen, caller)  # before side effects such as issuing a BAST number
            now = utcnow()
            changed = await changes(order, now)
            after = domain.transition(
                order, chosen, caller, now, reason=reason or changed.get("reason"), changes=changed
            )
            envelope: Envelope = self.bus.envelope(domain.event_for(after))
            if not await self.repo.save_transition(order, after, [envelope], event_id):
                raise WriteConflict(order_id)
            return after

        try:
            return await retry_on_conflict(attempt)
        except WriteConflict:
            raise ConcurrentUpdate("the order keeps changing meanwhile; retry") from None


async def _const(value: dict[str, Any]) -> dict[str, Any]:
    return value
