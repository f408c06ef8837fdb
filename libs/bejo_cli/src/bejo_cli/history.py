"""`bejo seed --history`: a year of completed purchases, driven through the platform's own sagas.

Every order goes the whole way a real one does, through the services' HTTP APIs with the tokens
of its PP, PPK, provider and bendahara: checkout, the catalog's reservation, PPK approval, the
provider accepting and shipping, receipt with a BAST number, the invoice, payment (KKPD charge or
virtual account paid through the sandbox bank's signed callback) and settlement. So the orders,
stock, invoices, ledgers, notifications and every event agree, as they would after a real year.

**Past dates.** The services stamp time themselves (`utcnow()`), and none of them accepts a past
time from a caller. The seeder therefore runs the services' own code (catalog, orders, payments,
notifications: their `build()` apps with consumers, outbox relays and timers) in this process,
under a clock set back to each historical moment with `time-machine`, which patches the
wall-clock functions of this one process (`datetime.now`, `time.time`; not the monotonic clock
that timeouts use). Nothing in the services knows about it; no production deployment offers a way
to backdate. Because the services run here, the usual processes must be stopped while it runs
(it refuses otherwise: their consumers would take half of the events, under today's clock), and it
refuses `BEJO_ENV=production`.

The plan (which orders, when, where, for how much) is pure and repeatable from the random seed;
`Plan.table()` is the figures the public stats must then show.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp

from bejo_contracts.common import WIB
from bejo_kit.auth import mint_token
from bejo_kit.settings import KitSettings

from .history_plan import (
    ORDERS,
    RANDOM_SEED,
    STEPS_AT,
    VALUE,
    Plan,
    PlannedOrder,
    Product,
    make_plan,
    orderable_products,
    year_ending,
)
from .history_platform import Platform, Refused, services_consuming

__all__ = ["ORDERS", "VALUE", "Product", "Refused", "make_plan", "run", "year_ending"]


@dataclass
class Progress:
    total: int
    report: Callable[[str], None]
    started: float = field(default_factory=time.perf_counter)
    done: int = 0
    value: int = 0
    last: float = 0.0

    def add(self, order: PlannedOrder, day: date) -> None:
        self.done += 1
        self.value += order.value
        now = time.perf_counter()
        if now - self.last >= 5 or self.done == self.total:
            self.last = now
            elapsed = now - self.started
            rate = self.done / elapsed if elapsed else 0.0
            eta = (self.total - self.done) / rate if rate else 0.0
            self.report(
                f"  {day.isoformat()}: {self.done:,}/{self.total:,} orders completed, Rp {self.value:,} "
                f"({elapsed:.0f}s, {rate:.1f} orders/s, about {eta / 60:.1f} min to go)"
            )


class Driver:
    """Takes planned orders through the saga with the tokens of the people who would act."""

    def __init__(self, platform: Platform, http: aiohttp.ClientSession, concurrency: int, random_seed: int) -> None:
        self.random_seed = random_seed
        self.platform = platform
        self.http = http
        self.gate = asyncio.Semaphore(concurrency)
        self.tokens: dict[tuple[str, ...], str] = {}

    def token(self, role: str, sub: str, pemda: str, **extra: str) -> str:
        key = (role, sub, pemda, *extra.values(), str(int(time.time() // 3600)))
        if key not in self.tokens:
            self.tokens[key] = mint_token(
                self.platform.kit, sub=sub, role=role, pemda=pemda, ttl_seconds=86_400, **extra
            )
        return self.tokens[key]

    def people(self, order: PlannedOrder) -> dict[str, str]:
        satker = f"{order.satker}-{order.pemda.replace('.', '-')}"
        who = f"{order.satker}-{order.pemda}"
        return {
            "pp": self.token("pp", f"pp-{who}", order.pemda, satker=satker, name=f"PP {who}"),
            "ppk": self.token("ppk", f"ppk-{who}", order.pemda, satker=satker, name=f"PPK {who}"),
            "bendahara": self.token("bendahara", f"bend-{who}", order.pemda, satker=satker),
            "penyedia": self.token(
                "penyedia", f"owner-{order.product.provider_id}", order.pemda, provider_id=order.product.provider_id
            ),
        }

    async def call(
        self, service: str, method: str, path: str, token: str | None, body: Any = None, **headers: str
    ) -> Any:
        url = self.platform.urls[service] + path
        if token:
            headers["Authorization"] = f"Bearer {token}"
        for attempt in range(6):
            async with self.http.request(method, url, json=body, headers=headers) as answer:
                payload = await answer.json(content_type=None)
                if answer.status == 409 and payload.get("code") == "concurrent_update" and attempt < 5:
                    await asyncio.sleep(0.1 * (attempt + 1))
                    continue
                if answer.status >= 400:
                    raise RuntimeError(f"{method} {path} -> {answer.status}: {payload}")
                return payload
        raise RuntimeError(f"{method} {path} kept conflicting")

    async def until(self, what: str, check: Callable[[], Awaitable[Any]], patience: float = 120.0) -> Any:
        deadline = time.monotonic() + patience
        delay = 0.05
        while True:
            result = await check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.3)

    async def order_status(self, order_id: str, token: str) -> str:
        return str((await self.call("orders", "GET", f"/api/v1/orders/{order_id}", token))["status"])

    async def step(self, orders: list[Any], action: Callable[[Any], Awaitable[Any]]) -> list[Any]:
        async def one(item: Any) -> Any:
            async with self.gate:
                return await action(item)

        return list(await asyncio.gather(*(one(o) for o in orders)))

    async def place(self, order: PlannedOrder) -> tuple[PlannedOrder, str, dict[str, str]]:
        people = self.people(order)
        body = {
            "lines": [{"product_id": order.product.id, "quantity": order.quantity}],
            "delivery_address": f"Kantor {order.satker.upper()}, Jl. Pahlawan {order.number % 200 + 1}",
            "rup_code": f"RUP-{order.pemda}-{order.day.year}-{order.number:05d}",
            "ppk_id": f"ppk-{order.satker}-{order.pemda}",
            "payment_method": order.method,
        }
        key = f"history-{self.random_seed}-{order.day.isoformat()}-{order.number}"
        placed = await self.call("orders", "POST", "/api/v1/orders", people["pp"], body, **{"Idempotency-Key": key})
        order_id = placed["orders"][0]["id"]

        async def reserved() -> bool:
            status = await self.order_status(order_id, people["pp"])
            if status == "rejected":
                raise RuntimeError(f"order {order.number} ({order_id}) was rejected by the catalog")
            return status == "reserved"

        await self.until(f"reservation of {order_id}", reserved)
        return order, order_id, people


async def drive(
    platform: Platform,
    plan: Plan,
    traveller: Any,
    report: Callable[[str], None],
    concurrency: int = 24,
) -> Progress:
    progress = Progress(len(plan.orders), report)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        driver = Driver(platform, http, concurrency, plan.random_seed)

        def at(day: date, step: str) -> None:
            moment = datetime(day.year, day.month, day.day, STEPS_AT[step], tzinfo=WIB)
            if moment.astimezone(UTC) > datetime.now(UTC):
                traveller.move_to(moment)

        for day, todays in plan.by_day():
            at(day, "place")
            placed = await driver.step(todays, driver.place)
            at(day, "approve")

            async def approve(p: tuple[PlannedOrder, str, dict[str, str]]) -> None:
                await driver.call("orders", "POST", f"/api/v1/orders/{p[1]}/approve", p[2]["ppk"])

            await driver.step(placed, approve)
            at(day, "ship")

            async def ship(p: tuple[PlannedOrder, str, dict[str, str]]) -> None:
                await driver.call("orders", "POST", f"/api/v1/orders/{p[1]}/accept", p[2]["penyedia"])
                note = {"tracking_note": f"Dikirim kurir toko, surat jalan SJ-{p[0].number:05d}"}
                await driver.call("orders", "POST", f"/api/v1/orders/{p[1]}/ship", p[2]["penyedia"], note)

            await driver.step(placed, ship)
            at(day, "receive")

            async def receive(p: tuple[PlannedOrder, str, dict[str, str]]) -> None:
                await driver.call("orders", "POST", f"/api/v1/orders/{p[1]}/receive", p[2]["ppk"])

            await driver.step(placed, receive)
            at(day, "pay")

            async def pay(p: tuple[PlannedOrder, str, dict[str, str]]) -> None:
                order, order_id, people = p

                async def invoiced() -> Any:
                    found = await driver.call(
                        "payments", "GET", f"/api/v1/payments?order_id={order_id}", people["bendahara"]
                    )
                    items = found.get("items", [])
                    return items[0] if items and (order.method == "kkpd" or items[0].get("va_number")) else None

                payment = await driver.until(f"invoice of {order_id}", invoiced)
                if order.method == "kkpd":
                    card = {"card_token": f"kkpd-{order.pemda.replace('.', '')}-{order.satker}"}
                    await driver.call(
                        "payments", "POST", f"/api/v1/payments/{payment['id']}/charge", people["bendahara"], card
                    )
                else:
                    # the sandbox bank: the customer transfers, the bank sends its signed callback
                    amount = {"amount": payment["invoice"]["total"]}
                    bank = driver.token("admin", "sandbox-bank", "35")
                    va_path = f"/api/v1/sandbox/va/{payment['va_number']}/pay"
                    await driver.call("payments", "POST", va_path, bank, amount)

                async def completed() -> bool:
                    return await driver.order_status(order_id, people["pp"]) == "completed"

                await driver.until(f"completion of {order_id}", completed)
                progress.add(order, order.day)

            await driver.step(placed, pay)
    return progress


async def feed_items(platform: Platform, http: aiohttp.ClientSession) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = ""
    while True:
        async with http.get(
            platform.urls["catalog"] + "/api/v1/catalog/feed", params={"after": cursor, "limit": 1000}
        ) as answer:
            page = await answer.json()
        items.extend(page["items"])
        if not page["items"]:
            return items
        cursor = page["next_cursor"]


async def run(
    *,
    scale: float = 1.0,
    orders: int | None = None,
    value: int | None = None,
    random_seed: int = RANDOM_SEED,
    today: date | None = None,
    namespace: str | None = None,
    database_suffix: str = "",
    report: Callable[[str], None] = print,
    concurrency: int = 24,
    catalog_size: tuple[int, int, int] | None = None,
    catalog_random_seed: int | None = None,
) -> dict[str, Any]:
    """Seed the catalog if it is empty, then drive the year's orders; returns the plan's table and
    the stats the services then answer."""
    import time_machine

    from bejo_catalog import app as catalog_app
    from bejo_catalog import seed as catalog_seed
    from bejo_catalog.settings import CatalogSettings
    from bejo_kit.logging import configure_logging
    from bejo_notifications import app as notifications_app
    from bejo_notifications.settings import NotificationsSettings
    from bejo_orders import app as orders_app
    from bejo_orders.settings import OrdersSettings
    from bejo_payments import app as payments_app
    from bejo_payments.settings import PaymentsSettings

    # A namespace of its own (tests): its queues are dropped a while after the run.
    extra: dict[str, Any] = {} if namespace is None else {"bus_namespace": namespace, "bus_queue_expires_ms": 300_000}

    def db(name: str) -> dict[str, Any]:
        return {"mongodb_database": f"bejo_{name}{database_suffix}"} if database_suffix else {}

    kit = KitSettings(**extra)
    if kit.environment == "production":
        raise Refused("bejo seed --history writes a year of invented purchases; it never runs with BEJO_ENV=production")
    busy = await services_consuming(kit)
    if busy:
        raise Refused(
            "the services are running (consumers on " + ", ".join(busy[:3]) + ", ...): stop them (Ctrl-C in make run) "
            "first; the seeder runs them itself under the historical clock"
        )
    configure_logging("seed-history", "WARNING", True)
    if not 0 < scale <= 10:
        raise Refused(f"--scale must be more than 0 and at most 10, not {scale}")
    total = orders if orders is not None else max(1, round(ORDERS * scale))
    target = value if value is not None else round(VALUE * scale)
    start, end = year_ending(today or datetime.now(WIB).date())
    platform = Platform(kit)
    catalog_settings = CatalogSettings(**extra, **db("catalog"))
    orders_settings = OrdersSettings(**extra, **db("orders"))
    payments_settings = PaymentsSettings(**extra, **db("payments"), sandbox_enabled=True)
    notifications_settings = NotificationsSettings(**extra, **db("notifications"))
    # The day before the year starts: the catalog (seeded if empty) is there before the first order.
    with time_machine.travel(
        datetime(start.year, start.month, start.day, 7, tzinfo=WIB) - timedelta(days=1)
    ) as traveller:
        await platform.start("orders", orders_app.build(orders_settings))  # takes the seed's announcements
        providers, products_, promotions = catalog_size or (
            catalog_seed.DEFAULT_PROVIDERS,
            catalog_seed.DEFAULT_PRODUCTS,
            catalog_seed.DEFAULT_PROMOTIONS,
        )
        seeded = await catalog_seed.seed(
            catalog_settings,
            providers=providers,
            products=products_,
            promotions=promotions,
            random_seed=catalog_random_seed or catalog_seed.DEFAULT_RANDOM_SEED,
            report=report,
        )
        if seeded is None:
            report("  the history uses the catalog as it is")
        await platform.start("catalog", catalog_app.build(catalog_settings))
        await platform.start("payments", payments_app.build(payments_settings))
        await platform.start("notifications", notifications_app.build(notifications_settings))
        try:
            async with aiohttp.ClientSession() as http:
                products = orderable_products(await feed_items(platform, http))
            from bejo_catalog.seed_tables import PEMDAS

            plan = make_plan(
                products,
                [(code, weight) for code, _, weight in PEMDAS],
                orders=total,
                value=target,
                start=start,
                end=end,
                random_seed=random_seed,
            )
            await _wait_for_read_model(orders_settings, {o.product.id for o in plan.orders}, report)
            table = plan.table()
            report(
                f"history {start} .. {end}: {table['orders']:,} orders, Rp {table['transaction_value']:,}, "
                f"{table['participating_pemda']} regencies/cities and the province (random seed {random_seed})"
            )
            progress = await drive(platform, plan, traveller, report, concurrency)
            elapsed = time.perf_counter() - progress.started
            report(f"done: {progress.done:,} orders in {elapsed:.0f}s ({progress.done / elapsed:.1f} orders/s)")
            async with (
                aiohttp.ClientSession() as http,
                http.get(platform.urls["orders"] + "/api/v1/orders/stats") as answer,
                http.get(platform.urls["catalog"] + "/api/v1/catalog/stats") as catalog_answer,
            ):
                stats = await answer.json()
                catalog_stats = await catalog_answer.json()
        finally:
            await platform.stop()
    return {"plan": table, "stats": stats, "catalog_stats": catalog_stats, "seconds": elapsed}


async def _wait_for_read_model(settings: Any, product_ids: set[str], report: Callable[[str], None]) -> None:
    """Checkout reads the orders service's copy of the catalog: wait until it holds every planned product."""
    from bejo_kit.mongo import create_client, database

    client = create_client(settings)
    try:
        products = database(client, settings)["products"]
        for _ in range(600):
            have = await products.count_documents({"_id": {"$in": sorted(product_ids)}})
            if have >= len(product_ids):
                return
            report(f"  waiting for the orders service to take in the catalog: {have:,}/{len(product_ids):,}")
            await asyncio.sleep(2)
        raise RuntimeError("the orders service did not take in the catalog's products")
    finally:
        await client.close()


