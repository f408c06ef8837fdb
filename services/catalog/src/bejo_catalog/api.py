"""HTTP routes of the catalog service."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from aiohttp import web

from bejo_kit.api import ApiRequest, Header, Reply, Router
from bejo_kit.errors import ValidationProblem
from bejo_kit.mongo import utcnow
from bejo_kit.paging import decode_cursor, encode_cursor

from . import categories, domain
from .domain import Product, Provider
from .feed import render
from .products import ProductDraft
from .promotions import PromotionDraft
from .search import SearchQuery, SortOrder
from .service import CatalogService
from .views import (
    CatalogStats,
    CategoryList,
    FeedPage,
    FeedQuery,
    ProductIn,
    ProductOut,
    ProductPage,
    ProductPatch,
    ProductSearch,
    PromotionIn,
    PromotionList,
    PromotionOut,
    PromotionQuery,
    ProviderIn,
    ProviderList,
    ProviderListQuery,
    ProviderOut,
    StatsQuery,
    SuspendIn,
    VerifyIn,
    product_out,
    promotion_out,
    provider_out,
)

router = Router(tag="catalog")
SERVICE = web.AppKey("catalog_service", CatalogService)


def _service(req: ApiRequest[Any, Any]) -> CatalogService:
    return req.app[SERVICE]


async def _product_reply(service: CatalogService, product: Product, provider: Provider) -> dict[str, Any]:
    offer = await service.products.offer(product, provider, utcnow())
    orderable = domain.is_orderable(product.status, provider.status)
    return product_out(product.document(), provider.document(), offer, orderable)


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
    provider = await _service(req).providers.register(req.user, req.body.model_dump())
    return provider_out(provider.document())


@router.get("/api/v1/providers/{provider_id}", response=ProviderOut, responses={404: "No such provider"})
async def get_provider(req: ApiRequest[None, None]) -> dict[str, Any]:
    """A verified provider (anyone); any provider for itself and for overseeing admins/auditors."""
    return provider_out(await _service(req).providers.get(req.principal, req.path("provider_id")))


@router.get("/api/v1/providers", query=ProviderListQuery, response=ProviderList)
async def list_providers(req: ApiRequest[None, ProviderListQuery]) -> dict[str, Any]:
    """Providers by pemda and status; the public sees verified providers only."""
    position = decode_cursor(req.query.cursor)
    after = position.get("after") if position else None
    if position is not None and not isinstance(after, str):
        raise ValidationProblem.field("cursor", "malformed cursor; pass back the next_cursor of a previous page")
    page, last = await _service(req).providers.list_page(
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
    provider = await _service(req).providers.change_status(
        req.user, req.path("provider_id"), "verified", req.body.reason
    )
    return provider_out(provider.document())


@router.post(
    "/api/v1/providers/{provider_id}/suspend",
    body=SuspendIn,
    response=ProviderOut,
    roles=("admin",),
    responses={404: "No such provider in your pemda", 409: "Already suspended"},
)
async def suspend_provider(req: ApiRequest[SuspendIn, None]) -> dict[str, Any]:
    """Suspend a provider, with a reason: its products disappear from search and cannot be ordered."""
    provider = await _service(req).providers.change_status(
        req.user, req.path("provider_id"), "suspended", req.body.reason
    )
    return provider_out(provider.document())


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
    state, provider = await service.products.create(req.user, ProductDraft(**req.body.model_dump()))
    return await _product_reply(service, state, provider)


@router.get("/api/v1/products/{product_id}", response=ProductOut, responses={404: "No such product"})
async def get_product(req: ApiRequest[None, None]) -> dict[str, Any]:
    """An orderable product (anyone); any product for its penyedia and overseeing admins/auditors."""
    service = _service(req)
    state, provider = await service.products.get(req.principal, req.path("product_id"))
    return await _product_reply(service, state, provider)


def _if_match(request: web.Request) -> int | None:
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    value = raw.strip().removeprefix("W/").strip('"')
    # ASCII digits only, and few enough to fit BSON's int64 (a longer number is no version anyway).
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        raise ValidationProblem.field("If-Match", 'must be the product version, e.g. "3"')
    return int(value)


@router.patch(
    "/api/v1/products/{product_id}",
    body=ProductPatch,
    response=ProductOut,
    roles=("penyedia",),
    responses={404: "No such product of yours", 409: "Version conflict (If-Match)"},
    headers=(
        Header("If-Match", 'the version the change is based on, e.g. "3"; without it the change is unconditional'),
    ),
)
async def update_product(req: ApiRequest[ProductPatch, None]) -> dict[str, Any]:
    """Change a product; send `If-Match: "<version>"` to change it only if nobody else did."""
    service = _service(req)
    changes = req.body.model_dump(exclude_unset=True)
    state, provider = await service.products.update(req.user, req.path("product_id"), changes, _if_match(req.request))
    return await _product_reply(service, state, provider)


@router.delete(
    "/api/v1/products/{product_id}", response=ProductOut, roles=("penyedia",), responses={404: "No such product"}
)
async def deactivate_product(req: ApiRequest[None, None]) -> dict[str, Any]:
    """Deactivate a product (nothing is ever hard-deleted); PATCH status=active brings it back."""
    service = _service(req)
    state, provider = await service.products.deactivate(req.user, req.path("product_id"))
    return await _product_reply(service, state, provider)


# The types each position of a sort's cursor may hold (an isinstance() class or tuple of classes).
_CURSOR_SHAPES: dict[str, tuple[type | tuple[type, ...], ...]] = {
    "relevance": ((int, float), (int, float), str),
    "price_asc": ((int,), str),
    "price_desc": ((int,), str),
    "newest": ((int, float), str),
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
    found, next_key = _service(req).search(
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
    # Only orderable products are found, so each is orderable.
    items = [product_out(state, provider, offer, True) for state, provider, offer in found]
    next_cursor = encode_cursor({"sort": sort, "key": list(next_key)}) if next_key else None
    return _etagged(req.request, orjson.dumps({"items": items, "next_cursor": next_cursor}))


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
    doc = await _service(req).promotions.create(req.user, PromotionDraft(**req.body.model_dump()))
    return promotion_out(doc)


@router.get("/api/v1/promotions", query=PromotionQuery, response=PromotionList)
async def list_promotions(req: ApiRequest[None, PromotionQuery]) -> dict[str, Any]:
    """Promotions, optionally only those running now (`active=true`) or of one provider."""
    docs = await _service(req).promotions.list_all(req.query.active, req.query.provider_id, utcnow())
    return {"items": [promotion_out(d) for d in docs]}


# -- transparency and national sync -----------------------------------------------------------


@router.get("/api/v1/catalog/stats", query=StatsQuery, response=CatalogStats)
async def catalog_stats(req: ApiRequest[None, StatsQuery]) -> dict[str, Any]:
    """Verified providers and their active products, per pemda (`pemda=35` includes `35.15`)."""
    return _service(req).stats(req.query.pemda)


@router.get("/api/v1/catalog/feed", query=FeedQuery, response=FeedPage)
async def catalog_feed(req: ApiRequest[None, FeedQuery]) -> Reply:
    """Changes in sequence order, for national e-catalog sync: upserts of public documents and deletes."""
    position = decode_cursor(req.query.after, field="after")
    after = position.get("seq") if position else 0
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise ValidationProblem.field("after", "malformed cursor; pass back the next_cursor of a previous page")
    entries = await _service(req).feed_page(after, req.query.limit)
    last = entries[-1]["seq"] if entries else after
    return Reply({"items": [render(e) for e in entries], "next_cursor": encode_cursor({"seq": last})})
