"""Outbox relay publish throughput against raw aio-pika publishing with confirms, same broker, same run.

All three publish N events to a durable quorum queue with publisher confirms:
- raw: aio-pika `exchange.publish` calls pipelined (a window of unconfirmed messages in flight);
- relay, settled path: N documents with one event each are written with their hints first (not
  timed); their writes are settled, then the relay publishes them and marks their hints done (timed);
- relay, sweep path: the same, but nothing settled, as after a crash or from another replica: the
  relay claims each hint, reads the document to verify the write, publishes, and cleans up.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import aio_pika
from pyinstrument import Profiler

from bejo_contracts import Envelope
from bejo_contracts.topology import QueueSpec
from bejo_kit.bus import Bus, quorum_queue_arguments
from bejo_kit.mongo import Indexes, create_client, database
from bejo_kit.outbox import Outbox, OutboxRelay
from bejo_kit.settings import KitSettings
from bench.report import profile

EVENTS = int(os.environ.get("BENCH_OUTBOX_EVENTS", "2000"))
SWEEP_EVENTS = int(os.environ.get("BENCH_OUTBOX_SWEEP_EVENTS", "500"))
PROFILED_EVENTS = 500
WINDOW = 500
GOAL = 0.8


async def depth(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return int(declared.declaration_result.message_count or 0)


def make_envelopes(routing_key: str, n: int) -> list[Envelope]:
    return [Envelope(source="bejo/bench", type=routing_key, subject=str(i), data={"n": i}) for i in range(n)]


async def raw_publish(bus: Bus, envelopes: list[Envelope]) -> float:
    started = time.perf_counter()
    for i in range(0, len(envelopes), WINDOW):
        errors = await bus.publish_many(envelopes[i : i + WINDOW])
        if any(errors):
            raise RuntimeError(f"raw publish failed: {next(e for e in errors if e)}")
    return len(envelopes) / (time.perf_counter() - started)


async def relay_publish(
    settings: KitSettings, bus: Bus, envelopes: list[Envelope], settled: bool, profiled: bool = False
) -> tuple[float, int]:
    client = create_client(settings)
    db = database(client, settings)
    relay = OutboxRelay(db, ["things"], bus, settings)
    phases: list[str] = []
    if profiled:  # time each batch's publish and clear: the relay overlaps them
        publish, clear = relay._publish, relay._clear

        async def timed_publish(batch: Any, path: str) -> Any:
            started = time.perf_counter()
            result = await publish(batch, path)
            phases.append(f"publish {sum(len(v) for v in batch.values())}: {time.perf_counter() - started:.2f} s")
            return result

        async def timed_clear(published: Any) -> None:
            started = time.perf_counter()
            await clear(published)
            phases.append(f"clear {len(published)} documents: {time.perf_counter() - started:.2f} s")

        relay._publish, relay._clear = timed_publish, timed_clear  # type: ignore[method-assign]
    # Settled: this process wrote the documents, so its relay publishes them from memory.
    # Otherwise another (crashed) writer did, and only the sweep finds them.
    outbox = Outbox(relay if settled else None)
    try:
        await Indexes(relay.indexes).ensure(db)
        for e in envelopes:
            await outbox.insert_one(db.things, {"_id": str(e.subject)}, [e])
        profiler = Profiler(interval=0.001, async_mode="enabled") if profiled else None
        if profiler:
            profiler.start()
        started = time.perf_counter()
        sent = await (relay.publish_ready() if settled else relay.flush())
        elapsed = time.perf_counter() - started
        if profiler:
            profiler.stop()
            text = profiler.output_text(unicode=True, color=False, time="percent_of_total")
            profile(
                "3",
                f"outbox relay, settled path, {len(envelopes)} events ({sent / elapsed:.0f} msg/s), pyinstrument "
                "(async mode: wall time, awaits included), then each batch's publish and clear",
                text + "\n" + "\n".join(phases),
            )
        leftover = await relay.flush()  # not timed: nothing may be left behind
        if leftover:
            raise RuntimeError(f"{leftover} events were published only by the final flush")
        return sent / elapsed, sent
    finally:
        await client.drop_database(settings.database_name)
        await client.close()


async def run() -> None:
    namespace = f"bench{uuid.uuid4().hex[:6]}."
    settings = KitSettings(
        service_name="bench",
        mongodb_database=f"bench_kit_{uuid.uuid4().hex[:6]}",
        bus_namespace=namespace,
        bus_queue_expires_ms=600_000,
        outbox_batch_size=500,
        log_json=True,
    )
    routing_key = "bejo.bench.event.v1"
    spec = QueueSpec("bench.sink", (routing_key,))
    bus = Bus(settings)
    await bus.connect()
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            namespace + spec.name, durable=True, arguments=quorum_queue_arguments(600_000)
        )
        exchange = await channel.get_exchange(namespace + "bejo.events")
        await queue.bind(exchange, routing_key)

        raw_rate = await raw_publish(bus, make_envelopes(routing_key, EVENTS))
        await queue.purge()
        settled_rate, settled_sent = await relay_publish(settings, bus, make_envelopes(routing_key, EVENTS), True)
        settled_depth = await depth(channel, namespace + spec.name)
        await queue.purge()
        sweep_rate, sweep_sent = await relay_publish(settings, bus, make_envelopes(routing_key, SWEEP_EVENTS), False)
        sweep_depth = await depth(channel, namespace + spec.name)
        await queue.purge()

        print(f"  raw aio-pika, pipelined confirms    {raw_rate:8.0f} msg/s  ({EVENTS} events, quorum queue)")
        settled = f"({settled_sent} published, {settled_depth} in queue)"
        swept = f"({sweep_sent} published, {sweep_depth} in queue)"
        print(f"  outbox relay, settled writes        {settled_rate:8.0f} msg/s  {settled}")
        print(f"  outbox relay, sweep (lease + publish){sweep_rate:8.0f} msg/s  {swept}")
        print(f"  ratio settled relay / raw           {settled_rate / raw_rate:8.2f}")
        print(f"  ratio sweep relay / raw             {sweep_rate / raw_rate:8.2f}")
        if settled_rate / raw_rate < GOAL:
            await relay_publish(settings, bus, make_envelopes(routing_key, PROFILED_EVENTS), True, profiled=True)
            await queue.purge()
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
        await bus.close()
