"""Events published by the catalog service."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .common import Actor
from .envelope import EventData
from .pricing import PromotionTerms
from .registry import event

ProviderStatus = Literal["pending", "verified", "suspended"]
RejectionCode = Literal[
    "not_found", "out_of_stock", "inactive", "provider_suspended", "provider_not_verified", "below_min_qty"
]


class ProviderEvent(EventData):
    provider_id: str
    name: str
    legal_entity: str
    pemda_code: str
    email: str
    pkp: bool
    status: ProviderStatus
    actor: Actor

    def subject(self) -> str:
        return self.provider_id

    def pemda_scope(self) -> str:
        return self.pemda_code


@event
class ProviderRegistered(ProviderEvent):
    TYPE = "bejo.catalog.provider.registered.v1"


@event
class ProviderVerified(ProviderEvent):
    TYPE = "bejo.catalog.provider.verified.v1"
    reason: str | None = None


@event
class ProviderSuspended(ProviderEvent):
    TYPE = "bejo.catalog.provider.suspended.v1"
    reason: str


class ProductSnapshot(BaseModel):
    """The public facts about a product that other services may keep a copy of (no stock level)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    product_id: str
    provider_id: str
    provider_name: str
    provider_pkp: bool
    provider_pemda_code: str
    name: str
    category_id: str
    unit: str
    price: int
    het: int | None
    min_order_qty: int
    regions: list[str]
    status: Literal["active", "inactive"]
    # active, and the provider verified: buyers may see and order it
    orderable: bool
    promotions: list[PromotionTerms]
    version: int
    updated_at: datetime
    # When the catalog took this snapshot. A provider's standing or a new promotion changes the
    # snapshot without a new product version; among equal versions the later snapshot is newer.
    as_of: datetime | None = None


@event
class ProductUpserted(EventData):
    """A product was created or changed, or its provider's standing or promotions changed."""

    TYPE = "bejo.catalog.product.upserted.v1"
    product: ProductSnapshot

    def subject(self) -> str:
        return self.product.product_id

    def pemda_scope(self) -> str:
        return self.product.provider_pemda_code


@event
class PromotionCreated(EventData):
    TYPE = "bejo.catalog.promotion.created.v1"
    provider_id: str
    provider_pemda_code: str
    product_ids: list[str]
    terms: PromotionTerms

    def subject(self) -> str:
        return self.terms.promotion_id

    def pemda_scope(self) -> str:
        return self.provider_pemda_code


class ReservedLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    product_id: str
    name: str
    unit: str
    quantity: int
    list_price: int
    unit_price: int  # effective price at reservation time: what the buyer pays per unit
    free_shipping: bool = False
    promotion_id: str | None = None


class LineRejection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    product_id: str
    code: RejectionCode
    message: str


class StockEvent(EventData):
    order_id: str
    pemda: str  # the order's (the buyer's) pemda, as on the order's own events

    def subject(self) -> str:
        return self.order_id

    def pemda_scope(self) -> str:
        return self.pemda


@event
class StockReserved(StockEvent):
    TYPE = "bejo.catalog.stock.reserved.v1"
    provider_id: str
    provider_name: str
    provider_pkp: bool
    lines: list[ReservedLine]
    total: int


@event
class StockRejected(StockEvent):
    TYPE = "bejo.catalog.stock.rejected.v1"
    rejections: list[LineRejection]


@event
class StockReleased(StockEvent):
    TYPE = "bejo.catalog.stock.released.v1"


@event
class StockCommitted(StockEvent):
    """The reservation became final because the order shipped."""

    TYPE = "bejo.catalog.stock.committed.v1"


class CatalogChange(EventData):
    """One entry of the national e-catalog sync feed, as published on the `catalog.sync` exchange.

    The same items are served by `GET /api/v1/catalog/feed`. `seq` is the feed's monotonic sequence
    number: consumers apply items in `seq` order and drop any `seq` they have already applied
    (delivery is at-least-once). `document` is the full public document for an upsert, None for a
    delete (the object left the public catalog: deactivated, or its provider is not verified).
    """

    seq: int
    op: Literal["upsert", "delete"]
    kind: Literal["product", "provider"]
    id: str
    version: int
    document: dict[str, Any] | None = None

    def subject(self) -> str:
        return self.id

    # No pemda scope: the feed is the public catalog, published for the national e-catalog.


@event
class CatalogProductChanged(CatalogChange):
    TYPE = "bejo.catalog.sync.product.v1"


@event
class CatalogProviderChanged(CatalogChange):
    TYPE = "bejo.catalog.sync.provider.v1"
