"""HTTP routes of the catalog service."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bejo_contracts.catalog import ProviderStatus
from bejo_kit.api import ApiRequest, Reply, Router
from bejo_kit.errors import ValidationProblem
from bejo_kit.mongo import Document, utcnow
from bejo_kit.paging import decode_cursor, encode_cursor

from . import categories, domain
from .domain import LegalEntity, RuleViolation
from .feed import render
from .repository import jakarta
from .search import IndexedProduct, SearchQuery, SortOrder
from .service import CatalogService, ProductDraft, PromotionDraft

router = Router(tag="catalog")
SERVICE = web.AppKey("catalog_service", CatalogService)

PEMDA = r"^\d{2}(\.\d{2})?$"
ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def _service(req: ApiRequest[Any, Any]) -> CatalogService:
    return req.app[SERVICE]


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


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["Kopi Robusta Dampit 1kg"])
    description: str = Field("", max_length=5000)
    category: str = Field(
        description="a category id from GET /api/v1/categories", examples=["makanan-minuman.kopi-teh"]
    )
    unit: str = Field(min_length=1, max_length=30, examples=["pak"])
    price: int = Field(gt=0, description="whole rupiah", examples=[95000])
    het: int | None = Field(None, gt=0, description="highest retail price (HET); price may not exceed it")
    stock: int = Field(ge=0, examples=[5])
    min_order_qty: int = Field(1, ge=1)
    images: list[str] = Field(default_factory=list, max_length=10)
    regions: list[str] | None = Field(
        None, max_length=50, description="pemda codes delivered to; default: the provider's"
    )

    @field_validator("images")
    @classmethod
    def _images(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.match(r"^https?://\S{3,2000}$", url):
                raise ValueError(f"not an http(s) URL: {url[:80]!r}")
        return value

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: list[str] | None) -> list[str] | None:
        for code in value or []:
            _rule(domain.check_pemda, "regions", code)
        return list(dict.fromkeys(value)) if value else value


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
    price: int | None = Field(None, gt=0)
    het: int | None = Field(None, gt=0, description="null removes the HET")
    stock: int | None = Field(None, ge=0)
    min_order_qty: int | None = Field(None, ge=1)
    images: list[str] | None = Field(None, max_length=10)
    regions: list[str] | None = Field(None, min_length=1, max_length=50)
    status: Literal["active", "inactive"] | None = None

    _images = field_validator("images")(ProductIn._images.__func__)  # type: ignore[attr-defined]
    _regions = field_validator("regions")(ProductIn._regions.__func__)  # type: ignore[attr-defined]

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
    min_price: int | None = Field(None, ge=0, description="on the effective price")
    max_price: int | None = Field(None, ge=0, description="on the effective price")
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
    discount_value: int = Field(0, ge=0, description="percent 1..100, or rupiah off the unit price")
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


async def _product_reply(service: CatalogService, state: Document, provider: Document) -> dict[str, Any]:
    now = utcnow()
    terms = await service.terms_for(state["_id"], provider["_id"], now)
    return product_out(
        state,
        provider,
        domain.offer(state["price"], terms, now),
        domain.is_orderable(state["status"], provider["status"]),
    )


def promotion_out(doc: Document) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k in PromotionOut.model_fields}
    return {**out, "id": doc["_id"], "starts_at": jakarta(doc["starts_at"]), "ends_at": jakarta(doc["ends_at"])}


def _etagged(request: web.Request, body: bytes) -> web.Response:
    """A JSON response with a strong ETag over its content; 304 when the client has it already;
    gzip when the client accepts it (mobile clients on slow links)."""
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    candidates = {tag.strip().removeprefix("W/") for tag in request.headers.get("If-None-Match", "").split(",")}
    if etag in candidates or "*" in candidates:
        return web.Response(status=304, headers={"ETag": etag})
    response = web.Response(body=body, content_type="application/json", headers={"ETag": etag})
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        response.enable_compression()
    return response


# -- categories -------------------------------------------------------------------------------


@router.get("/api/v1/categories", response=CategoryList)
async def list_categories(req: ApiRequest[None, None]) -> dict[str, Any]:
    """The category tree, parents before their children."""
    return {"items": [{"id": c.id, "name": c.name, "parent_id": c.parent_id} for c in categories.CATEGORIES]}


# -- providers --------------------------------------------------------------------------------


@router.post(
    "/api/v1/providers",
    body=ProviderIn,
    response=ProviderOut,
    status=201,
    roles=("penyedia",),
    responses={409: "This provider is already registered"},
)
async def register_provider(req: ApiRequest[ProviderIn, None]) -> dict[str, Any]:
    """Register the provider named by the caller's token (`provider_id` claim); it starts pending."""
    doc = await _service(req).register_provider(req.user, req.body.model_dump())
    return provider_out(doc)


