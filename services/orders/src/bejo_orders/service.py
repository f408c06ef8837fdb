"""Use cases: load, decide (domain), save state + history + events in one document write.

Every mutation of an order writes conditionally on the version it read; a write that lost a race
with another request or replica is retried on fresh state (`retry_on_conflict`).
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import re
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any

import orjson

from bejo_contracts import Envelope
from bejo_contracts.catalog import ProductSnapshot, StockRejected, StockReserved
from bejo_contracts.orders import OrderLine
from bejo_contracts.payments import InvoiceIssued, PaymentSucceeded, RefundCompleted, SettlementCompleted
from bejo_contracts.pricing import effective_price
from bejo_kit.api import Reply
from bejo_kit.auth import Principal
from bejo_kit.bus import Bus
from bejo_kit.concurrency import WriteConflict, retry_on_conflict
from bejo_kit.errors import Conflict, NotFound, ValidationProblem
from bejo_kit.logging import get_logger
from bejo_kit.mongo import Document, utcnow
from bejo_kit.paging import decode_cursor, encode_cursor

from . import domain, ocds
from .domain import SYSTEM_CALLER, Action, Caller, IllegalTransition, Order
from .repository import Repository
from .settings import OrdersSettings
from .views import CheckoutView, ListQuery, OcdsQuery, OrderList, OrderView, PlaceOrder, Stats, StatsQuery

log = get_logger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
PAID_STATUSES = ("paid", "completed")


class CapExceeded(ValidationProblem):
    code = "cap_exceeded"


class ConcurrentUpdate(Conflict):
    code = "concurrent_update"


def caller_of(principal: Principal) -> Caller:
    return Caller(
        sub=principal.sub,
        role=principal.role,  # type: ignore[arg-type]
        name=principal.name,
        pemda=principal.pemda,
        satker=principal.satker,
        provider_id=principal.provider_id,
    )


def request_hash(body: PlaceOrder) -> str:
    return hashlib.sha256(orjson.dumps(body.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).hexdigest()


class OrdersService:
    def __init__(self, repo: Repository, bus: Bus, settings: OrdersSettings) -> None:
        self.repo = repo
        self.bus = bus
        self.settings = settings

    # -- placing ----------------------------------------------------------------------------------

    async def place(self, principal: Principal, idempotency_key: str | None, body: PlaceOrder) -> Reply:
        key = (idempotency_key or "").strip()
        if not key:
            raise ValidationProblem.field(IDEMPOTENCY_HEADER, "the header is required on POST /orders", "missing")
        if len(key) > 200:
            raise ValidationProblem.field(IDEMPOTENCY_HEADER, "at most 200 characters", "too_long")
        record_id = f"{principal.sub}:{key}"
        digest = request_hash(body)
        now = utcnow()
        # The product look-ups do not depend on the record: read both at once (latency, not load).
        existing, facts = await asyncio.gather(
            self.repo.get_checkout(record_id),
            self._product_facts([line.product_id for line in body.lines[: self.settings.max_lines]], now),
        )
        if existing is not None:
            return await self._replay(existing, digest)

        caller = caller_of(principal)
        if body.ppk_id == principal.sub:
            raise ValidationProblem.field(
                "ppk_id", "separation of duties: the approving PPK cannot be the PP placing the order", "same_person"
            )
        if len(body.lines) > self.settings.max_lines:
            raise ValidationProblem.field("lines", f"at most {self.settings.max_lines} lines per checkout", "too_long")
        carts = domain.split_cart(
            [domain.CartLine(line.product_id, line.quantity) for line in body.lines], facts, principal.pemda
        )
        breach = domain.cap_breach(body.payment_method, {c.provider_id: c.total for c in carts}, self.settings.caps)
        if breach is not None:
            raise CapExceeded(
                breach.message(),
                [{"field": "lines", "message": breach.message(), "type": f"cap_{breach.cap}"}],
            )

        checkout_id = f"chk_{uuid.uuid4().hex}"
        orders = [self._new_order(checkout_id, caller, body, cart, now) for cart in carts]
        response = CheckoutView(checkout_id=checkout_id, orders=[OrderView.of(o) for o in orders])
        record: Document = {
            "_id": record_id,
            "request_hash": digest,
            "checkout_id": checkout_id,
            "response": response.model_dump(mode="json"),
            # everything needed to finish the checkout if this process dies half-way
            "orders": [
                {
                    "document": order.document(),
                    "envelopes": [self.bus.envelope(domain.event_for(order)).model_dump(mode="json")],
                }
                for order in orders
            ],
            "created_at": now,
        }
        # The record is claimed first (insert-unique `_id`): of two racing requests with one key,
        # exactly one goes on to create orders; the other replays the winner's result.
        if not await self.repo.insert_checkout(record):
            winner = await self.repo.get_checkout(record_id)
            if winner is None:  # pragma: no cover - records are never deleted
                raise ConcurrentUpdate("checkout record vanished; retry")
            return await self._replay(winner, digest)
        await self._insert_orders(record["orders"])
        return Reply(record["response"], status=201)

    async def _replay(self, record: Document, digest: str) -> Reply:
        if record["request_hash"] != digest:
            raise Conflict(
                f"{IDEMPOTENCY_HEADER} was already used with a different request body",
                code="idempotency_key_reused",
                checkout_id=record["checkout_id"],
            )
        # Finish a checkout whose process died between claiming the key and inserting the orders.
        await self._insert_orders(record["orders"])
        return Reply(record["response"], status=201, headers={"Idempotent-Replayed": "true"})

    async def _insert_orders(self, planned: list[Document]) -> None:
        # An order and its first event are one insert: an order already there (inserted by the
        # first request, or by a replay) is a duplicate key and its events are not raised twice.
        for plan in planned:
            envelopes = [Envelope.model_validate(e) for e in plan["envelopes"]]
            await self.repo.insert_order(plan["document"], envelopes)

    async def _product_facts(self, product_ids: list[str], now: datetime) -> dict[str, domain.ProductFacts | None]:
        snapshots = await self.repo.get_products(list(dict.fromkeys(product_ids)))
        standing = await self.repo.provider_statuses([s.provider_id for s in snapshots.values() if s])
        return {pid: self._facts(s, standing, now) if s else None for pid, s in snapshots.items()}

    @staticmethod
    def _facts(snapshot: ProductSnapshot, standing: dict[str, str], now: datetime) -> domain.ProductFacts:
        # The snapshot's `orderable` already reflects the provider; a newer provider event wins.
        provider_ok = standing.get(snapshot.provider_id, "verified") == "verified"
        return domain.ProductFacts(
            product_id=snapshot.product_id,
            provider_id=snapshot.provider_id,
            provider_name=snapshot.provider_name,
            provider_pkp=snapshot.provider_pkp,
            name=snapshot.name,
            unit=snapshot.unit,
            unit_price=effective_price(snapshot.price, snapshot.promotions, now),
            min_order_qty=snapshot.min_order_qty,
            regions=tuple(snapshot.regions),
            orderable=snapshot.orderable and snapshot.status == "active" and provider_ok,
        )

    @staticmethod
    def _new_order(
        checkout_id: str, caller: Caller, body: PlaceOrder, cart: domain.ProviderCart, now: datetime
    ) -> Order:
        assert caller.pemda is not None and caller.satker is not None  # a PP token always carries both
        return Order(
            id=f"ord_{uuid.uuid4().hex}",
            checkout_id=checkout_id,
            pemda=caller.pemda,
            satker=caller.satker,
            pp_id=caller.sub,
            pp_name=caller.name,
            ppk_id=body.ppk_id,
            provider_id=cart.provider_id,
            provider_name=cart.provider_name,
            provider_pkp=cart.provider_pkp,
            payment_method=body.payment_method,
            rup_code=body.rup_code,
            delivery_address=body.delivery_address,
            lines=cart.lines,
            total=cart.total,
            status="placed",
            version=1,
            created_at=now,
            updated_at=now,
            history=[domain.placed_entry(caller, now)],
        )

    # -- reading ----------------------------------------------------------------------------------

    async def get_visible(self, order_id: str, principal: Principal) -> Order:
        order = await self.repo.get_order(order_id)
        if order is None or not domain.can_see(order, caller_of(principal)):
            raise NotFound(f"no order {order_id}", code="order_not_found")
        return order

    async def list(self, principal: Principal, query: ListQuery) -> OrderList:
        filter_: dict[str, Any] = {}
        if principal.role in ("pp", "ppk", "bendahara"):
            filter_["pemda"] = principal.pemda
            filter_["satker"] = principal.satker
            if query.satker and query.satker != principal.satker:
                return OrderList(items=[], next_cursor=None)
        elif principal.role == "penyedia":
            filter_["provider_id"] = principal.provider_id
            if query.provider_id and query.provider_id != principal.provider_id:
                return OrderList(items=[], next_cursor=None)
        else:
            scope = query.pemda or principal.pemda
            if not (scope == principal.pemda or scope.startswith(principal.pemda + ".")):
                return OrderList(items=[], next_cursor=None)
            filter_["pemda"] = _pemda_and_below(scope)
        if query.status:
            filter_["status"] = query.status
        if query.satker and "satker" not in filter_:
            filter_["satker"] = query.satker
        if query.provider_id and "provider_id" not in filter_:
            filter_["provider_id"] = query.provider_id
        if created := _day_range(query.from_, query.to):
            filter_["created_at"] = created
        filter_.update(_after_cursor("created_at", query.cursor, "a next_cursor"))
        docs = await self.repo.list_orders(filter_, query.limit + 1)
        page = [Order.model_validate(d) for d in docs[: query.limit]]
        next_cursor = None
        if len(docs) > query.limit:
            last = page[-1]
            next_cursor = encode_cursor({"at": last.created_at.isoformat(), "id": last.id})
        return OrderList(items=[OrderView.of(o) for o in page], next_cursor=next_cursor)

    async def stats(self, query: StatsQuery) -> Stats:
        filter_: dict[str, Any] = {"status": {"$in": list(PAID_STATUSES)}}
        if query.pemda:
            filter_["pemda"] = _pemda_and_below(query.pemda)
        if paid := _day_range(query.from_, query.to):
            filter_["paid_at"] = paid  # `pay` and `settle` both set it
        by_pemda: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        by_period: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for doc in await self.repo.paid_orders(filter_):
            paid_at: datetime = doc["paid_at"]
            for bucket in (by_pemda[doc["pemda"]], by_period[domain.period_of(paid_at)]):
                bucket[0] += 1
                bucket[1] += int(doc["total"])
        return Stats.model_validate(
            {
                "orders": sum(v[0] for v in by_pemda.values()),
                "transaction_value": sum(v[1] for v in by_pemda.values()),
                "participating_pemda": len(by_pemda),
                "by_pemda": [
                    {"pemda": k, "orders": v[0], "transaction_value": v[1]} for k, v in sorted(by_pemda.items())
                ],
                "by_period": [
                    {"period": k, "orders": v[0], "transaction_value": v[1]} for k, v in sorted(by_period.items())
                ],
            }
        )

    async def ocds_releases(self, query: OcdsQuery) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """Releases of approved-or-later orders, most recently changed first, and the next cursor."""
        filter_: dict[str, Any] = {"status": {"$in": list(ocds.PUBLISHED_STATUSES)}}
        if query.pemda:
            filter_["pemda"] = _pemda_and_below(query.pemda)
        filter_.update(_after_cursor("updated_at", query.cursor, "links.next"))
        orders = await self.repo.recently_changed(filter_, query.limit + 1)
        page = orders[: query.limit]
        next_cursor = None
        if len(orders) > query.limit:
            next_cursor = encode_cursor({"at": page[-1].updated_at.isoformat(), "id": page[-1].id})
        return [ocds.release(o, self.settings.ocds_ocid_prefix) for o in page], next_cursor

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
                year = domain.bast_year(now)
                sequence = await self.repo.next_bast_sequence(order.pemda, year)
                return {"bast_number": domain.bast_number(order.pemda, year, sequence)}
            return {}

        return await self._apply(order_id, caller, action, changes, reason=reason)

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
        total = domain.order_total(lines)
        snapshot = {
            "lines": lines,
            "total": total,
            "provider_name": event.provider_name,
            "provider_pkp": event.provider_pkp,
        }

        def outcome(order: Order) -> Action:
            # Prices may have moved between checkout and reservation: over the cap, refuse (the
            # catalog releases on OrderRejected).
            breach = domain.cap_breach(order.payment_method, {order.provider_id: total}, self.settings.caps)
            return "reject_cap" if breach else "reserve"

        async def changes(order: Order, now: datetime) -> dict[str, Any]:
            breach = domain.cap_breach(order.payment_method, {order.provider_id: total}, self.settings.caps)
            if breach is not None:
                return {**snapshot, "reason": breach.message(), "rejected_by": "cap"}
            due = domain.approval_due_at(
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
            lambda o, n: _const({"payment_id": event.payment_id, "paid_at": event.paid_at}),
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


def _pemda_and_below(pemda: str) -> dict[str, str]:
    """A pemda code and the codes under it (`35` matches `35` and `35.15`, not `351`)."""
    return {"$regex": f"^{re.escape(pemda)}(\\.|$)"}


def _day_range(day_from: date | None, day_to: date | None) -> dict[str, datetime]:
    start, end = domain.wib_day_bounds(day_from, day_to)
    return {op: at for op, at in (("$gte", start), ("$lt", end)) if at is not None}


def _after_cursor(field: str, cursor: str | None, hint: str) -> dict[str, Any]:
    """The rows after the cursor's row in (`field`, `_id`) descending order, as a filter."""
    position = decode_cursor(cursor)
    if position is None:
        return {}
    try:
        at, last_id = datetime.fromisoformat(position["at"]), str(position["id"])
    except (KeyError, TypeError, ValueError):
        raise ValidationProblem.field("cursor", f"malformed cursor; pass back {hint}") from None
    return {"$or": [{field: {"$lt": at}}, {field: at, "_id": {"$lt": last_id}}]}
