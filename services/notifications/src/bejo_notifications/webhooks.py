"""Webhook subscriptions and their deliveries: signed POSTs of the CloudEvent, retried with
backoff from a persistent queue, logged attempt by attempt; a subscription that keeps failing
is switched off and its owner told (through the `WebhookDisabled` event this service also consumes).
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

from bejo_contracts import Envelope
from bejo_contracts.notifications import WebhookDisabled
from bejo_kit.auth import Principal
from bejo_kit.bus import Bus
from bejo_kit.errors import Conflict, NotFound, ValidationProblem
from bejo_kit.inbox import is_duplicate_key
from bejo_kit.logging import get_logger
from bejo_kit.mongo import Document, utcnow
from bejo_kit.outbox import Outbox, with_events
from bejo_kit.paging import encode_cursor
from bejo_kit.store import KeyedLocks

from . import domain
from .repository import Store
from .service import page_position
from .settings import NotificationsSettings
from .work_queue import WorkQueue

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


class SubscriptionCache:
    """The active subscriptions, re-read at most every `ttl` seconds (every event is matched against them)."""

    def __init__(self, store: Store, ttl: float) -> None:
        self._store = store
        self._ttl = ttl
        self._loaded_at = float("-inf")
        self._active: list[Document] = []
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    async def active(self) -> list[Document]:
        async with self._lock:
            if time.monotonic() - self._loaded_at > self._ttl:
                self._active = [
                    doc async for doc in self._store.webhooks.find({"status": "active"}, {"events": 0, "secret": 0})
                ]
                self._loaded_at = time.monotonic()
            return self._active


class Webhooks:
    def __init__(self, store: Store, settings: NotificationsSettings, bus: Bus, outbox: Outbox) -> None:
        self._store = store
        self._settings = settings
        self._bus = bus
        self._outbox = outbox
        self._locks = KeyedLocks()
        self.cache = SubscriptionCache(store, settings.webhook_cache_seconds)
        self.queue = WorkQueue(
            store.delivery_queue,
            lease=timedelta(seconds=settings.delivery_lease_seconds),
            batch_size=settings.delivery_batch_size,
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
        now = utcnow()
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
            "created_at": now,
            "disabled_at": None,
        }
        await self._store.webhooks.insert_one(document)
        self.cache.invalidate()
        return document

    async def owned(self, user: Principal, webhook_id: str) -> Document:
        document = await self._store.webhooks.find_one({"_id": webhook_id}, {"events": 0})
        if document is None or document["owner_sub"] != user.sub:
            raise NotFound(f"no webhook {webhook_id!r} of yours", code="webhook_not_found")
        return document

    async def list_owned(self, user: Principal) -> list[Document]:
        cursor = self._store.webhooks.find({"owner_sub": user.sub}, {"events": 0}).sort("created_at", 1)
        return [doc async for doc in cursor]

    async def delete(self, user: Principal, webhook_id: str) -> None:
        await self.owned(user, webhook_id)
        await self._store.webhooks.delete_one({"_id": webhook_id})
        self.cache.invalidate()

    async def deliveries(
        self, user: Principal, webhook_id: str, cursor: str | None, limit: int
    ) -> tuple[list[Document], str | None]:
        await self.owned(user, webhook_id)
        position = page_position(cursor)
        query: Document = {"webhook_id": webhook_id}
        if position is not None:
            at, last_id = position
            moment = datetime.fromisoformat(at)
            query["$or"] = [{"created_at": {"$lt": moment}}, {"created_at": moment, "_id": {"$lt": last_id}}]
        found = self._store.deliveries.partition_of(webhook_id).find(query, {"payload": 0})
        page = [doc async for doc in found.sort([("created_at", -1), ("_id", -1)]).limit(limit + 1)]
        next_cursor = None
        if len(page) > limit:
            page = page[:limit]
            next_cursor = encode_cursor({"at": page[-1]["created_at"].isoformat(), "id": page[-1]["_id"]})
        return page, next_cursor

    async def redeliver(self, user: Principal, webhook_id: str, delivery_id: str) -> Document:
        subscription = await self.owned(user, webhook_id)
        log_collection = self._store.deliveries.partition_of(webhook_id)
        delivery = await log_collection.find_one({"_id": delivery_id})
        if delivery is None or delivery["webhook_id"] != webhook_id:
            raise NotFound(f"no delivery {delivery_id!r} of webhook {webhook_id!r}", code="delivery_not_found")
        if subscription["status"] != "active":
            raise Conflict("the webhook is disabled; subscribe again to receive events", code="webhook_disabled")
        if delivery["status"] == "pending":
            raise Conflict("this delivery is still being attempted", code="delivery_pending")
        now = utcnow()
        async with self._locks.hold(delivery_id):
            await log_collection.update_one(
                {"_id": delivery_id},
                {"$set": {"status": "pending", "round_attempts": 0, "next_attempt_at": now}},
            )
            await self.queue.push(delivery_id, now, **_work(delivery))
        delivery.update(status="pending", round_attempts=0, next_attempt_at=now)
        delivery.pop("payload", None)
        return delivery

    # -- fan-out of events -----------------------------------------------------------------------

    async def enqueue(self, envelope: Envelope) -> int:
        """One delivery per matching subscription (once, even when the event comes twice)."""
        matching = [
            sub
            for sub in await self.cache.active()
            if domain.matches_any(sub["event_types"], envelope.type)
            and domain.subscription_may_see(
                sub["owner_role"], sub["owner_pemda"], sub.get("owner_provider_id"), envelope.data
            )
        ]
        if not matching:
            return 0
        now = utcnow()
        payload = envelope.model_dump_json()
        created = 0
        for sub in matching:
            delivery_id = domain.delivery_id(envelope.id, sub["_id"])
            document = {
                "_id": delivery_id,
                "webhook_id": sub["_id"],
                "event_id": envelope.id,
                "event_type": envelope.type,
                "payload": payload,
                "status": "pending",
                "attempts": [],
                "round_attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
            }
            collection = self._store.deliveries.partition_of(sub["_id"])
            try:
                await collection.insert_one(document)
                created += 1
            except Exception as exc:
                if not is_duplicate_key(exc):
                    raise
                existing = await collection.find_one({"_id": delivery_id}, {"status": 1})
                if existing is None or existing["status"] != "pending":
                    continue
            await self.queue.push(delivery_id, now, **_work(document))
        return created

    # -- the delivery loop -----------------------------------------------------------------------

    async def run(self) -> None:
        resolver = PublicOnlyResolver() if self._settings.environment == "production" else None
        connector = aiohttp.TCPConnector(limit=self._settings.webhook_concurrency, resolver=resolver)
        timeout = aiohttp.ClientTimeout(total=self._settings.webhook_timeout_seconds)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            while True:
                attempted = await self.deliver_due(session)
                if attempted == 0:
                    await self.queue.sleep(self._settings.delivery_poll_interval)

    async def deliver_due(self, session: aiohttp.ClientSession) -> int:
        items = await self.queue.claim_due(utcnow())
        # One read per subscription in the batch, not one per delivery.
        subscriptions: dict[str, Document | None] = {}
        for webhook_id in {item["webhook_id"] for item in items}:
            subscriptions[webhook_id] = await self._store.webhooks.find_one({"_id": webhook_id}, {"events": 0})
        finished = await asyncio.gather(
            *(self._attempt(session, item, subscriptions[item["webhook_id"]]) for item in items)
        )
        await self.queue.done([item["_id"] for item, done in zip(items, finished, strict=True) if done])
        return len(items)

    async def _attempt(self, session: aiohttp.ClientSession, item: Document, subscription: Document | None) -> bool:
        """One attempt of a queued delivery; True when it leaves the queue."""
        delivery_id, webhook_id = item["_id"], item["webhook_id"]
        log_collection = self._store.deliveries.partition_of(webhook_id)
        if subscription is None or subscription["status"] != "active":
            reason = "subscription deleted" if subscription is None else "subscription disabled"
            await log_collection.update_one(
                {"_id": delivery_id}, {"$set": {"status": "cancelled", "next_attempt_at": None, "error": reason}}
            )
            return True

        attempt, ok, retryable = await self._post(session, subscription, item)
        round_attempts = int(item.get("round_attempts", 0)) + 1
        if ok:
            await log_collection.update_one(
                {"_id": delivery_id},
                {
                    "$set": {"status": "succeeded", "next_attempt_at": None, "round_attempts": round_attempts},
                    "$push": {"attempts": attempt},
                },
            )
            await self._reset_failures(subscription)
            return True

        disabled = await self._count_failure(subscription)
        if disabled or not retryable or round_attempts >= self._settings.webhook_max_attempts:
            await log_collection.update_one(
                {"_id": delivery_id},
                {
                    "$set": {"status": "failed", "next_attempt_at": None, "round_attempts": round_attempts},
                    "$push": {"attempts": attempt},
                },
            )
            return True
        delay = domain.retry_delay(
            round_attempts,
            base=self._settings.retry_backoff_base_seconds,
            cap=self._settings.retry_backoff_max_seconds,
            jitter=random.random(),
        )
        next_at = utcnow() + timedelta(seconds=delay)
        await log_collection.update_one(
            {"_id": delivery_id},
            {"$set": {"next_attempt_at": next_at, "round_attempts": round_attempts}, "$push": {"attempts": attempt}},
        )
        await self.queue.retry_at(delivery_id, next_at, round_attempts=round_attempts)
        return False

    async def _post(
        self, session: aiohttp.ClientSession, subscription: Document, delivery: Document
    ) -> tuple[Document, bool, bool]:
        """One signed POST of the queue item's payload (no log read needed). Returns the attempt
        record, whether it succeeded, and whether to retry."""
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

    async def _reset_failures(self, subscription: Document) -> None:
        if subscription.get("consecutive_failures", 0) == 0:
            return  # no write: on FerretDB every update scans the collection
        async with self._locks.hold(subscription["_id"]):
            await self._store.webhooks.update_one({"_id": subscription["_id"]}, {"$set": {"consecutive_failures": 0}})
            subscription["consecutive_failures"] = 0

    async def _count_failure(self, subscription: Document) -> bool:
        """Count a failed attempt; disable the subscription at the limit. True if it is now disabled."""
        webhook_id = subscription["_id"]
        async with self._locks.hold(webhook_id):
            updated = await self._store.webhooks.find_one_and_update(
                {"_id": webhook_id, "status": "active"},
                {"$inc": {"consecutive_failures": 1}},
                return_document=ReturnDocument.AFTER,
            )
            if updated is None:
                return True
            failures = int(updated["consecutive_failures"])
            subscription["consecutive_failures"] = failures  # the batch's copy, read by later successes
            if not domain.should_disable(failures, self._settings.webhook_disable_after_failures):
                return False
            event = self._bus.envelope(
                WebhookDisabled(
                    webhook_id=webhook_id,
                    owner_sub=updated["owner_sub"],
                    url=updated["url"],
                    consecutive_failures=failures,
                )
            )
            # The event rides on the same write as the status change (see bejo_kit.outbox).
            pending = await self._outbox.prepare(self._store.webhooks, webhook_id, [event])
            result = await self._store.webhooks.update_one(
                {"_id": webhook_id, "status": "active"},
                with_events({"$set": {"status": "disabled", "disabled_at": utcnow()}}, pending),
            )
            await self._outbox.settle(pending, result.modified_count == 1)
        if result.modified_count == 1:
            log.warning("webhook disabled", webhook_id=webhook_id, consecutive_failures=failures)
            self.cache.invalidate()
        return True


def _work(delivery: Document) -> Document:
    """What the delivery loop needs, copied into the queue item."""
    return {
        "webhook_id": delivery["webhook_id"],
        "event_id": delivery["event_id"],
        "event_type": delivery["event_type"],
        "payload": delivery["payload"],
        "round_attempts": 0,
    }
