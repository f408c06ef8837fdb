"""Two replicas of the notifications service on one database and one queue (competing consumers,
both delivery loops running), on the real RabbitMQ and Mongo-wire server: every event is handled
once whichever replica gets which copy, every delivery is claimed by one replica, and the races
between replicas on one subscription or one delivery have exactly one winner."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from notifications_harness import Receiver, Service, start_service
from notifications_harness import eventually as harness_eventually
from notifications_samples import envelope_of, order_fields, payment_fields
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient
from support import token

from bejo_contracts import orders as ords
from bejo_contracts import payments as pay
from bejo_kit.bus import namespaced
from bejo_kit.mongo import Document, utcnow
from bejo_notifications.consumers import ALL_EVENTS
from bejo_notifications.smtp_sink import SmtpSink
from bejo_notifications.work_queue import CLAIM, DUE, DUE_INDEX, WorkQueue

pytestmark = pytest.mark.e2e

PP = token("pp", "pp-1", satker="35.15.dinkes", name="Siti Rahayu")
ADMIN = token("admin", "admin-1", pemda="35.15")
PP_MAIL = "siti@dinkes.jatimprov.go.id"


async def eventually(predicate: Any) -> Any:
    return await harness_eventually(predicate, within=60)


StartReplicas = Callable[..., Awaitable[Service]]


@pytest.fixture
async def start_replicas(
    amqp_url: str, mongodb_url: str, unique: str, smtp_sink: SmtpSink
) -> AsyncIterator[StartReplicas]:
    """Starts two replicas with the given setting overrides; stops them after the test."""
    running: list[AsyncGenerator[Service]] = []

    async def start(**overrides: Any) -> Service:
        replicas = start_service(amqp_url, mongodb_url, unique, smtp_sink.port, replicas=2, **overrides)
        running.append(replicas)
        return await anext(replicas)

    yield start
    for replicas in running:
        await replicas.aclose()


@pytest.fixture
async def replicas(start_replicas: StartReplicas) -> Service:
    return await start_replicas()


def consumed(service: Service, event_type: str) -> float:
    """Copies of `event_type` handled and acked, by either replica (both run in this process)."""
    queue = namespaced(service.settings, ALL_EVENTS.name)
    return REGISTRY.get_sample_value("bejo_messages_consumed_total", {"queue": queue, "type": event_type}) or 0.0


async def subscribe(service: Service, receiver: Receiver, event_types: list[str], replica: int) -> Document:
    body = {"url": receiver.url, "secret": receiver.secret, "event_types": event_types}
    status, hook = await service.call("POST", "/api/v1/webhooks", ADMIN, body, replica=replica)
    assert status == 201, hook
    return hook  # type: ignore[no-any-return]


async def deliveries(service: Service, hook: Document, replica: int = 0) -> list[Document]:
    status, page = await service.call(
        "GET", f"/api/v1/webhooks/{hook['id']}/deliveries?limit=100", ADMIN, replica=replica
    )
    assert status == 200, page
    return page["items"]  # type: ignore[no-any-return]


async def test_every_event_copy_across_two_replicas_has_one_effect(
    replicas: Service, smtp_sink: SmtpSink, receiver: Receiver
) -> None:
    # Registered on one replica, subscribed on the other: both are seen by whichever handles an event.
    status, _ = await replicas.call("PUT", "/api/v1/notifications/contact", PP, {"email": PP_MAIL}, replica=0)
    assert status == 200
    hook = await subscribe(replicas, receiver, ["bejo.orders.order.approved.v1"], replica=1)

    count = 12
    events = [envelope_of(ords.OrderApproved(**order_fields("1", status="approved"))) for _ in range(count)]
    for envelope in events:  # each twice: the copies go to the two competing consumers
        await replicas.publish(envelope)
        await replicas.publish(envelope)

    # Quiescent: every copy handled, every mail sent, every delivery finished.
    await eventually(lambda: consumed(replicas, "bejo.orders.order.approved.v1") == 2 * count)

    async def all_sent() -> bool:
        return await replicas.db["emails"].count_documents({"status": "sent"}) == count

    async def all_delivered() -> list[Document] | None:
        items = await deliveries(replicas, hook)
        return items if len(items) == count and all(d["status"] == "succeeded" for d in items) else None

    await eventually(all_sent)
    delivered = await eventually(all_delivered)

    ids = {e.id for e in events}
    # In-app: one entry per (event, recipient): the PP and the provider's audience.
    page = await replicas.inbox(PP, limit="100")
    assert {i["event_id"] for i in page["items"]} == ids and len(page["items"]) == count
    assert page["unread_count"] == count
    assert await replicas.db["notifications"].count_documents({}) == 2 * count
    # E-mail: one per event, sent once.
    mails = [m for m in smtp_sink.messages() if m["To"] == PP_MAIL]
    assert Counter(m["X-Bejo-Event-Id"] for m in mails) == Counter(ids)
    # Webhook: one delivery per event, attempted once by one of the two delivery loops.
    assert {d["event_id"] for d in delivered} == ids
    assert all(len(d["attempts"]) == 1 for d in delivered)
    assert Counter(r["event_id"] for r in receiver.received) == Counter(ids)
    assert all(r["verified"] for r in receiver.received)

    # Marking read through both replicas at once: both succeed, with the same read time.
    first = page["items"][0]["id"]
    answers = await asyncio.gather(
        *(replicas.call("POST", f"/api/v1/notifications/{first}/read", PP, replica=r) for r in (0, 1, 0, 1))
    )
    assert [status for status, _ in answers] == [200] * 4
    assert len({body["read_at"] for _, body in answers}) == 1
    assert (await replicas.inbox(PP, limit="1"))["unread_count"] == count - 1


async def test_concurrent_redeliveries_through_both_replicas_start_one_round(
    start_replicas: StartReplicas, receiver: Receiver
) -> None:
    # A long timeout (and a lease longer than it): the receiver holds one POST open on purpose.
    replicas = await start_replicas(webhook_timeout_seconds=60.0, delivery_lease_seconds=120.0)
    hook = await subscribe(replicas, receiver, ["bejo.orders.#"], replica=0)
    await replicas.publish(envelope_of(ords.OrderApproved(**order_fields("1", status="approved"))))
    [delivery] = await eventually(lambda: _finished(replicas, hook))
    assert len(receiver.received) == 1

    # Hold the next POST open, so the new round stays pending while the requests race.
    receiver.held = asyncio.Event()
    path = f"/api/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver"
    try:
        answers = await asyncio.gather(*(replicas.call("POST", path, ADMIN, replica=r % 2) for r in range(6)))
    finally:
        receiver.held.set()
    statuses = sorted(status for status, _ in answers)
    assert statuses == [202] + [409] * 5, answers
    assert {body["code"] for status, body in answers if status == 409} == {"delivery_pending"}

    [again] = await eventually(lambda: _finished(replicas, hook))
    assert again["status"] == "succeeded" and len(again["attempts"]) == 2
    assert len(receiver.received) == 2


async def _finished(service: Service, hook: Document) -> list[Document] | None:
    items = await deliveries(service, hook)
    return items if items and all(d["status"] != "pending" for d in items) else None


async def test_a_failing_webhook_is_disabled_once_by_two_replicas(
    start_replicas: StartReplicas, receiver: Receiver
) -> None:
    receiver.statuses = [503] * 500
    disabled_type = "bejo.notifications.webhook.disabled.v1"
    published_before = _published(disabled_type)
    replicas = await start_replicas(webhook_disable_after_failures=3)
    hook = await subscribe(replicas, receiver, ["bejo.payments.#"], replica=1)
    for n in range(6):  # deliveries failing side by side on both replicas
        expired = pay.VirtualAccountExpired(**payment_fields(str(n)), va_number="8808123456")
        await replicas.publish(envelope_of(expired))

    async def settled() -> bool:
        # Every delivery finished and no event still owed: no further notice can come.
        owed = await replicas.db["webhooks"].count_documents({"outbox_pending": True})
        return owed == 0 and await _finished(replicas, hook) is not None

    await eventually(settled)
    raised = _published(disabled_type) - published_before
    await eventually(lambda: consumed(replicas, disabled_type) >= raised >= 1)
    items = (await replicas.inbox(ADMIN))["items"]
    assert [i["event_type"] for i in items] == [disabled_type]
    _, current = await replicas.call("GET", f"/api/v1/webhooks/{hook['id']}", ADMIN, replica=0)
    assert current["status"] == "disabled" and current["consecutive_failures"] >= 3


def _published(event_type: str) -> float:
    return REGISTRY.get_sample_value("bejo_messages_published_total", {"type": event_type}) or 0.0


async def test_work_queue_gives_each_item_to_one_replica_and_loses_none_to_a_dead_one(
    mongodb_url: str, unique: str
) -> None:
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongodb_url, tz_aware=True)
    items = client[f"test_{unique}_work_queue"]["items"]
    try:
        await items.create_indexes([DUE_INDEX])
        now = utcnow()
        await items.insert_many([{"_id": f"item-{n:02d}", "status": "pending", DUE: now} for n in range(40)])
        one, other = (WorkQueue(items, lease=timedelta(minutes=5), concurrency=1, poll_interval=1) for _ in "ab")

        # 60 claims at once from two replicas for 40 items: each item goes to exactly one of them.
        claims = await asyncio.gather(*(queue.claim(utcnow()) for queue in (one, other) * 30))
        won = [c["_id"] for c in claims if c is not None]
        assert sorted(won) == [f"item-{n:02d}" for n in range(40)]
        assert await one.claim(utcnow()) is None  # all leased

        # Batches claimed by both replicas at once: each item in exactly one batch.
        await items.insert_many([{"_id": f"batch-{n:02d}", "status": "pending", DUE: now} for n in range(40)])
        batches: list[list[Document]] = []
        while True:
            rounds = await asyncio.gather(*(queue.claim_many(utcnow(), 7) for queue in (one, other) * 3))
            if not any(rounds):
                break
            batches.extend(rounds)
        batch_won = [item["_id"] for batch in batches for item in batch]
        assert sorted(batch_won) == [f"batch-{n:02d}" for n in range(40)]
        assert all(len({item[CLAIM] for item in batch}) <= 1 for batch in batches)

        # A replica claimed an item and died; its lease ran out (claimed an hour ago, 5 minutes' lease).
        hour_ago = now - timedelta(hours=1)
        await items.insert_one({"_id": "orphan", "status": "pending", DUE: hour_ago})
        dead = await one.claim(hour_ago)
        assert dead is not None and dead["_id"] == "orphan"
        taken = await other.claim(utcnow())
        assert taken is not None and taken["_id"] == "orphan" and taken[CLAIM] != dead[CLAIM]
        # The late outcome of the dead holder is refused; the new holder's stands.
        assert await one.settle(dead, {"$set": {"status": "late"}}, None) is False
        assert await other.settle(taken, {"$set": {"status": "done"}}, None) is True
        final = await items.find_one({"_id": "orphan"})
        assert final is not None and final["status"] == "done" and final[DUE] is None and CLAIM not in final
        assert await other.claim(utcnow()) is None
    finally:
        await client.drop_database(f"test_{unique}_work_queue")
        await client.close()
