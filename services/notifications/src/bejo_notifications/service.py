"""Use cases: turn events into in-app notifications and e-mails, serve the inbox, keep contacts."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import aiosmtplib
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from bejo_contracts import Envelope
from bejo_kit.auth import Principal
from bejo_kit.errors import NotFound, ValidationProblem
from bejo_kit.logging import get_logger
from bejo_kit.mongo import Document, utcnow
from bejo_kit.paging import decode_cursor, encode_cursor

from . import domain
from .domain import Locale, Recipient
from .repository import NEWEST_FIRST, Store
from .settings import NotificationsSettings
from .templates import RenderedMessage, Renderer
from .work_queue import WorkQueue

log = get_logger(__name__)

PROVIDER_EVENTS = frozenset(
    {
        "bejo.catalog.provider.registered.v1",
        "bejo.catalog.provider.verified.v1",
        "bejo.catalog.provider.suspended.v1",
    }
)


@dataclass(frozen=True)
class Address:
    email: str
    locale: Locale


@dataclass(frozen=True)
class Reach:
    """How a recipient is reached: the locale of its inbox entry and its e-mail addresses."""

    inbox_locale: Locale
    addresses: list[Address]


class Directory:
    """Contact details: users register their own address; providers' come from catalog events."""

    def __init__(self, store: Store, settings: NotificationsSettings) -> None:
        self._store = store
        self._settings = settings

    async def record_provider(self, data: dict[str, Any], now: datetime) -> None:
        provider_id, address = data.get("provider_id"), data.get("email")
        if not isinstance(provider_id, str) or not isinstance(address, str):
            return
        await self._store.audiences.update_one(
            {"_id": domain.provider_recipient(provider_id)},
            {"$set": {"email": address, "name": data.get("name"), "updated_at": now}},
            upsert=True,
        )

    async def register(self, user: Principal, address: str, locale: Locale, now: datetime) -> Document:
        contact_id = domain.user_recipient(user.sub)
        contact = {"sub": user.sub, "email": address, "locale": locale, "role": user.role, "updated_at": now}
        await self._store.contacts.update_one({"_id": contact_id}, {"$set": contact}, upsert=True)
        # Join the audiences the token belongs to, so mail to e.g. a satker's bendahara reaches this
        # user. Each member is its own field, so members registering at once never overwrite each other.
        member = {"sub": user.sub, "email": address, "locale": locale}
        for key in domain.recipients_of_user(user.sub, user.role, user.pemda, user.satker, user.provider_id)[1:]:
            await self._store.audiences.update_one(
                {"_id": key}, {"$set": {f"members.{domain.member_key(user.sub)}": member}}, upsert=True
            )
        return {"_id": contact_id, **contact}

    async def contact(self, sub: str) -> Document | None:
        return await self._store.contacts.find_one({"_id": domain.user_recipient(sub)})

    async def reach(self, recipient: Recipient) -> Reach:
        default: Locale = self._settings.default_locale
        if recipient.sub is not None:
            contact = await self.contact(recipient.sub)
            if contact is not None:
                locale = _locale(contact.get("locale"), default)
                return Reach(locale, [Address(contact["email"], locale)])
            fallback = self._settings.user_emails.get(recipient.sub)
            return Reach(default, [Address(fallback, default)] if fallback else [])
        audience = await self._store.audiences.find_one({"_id": recipient.key})
        if audience is None:
            return Reach(default, [])
        found: dict[str, Address] = {}
        if isinstance(official := audience.get("email"), str):
            found[official.lower()] = Address(official, default)
        for member in (audience.get("members") or {}).values():
            found.setdefault(member["email"].lower(), Address(member["email"], _locale(member.get("locale"), default)))
        return Reach(default, list(found.values()))


def _locale(value: Any, default: Locale) -> Locale:
    return value if value in domain.LOCALES else default


