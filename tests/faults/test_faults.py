"""The fault suite (`make test-faults`): each fault is injected while a wave of orders flows through
the gateway, on the real servers; after each, every invariant holds over every order placed so far
(faults_checks): each order terminal or resting in a waiting state, ledgers summing to zero, stock +
reserved + sold = initial stock, nothing notified, charged or reserved twice, one event per state
change. The tests run in file order on one platform (faults_platform)."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from datetime import datetime

import orjson
import pytest
import support
from faults_harness import BIN, PROCESSES, log
from faults_load import BUYERS, MALANG, OrderRun
from faults_platform import FaultPlatform, PhaseResult

from bejo_contracts.common import WIB
from bejo_contracts.topology import QUEUES
from bejo_notifications.domain import topic_matches

pytestmark = [pytest.mark.faults, pytest.mark.timeout(280)]


async def test_rabbitmq_stop_app_then_start_app(faults: FaultPlatform) -> None:
    async def fault() -> None:
        await faults.infra.rabbitmqctl("stop_app")
        await asyncio.sleep(3)  # orders keep being placed and moved while the broker is away
        await faults.infra.rabbitmqctl("start_app")

    await faults.phase("RabbitMQ stop_app/start_app", faults.plans(12), fault)


async def test_rabbitmq_full_restart(faults: FaultPlatform) -> None:
    await faults.phase("RabbitMQ node restart", faults.plans(12), faults.infra.restart_broker)


async def test_sigkill_of_every_process_mid_saga(faults: FaultPlatform) -> None:
    name = "SIGKILL of each process"

    async def fault() -> None:
        for process in PROCESSES:
            await faults.wait_in_flight(name, 2)
            log(f"{name}: SIGKILL {process} with {len(faults.driver.in_flight(name))} orders in flight")
            await faults.processes.kill(process)
            await asyncio.sleep(1)
            await faults.processes.restart(process)
            await asyncio.sleep(1)

    await faults.phase(name, faults.plans(20), fault)
    assert set(faults.processes.kills) == set(PROCESSES)


async def test_mongo_wire_server_restart(faults: FaultPlatform) -> None:
    await faults.phase("Mongo-wire server restart", faults.plans(12), faults.infra.restart_mongo)


async def test_duplicate_deliveries_into_every_consumer(faults: FaultPlatform) -> None:
    before = Counter(faults.tap.copies)
    faults.tap.duplicate_every = 10  # the 1st, 11th, 21st ... event of each type, sent twice
    try:
        await faults.phase("10 % duplicate deliveries", faults.plans(16), None)
    finally:
        faults.tap.duplicate_every = 0
    copies = faults.tap.copies - before
    result = faults.results[-1]
    result.note = f"{sum(copies.values())} copies of {len(copies)} event types"
    for specs in QUEUES.values():
        for spec in specs:
            into = sum(n for key, n in copies.items() if any(topic_matches(b, key) for b in spec.bindings))
            assert into > 0, f"no duplicate reached {spec.name}"


async def _bejo(faults: FaultPlatform, *args: str) -> str:
    """The `bejo` command against the suite's broker."""
    process = await asyncio.create_subprocess_exec(
        str(BIN / "bejo"),
        *args,
        env={**os.environ, "AMQP_URL": faults.ports.amqp_url, "BUS_NAMESPACE": ""},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, f"bejo {' '.join(args)} failed: {out.decode()}"
    return out.decode()


async def test_poison_message_parked_then_replayed(faults: FaultPlatform) -> None:
    """A data fix gone wrong left the invoice counter of Kab. Malang non-numeric, so payments cannot
    number an invoice there: each OrderReceived of Malang fails, is retried, and is parked in
    `payments.order-events.dlq` with the store's error, while Sidoarjo's orders are invoiced, paid
    and completed. The counter is repaired and `bejo dlq replay` sends the parked messages back:
    the Malang orders are invoiced once each (numbers following on), paid and completed."""
    name = "poison message, DLQ, replay"
    counters = faults.mongo["bejo_payments"]["counters"]
    counter_id = f"invoice:{MALANG}:{datetime.now(WIB).year}"
    stored = await counters.find_one({"_id": counter_id})
    last_number = stored["seq"] if stored else 0
    await counters.update_one({"_id": counter_id}, {"$set": {"seq": "rusak"}}, upsert=True)

    plans = faults.plans(8, intents=False) + faults.plans(4, intents=False, buyers=(BUYERS[2],))
    faults.rng.shuffle(plans)
    started = asyncio.get_running_loop().time()
    checkouts_before = faults.driver.checkouts
    # Malang's checkouts wait for their invoices until the replay: let them not hold back the others.
    wave = asyncio.create_task(faults.driver.run(plans, name, concurrency=len(plans)))

    seen: dict[str, object] = {}

    async def malang_parked() -> list[OrderRun] | None:
        runs = faults.driver.of_phase(name)
        others = [r.id for r in runs if r.buyer.pemda != MALANG and not r.done.is_set()]
        held = [r for r in runs if r.buyer.pemda == MALANG and not r.done.is_set()]
        statuses = [(await faults.gw.until_ok("GET", f"/api/v1/orders/{r.id}", r.buyer.pp))["status"] for r in held]
        seen.update(checkouts=faults.driver.checkouts - checkouts_before, others=others, held=statuses)
        seen["parked"] = await faults.dlq_depth()
        if seen["checkouts"] == len(plans) and not others and held and set(statuses) == {"received"}:
            return held if seen["parked"] == len(held) else None
        return None

    try:
        held: list[OrderRun] = await support.wait_until(malang_parked, within=120, interval=1.0)
    except AssertionError:
        raise AssertionError(f"Malang's orders not parked as expected: {seen}, of {len(plans)} checkouts") from None
    log(f"{name}: {len(held)} Malang orders wait in `received`, their OrderReceived parked; the others flowed")

    parked = orjson.loads(await _bejo(faults, "dlq", "list", "--json"))
    received_ids = {
        e["id"]: e["data"]["order_id"]
        for e in faults.tap.of_type("bejo.orders.order.received.v1")
        if e["data"]["order_id"] in {r.id for r in held}
    }
    assert {p["message_id"] for p in parked} == set(received_ids), parked
    for p in parked:
        assert p["queue"] == "payments.order-events" and p["type"] == "bejo.orders.order.received.v1", p
        assert "non-numeric" in p["last_error"], p["last_error"]  # the store's own words, kept with it
    await faults.settle(f"{name} (parked)", phase=name, waiting={r.id: "received" for r in held}, parked=len(held))

    await counters.update_one({"_id": counter_id}, {"$set": {"seq": last_number}})  # the fix
    out = await _bejo(faults, "dlq", "replay", "--queue", "payments.order-events")
    assert f"{len(held)} message(s) replayed" in out, out
    log(f"{name}: counter repaired, {len(held)} message(s) replayed")
    await wave
    await faults.settle(name, everything=True)  # the last phase: every order of the run, through the API
    runs = faults.driver.of_phase(name)
    faults.results.append(
        PhaseResult(
            name,
            len(plans),
            len(runs),
            Counter(r.final or "?" for r in runs),
            asyncio.get_running_loop().time() - started,
            Counter(),
            f"{len(held)} parked, replayed",
        )
    )
    numbers = [
        doc["invoice"]["number"]
        async for doc in faults.mongo["bejo_payments"]["payments"].find({"order_id": {"$in": [r.id for r in held]}})
    ]
    assert len(numbers) == len(held)
    tail = sorted(int(n.rsplit("/", 1)[1]) for n in numbers)
    assert tail == list(range(last_number + 1, last_number + 1 + len(held))), tail
