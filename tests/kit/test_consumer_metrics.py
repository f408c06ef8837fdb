"""Consumer and outbox metrics on the real broker and store: failure counters exist before any
failure, handling time is recorded per outcome, the depth of a queue and its dead-letter queue is
readable, and outbox counters name the collection."""

from __future__ import annotations

import aio_pika
import pytest
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient
from support import wait_until

from bejo_contracts import Envelope
from bejo_contracts.topology import QueueSpec
from bejo_kit.bus import Bus, IncomingEvent, namespaced, namespaced_spec
from bejo_kit.outbox import Outbox, OutboxRelay
from bejo_kit.settings import KitSettings

pytestmark = pytest.mark.integration


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_failures_latency_and_depths_are_measured(kit_settings: KitSettings, unique: str) -> None:
    spec = QueueSpec(f"test.metrics.{unique}", (f"bejo.test.metrics.{unique}.v1",))
    queue = namespaced(kit_settings, spec.name)
    dlq = namespaced(kit_settings, spec.dead_letter_queue)
    handled: list[str] = []

    async def handler(event: IncomingEvent) -> None:
        if event.envelope.data.get("poison"):
            raise ValueError("cannot handle this one")
        handled.append(event.id)

    bus = Bus(kit_settings)
    await bus.connect()
    bus.subscribe(spec, handler)
    try:
        await bus.start_consuming()
        # Series exist, at zero, before anything failed: alerts on them have data from the start.
        for name in ("bejo_messages_parked_total", "bejo_messages_retried_total", "bejo_messages_duplicate_total"):
            assert REGISTRY.get_sample_value(name, {"queue": queue}) == 0.0, name

        for data in ({"n": 1}, {"poison": True}, {"n": 2}):
            await bus.publish(Envelope(source="bejo/test", type=spec.bindings[0], data=data))
        await wait_until(lambda: sample("bejo_messages_parked_total", queue=queue) == 1)
        await wait_until(lambda: len(handled) == 2)

        attempts = len(kit_settings.retry_delays_ms) + 1
        assert sample("bejo_messages_retried_total", queue=queue) == attempts - 1
        counts = {
            outcome: sample("bejo_consumer_handling_seconds_count", queue=queue, outcome=outcome)
            for outcome in ("acked", "retried", "parked")
        }
        assert counts == {"acked": 2, "retried": attempts - 1, "parked": 1}
        assert sample("bejo_consumer_handling_seconds_sum", queue=queue, outcome="acked") > 0

        depths = await bus.sample_queue_depths()
        assert depths == {queue: 0, dlq: 1}
        assert sample("bejo_queue_depth", queue=dlq) == 1
    finally:
        await bus.stop_consuming()
        await bus.close()
        connection = await aio_pika.connect(kit_settings.amqp_url)
        async with connection:
            channel = await connection.channel()
            for name in [
                spec.name,
                spec.dead_letter_queue,
                *(spec.retry_queue(d) for d in kit_settings.retry_delays_ms),
            ]:
                await channel.queue_delete(namespaced(kit_settings, name))


async def test_outbox_counters_and_backlog_are_labelled_by_collection(
    kit_settings: KitSettings, unique: str, mongo_client: AsyncMongoClient[dict[str, object]]
) -> None:
    spec = QueueSpec(f"test.outbox.{unique}", (f"bejo.test.outbox.{unique}.v1",))
    bus = Bus(kit_settings)
    await bus.connect()
    db = mongo_client[kit_settings.database_name]
    collections = [f"apples_{unique}", f"pears_{unique}"]
    try:
        await bus.declare_queue(namespaced_spec(kit_settings, spec))  # so the events are routable
        relay = OutboxRelay(db, collections, bus, kit_settings)
        for name in collections:  # series from the start, per collection
            assert REGISTRY.get_sample_value("bejo_outbox_publish_failures_total", {"collection": name}) == 0.0
        outbox = Outbox(relay)
        event = Envelope(source="bejo/test", type=spec.bindings[0], data={"n": 1})
        await outbox.insert_one(db[collections[0]], {"_id": "a1"}, [event, event.model_copy(update={"id": "e2"})])
        await outbox.insert_one(db[collections[1]], {"_id": "p1"}, [event.model_copy(update={"id": "e3"})])
        assert await relay.publish_ready() == 3
        assert sample("bejo_outbox_published_total", collection=collections[0]) == 2
        assert sample("bejo_outbox_published_total", collection=collections[1]) == 1
        assert await relay.backlog() == 0
        assert REGISTRY.get_sample_value("bejo_outbox_backlog", {"collection": collections[0]}) == 0.0
    finally:
        await bus.close()
        await mongo_client.drop_database(kit_settings.database_name)
        connection = await aio_pika.connect(kit_settings.amqp_url)
        async with connection:
            channel = await connection.channel()
            for name in [
                spec.name,
                spec.dead_letter_queue,
                *(spec.retry_queue(d) for d in kit_settings.retry_delays_ms),
            ]:
                await channel.queue_delete(namespaced(kit_settings, name))
