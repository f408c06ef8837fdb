"""HTTP routes of the notifications service: the inbox, contact details and webhook subscriptions."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bejo_kit.api import ApiRequest, Reply, Router
from bejo_kit.auth import ROLES
from bejo_kit.errors import NotFound
from bejo_kit.mongo import Document, utcnow

from . import domain
from .service import Notifier
from .webhooks import Webhooks

router = Router(tag="notifications")
NOTIFIER = web.AppKey("notifier", Notifier)
WEBHOOKS = web.AppKey("webhooks", Webhooks)
EVERY_ROLE = tuple(ROLES)
SUBSCRIBERS = ("admin", "penyedia")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# -- models --------------------------------------------------------------------------------------


class ListNotifications(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cursor: str | None = Field(None, description="next_cursor of the previous page")
    limit: int = Field(20, ge=1, le=100)
    unread_only: bool = Field(False, description="only notifications the caller has not read")


class NotificationView(BaseModel):
    id: str
    recipient: str = Field(description="`user:<sub>`, or the audience it was sent to, e.g. `provider:<id>`")
    event_id: str
    event_type: str = Field(examples=["bejo.orders.order.reserved.v1"])
    kind: str = Field(examples=["order_reserved"])
    subject_id: str | None = Field(description="what the event is about, e.g. the order id")
    title: str = Field(examples=["Persetujuan diperlukan: pesanan ORD-1"])
    body: str
    locale: str = Field(examples=["id"])
    occurred_at: datetime
    created_at: datetime
    read: bool
    read_at: datetime | None


class NotificationPage(BaseModel):
    items: list[NotificationView]
    next_cursor: str | None
    unread_count: int = Field(description="unread notifications of the caller in total, not just this page")


class ContactBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=254, examples=["ppk.dinkes@jatimprov.go.id"])
    locale: domain.Locale = Field("id", description="language of the caller's notifications: `id` or `en`")

    @field_validator("email")
    @classmethod
    def _looks_like_email(cls, value: str) -> str:
        if not _EMAIL.fullmatch(value):
            raise ValueError("not an e-mail address")
        return value


class ContactView(BaseModel):
    sub: str
    email: str
    locale: str
    updated_at: datetime


class CreateWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, examples=["https://erp.cv-maju.co.id/bejo/events"])
    secret: str = Field(
        min_length=16, max_length=256, description="shared secret for the HMAC-SHA256 signature of each delivery"
    )
    # 255: AMQP's limit for a routing key, so for a pattern over them.
    event_types: list[Annotated[str, Field(max_length=255)]] = Field(
        min_length=1,
        max_length=50,
        description="AMQP topic patterns over event types: `*` is one word, `#` zero or more",
        examples=[["bejo.orders.#", "bejo.catalog.product.*.v1"]],
    )

    @field_validator("event_types")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        bad = [p for p in value if not domain.is_valid_pattern(p)]
        if bad:
            raise ValueError(f"not a topic pattern: {bad[0]!r} (dot-separated words of a-z0-9_, or * or #)")
        return value


class WebhookView(BaseModel):
    id: str
    url: str
    event_types: list[str]
    status: Literal["active", "disabled"]
    consecutive_failures: int
    created_at: datetime
    disabled_at: datetime | None


class WebhookList(BaseModel):
    items: list[WebhookView]


class ListDeliveries(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cursor: str | None = None
    limit: int = Field(20, ge=1, le=100)


class AttemptView(BaseModel):
    at: datetime
    status_code: int | None = Field(description="the receiver's HTTP status; null when no answer came")
    error: str | None = Field(examples=["HTTP 500", "timed out after 5s"])
    duration_ms: float


class DeliveryView(BaseModel):
    id: str
    webhook_id: str
    event_id: str
    event_type: str
    status: Literal["pending", "succeeded", "failed", "cancelled"]
    attempts: list[AttemptView]
    next_attempt_at: datetime | None
    created_at: datetime


class DeliveryPage(BaseModel):
    items: list[DeliveryView]
    next_cursor: str | None


def _notification(doc: Document) -> NotificationView:
    return NotificationView(
        id=doc["_id"],
        recipient=doc["recipient"],
        event_id=doc["event_id"],
        event_type=doc["event_type"],
        kind=doc["kind"],
        subject_id=doc.get("subject_id"),
        title=doc["title"],
        body=doc["body"],
        locale=doc["locale"],
        occurred_at=doc["occurred_at"],
        created_at=doc["created_at"],
        read=doc.get("read_at") is not None,
        read_at=doc.get("read_at"),
    )


def _webhook(doc: Document) -> WebhookView:
    return WebhookView(
        id=doc["_id"],
        url=doc["url"],
        event_types=doc["event_types"],
        status=doc["status"],
        consecutive_failures=doc.get("consecutive_failures", 0),
        created_at=doc["created_at"],
        disabled_at=doc.get("disabled_at"),
    )


def _delivery(doc: Document) -> DeliveryView:
    attempts: list[Any] = doc.get("attempts", [])
    return DeliveryView(
        id=doc["_id"],
        webhook_id=doc["webhook_id"],
        event_id=doc["event_id"],
        event_type=doc["event_type"],
        status=doc["status"],
        attempts=[AttemptView.model_validate(a) for a in attempts],
        next_attempt_at=doc.get("next_attempt_at"),
        created_at=doc["created_at"],
    )


# -- inbox ---------------------------------------------------------------------------------------


@router.get("/api/v1/notifications", query=ListNotifications, response=NotificationPage, roles=EVERY_ROLE)
async def list_notifications(req: ApiRequest[None, ListNotifications]) -> NotificationPage:
    """The caller's notifications, newest first, with the unread count."""
    items, next_cursor, unread = await req.app[NOTIFIER].inbox.list(
        req.user, req.query.cursor, req.query.limit, req.query.unread_only
    )
    return NotificationPage(items=[_notification(d) for d in items], next_cursor=next_cursor, unread_count=unread)


