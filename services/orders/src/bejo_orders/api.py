"""HTTP routes of the orders service."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from yarl import URL

from bejo_kit.api import ApiRequest, Header, Reply, Router
from bejo_kit.mongo import utcnow

from . import ocds
from .checkout import IDEMPOTENCY_HEADER
from .domain import Action
from .service import OrdersService
from .views import (
    CheckoutView,
    HistoryView,
    ListQuery,
    OcdsPolicy,
    OcdsQuery,
    OrderList,
    OrderView,
    PlaceOrder,
    ReasonIn,
    RedFlagList,
    RedFlagQuery,
    ReleasePackage,
    ShipIn,
    Stats,
    StatsQuery,
)

router = Router(tag="orders")
SERVICE = web.AppKey("orders_service", OrdersService)

NOT_FOUND = "No such order, or not visible to the caller"
ILLEGAL = "Illegal transition from the order's current status (`current_status` names it)"


def service_of(req: ApiRequest[Any, Any]) -> OrdersService:
    return req.app[SERVICE]


# Registered before /orders/{id} so that "stats" is not taken for an order id.
@router.get("/api/v1/orders/stats", query=StatsQuery, response=Stats)
async def order_stats(req: ApiRequest[None, StatsQuery]) -> Stats:
    """Transparency figures: paid and completed orders by pemda and month (public)."""
    return await service_of(req).queries.stats(req.query)


@router.get("/api/v1/ocds/releases", query=OcdsQuery, response=ReleasePackage)
async def ocds_releases(req: ApiRequest[None, OcdsQuery]) -> dict[str, Any]:
    """Approved orders as an OCDS 1.1 release package, every release of each (public; paged with
    `links.next`). URIs are on the gateway's public URL (`BEJO_PUBLIC_URL`)."""
    service = service_of(req)
    releases, next_cursor = await service.queries.ocds_releases(req.query)
    pub = service.queries.publication()
    # the same path and query, on the public base URL rather than this service's address
    url = URL(pub.url(str(req.request.rel_url)))
    next_uri = str(url.update_query(cursor=next_cursor)) if next_cursor else None
    return ocds.release_package(releases, pub=pub, uri=str(url), published=utcnow(), next_uri=next_uri)


@router.get("/api/v1/ocds/policy", response=OcdsPolicy)
async def ocds_policy(req: ApiRequest[None, None]) -> OcdsPolicy:
    """The publication policy of the OCDS data: what is published, when, and under which license."""
    return OcdsPolicy.of(service_of(req).queries.publication())


@router.get(
    "/api/v1/redflags",
    query=RedFlagQuery,
    response=RedFlagList,
    roles=("admin", "auditor"),
    responses={403: "The pemda asked for is outside the caller's", 422: "Invalid filter or cursor"},
)
async def red_flags(req: ApiRequest[None, RedFlagQuery]) -> RedFlagList:
    """Red-flag indicators of the caller's pemda and below (auditors, admins): each flag with its
    rule, orders, amount, time and evidence, newest first; `summary` counts what each rule examined."""
    return await service_of(req).redflags.list_flags(req.user, req.query)


@router.post(
    "/api/v1/orders",
    body=PlaceOrder,
    response=CheckoutView,
    status=201,
    roles=("pp",),
    headers=(
        Header(
            IDEMPOTENCY_HEADER,
            "the client's id of this checkout: a retry with the same key and body gets the first answer",
            required=True,
            max_length=200,
        ),
    ),
    responses={
        409: "Idempotency-Key reused with a different body",
        422: "Invalid cart, unknown product or cap exceeded",
    },
)
async def place_order(req: ApiRequest[PlaceOrder, None]) -> Reply:
    """Check out a cart (header Idempotency-Key required): one order per provider."""
    return await service_of(req).checkout.place(req.user, req.request.headers.get(IDEMPOTENCY_HEADER), req.body)


