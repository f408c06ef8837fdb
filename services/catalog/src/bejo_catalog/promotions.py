"""Promotions: a penyedia offers a discount and/or free shipping on some or all of its products
for a time window; every product it covers is published again with its new terms."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from bejo_contracts.catalog import ProductUpserted, PromotionCreated
from bejo_kit.auth import Principal
from bejo_kit.errors import ValidationProblem
from bejo_kit.mongo import Document, utcnow

from . import domain
from .context import CatalogContext, problem
from .domain import Product, RuleViolation
from .repository import STATE_ONLY, fed_document


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


class Promotions:
    def __init__(self, ctx: CatalogContext) -> None:
        self.ctx = ctx

    async def create(self, principal: Principal, draft: PromotionDraft) -> Document:
        ctx = self.ctx
        try:
            domain.check_name("name", draft.name)
            domain.check_promotion(
                draft.discount_kind, draft.discount_value, draft.free_shipping, draft.starts_at, draft.ends_at
            )
        except RuleViolation as exc:
            raise problem(exc) from None
        provider = await ctx.own_provider(principal)
        provider_id = provider.id
        products = await self._covered(provider_id, draft)
        now = utcnow()
        promotion: Document = {
            "_id": f"promo-{uuid.uuid4().hex[:16]}",
            "provider_id": provider_id,
            "name": draft.name.strip(),
            "scope": draft.scope,
            "product_ids": [p.id for p in products] if draft.scope == "products" else [],
            "discount_kind": draft.discount_kind,
            "discount_value": draft.discount_value,
            "free_shipping": draft.free_shipping,
            "starts_at": draft.starts_at,
            "ends_at": draft.ends_at,
            "created_by": principal.sub,
            "created_at": now,
        }
        promotions = [*await ctx.store.promotions_of(provider_id), promotion]
        terms_of_product = {p.id: domain.terms_for(promotions, p.id, provider_id, now) for p in products}
        envelopes = [
            ctx.envelope(
                PromotionCreated(
                    provider_id=provider_id,
                    provider_pemda_code=provider.pemda_code,
                    product_ids=promotion["product_ids"],
                    terms=domain.terms_of(promotion),
                )
            ),
            *(
                ctx.envelope(ProductUpserted(product=domain.snapshot(p, provider, terms_of_product[p.id], now)))
                for p in products
            ),
        ]
        await ctx.outbox.insert_one(ctx.store.promotions, fed_document(promotion), envelopes)
        for product in products:
            ctx.index.put_product(product.document(), terms_of_product[product.id])
        ctx.fed()
        return promotion

    async def _covered(self, provider_id: str, draft: PromotionDraft) -> list[Product]:
        """The provider's products the draft names (scope products), or all of them (scope provider)."""
        store = self.ctx.store
        if draft.scope != "products":
            if draft.product_ids:
                raise ValidationProblem.field("product_ids", "must be empty when scope is provider")
            return await store.products_of(provider_id)
        if not draft.product_ids:
            raise ValidationProblem.field("product_ids", "name at least one product when scope is products")
        named = list(dict.fromkeys(draft.product_ids))
        found = await store.products_by_id(named)
        for i, product_id in enumerate(named):
            if product_id not in found or found[product_id].provider_id != provider_id:
                raise ValidationProblem.field(f"product_ids.{i}", f"no product {product_id} of your provider")
        return [found[product_id] for product_id in named]

    async def list_all(self, active: bool | None, provider_id: str | None, now: datetime) -> list[Document]:
        filter_: Document = {"provider_id": provider_id} if provider_id else {}
        promotions = await self.ctx.store.promotions.find(filter_, STATE_ONLY).sort("_id", 1).to_list()
        if active is not None:
            promotions = [p for p in promotions if domain.is_running(p, now) == active]
        return promotions
