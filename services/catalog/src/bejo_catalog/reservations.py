"""Stock reservation for orders.

A reservation record per order (`_id` = order id) moves reserving → reserved | rejected,
reserved → released | committed, each step one conditional write carrying its event, so
of replicas handling the same order (a redelivery, a late cancel) exactly one makes each
step. Stock is taken per line by an atomic conditional decrement that also records the order
in the product's `holds`, so a line is never taken twice for one order, and stock is given
back only where the order holds some. Whoever sees a record in a state that holds no stock
gives back whatever the order still holds (all or nothing, also after a crash).
"""

from __future__ import annotations

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from bejo_contracts import EventData
from bejo_contracts.catalog import (
    LineRejection,
    ReservedLine,
    StockCommitted,
    StockRejected,
    StockReleased,
    StockReserved,
)
from bejo_kit.logging import get_logger
from bejo_kit.mongo import Document, utcnow

from . import domain
from .context import CatalogContext
from .domain import Product, Provider, RequestedLine
from .repository import HOLDS, STATE_ONLY, fed

log = get_logger(__name__)
# Reservation states after which the order holds no stock (given back) or its stock is gone.
GIVEN_BACK, GONE = ("rejected", "released"), "committed"


class Reservations:
    def __init__(self, ctx: CatalogContext) -> None:
        self.ctx = ctx

    async def reserve(self, order_id: str, provider_id: str, requested: list[RequestedLine], *, pemda: str) -> str:
        """Reserve every line or none (`pemda`: the order's, which scopes the events). Returns the
        reservation's state afterwards."""
        lines = domain.merge_lines(requested)
        record = await self._reservation(order_id, provider_id, lines)
        if record["state"] != "reserving":
            log.info("reservation already decided", order_id=order_id, state=record["state"])
            return await self._settle_stock(record)
        provider = await self.ctx.store.provider(provider_id)
        products, rejections = await self._take(order_id, provider_id, provider, lines)
        if rejections:
            rejected = StockRejected(order_id=order_id, pemda=pemda, rejections=rejections)
            return await self._decide(record, ("reserving",), "rejected", rejected, {})
        assert provider is not None
        taken = [products[line.product_id] for line in lines]
        reserved = await self._reserved(order_id, pemda, provider, taken, lines)
        extra = {"reserved_lines": [line.model_dump() for line in reserved.lines]}
        return await self._decide(record, ("reserving",), "reserved", reserved, extra)

    async def _reservation(self, order_id: str, provider_id: str, lines: list[RequestedLine]) -> Document:
        now = utcnow()
        record: Document = {
            "_id": order_id,
            "state": "reserving",
            "provider_id": provider_id,
            "lines": [{"product_id": line.product_id, "quantity": line.quantity} for line in lines],
            "created_at": now,
            "updated_at": now,
        }
        try:
            await self.ctx.store.reservations.insert_one(record)
        except DuplicateKeyError:
            existing = await self.ctx.store.reservations.find_one({"_id": order_id}, STATE_ONLY)
            assert existing is not None
            return existing
        return record

    async def _take(
        self, order_id: str, provider_id: str, provider: Provider | None, lines: list[RequestedLine]
    ) -> tuple[dict[str, Product], list[LineRejection]]:
        """Check every line, then take each line's stock unless the order holds it already. Stops at
        the first line that cannot be taken; what was taken is given back by the decision."""
        products = {line.product_id: await self.ctx.store.product(line.product_id) for line in lines}

        def check(line: RequestedLine, product: Product | None) -> LineRejection | None:
            held = product is not None and product.held_by(order_id)
            return domain.check_line(line, product, provider, provider_id, held)

        rejections = [r for line in lines if (r := check(line, products[line.product_id])) is not None]
        if rejections:
            return {}, rejections
        taken: dict[str, Product] = {}
        for line in lines:
            product = products[line.product_id]
            assert product is not None
            if not product.held_by(order_id):
                after = await self.ctx.store.products.find_one_and_update(
                    {
                        "_id": line.product_id,
                        "stock": {"$gte": line.quantity},
                        "status": "active",
                        HOLDS: {"$ne": order_id},
                    },
                    fed(
                        {
                            "$inc": {"stock": -line.quantity, "version": 1},
                            "$push": {HOLDS: order_id},
                            "$set": {"updated_at": utcnow()},
                        }
                    ),
                    return_document=ReturnDocument.AFTER,
                )
                if after is None:  # changed since the check; held now if a duplicate delivery took it
                    now_stored = await self.ctx.store.product(line.product_id)
                    if now_stored is None or not now_stored.held_by(order_id):
                        rejection = check(line, now_stored) or LineRejection(
                            product_id=line.product_id, code="out_of_stock", message="not enough stock left"
                        )
                        return taken, [rejection]
                    product = now_stored
                else:
                    product = Product.model_validate(after)
                self.ctx.index.set_stock(product.id, product.stock, product.version)
                self.ctx.fed()
            taken[line.product_id] = product
        return taken, []

    async def _reserved(
        self, order_id: str, pemda: str, provider: Provider, products: list[Product], lines: list[RequestedLine]
    ) -> StockReserved:
        now = utcnow()
        promotions = await self.ctx.store.promotions_of(provider.id)
        reserved = []
        for product, line in zip(products, lines, strict=True):
            offer = domain.offer(product.price, domain.terms_for(promotions, product.id, provider.id, now), now)
            reserved.append(
                ReservedLine(
                    product_id=product.id,
                    name=product.name,
                    unit=product.unit,
                    quantity=line.quantity,
                    list_price=offer.list_price,
                    unit_price=offer.unit_price,
                    free_shipping=offer.free_shipping,
                    promotion_id=offer.promotion_id,
                )
            )
        return StockReserved(
            order_id=order_id,
            pemda=pemda,
            provider_id=provider.id,
            provider_name=provider.name,
            provider_pkp=provider.pkp,
            lines=reserved,
            total=sum(line.unit_price * line.quantity for line in reserved),
        )

    async def _decide(
        self, record: Document, from_states: tuple[str, ...], state: str, event: EventData, extra: Document
    ) -> str:
        """Move the record from one of `from_states` to `state` with its event (exactly one replica
        does), then bring the stock in line with the state the record ends in."""
        order_id = record["_id"]
        if record["state"] in from_states:
            if await self.ctx.outbox.update_one(
                self.ctx.store.reservations,
                {"_id": order_id, "state": {"$in": list(from_states)}},
                {"$set": {"state": state, "updated_at": utcnow(), **extra}},
                [self.ctx.envelope(event)],
            ):
                record = {**record, "state": state}
            else:
                current = await self.ctx.store.reservations.find_one({"_id": order_id}, STATE_ONLY)
                assert current is not None
                record = current
                log.info("reservation decided elsewhere", order_id=order_id, wanted=state, state=record["state"])
        return await self._settle_stock(record)

    async def _settle_stock(self, record: Document) -> str:
        """Give back (rejected, released) or drop (committed) the stock the order still holds.
        Idempotent: each update applies only where the product still holds the order."""
        state = str(record["state"])
        if state not in (*GIVEN_BACK, GONE):
            return state
        order_id = record["_id"]
        for line in record["lines"]:
            if state == GONE:
                await self.ctx.store.products.update_one(
                    {"_id": line["product_id"], HOLDS: order_id}, {"$pullAll": {HOLDS: [order_id]}}
                )
                continue
            product = await self.ctx.store.products.find_one_and_update(
                {"_id": line["product_id"], HOLDS: order_id},
                fed(
                    {
                        "$inc": {"stock": line["quantity"], "version": 1},
                        "$pullAll": {HOLDS: [order_id]},
                        "$set": {"updated_at": utcnow()},
                    }
                ),
                return_document=ReturnDocument.AFTER,
            )
            if product is not None:
                self.ctx.index.set_stock(product["_id"], product["stock"], product["version"])
                self.ctx.fed()
        return state

    async def release(self, order_id: str, provider_id: str, requested: list[RequestedLine], *, pemda: str) -> str:
        """The order was cancelled, rejected or expired: give the stock back. A release before the
        placement leaves a `released` tombstone, so the late placement reserves nothing."""
        now = utcnow()
        tombstone = {
            "_id": order_id,
            "state": "released",
            "tombstone": True,
            "provider_id": provider_id,
            "lines": [{"product_id": x.product_id, "quantity": x.quantity} for x in domain.merge_lines(requested)],
            "created_at": now,
            "updated_at": now,
        }
        try:
            await self.ctx.store.reservations.insert_one(tombstone)
            return "released"
        except DuplicateKeyError:
            record = await self.ctx.store.reservations.find_one({"_id": order_id}, STATE_ONLY)
        assert record is not None
        released = StockReleased(order_id=order_id, pemda=pemda)
        return await self._decide(record, ("reserving", "reserved"), "released", released, {})

    async def commit(self, order_id: str, *, pemda: str) -> str:
        """The order shipped: the reserved stock is gone for good."""
        record = await self.ctx.store.reservations.find_one({"_id": order_id}, STATE_ONLY)
        if record is None:
            return "unknown"
        committed = StockCommitted(order_id=order_id, pemda=pemda)
        return await self._decide(record, ("reserved",), "committed", committed, {})
