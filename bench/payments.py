"""SNAP callback handling of the payments service, over real HTTP against the real bus and store.

Three kinds of signed callback, prepared (signed) before timing and sent with CONCURRENCY in flight:
- baseline: forged signatures, refused after the HMAC check (one access-token look-up);
- pay: valid first notifications: access-token look-up, callback record, VA look-up, payment update
  with its event and posting, settlement (a second update with its event and posting), response stored;
- replay: the same notifications again: answered from the stored response.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
import orjson
from aiohttp import web
from pyinstrument import Profiler
from pymongo import AsyncMongoClient

from bejo_contracts import SYSTEM
from bejo_contracts.orders import OrderLine, OrderReceived
from bejo_contracts.topology import QueueSpec
from bejo_kit.bus import Bus, IncomingEvent
from bejo_payments import api
from bejo_payments.access import TOKEN_PATH
from bejo_payments.app import build
from bejo_payments.callbacks import CALLBACK_PATH
from bejo_payments.sandbox import obtain_access_token, payment_notification, signed_headers
from bejo_payments.settings import PaymentsSettings
from bejo_payments.snap import format_timestamp
from bench.report import profile as bench_profile

PAYMENTS = int(os.environ.get("BENCH_PAYMENTS_CALLBACKS", "200"))
PROFILED = 40  # more paying callbacks, sent under the profiler when the ratio misses GOAL
GOAL = 0.3
CONCURRENCY = 8

Prepared = tuple[bytes, dict[str, str]]


def order(n: int, run: str) -> OrderReceived:
    return OrderReceived(
        order_id=f"bench-{run}-{n}",
        checkout_id="chk",
        pemda="35.15",
        satker="dinkes",
        pp_id="pp",
        pp_name=None,
        ppk_id="ppk",
        provider_id=f"prov-{n % 20}",
        provider_name="CV Bench",
        provider_pkp=n % 2 == 0,
        payment_method="va",
        rup_code="RUP",
        delivery_address="Sidoarjo",
        lines=[OrderLine(product_id="p", name="Barang", unit="pcs", quantity=1 + n % 5, unit_price=99_999)],
        total=(1 + n % 5) * 99_999,
        from_status="shipped",
        status="received",
        actor=SYSTEM,
        occurred_at=datetime.now(UTC),
        bast_number=f"BAST-{n}",
    )


def prepare(settings: PaymentsSettings, va: str, amount: int, external_id: str, secret: str, token: str) -> Prepared:
    now = datetime.now(UTC)
    body = orjson.dumps(payment_notification(va, amount, settings.va_prefix, now, external_id))
    headers = signed_headers(
        secret=secret,
        partner_id=settings.sandbox_partner_id,
        token=token,
        body=body,
        timestamp=format_timestamp(now),
        external_id=external_id,
    )
    return body, headers


async def send_all(url: str, requests: list[Prepared], expected: str) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = list(reversed(requests))

    async def worker(session: aiohttp.ClientSession) -> None:
        while queue:
            body, headers = queue.pop()
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                answer = await response.json()
            latencies.append(time.perf_counter() - started)
            if answer["responseCode"] != expected:
                raise AssertionError(f"expected {expected}, got {answer}")

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))
    return time.perf_counter() - started, latencies


async def profile_payments(url: str, requests: list[Prepared]) -> None:
    """The service runs in this process: profile it (and the client) paying `requests`."""
    profiler = Profiler(interval=0.001, async_mode="enabled")
    profiler.start()
    elapsed, latencies = await send_all(url, requests, "2002500")
    profiler.stop()
    text = profiler.output_text(unicode=True, color=False, time="percent_of_total")
    title = f"{len(requests)} paying SNAP callbacks in-process ({len(latencies) / elapsed:.1f}/s under the profiler)"
    bench_profile("6", title + ", pyinstrument async mode (wall time, awaits included)", text)


def report(name: str, elapsed: float, latencies: list[float], baseline: float | None) -> float:
    rate = len(latencies) / elapsed
    q = statistics.quantiles([x * 1000 for x in latencies], n=100)
    ratio = f", {rate / baseline:.2f}x baseline throughput" if baseline else ""
    print(
        f"{name:<9} {len(latencies):>5} callbacks  {rate:7.1f}/s  "
        f"p50 {q[49]:6.1f} ms  p95 {q[94]:6.1f} ms  p99 {q[98]:6.1f} ms{ratio}"
    )
    return rate


async def run() -> None:
    run_id = uuid.uuid4().hex[:8]
    settings = PaymentsSettings(
        amqp_url=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        mongodb_url=os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/"),
        bus_namespace=f"bench{run_id}.",
        bus_queue_expires_ms=60_000,
        sandbox_enabled=True,
        environment="test",
        log_level="WARNING",
        log_json=True,
    )
    settings.mongodb_database = f"bench_{run_id}_payments"
    # Stand-in for the orders service's queue: payments publishes with `mandatory`, so its events need a route.
    sink = Bus(settings, source="bejo/bench-sink")

    async def discard(event: IncomingEvent) -> None:
        return None

    sink.subscribe(QueueSpec("bench.payment-events", ("bejo.payments.#",)), discard)
    await sink.connect()
    await sink.start_consuming()
    app = build(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}{CALLBACK_PATH}"
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(settings.mongodb_url)
    try:
        service = app[api.SERVICE]
        started = time.perf_counter()
        for n in range(PAYMENTS + PROFILED):
            await service.on_order_received(order(n, run_id))
        print(f"setup: {PAYMENTS} invoices with VAs in {time.perf_counter() - started:.1f} s (not timed below)")
        secret = settings.snap_client_secrets[settings.sandbox_partner_id]
        # One SNAP access token, as a bank holds one for its stream of notifications (900 s).
        async with aiohttp.ClientSession() as session:
            token = await obtain_access_token(
                session,
                f"http://127.0.0.1:{port}{TOKEN_PATH}",
                settings.sandbox_partner_id,
                settings.sandbox_private_key,
            )
        pays: list[Prepared] = []
        forged: list[Prepared] = []
        for n in range(PAYMENTS + PROFILED):
            payment = await service.repo.get(f"pay-bench-{run_id}-{n}")
            assert payment is not None and payment.va_number is not None
            va, total = payment.va_number, payment.invoice.total
            pays.append(prepare(settings, va, total, f"{run_id}{n:06d}", secret, token))
            forged.append(prepare(settings, va, total, f"f{run_id}{n:06d}", "wrong-secret", token))

        elapsed, latencies = await send_all(url, forged, "4012500")
        baseline = report("baseline", elapsed, latencies, None)
        pays, extra = pays[:PAYMENTS], pays[PAYMENTS:]
        forged = forged[:PAYMENTS]
        elapsed, latencies = await send_all(url, pays, "2002500")
        paying = report("pay", elapsed, latencies, baseline)
        elapsed, latencies = await send_all(url, pays, "2002500")
        report("replay", elapsed, latencies, baseline)
        paid_extra = 0
        if paying / baseline < GOAL:
            await profile_payments(url, extra)
            paid_extra = len(extra)
        settled = sum(
            [
                1
                for n in range(PAYMENTS)
                if getattr(await service.repo.get(f"pay-bench-{run_id}-{n}"), "status", None) == "settled"
            ]
        )
        payments = client[settings.database_name]["payments"]
        postings = sum([len(cast(list[Any], doc["ledger"])) async for doc in payments.find({}, {"ledger": 1})])
        print(f"check: {settled}/{PAYMENTS} settled, {postings} postings (expected {2 * (PAYMENTS + paid_extra)})")
    finally:
        await runner.cleanup()
        await sink.close()
        await client.drop_database(settings.database_name)
        await client.close()
