"""Use cases of the catalog: load, decide (domain), save state and its events in one write,
append to the change feed, keep the replica's read model current."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

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
from bejo_kit.errors import Conflict, NotFound, ValidationProblem
from bejo_kit.logging import get_logger
from bejo_kit.mongo import Document, utcnow
from bejo_kit.outbox import EVENTS, Outbox, PendingEvents, staged, with_events
from bejo_kit.store import KeyedLocks

from . import categories, domain
from .domain import RequestedLine, RuleViolation
from .feed import Change, Feed, Kind
from .repository import HOLDS, CatalogStore, clean, public_provider
from .search import CatalogIndex

log = get_logger(__name__)

Write = Callable[[PendingEvents], Awaitable[bool]]


def actor_of(principal: Principal) -> Actor:
    return Actor(sub=principal.sub, role=principal.role, name=principal.name)  # type: ignore[arg-type]


def problem(violation: RuleViolation) -> ValidationProblem:
    return ValidationProblem.field(violation.field, violation.message)


def terms_of(promotion: Document) -> PromotionTerms:
    return PromotionTerms(
        promotion_id=promotion["_id"],
        name=promotion["name"],
        discount_kind=promotion["discount_kind"],
        discount_value=promotion["discount_value"],
        free_shipping=promotion["free_shipping"],
        starts_at=promotion["starts_at"],
        ends_at=promotion["ends_at"],
    )


def product_state(doc: Document) -> Document:
    """Stored product without bookkeeping and without the order ids holding stock."""
    return {k: v for k, v in clean(doc).items() if k != HOLDS}


def product_document(product: Document, provider: Document, promotions: list[PromotionTerms]) -> dict[str, Any]:
    """The public document of a product, as the feed carries it (effective price is computed by
    readers from `promotions`, because it depends on the time of reading)."""
    state = product_state(product)
    return {
        "id": state.pop("_id"),
        **state,
        "provider_name": provider["name"],
        "provider_pkp": provider["pkp"],
        "provider_pemda_code": provider["pemda_code"],
        "provider_status": provider["status"],
        "orderable": domain.is_orderable(product["status"], provider["status"]),
        "promotions": [t.model_dump() for t in promotions],
    }


def state_from_document(document: dict[str, Any]) -> tuple[Document, list[PromotionTerms]]:
    """Inverse of `product_document`, for the read model."""
    derived = {"provider_name", "provider_pkp", "provider_pemda_code", "provider_status", "orderable", "promotions"}
    state = {k: v for k, v in document.items() if k not in derived and k != "id"}
    state["_id"] = document["id"]
    return state, [PromotionTerms.model_validate(p) for p in document.get("promotions", [])]


def provider_from_document(document: dict[str, Any]) -> Document:
    return {"_id": document["id"], **{k: v for k, v in document.items() if k != "id"}}


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
    def __init__(self, store: CatalogStore, feed: Feed, index: CatalogIndex, bus: Bus, outbox: Outbox) -> None:
        self.store = store
        self.feed = feed
        self.index = index
        self.bus = bus
        self.outbox = outbox
        self.locks = KeyedLocks()
        self.applied_seq = 0
        self._next_page = 0

    # -- start-up and convergence ---------------------------------------------------------

    async def load(self, now: datetime) -> None:
        """Build the read model from the store. The feed head is read first, so a change made
        while loading is re-applied by the tailer (applying is idempotent)."""
        head = await self.feed.find_head()
        providers = await self.store.providers.find({}, {EVENTS: 0}).to_list()
        for provider in providers:
            self.index.put_provider(provider_from_document(public_provider(provider)))
        promotions = [p for p in await self.store.promotions.find({}, {EVENTS: 0}).to_list() if p["ends_at"] > now]
        loaded = 0
        async for product in self.store.products.find({}, {EVENTS: 0, HOLDS: 0}):
            loaded += 1
            if loaded % 2000 == 0:
                await asyncio.sleep(0)  # indexing is CPU work: keep heartbeats and requests flowing
            state = product_state(product)
            terms = [terms_of(p) for p in promotions if domain.applicable(p, state["_id"], state["provider_id"])]
            self.index.put_product(state, terms)
        self.applied_seq = head
        self._next_page = await self.feed.first_missing_page()
        log.info("catalog loaded", providers=len(providers), products=len(self.index.products), feed_head=head)

    def apply_entry(self, entry: Document) -> None:
        if entry["kind"] == "provider":
            self.index.put_provider(provider_from_document(entry["document"]))
        else:
            state, terms = state_from_document(entry["document"])
            self.index.put_product(state, terms)

    async def tail_once(self, limit: int = 500) -> int:
        """Apply feed entries written since the last pass (other replicas' changes), and write
        page documents for pages that became complete."""
        entries = await self.feed.read(self.applied_seq, limit)
        for entry in entries:
            self.apply_entry(entry)
            self.feed.remember(entry)
            self.applied_seq = entry["seq"]
        page_size = self.feed.page_size
        while (self._next_page + 1) * page_size <= self.applied_seq and await self.feed.compact(self._next_page):
            self._next_page += 1
        return len(entries)

    async def tail_forever(self, interval: float) -> None:
        while True:
            if await self.tail_once() == 0:
                await asyncio.sleep(interval)

    async def recover_intents(self, older_than: timedelta) -> int:
        """Re-append the current state of objects whose change outlived its writer (a crash
        between the state write and the feed append)."""
        recovered = 0
        for intent in await self.feed.stale_intents(older_than):
            changes = []
            for ref in intent["refs"]:
                change = await self._current_change(ref["kind"], ref["id"])
                if change is not None:
                    changes.append(change)
            await self.feed.append(changes, intent["_id"])
            self._apply_changes(changes)
            recovered += 1
        return recovered

    async def _current_change(self, kind: Kind, object_id: str) -> Change | None:
        if kind == "provider":
            provider = await self.store.provider(object_id)
            if provider is None:
                return None
            return Change("provider", object_id, provider["version"], public_provider(provider))
        product = await self.store.product(object_id)
        if product is None:
            return None
        provider = await self.store.provider(product["provider_id"])
        if provider is None:
            return None
        terms = await self.terms_for(product["_id"], provider["_id"], utcnow())
        return Change("product", object_id, product["version"], product_document(product, provider, terms))

    def _apply_changes(self, changes: list[Change]) -> None:
        for change in changes:
            self.apply_entry({"kind": change.kind, "document": change.document})

    async def terms_for(self, product_id: str, provider_id: str, now: datetime) -> list[PromotionTerms]:
        promotions = await self.store.promotions_of(provider_id)
        return [terms_of(p) for p in promotions if p["ends_at"] > now and domain.applicable(p, product_id, provider_id)]

    def _envelope(self, data: EventData) -> Envelope:
        return self.bus.envelope(data)

    async def _write_with_events(self, collection: str, doc_id: str, envelopes: list[Envelope], write: Write) -> bool:
        """Store the relay's hints, then the state write carrying the events, then settle: the
        events go out only if the write happened. An error leaves the hints for the relay's sweep
        to verify (the write may have happened)."""
        pending = await self.outbox.prepare(collection, doc_id, envelopes)
        applied = await write(pending)
        await self.outbox.settle(pending, applied)
        return applied

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
        async with self.locks.hold(f"provider:{provider_id}"):
            intent = await self.feed.intend([("provider", provider_id)])

            async def insert(pending: PendingEvents) -> bool:
                try:
                    await self.store.providers.insert_one(staged(doc, pending))
                except DuplicateKeyError:
                    return False
                return True

            envelopes = [self._envelope(event)]
            if not await self._write_with_events(self.store.providers.name, provider_id, envelopes, insert):
                await self.feed.drop_intent(intent)
                raise Conflict(f"provider {provider_id} is already registered", code="already_registered")
            change = Change("provider", provider_id, 1, public_provider(doc))
            self._apply_changes([change])
            await self.feed.append([change], intent)
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
        full = principal is not None and (
            principal.provider_id == provider_id or principal.oversees_pemda(provider["pemda_code"])
        )
        return clean(provider) if full else provider_from_document(public_provider(provider))

    def list_providers(
        self, principal: Principal | None, pemda_code: str | None, status: str | None, after: str | None, limit: int
    ) -> tuple[list[Document], str | None]:
        matches = []
        for provider in self.index.providers.values():
            if pemda_code and not domain.within_pemda(provider["pemda_code"], pemda_code):
                continue
            if status and provider["status"] != status:
                continue
            if not self.may_see_provider(principal, provider):
                continue
            if after is not None and provider["_id"] <= after:
                continue
            matches.append(provider)
        matches.sort(key=lambda p: p["_id"])
        page = matches[:limit]
        return page, page[-1]["_id"] if len(matches) > limit else None

    async def change_provider_status(
        self, principal: Principal, provider_id: str, target: ProviderStatus, reason: str | None
    ) -> Document:
        async with self.locks.hold(f"provider:{provider_id}"):
            provider = await self.store.provider(provider_id)
            if provider is None or not principal.oversees_pemda(provider["pemda_code"]):
                raise NotFound(f"no provider {provider_id}")
            try:
                domain.transition(provider["status"], target)
            except domain.IllegalTransition as exc:
                raise Conflict(str(exc), code="illegal_transition", current_status=exc.current) from None
            now = utcnow()
            updated = {
                **provider,
                "status": target,
                "status_reason": reason,
                "version": provider["version"] + 1,
                "updated_at": now,
            }
            actor = actor_of(principal)
            fields = self._provider_event_fields(updated, actor)
            event: ProviderEvent = (
                ProviderVerified(**fields, reason=reason)
                if target == "verified"
                else ProviderSuspended(**fields, reason=reason or "")
            )
            # Every product's public standing changes with its provider: orders keeps a copy.
            product_ids = [p.id for p in self.index.products_of(provider_id)]
            products = [p for p in [await self.store.product(pid) for pid in product_ids] if p is not None]
            promotions = await self.store.promotions_of(provider_id)
            envelopes = [self._envelope(event)]
            changes = [Change("provider", provider_id, updated["version"], public_provider(updated))]
            for product in products:
                terms = [
                    terms_of(p)
                    for p in promotions
                    if p["ends_at"] > now and domain.applicable(p, product["_id"], provider_id)
                ]
                envelopes.append(self._envelope(ProductUpserted(product=domain.snapshot(product, updated, terms))))
                changes.append(
                    Change("product", product["_id"], product["version"], product_document(product, updated, terms))
                )
            intent = await self.feed.intend([(c.kind, c.id) for c in changes])

            async def update(pending: PendingEvents) -> bool:
                result = await self.store.providers.update_one(
                    {"_id": provider_id, "version": provider["version"]},
                    with_events(
                        {
                            "$set": {"status": target, "status_reason": reason, "updated_at": now},
                            "$inc": {"version": 1},
                        },
                        pending,
                    ),
                )
                return result.modified_count == 1

            if not await self._write_with_events(self.store.providers.name, provider_id, envelopes, update):
                await self.feed.drop_intent(intent)
                raise Conflict("the provider changed meanwhile; retry", code="version_conflict")
            self._apply_changes(changes)
            await self.feed.append(changes, intent)
        return clean(updated)

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
            HOLDS: [],
        }
        async with self.locks.hold(f"product:{product_id}"):
            terms = await self.terms_for(product_id, provider["_id"], now)
            intent = await self.feed.intend([("product", product_id)])
            event = ProductUpserted(product=domain.snapshot(doc, provider, terms))

            async def insert(pending: PendingEvents) -> bool:
                await self.store.products.insert_one(staged(doc, pending))
                return True

            partition = self.store.products.partition_of(product_id).name
            await self._write_with_events(partition, product_id, [self._envelope(event)], insert)
            change = Change("product", product_id, 1, product_document(doc, provider, terms))
            self._apply_changes([change])
            await self.feed.append([change], intent)
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
        return product_state(product), provider

    async def update_product(
        self, principal: Principal, product_id: str, changes: dict[str, Any], expected_version: int | None
    ) -> tuple[Document, Document]:
        async with self.locks.hold(f"product:{product_id}"):
            product = await self.store.product(product_id)
            if product is None or product["provider_id"] != principal.provider_id:
                raise NotFound(f"no product {product_id}")
            if expected_version is not None and expected_version != product["version"]:
                raise Conflict(
                    f"product is at version {product['version']}, not {expected_version}",
                    code="version_conflict",
                    current_version=product["version"],
                )
            merged = {**product, **changes}
            self._check_product(
                ProductDraft(
                    name=merged["name"],
                    description=merged["description"],
                    category=merged["category"],
                    unit=merged["unit"],
                    price=merged["price"],
                    het=merged["het"],
                    stock=merged["stock"],
                    min_order_qty=merged["min_order_qty"],
                    images=merged["images"],
                    regions=merged["regions"],
                )
            )
            return await self._write_product(product, changes)

    async def deactivate_product(self, principal: Principal, product_id: str) -> tuple[Document, Document]:
        async with self.locks.hold(f"product:{product_id}"):
            product = await self.store.product(product_id)
            if product is None or product["provider_id"] != principal.provider_id:
                raise NotFound(f"no product {product_id}")
            if product["status"] == "inactive":
                provider = await self.store.provider(product["provider_id"])
                assert provider is not None
                return product_state(product), provider
            return await self._write_product(product, {"status": "inactive"})

    async def _write_product(self, product: Document, changes: dict[str, Any]) -> tuple[Document, Document]:
        """Conditional on the version read: on MongoDB this is atomic across replicas; on FerretDB
        the caller's product lock makes it safe within a replica."""
        provider = await self.store.provider(product["provider_id"])
        assert provider is not None
        now = utcnow()
        updated = {**product, **changes, "version": product["version"] + 1, "updated_at": now}
        terms = await self.terms_for(product["_id"], provider["_id"], now)
        intent = await self.feed.intend([("product", product["_id"])])
        event = ProductUpserted(product=domain.snapshot(updated, provider, terms))

        async def update(pending: PendingEvents) -> bool:
            result = await self.store.products.update_one(
                product["_id"],
                with_events({"$set": {**changes, "updated_at": now}, "$inc": {"version": 1}}, pending),
                condition={"version": product["version"]},
            )
            return result.modified_count == 1

        partition = self.store.products.partition_of(product["_id"]).name
        if not await self._write_with_events(partition, product["_id"], [self._envelope(event)], update):
            await self.feed.drop_intent(intent)
            raise Conflict("the product changed meanwhile; reload and retry", code="version_conflict")
        change = Change("product", product["_id"], updated["version"], product_document(updated, provider, terms))
        self._apply_changes([change])
        await self.feed.append([change], intent)
        return product_state(updated), provider

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
            touched_ids = list(dict.fromkeys(draft.product_ids))
        else:
            if draft.product_ids:
                raise ValidationProblem.field("product_ids", "must be empty when scope is provider")
            touched_ids = [p.id for p in self.index.products_of(provider_id)]
        products = []
        for i, product_id in enumerate(touched_ids):
            product = await self.store.product(product_id)
            if product is None or product["provider_id"] != provider_id:
                if draft.scope == "products":
                    raise ValidationProblem.field(f"product_ids.{i}", f"no product {product_id} of your provider")
                continue
            products.append(product)
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
        terms = terms_of(promotion)
        existing = await self.store.promotions_of(provider_id)
        envelopes = [
            self._envelope(PromotionCreated(provider_id=provider_id, product_ids=promotion["product_ids"], terms=terms))
        ]
        changes = []
        for product in products:
            product_terms = [
                terms_of(p)
                for p in existing
                if p["ends_at"] > now and domain.applicable(p, product["_id"], provider_id)
            ]
            if draft.ends_at > now:
                product_terms.append(terms)
            envelopes.append(self._envelope(ProductUpserted(product=domain.snapshot(product, provider, product_terms))))
            changes.append(
                Change(
                    "product", product["_id"], product["version"], product_document(product, provider, product_terms)
                )
            )
        intent = await self.feed.intend([(c.kind, c.id) for c in changes])

        async def insert(pending: PendingEvents) -> bool:
            await self.store.promotions.insert_one(staged(promotion, pending))
            return True

        await self._write_with_events(self.store.promotions.name, promotion["_id"], envelopes, insert)
        self._apply_changes(changes)
        await self.feed.append(changes, intent)
        return promotion

    async def list_promotions(self, active: bool | None, provider_id: str | None, now: datetime) -> list[Document]:
        filter_: Document = {"provider_id": provider_id} if provider_id else {}
        promotions = await self.store.promotions.find(filter_, {EVENTS: 0}).sort("_id", 1).to_list()
        if active is not None:
            promotions = [p for p in promotions if (p["starts_at"] <= now < p["ends_at"]) == active]
        return [clean(p) for p in promotions]

    # -- stock reservation ----------------------------------------------------------------

    async def reserve(self, order_id: str, provider_id: str, requested: list[RequestedLine]) -> str:
        """Reserve every line or none. Returns the reservation's state afterwards.

        The reservation record (`_id` = order id) makes this idempotent and order-tolerant: a
        record in any state but `reserving` means the order was handled (or cancelled first). Each
        product records the orders holding its stock (`holds`), set by the same conditional
        update that takes the stock, so a rerun after a crash knows exactly what was taken.
        """
        lines = domain.merge_lines(requested)
        async with self.locks.hold(f"order:{order_id}"):
            record = await self._reservation(order_id, provider_id, lines)
            if record["state"] != "reserving":
                log.info("reservation already settled", order_id=order_id, state=record["state"])
                return str(record["state"])
            return await self._reserve_all_or_none(record, provider_id, lines)

    async def _reservation(self, order_id: str, provider_id: str, lines: list[RequestedLine]) -> Document:
        record = await self.store.reservations.find_one(order_id)
        if record is not None:
            return record
        now = utcnow()
        record = {
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
            existing = await self.store.reservations.find_one(order_id)
            assert existing is not None
            return existing
        return record

    async def _reserve_all_or_none(self, record: Document, provider_id: str, lines: list[RequestedLine]) -> str:
        """Checks read outside the product locks (an order that cannot be served never waits for
        them); the stock is then taken under the locks by conditional updates, which are the real
        guard against overselling."""
        order_id = record["_id"]
        products = {line.product_id: await self.store.product(line.product_id) for line in lines}
        provider = await self.store.provider(provider_id)
        # Lines an earlier, interrupted attempt already took (the product records the order).
        held = [line for line in lines if order_id in (products[line.product_id] or {}).get(HOLDS, [])]
        rejections = [
            rejection
            for line in lines
            if (rejection := domain.check_line(line, products[line.product_id], provider, provider_id, line in held))
            is not None
        ]
        if rejections:
            if held:
                await self._give_back(order_id, held)
            await self._settle(record, "rejected", StockRejected(order_id=order_id, rejections=rejections))
            return "rejected"
        assert provider is not None
        now = utcnow()
        promotions = [p for p in await self.store.promotions_of(provider_id) if p["ends_at"] > now]
        intent = await self.feed.intend([("product", line.product_id) for line in lines])
        taken: list[RequestedLine] = list(held)
        failed: RequestedLine | None = None
        async with self.locks.hold_many([f"product:{line.product_id}" for line in lines]):
            for line in lines:
                if line in held:
                    continue
                after = await self.store.products.partition_of(line.product_id).find_one_and_update(
                    {
                        "_id": line.product_id,
                        "stock": {"$gte": line.quantity},
                        "status": "active",
                        HOLDS: {"$ne": order_id},
                    },
                    {
                        "$inc": {"stock": -line.quantity, "version": 1},
                        "$push": {HOLDS: order_id},
                        "$set": {"updated_at": now},
                    },
                    return_document=ReturnDocument.AFTER,
                )
                if after is None:
                    failed = line
                    break
                taken.append(line)
                products[line.product_id] = after
            if failed is not None:
                # Stock ran out between the check and the update: undo, all or nothing.
                await self._return_holds(order_id, taken)
        if failed is not None:
            await self._feed_stock_changes(intent, taken)
            rejection = LineRejection(
                product_id=failed.product_id, code="out_of_stock", message="not enough stock left"
            )
            await self._settle(record, "rejected", StockRejected(order_id=order_id, rejections=[rejection]))
            return "rejected"
        reserved_lines = []
        changes = []
        for line in lines:
            product = products[line.product_id]
            assert product is not None
            terms = [terms_of(p) for p in promotions if domain.applicable(p, product["_id"], provider_id)]
            current = domain.offer(product["price"], terms, now)
            reserved_lines.append(
                ReservedLine(
                    product_id=product["_id"],
                    name=product["name"],
                    unit=product["unit"],
                    quantity=line.quantity,
                    list_price=current.list_price,
                    unit_price=current.unit_price,
                    free_shipping=current.free_shipping,
                    promotion_id=current.promotion_id,
                )
            )
            changes.append(
                Change("product", product["_id"], product["version"], product_document(product, provider, terms))
            )
        event = StockReserved(
            order_id=order_id,
            provider_id=provider_id,
            provider_name=provider["name"],
            provider_pkp=provider["pkp"],
            lines=reserved_lines,
            total=sum(line.unit_price * line.quantity for line in reserved_lines),
        )
        await self._settle(record, "reserved", event, {"reserved_lines": [r.model_dump() for r in reserved_lines]})
        self._apply_changes(changes)
        await self.feed.append(changes, intent)
        return "reserved"

    async def _give_back(self, order_id: str, lines: list[RequestedLine]) -> None:
        async with self.locks.hold_many([f"product:{line.product_id}" for line in lines]):
            intent = await self.feed.intend([("product", line.product_id) for line in lines])
            await self._return_holds(order_id, lines)
        await self._feed_stock_changes(intent, lines)

    async def _return_holds(self, order_id: str, lines: list[RequestedLine]) -> None:
        """Give back the stock this order holds (only where it holds some: idempotent)."""
        now = utcnow()
        for line in lines:
            await self.store.products.update_one(
                line.product_id,
                {
                    "$inc": {"stock": line.quantity, "version": 1},
                    "$pullAll": {HOLDS: [order_id]},
                    "$set": {"updated_at": now},
                },
                condition={HOLDS: order_id},
            )

    async def _settle(
        self, record: Document, state: str, event: EventData, extra: dict[str, Any] | None = None
    ) -> None:
        order_id = record["_id"]

        async def update(pending: PendingEvents) -> bool:
            result = await self.store.reservations.update_one(
                order_id,
                with_events({"$set": {"state": state, "updated_at": utcnow(), **(extra or {})}}, pending),
                condition={"state": record["state"]},
            )
            return result.modified_count == 1

        partition = self.store.reservations.partition_of(order_id).name
        if not await self._write_with_events(partition, order_id, [self._envelope(event)], update):
            log.warning("reservation changed meanwhile", order_id=order_id, wanted=state)

    async def _feed_stock_changes(self, intent: str, lines: list[RequestedLine]) -> None:
        changes = [c for line in lines if (c := await self._current_change("product", line.product_id)) is not None]
        self._apply_changes(changes)
        await self.feed.append(changes, intent)

    async def release(self, order_id: str, provider_id: str, requested: list[RequestedLine]) -> str:
        """The order was cancelled, rejected or expired: give the stock back. A release before
        the placement leaves a `released` tombstone, so the late placement reserves nothing."""
        lines = domain.merge_lines(requested)
        async with self.locks.hold(f"order:{order_id}"):
            record = await self.store.reservations.find_one(order_id)
            if record is None:
                try:
                    now = utcnow()
                    await self.store.reservations.insert_one(
                        {
                            "_id": order_id,
                            "state": "released",
                            "tombstone": True,
                            "provider_id": provider_id,
                            "lines": [{"product_id": x.product_id, "quantity": x.quantity} for x in lines],
                            "created_at": now,
                            "updated_at": now,
                        }
                    )
                    return "released"
                except DuplicateKeyError:
                    record = await self.store.reservations.find_one(order_id)
                    assert record is not None
            if record["state"] not in ("reserving", "reserved"):
                return str(record["state"])
            held = [RequestedLine(x["product_id"], x["quantity"]) for x in record["lines"]]
            await self._give_back(order_id, held)
            await self._settle(record, "released", StockReleased(order_id=order_id))
            return "released"

    async def commit(self, order_id: str) -> str:
        """The order shipped: the reserved stock is gone for good."""
        async with self.locks.hold(f"order:{order_id}"):
            record = await self.store.reservations.find_one(order_id)
            if record is None or record["state"] != "reserved":
                return str(record["state"]) if record else "unknown"
            for line in record["lines"]:
                async with self.locks.hold(f"product:{line['product_id']}"):
                    await self.store.products.update_one(
                        line["product_id"], {"$pullAll": {HOLDS: [order_id]}}, condition={HOLDS: order_id}
                    )
            await self._settle(record, "committed", StockCommitted(order_id=order_id))
            return "committed"
