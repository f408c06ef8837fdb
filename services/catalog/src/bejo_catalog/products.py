"""Products: a penyedia lists, changes and deactivates its products; anyone sees orderable ones."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bejo_contracts.catalog import ProductUpserted
from bejo_kit.auth import Principal
from bejo_kit.concurrency import WriteConflict
from bejo_kit.errors import Conflict, NotFound, ValidationProblem
from bejo_kit.mongo import utcnow

from . import categories, domain
from .context import CatalogContext, problem, user_retry
from .domain import Product, Provider, RuleViolation
from .repository import HOLDS, fed, fed_document


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


def check_product(draft: ProductDraft) -> None:
    try:
        domain.check_name("name", draft.name)
        domain.check_price(draft.price, draft.het)
        for i, region in enumerate(draft.regions or []):
            domain.check_pemda(f"regions.{i}", region)
    except RuleViolation as exc:
        raise problem(exc) from None
    if draft.category not in categories.BY_ID:
        raise ValidationProblem.field("category", f"unknown category {draft.category!r}; see GET /api/v1/categories")


class Products:
    def __init__(self, ctx: CatalogContext) -> None:
        self.ctx = ctx

    async def offer(self, product: Product, provider: Provider, now: datetime) -> domain.Offer:
        """The product's price now, after the best promotion running now."""
        terms = await self.ctx.terms_for(product.id, provider.id, now)
        return domain.offer(product.price, terms, now)

    async def create(self, principal: Principal, draft: ProductDraft) -> tuple[Product, Provider]:
        ctx = self.ctx
        check_product(draft)
        provider = await ctx.own_provider(principal)
        if provider.status == "suspended":
            raise Conflict("a suspended provider cannot list products", code="provider_suspended")
        now = utcnow()
        product_id = f"prd-{uuid.uuid4().hex[:20]}"
        product = Product(
            id=product_id,
            provider_id=provider.id,
            name=draft.name.strip(),
            description=draft.description.strip(),
            category=draft.category,
            unit=draft.unit.strip(),
            price=draft.price,
            het=draft.het,
            stock=draft.stock,
            min_order_qty=draft.min_order_qty,
            images=draft.images,
            regions=draft.regions or [provider.pemda_code],
            status="active",
            version=1,
            created_at=now,
            updated_at=now,
        )
        terms = await ctx.terms_for(product_id, provider.id, now)
        event = ProductUpserted(product=domain.snapshot(product, provider, terms, now))
        stored = fed_document({**product.document(), HOLDS: []})
        await ctx.outbox.insert_one(ctx.store.products, stored, [ctx.envelope(event)])
        ctx.index.put_product(product.document(), terms)
        ctx.fed()
        return product, provider

    async def get(self, principal: Principal | None, product_id: str) -> tuple[Product, Provider]:
        """A product anyone may see if orderable; its penyedia and overseers see it in any state."""
        store = self.ctx.store
        product = await store.product(product_id)
        provider = await store.provider(product.provider_id) if product else None
        if product is None or provider is None:
            raise NotFound(f"no product {product_id}")
        visible = domain.is_orderable(product.status, provider.status) or (
            principal is not None
            and (principal.provider_id == provider.id or principal.oversees_pemda(provider.pemda_code))
        )
        if not visible:
            raise NotFound(f"no product {product_id}")
        return product, provider

    async def _own_product(self, principal: Principal, product_id: str) -> Product:
        product = await self.ctx.store.product(product_id)
        if product is None or product.provider_id != principal.provider_id:
            raise NotFound(f"no product {product_id}")
        return product

    async def update(
        self, principal: Principal, product_id: str, changes: dict[str, Any], expected_version: int | None
    ) -> tuple[Product, Provider]:
        """Without `expected_version` a race with another write (a reservation, say) is retried on
        fresh state; with it, a different version answers 409."""

        async def attempt() -> tuple[Product, Provider]:
            product = await self._own_product(principal, product_id)
            if expected_version is not None and expected_version != product.version:
                raise Conflict(
                    f"product is at version {product.version}, not {expected_version}",
                    code="version_conflict",
                    current_version=product.version,
                )
            merged = {**product.document(), **changes}
            check_product(ProductDraft(**{f: merged[f] for f in ProductDraft.__dataclass_fields__}))
            return await self._write(product, changes)

        return await user_retry(attempt, "product")

    async def deactivate(self, principal: Principal, product_id: str) -> tuple[Product, Provider]:
        async def attempt() -> tuple[Product, Provider]:
            product = await self._own_product(principal, product_id)
            if product.status == "inactive":
                provider = await self.ctx.store.provider(product.provider_id)
                assert provider is not None
                return product, provider
            return await self._write(product, {"status": "inactive"})

        return await user_retry(attempt, "product")

    async def _write(self, product: Product, changes: dict[str, Any]) -> tuple[Product, Provider]:
        """Write `changes` if the product is still at the version read; else WriteConflict."""
        ctx = self.ctx
        provider = await ctx.store.provider(product.provider_id)
        assert provider is not None
        now = utcnow()
        updated = product.changed(changes, now)
        terms = await ctx.terms_for(product.id, provider.id, now)
        event = ProductUpserted(product=domain.snapshot(updated, provider, terms, now))
        written = await ctx.outbox.update_one(
            ctx.store.products,
            {"_id": product.id, "version": product.version},
            fed({"$set": {**changes, "updated_at": now}, "$inc": {"version": 1}}),
            [ctx.envelope(event)],
        )
        if not written:
            raise WriteConflict(product.id)
        ctx.index.put_product(updated.document(), terms)
        ctx.fed()
        return updated, provider
