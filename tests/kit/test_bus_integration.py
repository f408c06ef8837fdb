"""The bus and outbox against the real RabbitMQ and Mongo-wire server."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from pymongo.asynchronous.database import AsyncDatabase
from support import holds_for, wait_until

from bejo_contracts import SYSTEM, Envelope, topology
from bejo_contracts.catalog import ProviderRegistered
from bejo_contracts.topology import QueueSpec
from bejo_kit.bus import Bus, IncomingEvent, namespaced
from bejo_kit.dlq import ParkedMessage, list_parked, replay_parked
from bejo_kit.inbox import guarded
from bejo_kit.mongo import create_client, database
from bejo_kit.outbox import OUTBOX, PENDING, Outbox, OutboxRelay
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
        parked: list[ParkedMessage] = await wait_until(lambda: _list(kit_settings, spec), within=5)
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


async def test_outbox_relay_publishes_inserted_and_updated_events(
    bus: Bus, kit_settings: KitSettings, unique: str, consumed: Consumed
) -> None:
    db = consumed.db
    # This process's writes, published by publish_ready() and then removed from the document.
    relay = OutboxRelay(db, ["things"], bus, kit_settings)
    outbox = Outbox(relay)
    first, second, refused = envelope_for(unique, 4), envelope_for(unique, 5), envelope_for(unique, 6)
    await outbox.insert_one(db.things, {"_id": "t1", "state": "new", "version": 1}, [first])
    assert await outbox.update_one(
        db.things, {"_id": "t1", "version": 1}, {"$set": {"state": "changed"}, "$inc": {"version": 1}}, [second]
    )
    # A conditional update that matches nothing writes neither the state nor its event.
    assert not await outbox.update_one(db.things, {"_id": "t1", "version": 1}, {"$set": {"state": "x"}}, [refused])
    doc = await db.things.find_one({"_id": "t1"})
    assert doc is not None and [e["id"] for e in doc[OUTBOX]] == [first.id, second.id] and doc[PENDING] is True
    assert await relay.publish_ready() == 2
    await wait_until(lambda: sorted(consumed.received) == sorted([first.id, second.id]))
    doc = await db.things.find_one({"_id": "t1"})
    assert doc == {"_id": "t1", "state": "changed", "version": 2}
    assert await relay.backlog() == 0
    assert await relay.flush() == 0
    assert refused.id not in consumed.received


async def test_a_failed_clear_leaves_no_batch_stuck_in_flight(
    bus: Bus, kit_settings: KitSettings, unique: str, consumed: Consumed
) -> None:
    """The store fails while clearing the first of two batches (as when it restarts): both were
    published; neither may stay marked in flight, or the sweep would skip it for the process's life."""
    db = consumed.db
    relay = OutboxRelay(db, ["things"], bus, kit_settings.model_copy(update={"outbox_batch_size": 1}))
    outbox = Outbox(relay)
    first, second = envelope_for(unique, 11), envelope_for(unique, 12)
    await outbox.insert_one(db.things, {"_id": "t4"}, [first])
    await outbox.insert_one(db.things, {"_id": "t5"}, [second])
    real_clear = relay._clear
    failures = iter([True])

    async def store_fails_once(published: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
        if next(failures, False):
            raise ConnectionError("store restarting")
        await real_clear(published)

    relay._clear = store_fails_once  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await relay.publish_ready()
    await wait_until(lambda: sorted(consumed.received) == sorted([first.id, second.id]))
    assert relay._in_flight == set()
    # The uncleared event is still marked; the sweep (no grace) publishes it again, once.
    assert await relay.flush() == 1
    assert await relay.backlog() == 0


async def test_events_written_meanwhile_stay_for_the_next_pass(
    bus: Bus, kit_settings: KitSettings, unique: str, consumed: Consumed
) -> None:
    db = consumed.db
    relay = OutboxRelay(db, ["things"], bus, kit_settings)
    early, late = envelope_for(unique, 9), envelope_for(unique, 10)
    await Outbox(relay).insert_one(db.things, {"_id": "t3"}, [early])
    # Another replica (no relay of ours) adds an event before our relay publishes the first.
    await Outbox().update_one(db.things, {"_id": "t3"}, {"$set": {"n": 1}}, [late])
    assert await relay.publish_ready() == 1
    doc = await db.things.find_one({"_id": "t3"})
    assert doc is not None and [e["id"] for e in doc[OUTBOX]] == [late.id] and doc[PENDING] is True
    assert await relay.flush() == 1  # the sweep, with no grace, takes the late one
    await wait_until(lambda: sorted(consumed.received) == sorted([early.id, late.id]))
    assert await db.things.find_one({"_id": "t3"}) == {"_id": "t3", "n": 1}


WRITER = textwrap.dedent(
    """
    import asyncio, os, sys
    from bejo_contracts import Envelope
    from bejo_kit.mongo import create_client, database
    from bejo_kit.outbox import Outbox
    from bejo_kit.settings import KitSettings

    async def main():
        settings = KitSettings(service_name="kit-test", mongodb_database=sys.argv[1])
        db = database(create_client(settings), settings)
        envelope = Envelope(source="bejo/test", type=sys.argv[2], data={"provider_id": "prov-crash"})
        await Outbox().insert_one(db.things, {"_id": "crash"}, [envelope])
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

    # Two relays, as two replicas would run: the lease keeps them from publishing the event twice.
    relays = [OutboxRelay(consumed.db, ["things"], bus, kit_settings, grace=timedelta(seconds=0.5)) for _ in range(2)]
    try:
        for relay in relays:
            relay.start()
        await wait_until(lambda: consumed.received == [event_id])
        # Past the relays' grace, neither publishes it again.
        await holds_for(lambda: consumed.received == [event_id], seconds=1.0)
        assert await relays[0].backlog() == 0
    finally:
        for relay in relays:
            await relay.stop()