def command(args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(
            run(
                scale=args.scale,
                random_seed=args.history_seed,
                concurrency=args.concurrency,
                # used only when the catalog is empty and seeded first
                catalog_size=(args.providers, args.products, args.promotions),
                catalog_random_seed=args.random_seed,
            )
        )
    except Refused as exc:
        print(f"bejo seed --history: {exc}", file=sys.stderr)
        return 1
    plan, stats = result["plan"], result["stats"]
    print(f"planned: {plan['orders']:,} orders, Rp {plan['transaction_value']:,}")
    print(f"stats:   {stats['orders']:,} orders, Rp {stats['transaction_value']:,}")
    catalog = result["catalog_stats"]
    print(f"catalog: {catalog['providers']:,} verified providers, {catalog['products']:,} listed products")
    largest = next(iter(plan["by_category"]))
    print(f"largest category: {largest}; months: " + ", ".join(f"{k} {v[0]:,}" for k, v in plan["by_period"].items()))
    ok = (plan["orders"], plan["transaction_value"]) == (stats["orders"], stats["transaction_value"])
    if not ok:
        print("bejo seed --history: the stats do not show the planned figures", file=sys.stderr)
    return 0 if ok else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--history",
        action="store_true",
        help="also drive a year of completed purchases through the sagas (services must be stopped; see docs)",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="with --history: share of 13,701 orders (e.g. 0.01)")
    parser.add_argument("--history-seed", type=int, default=RANDOM_SEED, help="with --history: same seed, same year")
    parser.add_argument("--concurrency", type=int, default=24, help="with --history: orders in flight at once")
