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

from bejo_contracts import Envelope
from bejo_kit.auth import Principal
from bejo_kit.errors import NotFound, ValidationProblem
from bejo_kit.inbox import is_duplicate_key
from bejo_kit.logging import get_logger
from bejo_kit.mongo import Document, utcnow
from bejo_kit.paging import decode_cursor, encode_cursor
from bejo_kit.store import KeyedLocks

from . import domain
from .domain import Locale, Recipient
from .repository import Store
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
        self._locks = KeyedLocks()

    async def record_provider(self, data: dict[str, Any], now: datetime) -> None:
        provider_id, address = data.get("provider_id"), data.get("email")
        if not isinstance(provider_id, str) or not isinstance(address, str):
            return
        key = domain.provider_recipient(provider_id)
        async with self._locks.hold(key):
            await self._store.audiences.update_one(
                {"_id": key},
                {"$set": {"email": address, "name": data.get("name"), "updated_at": now}},
                upsert=True,
            )

    async def register(self, user: Principal, address: str, locale: Locale, now: datetime) -> Document:
        contact_id = domain.user_recipient(user.sub)
        contact = {"sub": user.sub, "email": address, "locale": locale, "role": user.role, "updated_at": now}
        async with self._locks.hold(contact_id):
            await self._store.contacts.partition_of(contact_id).update_one(
                {"_id": contact_id}, {"$set": contact}, upsert=True
            )
        # Join the audiences the token belongs to, so mail to e.g. a satker's bendahara reaches this user.
        member = {"sub": user.sub, "email": address, "locale": locale}
        for key in domain.recipients_of_user(user.sub, user.role, user.satker, user.provider_id)[1:]:
            async with self._locks.hold(key):
                await self._store.audiences.update_one(
                    {"_id": key}, {"$set": {f"members.{domain.member_key(user.sub)}": member}}, upsert=True
                )
        return {"_id": contact_id, **contact}

    async def contact(self, sub: str) -> Document | None:
        return await self._store.contacts.find_one(domain.user_recipient(sub))

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


def page_position(cursor: str | None) -> tuple[str, str] | None:
    """(created_at ISO, id) of the last item of the previous page, from a cursor."""
    malformed = ValidationProblem.field("cursor", "malformed cursor; pass back the next_cursor of a previous page")
    position = decode_cursor(cursor)
    if position is None:
        return None
    at, last_id = position.get("at"), position.get("id")
    if not isinstance(at, str) or not isinstance(last_id, str):
        raise malformed
    try:
        datetime.fromisoformat(at)
    except ValueError:
        raise malformed from None
    return at, last_id


