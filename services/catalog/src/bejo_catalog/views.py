"""Request and response models of the catalog's HTTP API, and how stored documents render
into them."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bejo_contracts.catalog import ProviderStatus
from bejo_contracts.common import PositiveQuantity, PositiveRupiah, Quantity, Rupiah
from bejo_kit.mongo import Document

from . import categories, domain
from .domain import LegalEntity, RuleViolation
from .repository import jakarta
from .search import SortOrder

PEMDA = r"^\d{2}(\.\d{2})?$"


def _rule(check: Any, *args: Any) -> Any:
    """Run a domain check inside a pydantic validator (the kit turns ValueError into a 422 naming the field)."""
    try:
        return check(*args)
    except RuleViolation as exc:
        raise ValueError(exc.message) from None


# -- models -----------------------------------------------------------------------------------


class ProviderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["CV Sumber Rejeki"])
    legal_entity: LegalEntity = Field(description="Only legal entities may join", examples=["CV"])
    nib: str = Field(pattern=r"^\d{13}$", description="Nomor Induk Berusaha: 13 digits", examples=["1234567890123"])
    npwp: str = Field(description="01.234.567.8-901.000 or 15/16 digits", examples=["01.234.567.8-901.000"])
    pkp: bool = Field(description="VAT-registered (Pengusaha Kena Pajak)")
    pemda_code: str = Field(pattern=PEMDA, description="Kemendagri code", examples=["35.15"])
    address: str = Field(min_length=5, max_length=500, examples=["Jl. Raya Porong 1, Sidoarjo"])
    email: str = Field(max_length=254, examples=["cv@example.id"])
    phone: str = Field(max_length=20, examples=["+62315550100"])

    @field_validator("npwp")
    @classmethod
    def _npwp(cls, value: str) -> str:
        return str(_rule(domain.normalize_npwp, value))

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        return str(_rule(domain.normalize_phone, value))

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not domain.EMAIL_PATTERN.match(value.strip()):
            raise ValueError("must be an email address such as cv@example.id")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return str(_rule(domain.check_name, "name", value))


class ProviderOut(BaseModel):
    id: str
    name: str
    legal_entity: str
    nib: str
    npwp: str | None = Field(None, description="Only for the provider itself and overseeing admins/auditors")
    pkp: bool
    pemda_code: str
    address: str
    email: str
    phone: str
    status: ProviderStatus
    status_reason: str | None
    version: int
    created_at: datetime
    updated_at: datetime


class ProviderList(BaseModel):
    items: list[ProviderOut]
    next_cursor: str | None


class ProviderListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pemda_code: str | None = Field(None, pattern=PEMDA, description="matches the code and the pemdas below it")
    status: ProviderStatus | None = None
    cursor: str | None = None
    limit: int = Field(50, ge=1, le=100)


class VerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=500, examples=["Dokumen NIB dan NPWP sesuai"])


class SuspendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, examples=["NPWP tidak valid"])

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("give a reason")
        return value.strip()


def image_urls(value: list[str] | None) -> list[str] | None:
    for url in value or []:
        if not re.match(r"^https?://\S{3,2000}$", url):
            raise ValueError(f"not an http(s) URL: {url[:80]!r}")
    return value


def region_codes(value: list[str] | None) -> list[str] | None:
    for code in value or []:
        _rule(domain.check_pemda, "regions", code)
    return list(dict.fromkeys(value)) if value else value


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["Kopi Robusta Dampit 1kg"])
    description: str = Field("", max_length=5000)
    category: str = Field(
        description="a category id from GET /api/v1/categories", examples=["makanan-minuman.kopi-teh"]
    )
    unit: str = Field(min_length=1, max_length=30, examples=["pak"])
    price: PositiveRupiah = Field(description="whole rupiah", examples=[95000])
    het: PositiveRupiah | None = Field(None, description="highest retail price (HET); price may not exceed it")
    stock: Quantity = Field(examples=[5])
    min_order_qty: PositiveQuantity = 1
    images: list[str] = Field(default_factory=list, max_length=10)
    regions: list[str] | None = Field(
        None, max_length=50, description="pemda codes delivered to; default: the provider's"
    )

    _images = field_validator("images")(classmethod(lambda cls, value: image_urls(value)))
    _regions = field_validator("regions")(classmethod(lambda cls, value: region_codes(value)))


NOT_NULLABLE = (
    "name",
    "description",
    "category",
    "unit",
    "price",
    "stock",
    "min_order_qty",
    "images",
    "regions",
    "status",
)


class ProductPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=5000)
    category: str | None = None
    unit: str | None = Field(None, min_length=1, max_length=30)
    price: PositiveRupiah | None = None
    het: PositiveRupiah | None = Field(None, description="null removes the HET")
    stock: Quantity | None = None
    min_order_qty: PositiveQuantity | None = None
    images: list[str] | None = Field(None, max_length=10)
    regions: list[str] | None = Field(None, min_length=1, max_length=50)
    status: Literal["active", "inactive"] | None = None

    _images = field_validator("images")(classmethod(lambda cls, value: image_urls(value)))
    _regions = field_validator("regions")(classmethod(lambda cls, value: region_codes(value)))

    @field_validator(*NOT_NULLABLE, mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null (only het may be removed with null)")
        return value


class ProductOut(BaseModel):
    id: str
    provider_id: str
    provider_name: str
    name: str
    description: str
    category: str
    unit: str
    price: int
    het: int | None
    effective_price: int = Field(description="price after the best promotion active now")
    free_shipping: bool
    promotion_id: str | None
    stock: int
    min_order_qty: int
    images: list[str]
    regions: list[str]
    status: Literal["active", "inactive"]
    orderable: bool
    version: int
    created_at: datetime
    updated_at: datetime


class ProductPage(BaseModel):
    items: list[ProductOut]
    next_cursor: str | None


class ProductSearch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: str | None = Field(None, max_length=200, description="keywords over name, description, provider name")
    category: str | None = Field(None, description="a category id; includes its sub-categories")
    min_price: Rupiah | None = Field(None, description="on the effective price")
    max_price: Rupiah | None = Field(None, description="on the effective price")
    provider_id: str | None = None
    region: str | None = Field(None, pattern=PEMDA, description="products that deliver to this pemda")
    in_stock: bool | None = None
    sort: SortOrder | None = Field(None, description="default: relevance with q, else newest")
    cursor: str | None = None
    limit: int = Field(20, ge=1, le=100)

    @field_validator("category")
    @classmethod
    def _category(cls, value: str | None) -> str | None:
        if value is not None and value not in categories.BY_ID:
            raise ValueError(f"unknown category {value!r}")
        return value


class PromotionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["Harbolnas 12.12"])
    scope: Literal["products", "provider"] = Field(description="listed products, or every product of the provider")
    product_ids: list[str] = Field(default_factory=list, max_length=500)
    discount_kind: Literal["percent", "fixed", "none"]
    discount_value: Rupiah = Field(0, description="percent 1..100, or rupiah off the unit price")
    free_shipping: bool = False
    starts_at: datetime = Field(description="ISO-8601; without an offset it is read as Asia/Jakarta (WIB)")
    ends_at: datetime = Field(examples=["2026-12-13T00:00:00+07:00"])

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return domain.as_aware(value)


class PromotionOut(BaseModel):
    id: str
    provider_id: str
    name: str
    scope: Literal["products", "provider"]
    product_ids: list[str]
    discount_kind: Literal["percent", "fixed", "none"]
    discount_value: int
    free_shipping: bool
    starts_at: datetime = Field(description="Asia/Jakarta")
    ends_at: datetime = Field(description="Asia/Jakarta")
    created_at: datetime


class PromotionList(BaseModel):
    items: list[PromotionOut]


class PromotionQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    active: bool | None = Field(None, description="true: running now; false: not running now")
    provider_id: str | None = None


class CategoryOut(BaseModel):
    id: str
    name: str
    parent_id: str | None


class CategoryList(BaseModel):
    items: list[CategoryOut]


class StatsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pemda: str | None = Field(None, pattern=PEMDA)


class PemdaStats(BaseModel):
    pemda: str
    providers: int
    products: int


class CatalogStats(BaseModel):
    providers: int = Field(description="verified providers")
    products: int = Field(description="active products of verified providers")
    by_pemda: list[PemdaStats]


class FeedQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after: str | None = Field(None, description="next_cursor of the previous page; empty: from the start")
    limit: int = Field(500, ge=1, le=1000)


class FeedItem(BaseModel):
    seq: int
    op: Literal["upsert", "delete"]
    kind: Literal["product", "provider"]
    id: str
    version: int
    document: dict[str, Any] | None


class FeedPage(BaseModel):
    items: list[FeedItem]
    next_cursor: str = Field(description="pass back as `after`; unchanged when there was nothing new")


# -- rendering --------------------------------------------------------------------------------


def provider_out(doc: Document) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k in ProviderOut.model_fields}
    return {**out, "id": doc["_id"], "npwp": doc.get("npwp"), "status_reason": doc.get("status_reason")}


def product_out(state: Document, provider: Document, offer: domain.Offer, orderable: bool) -> dict[str, Any]:
    return {
        "id": state["_id"],
        "provider_id": state["provider_id"],
        "provider_name": provider["name"],
        "name": state["name"],
        "description": state["description"],
        "category": state["category"],
        "unit": state["unit"],
        "price": state["price"],
        "het": state.get("het"),
        "effective_price": offer.unit_price,
        "free_shipping": offer.free_shipping,
        "promotion_id": offer.promotion_id,
        "stock": state["stock"],
        "min_order_qty": state["min_order_qty"],
        "images": state["images"],
        "regions": state["regions"],
        "status": state["status"],
        "orderable": orderable,
        "version": state["version"],
        "created_at": state["created_at"],
        "updated_at": state["updated_at"],
    }


def promotion_out(doc: Document) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k in PromotionOut.model_fields}
    return {**out, "id": doc["_id"], "starts_at": jakarta(doc["starts_at"]), "ends_at": jakarta(doc["ends_at"])}