@router.post(
    "/api/v1/notifications/{id}/read",
    response=NotificationView,
    roles=EVERY_ROLE,
    responses={404: "No such notification for the caller"},
)
async def mark_read(req: ApiRequest[None, None]) -> NotificationView:
    """Mark one of the caller's notifications read (for them only, on notifications sent to an audience)."""
    document = await req.app[NOTIFIER].inbox.mark_read(req.user, req.path("id"), utcnow())
    return _notification(document)


@router.put("/api/v1/notifications/contact", body=ContactBody, response=ContactView, roles=EVERY_ROLE)
async def put_contact(req: ApiRequest[ContactBody, None]) -> ContactView:
    """Register the caller's e-mail address and language for notifications."""
    contact = await req.app[NOTIFIER].directory.register(req.user, req.body.email, req.body.locale, utcnow())
    return ContactView.model_validate(contact)


@router.get(
    "/api/v1/notifications/contact",
    response=ContactView,
    roles=EVERY_ROLE,
    responses={404: "The caller has registered no address"},
)
async def get_contact(req: ApiRequest[None, None]) -> ContactView:
    """The caller's registered e-mail address and language."""
    contact = await req.app[NOTIFIER].directory.contact(req.user.sub)
    if contact is None:
        raise NotFound("you have registered no e-mail address", code="contact_not_found")
    return ContactView.model_validate(contact)


# -- webhooks ------------------------------------------------------------------------------------


@router.post("/api/v1/webhooks", body=CreateWebhook, response=WebhookView, status=201, roles=SUBSCRIBERS)
async def create_webhook(req: ApiRequest[CreateWebhook, None]) -> WebhookView:
    """Subscribe a URL to events (penyedia receive only their own provider's events)."""
    document = await req.app[WEBHOOKS].subscribe(req.user, req.body.url, req.body.secret, req.body.event_types)
    return _webhook(document)


@router.get("/api/v1/webhooks", response=WebhookList, roles=SUBSCRIBERS)
async def list_webhooks(req: ApiRequest[None, None]) -> WebhookList:
    """The caller's subscriptions."""
    return WebhookList(items=[_webhook(d) for d in await req.app[WEBHOOKS].list_owned(req.user)])


@router.get(
    "/api/v1/webhooks/{id}", response=WebhookView, roles=SUBSCRIBERS, responses={404: "No such webhook of yours"}
)
async def get_webhook(req: ApiRequest[None, None]) -> WebhookView:
    """One of the caller's subscriptions."""
    return _webhook(await req.app[WEBHOOKS].owned(req.user, req.path("id")))


@router.delete("/api/v1/webhooks/{id}", status=204, roles=SUBSCRIBERS, responses={404: "No such webhook of yours"})
async def delete_webhook(req: ApiRequest[None, None]) -> None:
    """Unsubscribe; deliveries not yet made are cancelled."""
    await req.app[WEBHOOKS].delete(req.user, req.path("id"))


@router.get(
    "/api/v1/webhooks/{id}/deliveries",
    query=ListDeliveries,
    response=DeliveryPage,
    roles=SUBSCRIBERS,
    responses={404: "No such webhook of yours"},
)
async def list_deliveries(req: ApiRequest[None, ListDeliveries]) -> DeliveryPage:
    """The delivery log, newest first: every attempt with its status code or error and its duration."""
    items, next_cursor = await req.app[WEBHOOKS].deliveries(req.user, req.path("id"), req.query.cursor, req.query.limit)
    return DeliveryPage(items=[_delivery(d) for d in items], next_cursor=next_cursor)


@router.post(
    "/api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver",
    response=DeliveryView,
    status=202,
    roles=SUBSCRIBERS,
    responses={404: "No such webhook or delivery of yours", 409: "Webhook disabled, or delivery still pending"},
)
async def redeliver(req: ApiRequest[None, None]) -> Reply:
    """Send a finished delivery again (a new round of attempts, logged with the earlier ones)."""
    document = await req.app[WEBHOOKS].redeliver(req.user, req.path("id"), req.path("delivery_id"))
    return Reply(_delivery(document), status=202)
