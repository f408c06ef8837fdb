"""Webhook subscriptions and their deliveries: signed POSTs of the CloudEvent, retried with
backoff, logged attempt by attempt on the delivery document (which is its own work item, see
`work_queue`); a subscription that keeps failing is switched off and its owner told (through the
`WebhookDisabled` event this service also consumes).
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
import uuid
from datetime import datetime, timedelta

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError

from bejo_contracts import Envelope
from bejo_contracts.notifications import WebhookDisabled
from bejo_kit.auth import Principal
from bejo_kit.bus import Bus
from bejo_kit.errors import Conflict, NotFound, ValidationProblem
from bejo_kit.inbox import duplicate_keys_only
from bejo_kit.logging import get_logger
from bejo_kit.mongo import Document, utcnow
from bejo_kit.outbox import WITHOUT_OUTBOX, Outbox

from . import domain
from .repository import Store
from .service import newest_first_page
from .settings import NotificationsSettings
from .work_queue import CLAIM, WorkQueue

log = get_logger(__name__)
USER_AGENT = "bejo-webhooks/1"


class PublicOnlyResolver(AbstractResolver):
    """Resolves like the default resolver but refuses hosts with any non-public address, so a
    delivery cannot be steered inside (DNS rebinding after the subscription's check included)."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        try:
            domain.check_resolved_addresses(host, [r["host"] for r in results], "production")
        except domain.UnsafeUrl as exc:
            raise OSError(str(exc)) from None
        return results

    async def close(self) -> None:
        await self._inner.close()


async def resolve_addresses(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos})


# Subscriptions as their owners see them; deleted ones are kept (see repository) but gone for them.
LIVE: Document = {"status": {"$ne": "deleted"}}
# What fan-out needs to match an event against a subscription.
MATCHING = {"event_types": 1, "owner_role": 1, "owner_pemda": 1, "owner_provider_id": 1}