class Inbox:
    """The caller's notifications: addressed to their sub or to an audience their token belongs to."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(self, document: Document) -> bool:
        """Insert once: the `_id` is derived from (event, recipient), so a redelivery is a duplicate."""
        try:
            await self._store.inbox.partition_of(document["recipient"]).insert_one(document)
        except Exception as exc:
            if is_duplicate_key(exc):
                return False
            raise
        return True

    def _keys_by_partition(self, user: Principal) -> dict[str, tuple[Any, list[str]]]:
        grouped: dict[str, tuple[Any, list[str]]] = {}
        for key in domain.recipients_of_user(user.sub, user.role, user.satker, user.provider_id):
            collection = self._store.inbox.partition_of(key)
            grouped.setdefault(collection.name, (collection, []))[1].append(key)
        return grouped

    async def _read_marks(self, sub: str) -> dict[str, datetime]:
        cursor = self._store.reads.partition_of(sub).find({"sub": sub}, {"notification_id": 1, "read_at": 1})
        return {doc["notification_id"]: doc["read_at"] async for doc in cursor}

    async def list(
        self, user: Principal, cursor: str | None, limit: int, unread_only: bool = False
    ) -> tuple[list[Document], str | None, int]:
        after = page_position(cursor)
        documents: list[Document] = []
        for collection, keys in self._keys_by_partition(user).values():
            documents.extend([doc async for doc in collection.find({"recipient": {"$in": keys}})])
        read_marks = await self._read_marks(user.sub)
        for doc in documents:
            doc["read_at"] = read_marks.get(doc["_id"])
        unread_count = sum(1 for doc in documents if doc["read_at"] is None)
        documents.sort(key=lambda d: (d["created_at"], d["_id"]), reverse=True)
        if unread_only:
            documents = [d for d in documents if d["read_at"] is None]
        if after is not None:
            documents = [d for d in documents if (d["created_at"].isoformat(), d["_id"]) < after]
        page = documents[:limit]
        next_cursor = None
        if len(documents) > limit:
            last = page[-1]
            next_cursor = encode_cursor({"at": last["created_at"].isoformat(), "id": last["_id"]})
        return page, next_cursor, unread_count

    async def mark_read(self, user: Principal, notification_id: str, now: datetime) -> Document:
        document: Document | None = None
        for collection, keys in self._keys_by_partition(user).values():
            found = await collection.find_one({"_id": notification_id})
            if found is not None and found["recipient"] in keys:
                document = found
                break
        if document is None:
            raise NotFound(f"no notification {notification_id!r} for you", code="notification_not_found")
        mark = {
            "_id": domain.derived_key(notification_id, user.sub),
            "sub": user.sub,
            "notification_id": notification_id,
            "read_at": now,
        }
        try:
            await self._store.reads.partition_of(user.sub).insert_one(mark)
        except Exception as exc:
            if not is_duplicate_key(exc):
                raise
            existing = await self._store.reads.partition_of(user.sub).find_one({"_id": mark["_id"]})
            if existing is not None:
                mark = existing
        document["read_at"] = mark["read_at"]
        return document


class Mailer:
    """Queues e-mails (a record first, then a queue item) and a loop that sends them over SMTP."""

    def __init__(self, store: Store, settings: NotificationsSettings) -> None:
        self._store = store
        self._settings = settings
        self.queue = WorkQueue(
            store.email_queue,
            lease=timedelta(seconds=settings.delivery_lease_seconds),
            batch_size=settings.delivery_batch_size,
        )

    async def enqueue(self, event_id: str, address: Address, message: RenderedMessage, now: datetime) -> bool:
        """Once per (event, address): a redelivered event finds the record and only re-queues unsent mail."""
        mail_id = domain.email_id(event_id, address.email)
        record = {
            "_id": mail_id,
            "event_id": event_id,
            "to": address.email,
            "locale": message.locale,
            "subject": message.subject,
            "text": message.text,
            "html": message.html,
            "status": "pending",
            "attempts": 0,
            "created_at": now,
        }
        created = True
        try:
            await self._store.emails.insert_one(record)
        except Exception as exc:
            if not is_duplicate_key(exc):
                raise
            created = False
            existing = await self._store.emails.find_one(mail_id)
            if existing is None or existing["status"] != "pending":
                return False
        await self.queue.push(mail_id, now)
        return created

    async def run(self) -> None:
        while True:
            sent = await self.send_due()
            if sent == 0:
                await self.queue.sleep(self._settings.delivery_poll_interval)

    async def send_due(self) -> int:
        items = await self.queue.claim_due(utcnow())
        finished = await asyncio.gather(*(self._send(item) for item in items))
        await self.queue.done([item["_id"] for item, done in zip(items, finished, strict=True) if done])
        return len(items)

    async def _send(self, item: Document) -> bool:
        """One attempt; True when the item leaves the queue (sent, given up, or nothing to send)."""
        mail_id = item["_id"]
        record = await self._store.emails.find_one(mail_id)
        if record is None or record["status"] != "pending":
            return True
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
            return await self._failed(record, attempts, f"{type(exc).__name__}: {exc}")
        await self._store.emails.update_one(
            mail_id, {"$set": {"status": "sent", "sent_at": utcnow(), "attempts": attempts, "last_error": None}}
        )
        return True

    async def _failed(self, record: Document, attempts: int, error: str) -> bool:
        mail_id = record["_id"]
        log.warning("e-mail not sent", to=record["to"], attempts=attempts, error=error)
        if attempts >= self._settings.email_max_attempts:
            await self._store.emails.update_one(
                mail_id, {"$set": {"status": "failed", "attempts": attempts, "last_error": error}}
            )
            return True
        await self._store.emails.update_one(mail_id, {"$set": {"attempts": attempts, "last_error": error}})
        delay = domain.retry_delay(
            attempts,
            base=self._settings.retry_backoff_base_seconds,
            cap=self._settings.retry_backoff_max_seconds,
            jitter=random.random(),
        )
        await self.queue.retry_at(mail_id, utcnow() + timedelta(seconds=delay))
        return False

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
        created = sum(results)
        return created
