"""Use cases of the catalog: load, decide (domain), write the state and its events in one
conditional document write (`Outbox`), keep this replica's search model current.

Every write is safe with several replicas: it is conditional on what was read (`version` or
state), and a lost race is retried on fresh state (`retry_on_conflict`) or, for stock, decided by
the atomic conditional decrement itself.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from bejo_contracts import Actor, Envelope, EventData
from bejo_contracts.catalog import (
    LineRejection,
    ProductUpserted,
    PromotionCreated,
    ProviderEvent,
    ProviderRegistered,
    ProviderStatus,
    ProviderSuspended,
    ProviderVerified,
    ReservedLine,
    StockCommitted,
    StockRejected,
    StockReleased,
    StockReserved,
)
from bejo_contracts.pricing import PromotionTerms
from bejo_kit.auth import Principal
from bejo_kit.bus import Bus
from bejo_kit.concurrency import WriteConflict, retry_on_conflict
from bejo_kit.errors import Conflict, NotFound, ValidationProblem
from bejo_kit.logging import get_logger
from bejo_kit.mongo import Document, utcnow
from bejo_kit.outbox import Outbox

from . import categories, domain
from .domain import RequestedLine, RuleViolation
from .feed import Feed, provider_from_document, state_from_document
from .repository import HOLDS, STATE_ONLY, CatalogStore, clean, fed, fed_document, public_provider
from .search import CatalogIndex

log = get_logger(__name__)
T = TypeVar("T")
# Reservation states after which the order holds no stock (given back) or its stock is gone.
GIVEN_BACK, GONE = ("rejected", "released"), "committed"


def actor_of(principal: Principal) -> Actor:
    return Actor(sub=principal.sub, role=principal.role, name=principal.name)  # type: ignore[arg-type]


def problem(violation: RuleViolation) -> ValidationProblem:
    return ValidationProblem.field(violation.field, violation.message)


async def user_retry(operation: Callable[[], Awaitable[T]], what: str) -> T:
    """A user's load-decide-write, retried on fresh state; a race lost every time answers 409."""
    try:
        return await retry_on_conflict(operation)
    except WriteConflict:
        raise Conflict(f"the {what} changed meanwhile; reload and retry", code="version_conflict") from None


@dataclass(frozen=True)
class ProductDraft:
    name: str
    description: str
    category: str
    unit: str
    price: int
    het: int | None
    stock: int
    min_order_qty: int
    images: list[str]
    regions: list[str] | None


@dataclass(frozen=True)
class PromotionDraft:
    name: str
    scope: str
    product_ids: list[str]
    discount_kind: str
    discount_value: int
    free_shipping: bool
    starts_at: datetime
    ends_at: datetime


