"""Notifications: latency from an event published to its inbox entries stored, and webhook
delivery throughput, on the real broker, the Mongo-wire server, a real SMTP sink and a local
aiohttp receiver.

- latency: `BENCH_NOTIFY_EVENTS` OrderApproved events (each for a PP and a provider, both with an
  e-mail address) published at a steady `BENCH_NOTIFY_RATE` per second; for each inbox entry,
  `created_at` (stamped just before its insert) minus the publish time; p50/p95/p99.
- webhooks: `BENCH_WEBHOOK_EVENTS` OrderApproved events of pemda 35.15 matching one subscription of
  an admin of that pemda (events reach only subscribers who may see them); deliveries per second from
  the first publish to the last signed POST received. Baseline in the same run: the same signed
  POSTs sent straight with aiohttp at the same concurrency (no queue, no log, no database).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime

import aiohttp
from aiohttp import web
from pyinstrument import Profiler

from bejo_contracts import SYSTEM, Envelope
from bejo_contracts.catalog import ProviderRegistered
from bejo_contracts.orders import OrderApproved, OrderLine
from bejo_kit.auth import mint_token
from bejo_kit.bus import Bus
from bejo_kit.mongo import create_client
from bejo_notifications import domain
from bejo_notifications.app import build
from bejo_notifications.settings import NotificationsSettings
from bejo_notifications.smtp_sink import SmtpSink
from bench.report import profile

LATENCY_EVENTS = int(os.environ.get("BENCH_NOTIFY_EVENTS", "300"))
RATE = float(os.environ.get("BENCH_NOTIFY_RATE", "40"))
WEBHOOK_EVENTS = int(os.environ.get("BENCH_WEBHOOK_EVENTS", "300"))
# Webhooks carry events of a pemda the subscriber (an admin of 35.15) oversees: order approvals.
WEBHOOK_TYPE = "bejo.orders.order.approved.v1"


def approved(n: int) -> Envelope:
    data = OrderApproved(
        order_id=f"ORD-B{n}",
        checkout_id=f"CHK-B{n}",
        pemda="35.15",
        satker="35.15.dinkes",
        pp_id=f"pp-{n % 50}",
        pp_name="Siti Rahayu",
        ppk_id=f"ppk-{n % 20}",
        provider_id=f"prov-{n % 10}",
        provider_name="CV Maju Jaya",
        provider_pkp=True,
        payment_method="va",
        rup_code="RUP-1",
        delivery_address="Jl. Raya 1",
        lines=[OrderLine(product_id="p1", name="Kertas A4", unit="rim", quantity=20, unit_price=130_700)],
        total=2_614_000,
        from_status="reserved",
        status="approved",
        actor=SYSTEM,
        occurred_at=datetime.now(UTC),
    )
    return Envelope.wrap(data, source="bejo/bench")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Receiver:
    def __init__(self) -> None:
        self.count = 0
        self.done = asyncio.Event()
        self.expected = 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.count += 1
        if self.expected and self.count >= self.expected:
            self.done.set()
        return web.Response(text="ok")


async def run() -> None:
    unique = uuid.uuid4().hex[:8]
    maildir = tempfile.mkdtemp(prefix="bejo-bench-mail-")
    sink = SmtpSink(maildir)
    await sink.start()
    settings = NotificationsSettings(
        bus_namespace=f"bench{unique}.",
        bus_queue_expires_ms=60_000,
        environment="test",
        smtp_port=sink.port,
        log_json=True,
        log_level="WARNING",
        delivery_poll_interval=0.2,
    )
    settings.mongodb_database = f"bench_notifications_{unique}"
    app = build(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"

    receiver = Receiver()
    receiver_app = web.Application()
    receiver_app.router.add_post("/hook", receiver.handle)
    receiver_runner = web.AppRunner(receiver_app, access_log=None)
    await receiver_runner.setup()
    receiver_site = web.TCPSite(receiver_runner, "127.0.0.1", 0)
    await receiver_site.start()
    hook_url = f"http://127.0.0.1:{receiver_site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore[union-attr]

    bus = Bus(settings, source="bejo/bench")
    await bus.connect()
    client = create_client(settings)
    db = client[settings.database_name]
    try:
        # Providers' addresses, so each notification also queues an e-mail.
        for i in range(10):
            provider = ProviderRegistered(
                provider_id=f"prov-{i}",
                name=f"Maju {i}",
                legal_entity="CV",
                pemda_code="35.15",
                email=f"p{i}@example.id",
                pkp=True,
                status="pending",
                actor=SYSTEM,
            )
            await bus.publish(Envelope.wrap(provider, source="bejo/bench"))

        # -- baseline: one insert_one round trip to the Mongo-wire server right now -------------
        probe = db["bench_probe"]
        insert_ms = []
        for i in range(30):
            t = time.perf_counter()
            await probe.insert_one({"_id": str(i), "n": i})
            insert_ms.append((time.perf_counter() - t) * 1000)

        # -- latency ------------------------------------------------------------------------------
        published: dict[str, float] = {}
        envelopes = [approved(n) for n in range(LATENCY_EVENTS)]
        started = time.perf_counter()
        for n, envelope in enumerate(envelopes):
            delay = started + n / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            published[envelope.id] = time.time()
            await bus.publish(envelope)
        expected = {
            domain.notification_id(e.id, r.key): e.id for e in envelopes for r in domain.recipients_for(e.type, e.data)
        }
        stored: dict[str, float] = {}
        deadline = time.monotonic() + 60
        while len(stored) < len(expected) and time.monotonic() < deadline:
            async for doc in db["notifications"].find({}, {"created_at": 1, "event_id": 1}):
                if doc["_id"] in expected:
                    stored[doc["_id"]] = doc["created_at"].timestamp() - published[doc["event_id"]]
            await asyncio.sleep(0.5)
        latencies = [v * 1000 for v in stored.values()]
        emails_queued = await db["emails"].count_documents({})

        # -- webhook throughput -------------------------------------------------------------------
        admin = mint_token(settings, sub="bench-admin", role="admin", pemda="35.15")
        async with aiohttp.ClientSession() as http:
            async with http.post(
                base + "/api/v1/webhooks",
                json={"url": hook_url, "secret": "bench-secret-0123456789", "event_types": [WEBHOOK_TYPE]},
                headers={"Authorization": f"Bearer {admin}"},
            ) as reply:
                assert reply.status == 201, await reply.text()
            hooks = [approved(100_000 + n) for n in range(WEBHOOK_EVENTS)]
            receiver.expected = WEBHOOK_EVENTS
            t0 = time.perf_counter()
            for i in range(0, len(hooks), 200):
                await bus.publish_many(hooks[i : i + 200])
            await asyncio.wait_for(receiver.done.wait(), 150)
            webhook_rate = WEBHOOK_EVENTS / (time.perf_counter() - t0)

            # Baseline: the same signed POSTs straight from aiohttp, same concurrency.
            body = hooks[0].model_dump_json().encode()
            gate = asyncio.Semaphore(settings.webhook_concurrency)

            async def post() -> None:
                async with gate:
                    ts = str(int(time.time()))
                    headers = {"X-Bejo-Timestamp": ts, "X-Bejo-Signature": domain.sign("s", ts, body)}
                    async with http.post(hook_url, data=body, headers=headers) as reply:
                        await reply.read()

            receiver.count, receiver.expected = 0, 0
            t1 = time.perf_counter()
            await asyncio.gather(*(post() for _ in range(WEBHOOK_EVENTS)))
            raw_rate = WEBHOOK_EVENTS / (time.perf_counter() - t1)

            if webhook_rate / raw_rate < 0.3:
                # Below the goal: the same deliveries again, fewer, with the service under the profiler.
                extra = [approved(200_000 + n) for n in range(100)]
                receiver.count, receiver.expected = 0, len(extra)
                receiver.done.clear()
                profiler = Profiler(interval=0.001, async_mode="enabled")
                profiler.start()
                await bus.publish_many(extra)
                await asyncio.wait_for(receiver.done.wait(), 120)
                profiler.stop()
                text = profiler.output_text(unicode=True, color=False, time="percent_of_total")
                profile("6", "100 webhook deliveries, service in-process, async mode (wall time)", text)

        print(f"  baseline insert_one round trip       p50 {percentile(insert_ms, 50):6.1f} ms (same run)")
        print(f"  events published (latency run)       {LATENCY_EVENTS} at {RATE:g}/s, 2 recipients each")
        print(
            f"  inbox entries stored                 {len(stored)}/{len(expected)}  (e-mails queued: {emails_queued})"
        )
        if latencies:
            print(
                f"  publish -> stored latency            p50 {percentile(latencies, 50):6.1f} ms"
                f"   p95 {percentile(latencies, 95):6.1f} ms   p99 {percentile(latencies, 99):6.1f} ms"
                f"   max {max(latencies):6.1f} ms"
            )
        print(f"  webhook deliveries                   {WEBHOOK_EVENTS} events, 1 subscription")
        print(f"  webhook delivery throughput          {webhook_rate:8.0f} deliveries/s (queue + log + signed POST)")
        print(f"  raw signed aiohttp POSTs (baseline)  {raw_rate:8.0f} req/s")
        print(f"  ratio service / raw                  {webhook_rate / raw_rate:8.2f}")
        # Each delivery costs about five round trips (insert, claim, subscription read, outcome, count reset).
        print(f"  deliveries per insert_one round trip {webhook_rate * percentile(insert_ms, 50) / 1000:8.2f}")
        print(f"  e-mails received by the SMTP sink    {len(sink.messages())}")
    finally:
        await bus.close()
        await runner.cleanup()
        await receiver_runner.cleanup()
        await sink.stop()
        await client.drop_database(settings.database_name)
        await client.close()
