"""The running platform of the fault suite, and one phase: a wave of orders with a fault injected
while they are in flight, then quiet, then every invariant (faults_checks) over every order so far."""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import support
from faults_checks import Figures, check_all, outbox_entries
from faults_harness import EventTap, Infra, Ports, Processes, log, port_taken
from faults_load import BUYERS, Buyer, Driver, Gateway, Market, Plan, make_plans, open_market
from pymongo import AsyncMongoClient

from bejo_contracts.topology import QUEUES
from bejo_kit.settings import KitSettings
from bejo_notifications.smtp_sink import SmtpSink

Fault = Callable[[], Awaitable[None]]
# Every queue work can wait in: the services' work queues, their retry queues, and the tap.
WORK_QUEUES = [
    *(
        name
        for specs in QUEUES.values()
        for spec in specs
        for name in (spec.name, *map(spec.retry_queue, KitSettings().retry_delays_ms))
    ),
    EventTap.QUEUE,
]


@dataclass
class PhaseResult:
    name: str
    checkouts: int
    orders: int
    statuses: Counter[str]
    seconds: float
    failures: Counter[int]
    note: str = ""
    left_in_outbox: int = 0


@dataclass
class FaultPlatform:
    ports: Ports
    infra: Infra
    processes: Processes
    tap: EventTap
    sink: SmtpSink
    gw: Gateway
    mongo: AsyncMongoClient[dict[str, Any]]
    market: Market
    driver: Driver
    rng: random.Random = field(default_factory=lambda: random.Random(20261212))
    results: list[PhaseResult] = field(default_factory=list)

    def plans(self, count: int, *, buyers: tuple[Buyer, ...] = BUYERS, intents: bool = True) -> list[Plan]:
        return make_plans(self.rng, self.market, count, buyers=buyers, intents=intents)

    async def wait_in_flight(self, phase: str, at_least: int = 3) -> None:
        """Until the wave is well under way: several of its orders placed and not yet finished."""
        await support.wait_until(lambda: len(self.driver.in_flight(phase)) >= at_least, within=120, interval=0.2)

    async def phase(self, name: str, plans: list[Plan], fault: Fault | None, *, note: str = "") -> PhaseResult:
        """Run the wave, inject `fault` once it is in flight, wait for quiet, check everything."""
        log(f"{name}: {len(plans)} checkouts")
        started = time.monotonic()
        checkouts_before = self.driver.checkouts
        failures_before = Counter(self.gw.failures)
        fault_over = asyncio.Event()

        async def load() -> None:
            await self.driver.run(plans, name)
            while fault is not None and not fault_over.is_set():  # the load lasts as long as the fault
                await self.driver.run(self.plans(3), name)

        wave = asyncio.create_task(load())
        if fault is not None:
            try:
                await self.wait_in_flight(name)
                log(f"{name}: injecting the fault with {len(self.driver.in_flight(name))} orders in flight")
                await fault()
                log(f"{name}: fault over")
            finally:
                fault_over.set()
        await wave
        log(f"{name}: wave done in {time.monotonic() - started:.0f}s")
        figures = await self.settle(name)
        result = PhaseResult(
            name,
            self.driver.checkouts - checkouts_before,
            len(self.driver.of_phase(name)),
            Counter(r.final or "?" for r in self.driver.of_phase(name)),
            time.monotonic() - started,
            self.gw.failures - failures_before,
            note,
            len(figures.left_in_outbox),
        )
        self.results.append(result)
        log(
            f"{name}: {result.orders} orders {dict(result.statuses)} in {result.seconds:.0f}s; "
            f"failed requests retried {dict(result.failures)}"
        )
        return result

    async def settle(
        self,
        name: str,
        *,
        phase: str | None = None,
        waiting: dict[str, str] | None = None,
        parked: int = 0,
        everything: bool = False,
    ) -> Figures:
        """Quiet, then the invariants; an invariant that depends on a message still moving is
        re-checked a few times before it counts as broken."""
        started = time.monotonic()
        await self.quiesce()
        log(f"{name}: quiet after {time.monotonic() - started:.0f}s")
        self.processes.assert_alive()
        figures = Figures()
        for attempt in range(4):
            scope = None if everything else self.driver.of_phase(phase or name)
            found, figures = await check_all(
                self.gw, self.mongo, self.driver, self.market, self.tap.events, waiting=waiting, scope=scope
            )
            found.check(
                (await self.dlq_depth()) == parked, f"{await self.dlq_depth()} messages parked, expected {parked}"
            )
            found.check(not self.duplicate_mails(), f"e-mails sent twice: {self.duplicate_mails()[:5]}")
            if not found.problems:
                break
            if attempt == 3:
                broken = "\n".join(found.problems[:40])
                raise AssertionError(f"{name}: {len(found.problems)} invariants broken:\n{broken}")
            log(f"{name}: {len(found.problems)} checks not yet true, re-checking: {found.problems[:3]}")
            await asyncio.sleep(3)
            await self.quiesce()
        if figures.left_in_outbox:
            log(f"{name}: published but left in the outbox (kit relay): {figures.left_in_outbox}")
        log(
            f"{name}: checked in {time.monotonic() - started:.0f}s {figures.orders} orders {dict(figures.statuses)}, "
            f"{figures.payments} payments, "
            f"{figures.events} events, {figures.notifications} notifications, {figures.emails} e-mails: all hold"
        )
        return figures

    async def quiesce(self, within: float = 120) -> None:
        """Until no work is left anywhere: every queue but the dead-letter ones empty, no unpublished
        outbox entry, no pending e-mail, and nothing changing for a while; then once more with
        rabbitmqctl, which also counts the messages being handled (unacked)."""
        deadline = time.monotonic() + within
        quiet, last = 0, None
        while True:
            if quiet >= 3:
                depths = await self.infra.queue_depths()
                busy = {q: n for q, n in depths.items() if n and not q.endswith(".dlq")}
                if not busy:
                    return
                quiet = 0
            else:
                busy = {q: n for q, n in (await self.tap.ready_counts(WORK_QUEUES)).items() if n}
            pending = sum(1 for held in await outbox_entries(self.mongo) if held[2] not in self.tap.events)
            mails = await self.mongo["bejo_notifications"]["emails"].count_documents({"status": "pending"})
            snapshot = (len(self.tap.events), self.tap.deliveries, pending, mails, tuple(sorted(busy.items())))
            idle = not busy and not pending and not mails and not self.tap.copying
            quiet = quiet + 1 if idle and snapshot == last else 0
            last = snapshot
            if time.monotonic() > deadline:
                raise AssertionError(f"no quiet after {within}s: queues {busy}, {pending} outbox, {mails} e-mails")
            await asyncio.sleep(0.4)

    async def dlq_depth(self) -> int:
        return sum(n for q, n in (await self.infra.queue_depths()).items() if q.endswith(".dlq"))

    def duplicate_mails(self) -> list[str]:
        ids: Counter[str] = Counter(str(m["Message-ID"]) for m in self.sink.messages() if isinstance(m, EmailMessage))
        return [i for i, n in ids.items() if n > 1]