async def newest_first_page(
    collection: AsyncCollection[Document],
    query: Document,
    cursor: str | None,
    limit: int,
    projection: Document | None = None,
) -> tuple[list[Document], str | None]:
    """One page of `query`'s matches, newest first, after the cursor's `(created_at, _id)`."""
    position = decode_cursor(cursor)
    if position is not None:
        at, last_id = position.get("at"), position.get("id")
        try:
            moment = datetime.fromisoformat(at) if isinstance(at, str) and isinstance(last_id, str) else None
        except ValueError:
            moment = None
        if moment is None:
            raise ValidationProblem.field("cursor", "malformed cursor; pass back the next_cursor of a previous page")
        query = {**query, "$or": [{"created_at": {"$lt": moment}}, {"created_at": moment, "_id": {"$lt": last_id}}]}
    page = await collection.find(query, projection).sort(NEWEST_FIRST).limit(limit + 1).to_list()
    if len(page) <= limit:
        return page, None
    page = page[:limit]
    return page, encode_cursor({"at": page[-1]["created_at"].isoformat(), "id": page[-1]["_id"]})


class Inbox:
    """The caller's notifications: addressed to their sub or to an audience their token belongs to.
    Read state is per reader, also on audience notifications: `reads.<member key of sub>`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(self, document: Document) -> bool:
        """Insert once: the `_id` is derived from (event, recipient), so a redelivery is a duplicate."""
        try:
            await self._store.notifications.insert_one(document)
        except DuplicateKeyError:
            return False
        return True

    async def list(
        self, user: Principal, cursor: str | None, limit: int, unread_only: bool = False
    ) -> tuple[list[Document], str | None, int]:
        mine: Document = {"recipient": {"$in": _keys(user)}}
        unread = {**mine, _read_field(user.sub): {"$exists": False}}
        found, next_cursor = await newest_first_page(
            self._store.notifications, unread if unread_only else mine, cursor, limit
        )
        unread_count = await self._store.notifications.count_documents(unread)
        return [_as_read_by(doc, user.sub) for doc in found], next_cursor, unread_count

    async def mark_read(self, user: Principal, notification_id: str, now: datetime) -> Document:
        """Idempotent: the first read time stays."""
        mine = {"_id": notification_id, "recipient": {"$in": _keys(user)}}
        field = _read_field(user.sub)
        document = await self._store.notifications.find_one_and_update(
            {**mine, field: {"$exists": False}}, {"$set": {field: now}}, return_document=ReturnDocument.AFTER
        )
        if document is None:  # read before, or not the caller's
            document = await self._store.notifications.find_one(mine)
        if document is None:
            raise NotFound(f"no notification {notification_id!r} for you", code="notification_not_found")
        return _as_read_by(document, user.sub)


def _keys(user: Principal) -> list[str]:
    return domain.recipients_of_user(user.sub, user.role, user.pemda, user.satker, user.provider_id)


def _read_field(sub: str) -> str:
    return f"reads.{domain.member_key(sub)}"


def _as_read_by(document: Document, sub: str) -> Document:
    """The entry as `sub` sees it: their read time, not the other readers'."""
    reads = document.pop("reads", None) or {}
    return {**document, "read_at": reads.get(domain.member_key(sub))}