@router.get(
    "/api/v1/orders",
    query=ListQuery,
    response=OrderList,
    roles=("pp", "ppk", "bendahara", "penyedia", "admin", "auditor"),
)
async def list_orders(req: ApiRequest[None, ListQuery]) -> OrderList:
    """Orders visible to the caller, newest first, with an opaque cursor."""
    return await service_of(req).queries.list_orders(req.user, req.query)


@router.get(
    "/api/v1/orders/{id}",
    response=OrderView,
    roles=("pp", "ppk", "bendahara", "penyedia", "admin", "auditor"),
    responses={404: NOT_FOUND},
)
async def get_order(req: ApiRequest[None, None]) -> OrderView:
    """One order."""
    return OrderView.of(await service_of(req).queries.get_visible(req.path("id"), req.user))


@router.get(
    "/api/v1/orders/{id}/history",
    response=HistoryView,
    roles=("pp", "ppk", "bendahara", "penyedia", "admin", "auditor"),
    responses={404: NOT_FOUND},
)
async def order_history(req: ApiRequest[None, None]) -> dict[str, Any]:
    """The append-only audit trail: actor, role, time, from → to, reason."""
    order = await service_of(req).queries.get_visible(req.path("id"), req.user)
    # by alias: the entries' wire names are `from` and `to`
    return HistoryView(order_id=order.id, items=order.history).model_dump(mode="json", by_alias=True)


async def _act(req: ApiRequest[Any, Any], action: Action, **kwargs: str | None) -> OrderView:
    order = await service_of(req).transitions.act(req.user, req.path("id"), action, **kwargs)
    return OrderView.of(order)


TRANSITION_RESPONSES = {403: "Not this order's PPK/PP/provider, or separation of duties", 404: NOT_FOUND, 409: ILLEGAL}


@router.post("/api/v1/orders/{id}/approve", response=OrderView, roles=("ppk",), responses=TRANSITION_RESPONSES)
async def approve_order(req: ApiRequest[None, None]) -> OrderView:
    """The order's PPK approves (signs the Surat Pesanan); cannot be the PP who placed it."""
    return await _act(req, "approve")


@router.post(
    "/api/v1/orders/{id}/reject", body=ReasonIn, response=OrderView, roles=("ppk",), responses=TRANSITION_RESPONSES
)
async def reject_order(req: ApiRequest[ReasonIn, None]) -> OrderView:
    """The order's PPK rejects it (reason required); the stock is released."""
    return await _act(req, "reject", reason=req.body.reason)


@router.post("/api/v1/orders/{id}/accept", response=OrderView, roles=("penyedia",), responses=TRANSITION_RESPONSES)
async def accept_order(req: ApiRequest[None, None]) -> OrderView:
    """The provider accepts an approved order."""
    return await _act(req, "accept")


@router.post(
    "/api/v1/orders/{id}/ship", body=ShipIn, response=OrderView, roles=("penyedia",), responses=TRANSITION_RESPONSES
)
async def ship_order(req: ApiRequest[ShipIn, None]) -> OrderView:
    """The provider ships, with a tracking note."""
    return await _act(req, "ship", tracking_note=req.body.tracking_note)


@router.post("/api/v1/orders/{id}/receive", response=OrderView, roles=("ppk",), responses=TRANSITION_RESPONSES)
async def receive_order(req: ApiRequest[None, None]) -> OrderView:
    """The order's PPK confirms receipt: the BAST number is issued."""
    return await _act(req, "receive")


@router.post(
    "/api/v1/orders/{id}/cancel",
    body=ReasonIn,
    response=OrderView,
    roles=("pp", "ppk", "penyedia"),
    responses=TRANSITION_RESPONSES,
)
async def cancel_order(req: ApiRequest[ReasonIn, None]) -> OrderView:
    """Cancel before shipping (reason required): the PP who placed it or the order's PPK until
    shipping, the provider until it accepts. The stock is released."""
    return await _act(req, "cancel", reason=req.body.reason)