@asynccontextmanager
async def start_fault_platform(work_dir: Path) -> AsyncIterator[FaultPlatform]:
    """Everything in `work_dir` (emptied first): the servers' data, the processes' logs, the mail."""
    ports = Ports.from_env()
    taken = [p for p in ports.all() if port_taken(p)]
    assert not taken, (
        f"ports {taken} are in use; the fault suite needs its own (set FAULTS_AMQP_PORT, FAULTS_MONGO_PORT, "
        "FAULTS_HTTP_PORT to free ones)"
    )
    shutil.rmtree(work_dir, ignore_errors=True)
    (work_dir / "logs").mkdir(parents=True)
    infra = Infra(ports, work_dir / "state")
    processes = Processes(ports, infra.env, work_dir / "logs")
    tap = EventTap(ports.amqp_url)
    sink = SmtpSink(work_dir / "mail", port=ports.smtp)
    log(f"starting RabbitMQ on {ports.amqp} and the Mongo-wire server on {ports.mongo} (state in {work_dir})")
    t0 = time.monotonic()
    await infra.up()
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(ports.mongodb_url, tz_aware=True)
    try:
        await tap.start()  # before any service: it must see every event
        await sink.start()
        await processes.start_all()
        async with aiohttp.ClientSession() as http:
            gw = Gateway(ports.gateway_url, http)
            market = await open_market(gw)
            log(f"platform up in {time.monotonic() - t0:.0f}s: gateway {ports.gateway_url}, logs {work_dir / 'logs'}")
            platform = FaultPlatform(ports, infra, processes, tap, sink, gw, mongo, market, Driver(gw))
            try:
                yield platform
            finally:
                print_summary(platform)
    finally:
        await processes.stop_all()
        await tap.close()
        await sink.stop()
        await mongo.close()
        await infra.down()
        log("stopped the suite's services and servers")


def print_summary(platform: FaultPlatform) -> None:
    if not platform.results:
        return
    log("summary (for docs/reliability.md):")
    print("| phase | checkouts | orders | outcome | seconds | requests retried | note |", flush=True)
    print("|---|---:|---:|---|---:|---|---|", flush=True)
    for r in platform.results:
        outcome = ", ".join(f"{n} {s}" for s, n in sorted(r.statuses.items()))
        retried = ", ".join(f"{n} x {s or 'no connection'}" for s, n in sorted(r.failures.items())) or "none"
        note = r.note + (f"; {r.left_in_outbox} published events left in an outbox" if r.left_in_outbox else "")
        print(
            f"| {r.name} | {r.checkouts} | {r.orders} | {outcome} | {r.seconds:.0f} | {retried} | {note} |", flush=True
        )
    copies = sum(platform.tap.copies.values())
    kills = dict(platform.processes.kills)
    print(f"tap: {len(platform.tap.events)} events, {copies} copies sent; kills {kills}", flush=True)