class Webhooks:
    def __init__(self, store: Store, settings: NotificationsSettings, bus: Bus, outbox: Outbox) -> None:
        self._store = store
        self._settings = settings
        self._bus = bus
        self._outbox = outbox
        self.queue = WorkQueue(
            store.deliveries,
            lease=timedelta(seconds=settings.delivery_lease_seconds),
            concurrency=settings.webhook_concurrency,
            poll_interval=settings.delivery_poll_interval,
        )

    # -- subscriptions ---------------------------------------------------------------------------

    async def check_url(self, url: str) -> None:
        environment = self._settings.environment
        try:
            target = domain.parse_webhook_url(url, environment)
            if environment == "production":
                addresses = await resolve_addresses(target.host, target.port)
                domain.check_resolved_addresses(target.host, addresses, environment)
        except domain.UnsafeUrl as exc:
            raise ValidationProblem.field("url", str(exc), "unsafe_url") from None

    async def subscribe(self, user: Principal, url: str, secret: str, event_types: list[str]) -> Document:
        await self.check_url(url)
        document = {
            "_id": uuid.uuid4().hex,
            "owner_sub": user.sub,
            "owner_role": user.role,
            "owner_pemda": user.pemda,
            "owner_provider_id": user.provider_id,
            "url": url,
            "secret": secret,
            "event_types": event_types,
            "status": "active",
            "consecutive_failures": 0,
            "created_at": utcnow(),
            "disabled_at": None,
        }
        await self._store.webhooks.insert_one(document)
        return document

    async def owned(self, user: Principal, webhook_id: str) -> Document:
        document = await self._store.webhooks.find_one(
            {"_id": webhook_id, "owner_sub": user.sub, **LIVE}, WITHOUT_OUTBOX
        )
        if document is None:
            raise NotFound(f"no webhook {webhook_id!r} of yours", code="webhook_not_found")
        return document

    async def list_owned(self, user: Principal) -> list[Document]:
        cursor = self._store.webhooks.find({"owner_sub": user.sub, **LIVE}, WITHOUT_OUTBOX).sort("created_at", 1)
        return [doc async for doc in cursor]

    async def delete(self, user: Principal, webhook_id: str) -> None:
        """Marked deleted rather than removed: the document may still hold unpublished events."""
        deleted = await self._store.webhooks.update_one(
            {"_id": webhook_id, "owner_sub": user.sub, **LIVE},
            {"$set": {"status": "deleted", "deleted_at": utcnow()}, "$unset": {"secret": ""}},
        )
        if deleted.matched_count == 0:
            raise NotFound(f"no webhook {webhook_id!r} of yours", code="webhook_not_found")

    async def deliveries(
        self, user: Principal, webhook_id: str, cursor: str | None, limit: int
    ) -> tuple[list[Document], str | None]:
        await self.owned(user, webhook_id)
        return await newest_first_page(
            self._store.deliveries, {"webhook_id": webhook_id}, cursor, limit, {"payload": 0, CLAIM: 0}
        )

    async def redeliver(self, user: Principal, webhook_id: str, delivery_id: str) -> Document:
        """A new round of attempts; of concurrent requests for one delivery exactly one starts it."""
        subscription = await self.owned(user, webhook_id)
        mine = {"_id": delivery_id, "webhook_id": webhook_id}
        delivery: Document | None = None
        if subscription["status"] == "active":
            now = utcnow()
            delivery = await self._store.deliveries.find_one_and_update(
                {**mine, "status": {"$ne": "pending"}},
                {"$set": {"status": "pending", "round_attempts": 0, "next_attempt_at": now}},
                return_document=ReturnDocument.AFTER,
            )
        if delivery is None:
            if await self._store.deliveries.find_one(mine, {"_id": 1}) is None:
                raise NotFound(f"no delivery {delivery_id!r} of webhook {webhook_id!r}", code="delivery_not_found")
            if subscription["status"] != "active":
                raise Conflict("the webhook is disabled; subscribe again to receive events", code="webhook_disabled")
            raise Conflict("this delivery is still being attempted", code="delivery_pending")
        self.queue.wake()
        delivery.pop("payload", None)
        return delivery

    # -- fan-out of events -----------------------------------------------------------------------

    async def enqueue(self, envelope: Envelope) -> int:
        """One delivery per matching subscription (once, even when the event comes twice)."""
        # Read per event, not cached: a subscription made on any replica hears the next event.
        subscriptions = self._store.webhooks.find({"status": "active"}, MATCHING)
        scope = domain.event_scope(envelope)
        matching = [
            sub["_id"]
            async for sub in subscriptions
            if domain.matches_any(sub["event_types"], envelope.type)
            and domain.subscription_may_see(sub["owner_role"], sub["owner_pemda"], sub.get("owner_provider_id"), scope)
        ]
        if not matching:
            return 0
        now = utcnow()
        payload = envelope.model_dump_json()
        deliveries = [
            {
                "_id": domain.delivery_id(envelope.id, webhook_id),
                "webhook_id": webhook_id,
                "event_id": envelope.id,
                "event_type": envelope.type,
                "payload": payload,
                "status": "pending",
                "attempts": [],
                "round_attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
            }
            for webhook_id in matching
        ]
        try:
            created = len((await self._store.deliveries.insert_many(deliveries, ordered=False)).inserted_ids)
        except BulkWriteError as exc:
            if not duplicate_keys_only(exc):
                raise
            created = int(exc.details.get("nInserted", 0))
        if created:
            self.queue.wake()
        return created

    # -- the delivery loop -----------------------------------------------------------------------

    async def run(self) -> None:
        resolver = PublicOnlyResolver() if self._settings.environment == "production" else None
        connector = aiohttp.TCPConnector(limit=self._settings.webhook_concurrency, resolver=resolver)
        timeout = aiohttp.ClientTimeout(total=self._settings.webhook_timeout_seconds)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await self.queue.run(lambda delivery: self.attempt(session, delivery))

    async def attempt(self, session: aiohttp.ClientSession, delivery: Document) -> None:
        """One attempt at a claimed delivery; its outcome is logged on the delivery."""
        subscription = await self._store.webhooks.find_one({"_id": delivery["webhook_id"]}, WITHOUT_OUTBOX)
        if subscription is None or subscription["status"] != "active":
            reason = f"subscription {subscription['status'] if subscription else 'deleted'}"
            await self.queue.settle(delivery, {"$set": {"status": "cancelled", "error": reason}}, None)
            return

        attempt, ok, retryable = await self._post(session, subscription, delivery)
        round_attempts = int(delivery.get("round_attempts", 0)) + 1
        next_at: datetime | None = None
        if ok:
            status = "succeeded"
            # Any success resets the count (no write when there is nothing to reset).
            await self._store.webhooks.update_one(
                {"_id": subscription["_id"], "consecutive_failures": {"$gt": 0}}, {"$set": {"consecutive_failures": 0}}
            )
        elif (
            await self._count_failure(subscription["_id"])
            or not retryable
            or round_attempts >= self._settings.webhook_max_attempts
        ):
            status = "failed"
        else:
            status = "pending"
            delay = domain.retry_delay(
                round_attempts,
                base=self._settings.retry_backoff_base_seconds,
                cap=self._settings.retry_backoff_max_seconds,
                jitter=random.random(),
            )
            next_at = utcnow() + timedelta(seconds=delay)
        outcome = {"$set": {"status": status, "round_attempts": round_attempts}, "$push": {"attempts": attempt}}
        await self.queue.settle(delivery, outcome, next_at)

    async def _post(
        self, session: aiohttp.ClientSession, subscription: Document, delivery: Document
    ) -> tuple[Document, bool, bool]:
        """One signed POST of the delivery's payload. Returns the attempt record, whether it
        succeeded, and whether to retry."""
        body = delivery["payload"].encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/cloudevents+json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "X-Bejo-Event-Id": delivery["event_id"],
            "X-Bejo-Event-Type": delivery["event_type"],
            "X-Bejo-Delivery-Id": delivery["_id"],
            "X-Bejo-Timestamp": timestamp,
            "X-Bejo-Signature": domain.sign(subscription["secret"], timestamp, body),
        }
        attempted_at = utcnow()
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            async with session.post(subscription["url"], data=body, headers=headers, allow_redirects=False) as reply:
                status = reply.status
                await reply.content.read(1024)  # drain a little so the connection can be reused
        except TimeoutError:
            error = f"timed out after {self._settings.webhook_timeout_seconds:g}s"
        except (aiohttp.ClientError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        ok = status is not None and 200 <= status < 300
        retryable = status is None or domain.is_retryable_status(status)
        if status is not None and not ok:
            error = f"HTTP {status}"
        attempt: Document = {"at": attempted_at, "status_code": status, "error": error, "duration_ms": duration_ms}
        return attempt, ok, retryable

    async def _count_failure(self, webhook_id: str) -> bool:
        """Count a failed attempt; at the limit, disable the subscription and raise `WebhookDisabled`
        in the same write. True if the subscription is (now) disabled or gone."""
        counted = await self._store.webhooks.find_one_and_update(
            {"_id": webhook_id, "status": "active"},
            {"$inc": {"consecutive_failures": 1}},
            return_document=ReturnDocument.AFTER,
        )
        if counted is None:
            return True
        failures = int(counted["consecutive_failures"])
        limit = self._settings.webhook_disable_after_failures
        if not domain.should_disable(failures, limit):
            return False
        event = self._bus.envelope(
            WebhookDisabled(
                webhook_id=webhook_id,
                owner_sub=counted["owner_sub"],
                owner_pemda=counted["owner_pemda"],
                url=counted["url"],
                consecutive_failures=failures,
            )
        )
        # Guarded by state and count: of replicas failing together exactly one disables it and tells.
        disabled = await self._outbox.update_one(
            self._store.webhooks,
            {"_id": webhook_id, "status": "active", "consecutive_failures": {"$gte": limit}},
            {"$set": {"status": "disabled", "disabled_at": utcnow()}},
            [event],
        )
        if disabled:
            log.warning("webhook disabled", webhook_id=webhook_id, consecutive_failures=failures)
        return disabled