class Mailer:
    """Queues e-mails (the record is its own work item) and a loop that sends them over SMTP."""

    def __init__(self, store: Store, settings: NotificationsSettings) -> None:
        self._settings = settings
        self.queue = WorkQueue(
            store.emails,
            lease=timedelta(seconds=settings.delivery_lease_seconds),
            concurrency=settings.email_concurrency,
            poll_interval=settings.delivery_poll_interval,
        )

    async def enqueue(self, event_id: str, address: Address, message: RenderedMessage, now: datetime) -> bool:
        """Once per (event, address): a redelivered event meets the record's duplicate key."""
        record = {
            "_id": domain.email_id(event_id, address.email),
            "event_id": event_id,
            "to": address.email,
            "locale": message.locale,
            "subject": message.subject,
            "text": message.text,
            "html": message.html,
            "status": "pending",
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
        }
        try:
            await self.queue.collection.insert_one(record)
        except DuplicateKeyError:
            return False
        self.queue.wake()
        return True

    async def run(self) -> None:
        await self.queue.run(self.send)

    async def send(self, record: Document) -> None:
        """One attempt at a claimed record: sent, retried later, or given up."""
        attempts = int(record.get("attempts", 0)) + 1
        try:
            await aiosmtplib.send(
                self._message(record),
                hostname=self._settings.smtp_host,
                port=self._settings.smtp_port,
                username=self._settings.smtp_username,
                password=self._settings.smtp_password,
                use_tls=self._settings.smtp_use_tls,
                start_tls=self._settings.smtp_start_tls,
                timeout=self._settings.smtp_timeout_seconds,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning("e-mail not sent", to=record["to"], attempts=attempts, error=error)
            outcome = {"attempts": attempts, "last_error": error}
            if attempts >= self._settings.email_max_attempts:
                await self.queue.settle(record, {"$set": {**outcome, "status": "failed"}}, None)
                return
            delay = domain.retry_delay(
                attempts,
                base=self._settings.retry_backoff_base_seconds,
                cap=self._settings.retry_backoff_max_seconds,
                jitter=random.random(),
            )
            await self.queue.settle(record, {"$set": outcome}, utcnow() + timedelta(seconds=delay))
            return
        sent = {"status": "sent", "sent_at": utcnow(), "attempts": attempts, "last_error": None}
        await self.queue.settle(record, {"$set": sent}, None)

    def _message(self, record: Document) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._settings.mail_from
        message["To"] = record["to"]
        message["Subject"] = record["subject"]
        message["Date"] = format_datetime(record["created_at"])
        # Stable per record: a resend after a crash carries the same Message-ID, so clients can fold it.
        message["Message-ID"] = make_msgid(idstring=record["_id"], domain="bejo.local")
        message["X-Bejo-Event-Id"] = record["event_id"]
        message.set_content(record["text"])
        message.add_alternative(record["html"], subtype="html")
        message["Content-Language"] = record["locale"]  # after set_content, which drops Content-* headers
        return message


class Notifier:
    """Handles every event: keeps the provider directory current, then tells the routed recipients."""

    def __init__(self, store: Store, settings: NotificationsSettings) -> None:
        self.directory = Directory(store, settings)
        self.inbox = Inbox(store)
        self.mailer = Mailer(store, settings)
        self.renderer = Renderer()

    async def handle(self, envelope: Envelope) -> int:
        """Returns how many inbox entries were new (0 for a redelivered event)."""
        now = utcnow()
        if envelope.type in PROVIDER_EVENTS:
            await self.directory.record_provider(envelope.data, now)
        route = domain.ROUTES.get(envelope.type)
        if route is None:
            return 0
        rendered: dict[tuple[str, Locale], RenderedMessage] = {}

        def render(recipient: Recipient, locale: Locale) -> RenderedMessage:
            key = (recipient.role, locale)
            if key not in rendered:
                rendered[key] = self.renderer.render(
                    route.template,
                    locale,
                    envelope.data,
                    event_type=envelope.type,
                    event_time=envelope.time,
                    recipient_role=recipient.role,
                )
            return rendered[key]

        async def notify(recipient: Recipient) -> bool:
            reach = await self.directory.reach(recipient)
            message = render(recipient, reach.inbox_locale)
            entry = {
                "_id": domain.notification_id(envelope.id, recipient.key),
                "recipient": recipient.key,
                "recipient_role": recipient.role,
                "event_id": envelope.id,
                "event_type": envelope.type,
                "kind": route.template,
                "subject_id": envelope.subject,
                "title": message.subject,
                "body": message.summary,
                "locale": message.locale,
                "occurred_at": envelope.time,
                "created_at": utcnow(),
            }
            added = await self.inbox.add(entry)
            for address in reach.addresses:
                await self.mailer.enqueue(envelope.id, address, render(recipient, address.locale), now)
            return added

        # Recipients are independent: their writes go out side by side.
        results = await asyncio.gather(*(notify(r) for r in domain.recipients_for(envelope.type, envelope.data)))
        return sum(results)