class CatalogService:
    def __init__(
        self,
        store: CatalogStore,
        feed: Feed,
        index: CatalogIndex,
        bus: Bus,
        outbox: Outbox,
        wake_sequencer: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.feed = feed
        self.index = index
        self.bus = bus
        self.outbox = outbox
        self._fed = wake_sequencer
        self.applied_seq = 0

    # -- start-up and convergence of the search model --------------------------------------

    async def load(self, now: datetime) -> None:
        """Build the search model from the store. The feed head is read first, so a change made
        while loading is applied again by the tailer (applying is idempotent)."""
        head = await self.feed.head()
        providers = await self.store.providers.find({}, STATE_ONLY).to_list()
        for provider in providers:
            self.index.put_provider(provider_from_document(public_provider(provider)))
        promotions = await self.store.promotions.find({"ends_at": {"$gt": now}}, STATE_ONLY).to_list()
        promotions_of: dict[str, list[Document]] = {}
        for promotion in promotions:
            promotions_of.setdefault(promotion["provider_id"], []).append(promotion)
        loaded = 0
        async for product in self.store.products.find({}, STATE_ONLY):
            loaded += 1
            if loaded % 2000 == 0:
                await asyncio.sleep(0)  # indexing is CPU work: keep heartbeats and requests flowing
            provider_id = product["provider_id"]
            self.index.put_product(
                product, domain.terms_for(promotions_of.get(provider_id, []), product["_id"], provider_id, now)
            )
        self.applied_seq = head
        log.info("catalog loaded", providers=len(providers), products=len(self.index.products), feed_head=head)

    def apply_entry(self, entry: Document) -> None:
        if entry["kind"] == "provider":
            self.index.put_provider(provider_from_document(entry["document"]))
        else:
            self.index.put_product(*state_from_document(entry["document"]))

    async def tail_once(self, limit: int = 500) -> int:
        """Apply the feed entries written since the last pass: every replica's changes reach
        every replica's search model this way."""
        entries = await self.feed.read(self.applied_seq, limit)
        for entry in entries:
            self.apply_entry(entry)
            self.applied_seq = entry["seq"]
        return len(entries)

    async def tail_forever(self, interval: float) -> None:
        while True:
            if await self.tail_once() == 0:
                await asyncio.sleep(interval)

    async def terms_for(self, product_id: str, provider_id: str, now: datetime) -> list[PromotionTerms]:
        return domain.terms_for(await self.store.promotions_of(provider_id), product_id, provider_id, now)

    def _envelope(self, data: EventData) -> Envelope:
        return self.bus.envelope(data)

    # -- providers ------------------------------------------------------------------------

    async def register_provider(self, principal: Principal, fields: dict[str, Any]) -> Document:
        """A penyedia registers the provider its token names (`provider_id` claim)."""
        provider_id = principal.provider_id
        if provider_id is None or not domain.PROVIDER_ID_PATTERN.match(provider_id):
            raise ValidationProblem.field("provider_id", "the token's provider_id must be 1-64 letters, digits, . _ -")
        try:
            name = domain.check_name("name", fields["name"])
            npwp = domain.normalize_npwp(fields["npwp"])
            phone = domain.normalize_phone(fields["phone"])
            pemda = domain.check_pemda("pemda_code", fields["pemda_code"])
        except RuleViolation as exc:
            raise problem(exc) from None
        now = utcnow()
        doc: Document = {
            "_id": provider_id,
            "name": name,
            "legal_entity": fields["legal_entity"],
            "nib": fields["nib"],
            "npwp": npwp,
            "pkp": fields["pkp"],
            "pemda_code": pemda,
            "address": fields["address"].strip(),
            "email": fields["email"].strip().lower(),
            "phone": phone,
            "status": "pending",
            "status_reason": None,
            "version": 1,
            "registered_by": principal.sub,
            "created_at": now,
            "updated_at": now,
        }
        event = ProviderRegistered(**self._provider_event_fields(doc, actor_of(principal)))
        try:
            await self.outbox.insert_one(self.store.providers, fed_document(doc), [self._envelope(event)])
        except DuplicateKeyError:
            raise Conflict(f"provider {provider_id} is already registered", code="already_registered") from None
        self.index.put_provider(provider_from_document(public_provider(doc)))
        self._fed()
        return doc

    @staticmethod
    def _provider_event_fields(doc: Document, actor: Actor) -> dict[str, Any]:
        return {
            "provider_id": doc["_id"],
            "name": doc["name"],
            "legal_entity": doc["legal_entity"],
            "pemda_code": doc["pemda_code"],
            "email": doc["email"],
            "pkp": doc["pkp"],
            "status": doc["status"],
            "actor": actor,
        }

    def may_see_provider(self, principal: Principal | None, provider: Document) -> bool:
        if provider["status"] == "verified":
            return True
        if principal is None:
            return False
        return principal.provider_id == provider["_id"] or principal.oversees_pemda(provider["pemda_code"])

    async def get_provider(self, principal: Principal | None, provider_id: str) -> Document:
        provider = await self.store.provider(provider_id)
        if provider is None or not self.may_see_provider(principal, provider):
            raise NotFound(f"no provider {provider_id}")
        return self._provider_view(principal, provider)

    @staticmethod
    def _provider_view(principal: Principal | None, provider: Document) -> Document:
        """The NPWP only for the provider itself and overseeing admins/auditors."""
        full = principal is not None and (
            principal.provider_id == provider["_id"] or principal.oversees_pemda(provider["pemda_code"])
        )
        return provider if full else provider_from_document(public_provider(provider))

    async def list_providers(
        self, principal: Principal | None, pemda_code: str | None, status: str | None, after: str | None, limit: int
    ) -> tuple[list[Document], str | None]:
        filter_: Document = {}
        if pemda_code:
            filter_["pemda_code"] = {"$regex": f"^{re.escape(pemda_code)}(\\.|$)"}
        if status:
            filter_["status"] = status
        page: list[Document] = []
        while len(page) <= limit:
            batch = await self.store.list_providers(filter_, after, 2 * limit)
            page += [self._provider_view(principal, p) for p in batch if self.may_see_provider(principal, p)]
            if len(batch) < 2 * limit:
                break
            after = batch[-1]["_id"]
        more = len(page) > limit
        page = page[:limit]
        return page, page[-1]["_id"] if more else None

    async def change_provider_status(
        self, principal: Principal, provider_id: str, target: ProviderStatus, reason: str | None
    ) -> Document:
        async def attempt() -> Document:
            provider = await self.store.provider(provider_id)
            if provider is None or not principal.oversees_pemda(provider["pemda_code"]):
                raise NotFound(f"no provider {provider_id}")
            try:
                domain.transition(provider["status"], target)
            except domain.IllegalTransition as exc:
                raise Conflict(str(exc), code="illegal_transition", current_status=exc.current) from None
            now = utcnow()
            updated = {**provider, "status": target, "status_reason": reason, "updated_at": now}
            updated["version"] += 1
            fields = self._provider_event_fields(updated, actor_of(principal))
            event: ProviderEvent = (
                ProviderVerified(**fields, reason=reason)
                if target == "verified"
                else ProviderSuspended(**fields, reason=reason or "")
            )
            # Every product's public standing changes with its provider: orders keeps a copy.
            promotions = await self.store.promotions_of(provider_id)
            envelopes = [self._envelope(event)] + [
                self._envelope(
                    ProductUpserted(
                        product=domain.snapshot(
                            product, updated, domain.terms_for(promotions, product["_id"], provider_id, now)
                        )
                    )
                )
                for product in await self.store.products_of(provider_id)
            ]
            written = await self.outbox.update_one(
                self.store.providers,
                {"_id": provider_id, "version": provider["version"]},
                fed({"$set": {"status": target, "status_reason": reason, "updated_at": now}, "$inc": {"version": 1}}),
                envelopes,
            )
            if not written:
                raise WriteConflict(provider_id)
            return updated

        updated = await user_retry(attempt, "provider")
        self.index.put_provider(provider_from_document(public_provider(updated)))
        self._fed()
        return updated

    # -- products -------------------------------------------------------------------------

    async def _own_provider(self, principal: Principal) -> Document:
        provider_id = principal.provider_id or ""
        provider = await self.store.provider(provider_id)
        if provider is None:
            raise Conflict(
                f"provider {provider_id} is not registered; POST /api/v1/providers first",
                code="provider_not_registered",
            )
        return provider

    @staticmethod
    def _check_product(draft: ProductDraft) -> None:
        try:
            domain.check_name("name", draft.name)
            domain.check_price(draft.price, draft.het)
            for i, region in enumerate(draft.regions or []):
                domain.check_pemda(f"regions.{i}", region)
        except RuleViolation as exc:
            raise problem(exc) from None
        if draft.category not in categories.BY_ID:
            raise ValidationProblem.field(
                "category", f"unknown category {draft.category!r}; see GET /api/v1/categories"
            )

    async def create_product(self, principal: Principal, draft: ProductDraft) -> tuple[Document, Document]:
        self._check_product(draft)
        provider = await self._own_provider(principal)
        if provider["status"] == "suspended":
            raise Conflict("a suspended provider cannot list products", code="provider_suspended")
        now = utcnow()
        product_id = f"prd-{uuid.uuid4().hex[:20]}"
        doc: Document = {
            "_id": product_id,
            "provider_id": provider["_id"],
            "name": draft.name.strip(),
            "description": draft.description.strip(),
            "category": draft.category,
            "unit": draft.unit.strip(),
            "price": draft.price,
            "het": draft.het,
            "stock": draft.stock,
            "min_order_qty": draft.min_order_qty,
            "images": draft.images,
            "regions": draft.regions or [provider["pemda_code"]],
            "status": "active",
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        terms = await self.terms_for(product_id, provider["_id"], now)
        event = ProductUpserted(product=domain.snapshot(doc, provider, terms))
        await self.outbox.insert_one(self.store.products, fed_document({**doc, HOLDS: []}), [self._envelope(event)])
        self.index.put_product(doc, terms)
        self._fed()
        return doc, provider

    async def get_product(self, principal: Principal | None, product_id: str) -> tuple[Document, Document]:
        """A product anyone may see if orderable; its penyedia and overseers see it in any state."""
        product = await self.store.product(product_id)
        provider = await self.store.provider(product["provider_id"]) if product else None
        if product is None or provider is None:
            raise NotFound(f"no product {product_id}")
        visible = domain.is_orderable(product["status"], provider["status"]) or (
            principal is not None
            and (principal.provider_id == provider["_id"] or principal.oversees_pemda(provider["pemda_code"]))
        )
        if not visible:
            raise NotFound(f"no product {product_id}")
        return clean(product), provider

    async def _own_product(self, principal: Principal, product_id: str) -> Document:
        product = await self.store.product(product_id)
        if product is None or product["provider_id"] != principal.provider_id:
            raise NotFound(f"no product {product_id}")
        return product

    async def update_product(
        self, principal: Principal, product_id: str, changes: dict[str, Any], expected_version: int | None
    ) -> tuple[Document, Document]:
        """Without `expected_version` a race with another write (a reservation, say) is retried on
        fresh state; with it, a different version answers 409."""

        async def attempt() -> tuple[Document, Document]:
            product = await self._own_product(principal, product_id)
            if expected_version is not None and expected_version != product["version"]:
                raise Conflict(
                    f"product is at version {product['version']}, not {expected_version}",
                    code="version_conflict",
                    current_version=product["version"],
                )
            merged = {**product, **changes}
            self._check_product(ProductDraft(**{f: merged[f] for f in ProductDraft.__dataclass_fields__}))
            return await self._write_product(product, changes)

        return await user_retry(attempt, "product")

    async def deactivate_product(self, principal: Principal, product_id: str) -> tuple[Document, Document]:
        async def attempt() -> tuple[Document, Document]:
            product = await self._own_product(principal, product_id)
            if product["status"] == "inactive":
                provider = await self.store.provider(product["provider_id"])
                assert provider is not None
                return clean(product), provider
            return await self._write_product(product, {"status": "inactive"})

        return await user_retry(attempt, "product")

    async def _write_product(self, product: Document, changes: dict[str, Any]) -> tuple[Document, Document]:
        """Write `changes` if the product is still at the version read; else WriteConflict."""
        provider = await self.store.provider(product["provider_id"])
        assert provider is not None
        now = utcnow()
        updated = {**clean(product), **changes, "version": product["version"] + 1, "updated_at": now}
        terms = await self.terms_for(product["_id"], provider["_id"], now)
        event = ProductUpserted(product=domain.snapshot(updated, provider, terms))
        written = await self.outbox.update_one(
            self.store.products,
            {"_id": product["_id"], "version": product["version"]},
            fed({"$set": {**changes, "updated_at": now}, "$inc": {"version": 1}}),
            [self._envelope(event)],
        )
        if not written:
            raise WriteConflict(product["_id"])
        self.index.put_product(updated, terms)
        self._fed()
        return updated, provider

    # -- promotions -----------------------------------------------------------------------

    async def create_promotion(self, principal: Principal, draft: PromotionDraft) -> Document:
        try:
            domain.check_name("name", draft.name)
            domain.check_promotion(
                draft.discount_kind, draft.discount_value, draft.free_shipping, draft.starts_at, draft.ends_at
            )
        except RuleViolation as exc:
            raise problem(exc) from None
        provider = await self._own_provider(principal)
        provider_id = provider["_id"]
        if draft.scope == "products":
            if not draft.product_ids:
                raise ValidationProblem.field("product_ids", "name at least one product when scope is products")
            named = list(dict.fromkeys(draft.product_ids))
            found = await self.store.products_by_id(named)
            for i, product_id in enumerate(named):
                if product_id not in found or found[product_id]["provider_id"] != provider_id:
                    raise ValidationProblem.field(f"product_ids.{i}", f"no product {product_id} of your provider")
            products = [found[product_id] for product_id in named]
        else:
            if draft.product_ids:
                raise ValidationProblem.field("product_ids", "must be empty when scope is provider")
            products = await self.store.products_of(provider_id)
        now = utcnow()
        promotion: Document = {
            "_id": f"promo-{uuid.uuid4().hex[:16]}",
            "provider_id": provider_id,
            "name": draft.name.strip(),
            "scope": draft.scope,
            "product_ids": [p["_id"] for p in products] if draft.scope == "products" else [],
            "discount_kind": draft.discount_kind,
            "discount_value": draft.discount_value,
            "free_shipping": draft.free_shipping,
            "starts_at": draft.starts_at,
            "ends_at": draft.ends_at,
            "created_by": principal.sub,
            "created_at": now,
        }
        promotions = [*await self.store.promotions_of(provider_id), promotion]
        terms_of_product = {p["_id"]: domain.terms_for(promotions, p["_id"], provider_id, now) for p in products}
        envelopes = [
            self._envelope(
                PromotionCreated(
                    provider_id=provider_id, product_ids=promotion["product_ids"], terms=domain.terms_of(promotion)
                )
            ),
            *(
                self._envelope(ProductUpserted(product=domain.snapshot(p, provider, terms_of_product[p["_id"]])))
                for p in products
            ),
        ]
        await self.outbox.insert_one(self.store.promotions, fed_document(promotion), envelopes)
        for product in products:
            self.index.put_product(product, terms_of_product[product["_id"]])
        self._fed()
        return promotion

    async def list_promotions(self, active: bool | None, provider_id: str | None, now: datetime) -> list[Document]:
        filter_: Document = {"provider_id": provider_id} if provider_id else {}
        promotions = await self.store.promotions.find(filter_, STATE_ONLY).sort("_id", 1).to_list()
        if active is not None:
            promotions = [p for p in promotions if (p["starts_at"] <= now < p["ends_at"]) == active]
        return promotions

    # -- stock reservation ----------------------------------------------------------------
    #
    # A reservation record per order (`_id` = order id) moves reserving → reserved | rejected,
    # reserved → released | committed, each step one conditional write carrying its event, so
    # of replicas handling the same order (a redelivery, a late cancel) exactly one makes each
    # step. Stock is taken per line by an atomic conditional decrement that also records the order
    # in the product's `holds`, so a line is never taken twice for one order, and stock is given
    # back only where the order holds some. Whoever sees a record in a state that holds no stock
    # gives back whatever the order still holds (all or nothing, also after a crash).

    async def reserve(self, order_id: str, provider_id: str, requested: list[RequestedLine]) -> str:
        """Reserve every line or none. Returns the reservation's state afterwards."""
        lines = domain.merge_lines(requested)
        record = await self._reservation(order_id, provider_id, lines)
        if record["state"] != "reserving":
            log.info("reservation already decided", order_id=order_id, state=record["state"])
            return await self._settle_stock(record)
        provider = await self.store.provider(provider_id)
        products, rejections = await self._take(order_id, provider_id, provider, lines)
        if rejections:
            rejected = StockRejected(order_id=order_id, rejections=rejections)
            return await self._decide(record, ("reserving",), "rejected", rejected, {})
        assert provider is not None
        reserved = await self._reserved(order_id, provider, [products[line.product_id] for line in lines], lines)
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
            await self.store.reservations.insert_one(record)
        except DuplicateKeyError:
            existing = await self.store.reservations.find_one({"_id": order_id}, STATE_ONLY)
            assert existing is not None
            return existing
        return record

    async def _take(
        self, order_id: str, provider_id: str, provider: Document | None, lines: list[RequestedLine]
    ) -> tuple[dict[str, Document], list[LineRejection]]:
        """Check every line, then take each line's stock unless the order holds it already. Stops at
        the first line that cannot be taken; what was taken is given back by the decision."""
        products = {line.product_id: await self.store.product(line.product_id) for line in lines}

        def check(line: RequestedLine, product: Document | None) -> LineRejection | None:
            held = product is not None and order_id in product.get(HOLDS, [])
            return domain.check_line(line, product, provider, provider_id, held)

        rejections = [r for line in lines if (r := check(line, products[line.product_id])) is not None]
        if rejections:
            return {}, rejections
        taken: dict[str, Document] = {}
        for line in lines:
            product = products[line.product_id]
            assert product is not None
            if order_id not in product.get(HOLDS, []):
                product = await self.store.products.find_one_and_update(
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
                if product is None:  # changed since the check; held now if a duplicate delivery took it
                    product = await self.store.product(line.product_id)
                    if product is None or order_id not in product.get(HOLDS, []):
                        rejection = check(line, product) or LineRejection(
                            product_id=line.product_id, code="out_of_stock", message="not enough stock left"
                        )
                        return taken, [rejection]
                self.index.set_stock(product["_id"], product["stock"], product["version"])
                self._fed()
            taken[line.product_id] = product
        return taken, []

    async def _reserved(
        self, order_id: str, provider: Document, products: list[Document], lines: list[RequestedLine]
    ) -> StockReserved:
        now = utcnow()
        promotions = await self.store.promotions_of(provider["_id"])
        reserved = []
        for product, line in zip(products, lines, strict=True):
            offer = domain.offer(
                product["price"], domain.terms_for(promotions, product["_id"], provider["_id"], now), now
            )
            reserved.append(
                ReservedLine(
                    product_id=product["_id"],
                    name=product["name"],
                    unit=product["unit"],
                    quantity=line.quantity,
                    list_price=offer.list_price,
                    unit_price=offer.unit_price,
                    free_shipping=offer.free_shipping,
                    promotion_id=offer.promotion_id,
                )
            )
        return StockReserved(
            order_id=order_id,
            provider_id=provider["_id"],
            provider_name=provider["name"],
            provider_pkp=provider["pkp"],
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
            if await self.outbox.update_one(
                self.store.reservations,
                {"_id": order_id, "state": {"$in": list(from_states)}},
                {"$set": {"state": state, "updated_at": utcnow(), **extra}},
                [self._envelope(event)],
            ):
                record = {**record, "state": state}
            else:
                current = await self.store.reservations.find_one({"_id": order_id}, STATE_ONLY)
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
                await self.store.products.update_one(
                    {"_id": line["product_id"], HOLDS: order_id}, {"$pullAll": {HOLDS: [order_id]}}
                )
                continue
            product = await self.store.products.find_one_and_update(
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
                self.index.set_stock(product["_id"], product["stock"], product["version"])
                self._fed()
        return state

    async def release(self, order_id: str, provider_id: str, requested: list[RequestedLine]) -> str:
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
            await self.store.reservations.insert_one(tombstone)
            return "released"
        except DuplicateKeyError:
            record = await self.store.reservations.find_one({"_id": order_id}, STATE_ONLY)
        assert record is not None
        return await self._decide(record, ("reserving", "reserved"), "released", StockReleased(order_id=order_id), {})

    async def commit(self, order_id: str) -> str:
        """The order shipped: the reserved stock is gone for good."""
        record = await self.store.reservations.find_one({"_id": order_id}, STATE_ONLY)
        if record is None:
            return "unknown"
        return await self._decide(record, ("reserved",), "committed", StockCommitted(order_id=order_id), {})
