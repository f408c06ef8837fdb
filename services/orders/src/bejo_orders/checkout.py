"""Checkout: a cart becomes one order per provider, exactly once per Idempotency-Key."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import datetime

import orjson

from bejo_contracts import Envelope
from bejo_contracts.catalog import ProductSnapshot
from bejo_contracts.pricing import effective_price
from bejo_kit.api import Reply
from bejo_kit.auth import Principal
from bejo_kit.bus import Bus
from bejo_kit.errors import Conflict, ValidationProblem
from bejo_kit.mongo import Document, utcnow

from . import auditing, domain, rules
from .domain import Caller, Order
from .repository import Repository
from .settings import OrdersSettings
from .transitions import ConcurrentUpdate, caller_of
from .views import CheckoutView, OrderView, PlaceOrder

IDEMPOTENCY_HEADER = "Idempotency-Key"


class CapExceeded(ValidationProblem):
    code = "cap_exceeded"


def request_hash(body: PlaceOrder) -> str:
    return hashlib.sha256(orjson.dumps(body.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).hexdigest()


class Checkout:
    def __init__(self, repo: Repository, bus: Bus, settings: OrdersSettings) -> None:
        self.repo = repo
        self.bus = bus
        self.settings = settings

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
            # kept for the auditors' separation-of-duties indicator before it is refused
            estimate = sum(f.unit_price * line.quantity for line in body.lines if (f := facts.get(line.product_id)))
            await self.repo.record_attempt(
                auditing.attempt(
                    "sod_same_person_checkout",
                    pemda=principal.pemda,
                    satker=principal.satker,
                    actor_sub=principal.sub,
                    role=principal.role,
                    amount=estimate,
                    rup_code=body.rup_code,
                )
            )
            raise ValidationProblem.field(
                "ppk_id", "separation of duties: the approving PPK cannot be the PP placing the order", "same_person"
            )
        if len(body.lines) > self.settings.max_lines:
            raise ValidationProblem.field("lines", f"at most {self.settings.max_lines} lines per checkout", "too_long")
        carts = rules.split_cart(
            [rules.CartLine(line.product_id, line.quantity) for line in body.lines], facts, principal.pemda
        )
        breach = rules.cap_breach(body.payment_method, {c.provider_id: c.total for c in carts}, self.settings.caps)
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

    async def _product_facts(self, product_ids: list[str], now: datetime) -> dict[str, rules.ProductFacts | None]:
        snapshots = await self.repo.get_products(list(dict.fromkeys(product_ids)))
        standing = await self.repo.provider_statuses([s.provider_id for s in snapshots.values() if s])
        return {pid: self._facts(s, standing, now) if s else None for pid, s in snapshots.items()}

    @staticmethod
    def _facts(snapshot: ProductSnapshot, standing: dict[str, str], now: datetime) -> rules.ProductFacts:
        # The snapshot's `orderable` already reflects the provider; a newer provider event wins.
        provider_ok = standing.get(snapshot.provider_id, "verified") == "verified"
        return rules.ProductFacts(
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
        checkout_id: str, caller: Caller, body: PlaceOrder, cart: rules.ProviderCart, now: datetime
    ) -> Order:
        assert caller.pemda is not None and caller.satker is not None  # a PP token always carries both
        return Order(
            id=f"ord_{uuid.uuid4().hex}",
            checkout_id=checkout_id,
            pemda=caller.pemda,
            satker=caller.satker,
            satker_name=body.satker_name,
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