@router.get("/api/v1/providers/{provider_id}", response=ProviderOut, responses={404: "No such provider"})
async def get_provider(req: ApiRequest[None, None]) -> dict[str, Any]:
    """A verified provider (anyone); any provider for itself and for overseeing admins/auditors."""
    return provider_out(await _service(req).get_provider(req.principal, req.path("provider_id")))


@router.get("/api/v1/providers", query=ProviderListQuery, response=ProviderList)
async def list_providers(req: ApiRequest[None, ProviderListQuery]) -> dict[str, Any]:
    """Providers by pemda and status; the public sees verified providers only."""
    position = decode_cursor(req.query.cursor)
    after = position.get("after") if position else None
    if position is not None and not isinstance(after, str):
        raise ValidationProblem.field("cursor", "malformed cursor; pass back the next_cursor of a previous page")
    page, last = await _service(req).list_providers(
        req.principal, req.query.pemda_code, req.query.status, after, req.query.limit
    )
    return {"items": [provider_out(p) for p in page], "next_cursor": encode_cursor({"after": last}) if last else None}


@router.post(
    "/api/v1/providers/{provider_id}/verify",
    body=VerifyIn,
    response=ProviderOut,
    roles=("admin",),
    responses={404: "No such provider in your pemda", 409: "Already verified"},
)
async def verify_provider(req: ApiRequest[VerifyIn, None]) -> dict[str, Any]:
    """Verify a pending or suspended provider: its active products become visible and orderable."""
    doc = await _service(req).change_provider_status(req.user, req.path("provider_id"), "verified", req.body.reason)
    return provider_out(doc)


@router.post(
    "/api/v1/providers/{provider_id}/suspend",
    body=SuspendIn,
    response=ProviderOut,
    roles=("admin",),
    responses={404: "No such provider in your pemda", 409: "Already suspended"},
)
async def suspend_provider(req: ApiRequest[SuspendIn, None]) -> dict[str, Any]:
    """Suspend a provider, with a reason: its products disappear from search and cannot be ordered."""
    doc = await _service(req).change_provider_status(req.user, req.path("provider_id"), "suspended", req.body.reason)
    return provider_out(doc)


# -- products ---------------------------------------------------------------------------------


@router.post(
    "/api/v1/products",
    body=ProductIn,
    response=ProductOut,
    status=201,
    roles=("penyedia",),
    responses={409: "Provider not registered or suspended"},
)
async def create_product(req: ApiRequest[ProductIn, None]) -> dict[str, Any]:
    """List a product of the caller's provider."""
    service = _service(req)
    state, provider = await service.create_product(req.user, ProductDraft(**req.body.model_dump()))
    return await _product_reply(service, state, provider)


@router.get("/api/v1/products/{product_id}", response=ProductOut, responses={404: "No such product"})
async def get_product(req: ApiRequest[None, None]) -> dict[str, Any]:
    """An orderable product (anyone); any product for its penyedia and overseeing admins/auditors."""
    service = _service(req)
    state, provider = await service.get_product(req.principal, req.path("product_id"))
    return await _product_reply(service, state, provider)


def _if_match(request: web.Request) -> int | None:
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    value = raw.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise ValidationProblem.field("If-Match", 'must be the product version, e.g. "3"')
    return int(value)


@router.patch(
    "/api/v1/products/{product_id}",
    body=ProductPatch,
    response=ProductOut,
    roles=("penyedia",),
    responses={404: "No such product of yours", 409: "Version conflict (If-Match)"},
)
async def update_product(req: ApiRequest[ProductPatch, None]) -> dict[str, Any]:
    """Change a product; send `If-Match: "<version>"` to change it only if nobody else did."""
    service = _service(req)
    changes = req.body.model_dump(exclude_unset=True)
    state, provider = await service.update_product(req.user, req.path("product_id"), changes, _if_match(req.request))
    return await _product_reply(service, state, provider)


@router.delete(
    "/api/v1/products/{product_id}", response=ProductOut, roles=("penyedia",), responses={404: "No such product"}
)
async def deactivate_product(req: ApiRequest[None, None]) -> dict[str, Any]:
    """Deactivate a product (nothing is ever hard-deleted); PATCH status=active brings it back."""
    service = _service(req)
    state, provider = await service.deactivate_product(req.user, req.path("product_id"))
    return await _product_reply(service, state, provider)


