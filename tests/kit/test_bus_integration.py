"""The bus and outbox against the real RabbitMQ and Mongo-wire server."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from bejo_contracts import SYSTEM, Envelope, topology
from bejo_contracts.catalog import ProviderRegistered
from bejo_contracts.topology import QueueSpec
from bejo_kit.bus import Bus, IncomingEvent, namespaced
from bejo_kit.dlq import ParkedMessage, list_parked, replay_parked
from bejo_kit.inbox import guarded
from bejo_kit.mongo import create_client, database
from bejo_kit.outbox import Outbox, OutboxRelay, staged, with_events
from bejo_kit.settings import KitSettings

pytestmark = pytest.mark.integration


def provider_event(n: int) -> ProviderRegistered:
    return ProviderRegistered(
        provider_id=f"prov-{n}",
        name=f"CV Uji {n}",
        legal_entity="CV",
        pemda_code="35.15",
        email=f"p{n}@example.id",
        pkp=True,
        status="pending",
        actor=SYSTEM,
    )


async def wait_until(predicate: Callable[[], bool], within: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def bus(kit_settings: KitSettings):  # type: ignore[no-untyped-def]
    bus = Bus(kit_settings)
    await bus.connect()
    yield bus
    await bus.close()


def spec_for(unique: str) -> QueueSpec:
    """A queue bound to a routing key of its own, so no other queue on the broker sees these events."""
    return QueueSpec(f"test.{unique}", (routing_key_for(unique),))


def routing_key_for(unique: str) -> str:
    return f"bejo.test.{unique}.v1"


def envelope_for(unique: str, n: int, **ids: str) -> Envelope:
    data = provider_event(n)
    return Envelope(
        source="bejo/test",
        type=routing_key_for(unique),
        subject=data.provider_id,
        data=data.model_dump(mode="json"),
        **ids,
    )


async def delete_queues(amqp_url: str, spec: QueueSpec, settings: KitSettings) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for name in [spec.name, spec.dead_letter_queue, *(spec.retry_queue(d) for d in settings.retry_delays_ms)]:
            await channel.queue_delete(namespaced(settings, name))


@dataclass
class Consumed:
    """A consumer on a queue of the test's own, collecting event ids, and the test's database."""

    db: AsyncDatabase[dict[str, Any]]
    received: list[str]


@pytest.fixture
async def consumed(bus: Bus, kit_settings: KitSettings, unique: str) -> AsyncIterator[Consumed]:
    client = create_client(kit_settings)
    spec = spec_for(unique)
    received: list[str] = []

    async def handler(event: IncomingEvent) -> None:
        received.append(event.id)

    bus.subscribe(spec, handler)
    await bus.start_consuming()
    try:
        yield Consumed(database(client, kit_settings), received)
    finally:
        await bus.stop_consuming()
        await delete_queues(kit_settings.amqp_url, spec, kit_settings)
        await client.drop_database(kit_settings.database_name)
        await client.close()


async def test_publish_consume_round_trip_carries_ids(bus: Bus, kit_settings: KitSettings, unique: str) -> None:
    # A unique routing key, so that other tests' queues bound to the same type see nothing of it.
    spec = spec_for(unique)
    received: list[IncomingEvent] = []

    async def handler(event: IncomingEvent) -> None:
        received.append(event)

    bus.subscribe(spec, handler)
    await bus.start_consuming()
    try:
        envelope = envelope_for(unique, 1, correlationid="corr-1", causationid="cause-1")
        await bus.publish(envelope)
        await wait_until(lambda: len(received) == 1)
        got = received[0]
        assert got.id == envelope.id
        assert got.event_type == routing_key_for(unique)
        assert got.envelope.correlationid == "corr-1"
        assert got.data(ProviderRegistered).provider_id == "prov-1"
        assert got.attempt == 1
    finally:
        await bus.stop_consuming()
        await delete_queues(kit_settings.amqp_url, spec, kit_settings)


async def test_unroutable_publish_is_an_error(bus: Bus, unique: str) -> None:
    envelope = Envelope(source="bejo/test", type=f"bejo.nobody.listens.{unique}.v1", data={})
    with pytest.raises(aio_pika.exceptions.PublishError):
        await bus.publish(envelope)


async def test_failing_handler_is_retried_then_parked_then_replayed(
    bus: Bus, kit_settings: KitSettings, unique: str
) -> None:
    spec = spec_for(unique)
    attempts: Counter[str] = Counter()
    healthy = asyncio.Event()
    handled: list[str] = []

    async def handler(event: IncomingEvent) -> None:
        attempts[event.id] += 1
        if not healthy.is_set():
            raise RuntimeError("downstream unavailable")
        handled.append(event.id)

    bus.subscribe(spec, handler)
    await bus.start_consuming()
    try:
        envelope = envelope_for(unique, 2)
        await bus.publish(envelope)
        # 1 attempt + one per retry delay, then parked.
        await wait_until(lambda: attempts[envelope.id] == kit_settings.max_attempts)
        parked: list[ParkedMessage] = []
        for _ in range(50):
            parked = await _list(kit_settings, spec)
            if parked:
                break
            await asyncio.sleep(0.1)
        assert [p.message_id for p in parked] == [envelope.id]
        assert parked[0].attempts == kit_settings.max_attempts
        assert "downstream unavailable" in parked[0].last_error
        # Listing does not consume: still parked.
        assert [p.message_id for p in await _list(kit_settings, spec)] == [envelope.id]
        assert handled == []

        healthy.set()
        moved = await _replay(kit_settings, spec)
        assert [m.message_id for m in moved] == [envelope.id]
        await wait_until(lambda: handled == [envelope.id])
        assert await _list(kit_settings, spec) == []
    finally:
        await bus.stop_consuming()
        await delete_queues(kit_settings.amqp_url, spec, kit_settings)


@contextmanager
def registered(spec: QueueSpec) -> Iterator[None]:
    """Make a test queue known to the topology, as the CLI looks queues up there."""
    topology.QUEUES[f"test-{spec.name}"] = (spec,)
    try:
        yield
    finally:
        del topology.QUEUES[f"test-{spec.name}"]


async def _list(settings: KitSettings, spec: QueueSpec) -> list[ParkedMessage]:
    with registered(spec):
        return await list_parked(settings.amqp_url, queue=spec.name, namespace=settings.bus_namespace)


async def _replay(settings: KitSettings, spec: QueueSpec) -> list[ParkedMessage]:
    with registered(spec):
        return await replay_parked(settings.amqp_url, queue=spec.name, namespace=settings.bus_namespace)


async def test_duplicate_delivery_has_one_effect(bus: Bus, kit_settings: KitSettings, unique: str) -> None:
    client = create_client(kit_settings)
    db = database(client, kit_settings)
    await db.counters.insert_one({"_id": "c", "n": 0})
    spec = spec_for(unique)
    deliveries: list[str] = []

    async def handler(event: IncomingEvent) -> None:
        deliveries.append(event.id)
        filter_, update = guarded({"_id": "c"}, {"$inc": {"n": 1}}, event.id)
        await db.counters.update_one(filter_, update)

    bus.subscribe(spec, handler)
    await bus.start_consuming()
    try:
        envelope = envelope_for(unique, 3)
        await bus.publish(envelope)
        await bus.publish(envelope)  # the same event id again, as a redelivery would bring it
        await wait_until(lambda: len(deliveries) == 2)
        doc = await db.counters.find_one({"_id": "c"})
        assert doc is not None and doc["n"] == 1
    finally:
        await bus.stop_consuming()
        await delete_queues(kit_settings.amqp_url, spec, kit_settings)
        await client.drop_database(kit_settings.database_name)
        await client.close()


async def test_outbox_relay_publishes_staged_and_appended_events(
    bus: Bus, kit_settings: KitSettings, unique: str, consumed: Consumed
) -> None:
    db = consumed.db
    # No relay task running: flush() below sweeps, so this exercises the verify-then-publish path.
    relay = OutboxRelay(db, ["things"], bus, kit_settings)
    outbox = Outbox(db)
    first, second, lost = envelope_for(unique, 4), envelope_for(unique, 5), envelope_for(unique, 6)
    pending = await outbox.prepare(db.things, "t1", [first])
    await db.things.insert_one(staged({"_id": "t1", "state": "new"}, pending))
    pending = await outbox.prepare(db.things, "t1", [second])
    await db.things.update_one({"_id": "t1"}, with_events({"$set": {"state": "changed"}}, pending))
    # A hint whose write never happened is not published.
    await outbox.prepare(db.things, "t1", [lost])
    assert await relay.flush() == 2
    await wait_until(lambda: sorted(consumed.received) == sorted([first.id, second.id]))
    doc = await db.things.find_one({"_id": "t1"})
    assert doc is not None and doc["state"] == "changed"
    assert [e["id"] for e in doc["events"]] == [first.id, second.id]
    assert await relay.backlog() == 1  # the lost event's hint, given up after the grace period
    assert await relay.flush() == 0
    assert lost.id not in consumed.received


WRITER = textwrap.dedent(
    """
    import asyncio, os, sys
    from bejo_contracts import Envelope
    from bejo_kit.mongo import create_client, database
    from bejo_kit.outbox import Outbox, staged
    from bejo_kit.settings import KitSettings

    async def main():
        settings = KitSettings(service_name="kit-test", mongodb_database=sys.argv[1])
        db = database(create_client(settings), settings)
        envelope = Envelope(source="bejo/test", type=sys.argv[2], data={"provider_id": "prov-crash"})
        pending = await Outbox(db).prepare(db.things, "crash", [envelope])
        await db.things.insert_one(staged({"_id": "crash"}, pending))
        print(envelope.id, flush=True)
        await asyncio.sleep(3600)  # killed here: written, never published

    asyncio.run(main())
    """
)


async def test_outbox_survives_process_killed_between_write_and_publish(
    bus: Bus, kit_settings: KitSettings, unique: str, tmp_path: Path, consumed: Consumed
) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "AMQP_URL": kit_settings.amqp_url, "MONGODB_URL": kit_settings.mongodb_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        kit_settings.database_name,
        routing_key_for(unique),
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    event_id = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
    proc.send_signal(signal.SIGKILL)
    await asyncio.wait_for(proc.wait(), 10)
    assert event_id, "writer did not report its event id"

    # Two relays, as two replicas would run: claims keep them from publishing the event twice.
    relays = [OutboxRelay(consumed.db, ["things"], bus, kit_settings) for _ in range(2)]
    try:
        for relay in relays:
            relay.start()
        await wait_until(lambda: consumed.received == [event_id])
        await asyncio.sleep(0.5)
        assert consumed.received == [event_id]
    finally:
        for relay in relays:
            await relay.stop()


async def test_settled_writes_are_published_without_a_sweep(
    bus: Bus, kit_settings: KitSettings, unique: str, consumed: Consumed
) -> None:
    db = consumed.db
    relay = OutboxRelay(db, ["things"], bus, kit_settings)
    outbox = Outbox(db, relay)
    applied, refused = envelope_for(unique, 7), envelope_for(unique, 8)
    pending = await outbox.prepare(db.things, "t2", [applied])
    await db.things.insert_one(staged({"_id": "t2", "n": 0}, pending))
    await outbox.settle(pending, applied=True)
    # A conditional update that matches nothing: its hint is dropped at once.
    pending = await outbox.prepare(db.things, "t2", [refused])
    result = await db.things.update_one({"_id": "t2", "n": 99}, with_events({"$inc": {"n": 1}}, pending))
    await outbox.settle(pending, applied=result.modified_count == 1)
    assert await relay.publish_ready() == 1
    await wait_until(lambda: consumed.received == [applied.id])
    assert await relay.backlog() == 0
    assert await relay.flush() == 0