_CURSOR_SHAPES: dict[str, tuple[type, ...]] = {
    "relevance": ((int, float), (int, float), str),  # type: ignore[dict-item]
    "price_asc": ((int,), str),  # type: ignore[dict-item]
    "price_desc": ((int,), str),  # type: ignore[dict-item]
    "newest": ((int, float), str),  # type: ignore[dict-item]
}


def _search_position(cursor: str | None, sort: SortOrder) -> tuple[Any, ...] | None:
    position = decode_cursor(cursor)
    if position is None:
        return None
    key = position.get("key")
    shape: Any = _CURSOR_SHAPES[sort]
    valid = (
        position.get("sort") == sort
        and isinstance(key, list)
        and len(key) == len(shape)
        and all(isinstance(v, t) and not isinstance(v, bool) for v, t in zip(key, shape, strict=True))
    )
    if not valid or not isinstance(key, list):
        raise ValidationProblem.field("cursor", "malformed cursor, or one from a different sort order")
    return tuple(key)


@router.get("/api/v1/products", query=ProductSearch, response=ProductPage)
async def search_products(req: ApiRequest[None, ProductSearch]) -> web.Response:
    """Search orderable products. Sends an ETag (answers 304 to If-None-Match) and gzips on request."""
    query = req.query
    if query.min_price is not None and query.max_price is not None and query.min_price > query.max_price:
        raise ValidationProblem.field("min_price", "must not exceed max_price")
    sort: SortOrder = query.sort or ("relevance" if query.q else "newest")
    service = _service(req)
    page = service.index.search(
        SearchQuery(
            q=query.q,
            category=query.category,
            min_price=query.min_price,
            max_price=query.max_price,
            provider_id=query.provider_id,
            region=query.region,
            in_stock=query.in_stock,
            sort=sort,
            limit=query.limit,
            after=_search_position(query.cursor, sort),
        ),
        utcnow(),
    )
    items = [_indexed_out(service, indexed, offer) for indexed, offer in page.items]
    next_cursor = encode_cursor({"sort": sort, "key": list(page.next_key)}) if page.next_key else None
    return _etagged(req.request, orjson.dumps({"items": items, "next_cursor": next_cursor}))


def _indexed_out(service: CatalogService, indexed: IndexedProduct, offer: domain.Offer) -> dict[str, Any]:
    provider = service.index.providers[indexed.doc["provider_id"]]
    return product_out(indexed.doc, provider, offer, True)


# -- promotions -------------------------------------------------------------------------------


@router.post(
    "/api/v1/promotions",
    body=PromotionIn,
    response=PromotionOut,
    status=201,
    roles=("penyedia",),
    responses={409: "Provider not registered"},
)
async def create_promotion(req: ApiRequest[PromotionIn, None]) -> dict[str, Any]:
    """A discount and/or free shipping on some products or all of the provider's, within a window."""
    doc = await _service(req).create_promotion(req.user, PromotionDraft(**req.body.model_dump()))
    return promotion_out(doc)


@router.get("/api/v1/promotions", query=PromotionQuery, response=PromotionList)
async def list_promotions(req: ApiRequest[None, PromotionQuery]) -> dict[str, Any]:
    """Promotions, optionally only those running now (`active=true`) or of one provider."""
    docs = await _service(req).list_promotions(req.query.active, req.query.provider_id, utcnow())
    return {"items": [promotion_out(d) for d in docs]}


# -- transparency and national sync -----------------------------------------------------------


@router.get("/api/v1/catalog/stats", query=StatsQuery, response=CatalogStats)
async def catalog_stats(req: ApiRequest[None, StatsQuery]) -> dict[str, Any]:
    """Verified providers and their active products, per pemda (`pemda=35` includes `35.15`)."""
    return _service(req).index.stats(req.query.pemda)


@router.get("/api/v1/catalog/feed", query=FeedQuery, response=FeedPage)
async def catalog_feed(req: ApiRequest[None, FeedQuery]) -> Reply:
    """Changes in sequence order, for national e-catalog sync: upserts of public documents and deletes."""
    position = decode_cursor(req.query.after, field="after")
    after = position.get("seq") if position else 0
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise ValidationProblem.field("after", "malformed cursor; pass back the next_cursor of a previous page")
    entries = await _service(req).feed.read(after, req.query.limit)
    last = entries[-1]["seq"] if entries else after
    return Reply({"items": [render(e) for e in entries], "next_cursor": encode_cursor({"seq": last})})
