"""The Harbolnas (12.12) load scenario: the whole platform driven through the gateway as a sale day
would drive it, for a bounded time and number of requests, on this machine only.

    make run                      # in one terminal
    make load                     # in another: python -m bench.harbolnas --seconds 60
    python -m bench harbolnas     # row 8 of `make bench` (starts `make run`'s processes if needed)

The mix, all through the gateway:
- anonymous browsing: searches by keyword and region, product pages, categories, promotions (most
  of the requests);
- checkouts by PPs of many satkers across the 24 regencies/cities of the data set, each order then
  driven to its end as people would: PPK approval, the provider accepts and ships, the PPK receives
  (BAST), the bendahara looks up the virtual account, the sandbox bank pays it with a signed SNAP
  callback (the payments service's own sandbox bank: access token, signature), and the order
  completes when the payment settles;
- a flash sale: a promoted product with little stock, rushed by many PPs at once a third of the
  way in (none may be oversold).
Reported: throughput and p50/p95/p99 per operation, errors by kind, the end-to-end saga time from
placed to completed (polled every `POLL` seconds), the flash sale's outcome, and the depth of every
queue over time (RabbitMQ's management API, each second), drawn as a PNG.

Only loopback addresses are accepted as the target: this is a load test of servers run here.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ipaddress
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from bejo_cli import samples
from bejo_cli.samples import provider_body
from bench.report import REPORT, record

REPO = Path(__file__).resolve().parent.parent
POLL = 0.3  # seconds between status polls of one saga
STEP_WITHIN = 60.0  # a saga step waits at most this long for the saga to move on
RABBIT_API = os.environ.get("BENCH_RABBIT_API", "http://127.0.0.1:15672/api/queues")
RABBIT_USER = os.environ.get("BENCH_RABBIT_USER", "guest:guest")
# The 24 regencies/cities of the data set (bejo_catalog.seed_tables.PEMDAS, without the province).
REGIONS = (
    "35.78", "35.15", "35.25", "35.07", "35.73", "35.79", "35.09", "35.10", "35.06", "35.71", "35.16", "35.17",
    "35.14", "35.13", "35.04", "35.05", "35.19", "35.02", "35.24", "35.23", "35.22", "35.18", "35.08", "35.28",
)  # fmt: skip
TERMS = ("kopi", "beras premium", "kertas a4", "masker", "air mineral", "batik", "toner", "sabun", "kop", "teh")
LISTING = (
    ("Kopi Robusta Dampit 1kg", 95_000),
    ("Beras Premium 5kg", 80_000),
    ("Kertas HVS A4 70gsm", 55_000),
    ("Masker Medis 50 pcs", 45_000),
    ("Air Mineral 600ml 24 botol", 52_000),
    ("Batik Tulis Madura", 350_000),
    ("Toner Printer Laser", 420_000),
    ("Sabun Cuci Tangan 500ml", 25_000),
    ("Teh Celup Melati 25 pcs", 9_000),
    ("Map Plastik Kancing 12 pcs", 30_000),
)


def loopback_only(base: str) -> str:
    """`base` if its host is a loopback address (or localhost); SystemExit otherwise."""
    parts = urlsplit(base)
    host = parts.hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, parts.port or 80)}
    except OSError as exc:
        raise SystemExit(f"cannot resolve {host!r}: {exc}") from None
    if parts.scheme != "http" or not addresses or not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        raise SystemExit(f"refusing to load {base}: only http:// on a loopback address (127.0.0.0/8, ::1) is allowed")
    return base.rstrip("/")


# -- measuring ---------------------------------------------------------------------------------------


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    sagas: list[float] = field(default_factory=list)  # placed -> completed, seconds
    outcomes: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    depths: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    flash_at: float | None = None  # seconds into the load


class Budget:
    """The bounds: no request is sent after the deadline or past the request count."""

    def __init__(self, seconds: float, max_requests: int) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + seconds
        self.max_requests = max_requests
        self.sent = 0
        self.drain_until = self.deadline  # sagas in flight may finish after the deadline

    def open(self) -> bool:
        return time.monotonic() < self.deadline and self.sent < self.max_requests

    def take(self, draining: bool = False) -> bool:
        limit = self.drain_until if draining else self.deadline
        if time.monotonic() >= limit or self.sent >= self.max_requests:
            return False
        self.sent += 1
        return True


class Stopped(Exception):
    """The budget is spent: the actor stops."""


class Client:
    def __init__(self, base: str, http: aiohttp.ClientSession, stats: Stats, budget: Budget) -> None:
        self.base, self.http, self.stats, self.budget = base, http, stats, budget

    async def call(
        self,
        operation: str,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        draining: bool = False,
        setup: bool = False,
    ) -> tuple[int, Any]:
        if not setup and not self.budget.take(draining):
            raise Stopped
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        data = orjson.dumps(body) if body is not None else None
        if data is not None:
            sent["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            async with self.http.request(method, self.base + path, data=data, headers=sent) as answer:
                raw = await answer.read()
                status = answer.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.stats.errors[(operation, type(exc).__name__)] += 1
            return 0, None
        elapsed = time.perf_counter() - started
        if not setup:
            self.stats.latencies[operation].append(elapsed)
            if status >= 400:
                kind = f"{status}"
                with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                    kind += f" {orjson.loads(raw).get('code', '')}".rstrip()
                self.stats.errors[(operation, kind)] += 1
        try:
            return status, orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return status, None


# -- the cast ----------------------------------------------------------------------------------------


class Tokens:
    def __init__(self) -> None:
        from bejo_kit.auth import mint_token
        from bejo_kit.settings import KitSettings

        self._settings = KitSettings()
        self._mint = mint_token
        self._cache: dict[tuple[str, ...], str] = {}

    def get(self, role: str, sub: str, pemda: str, **claims: str) -> str:
        key = (role, sub, pemda, *sorted(f"{k}={v}" for k, v in claims.items()))
        if key not in self._cache:
            self._cache[key] = self._mint(self._settings, sub=sub, role=role, pemda=pemda, name=sub, **claims)  # type: ignore[arg-type]
        return self._cache[key]


@dataclass(frozen=True)
class Buyer:
    pemda: str
    satker: str

    def pp(self, tokens: Tokens) -> str:
        return tokens.get("pp", f"pp-{self.satker}", self.pemda, satker=self.satker)

    def ppk(self, tokens: Tokens) -> str:
        return tokens.get("ppk", f"ppk-{self.satker}", self.pemda, satker=self.satker)

    def bendahara(self, tokens: Tokens) -> str:
        return tokens.get("bendahara", f"bdh-{self.satker}", self.pemda, satker=self.satker)


@dataclass(frozen=True)
class Product:
    id: str
    provider_id: str
    pemda: str
    price: int


@dataclass
class Market:
    products: list[Product]
    flash: Product
    flash_stock: int


def seller_token(tokens: Tokens, provider_id: str, pemda: str) -> str:
    return tokens.get("penyedia", f"owner-{provider_id}", pemda, provider_id=provider_id)


async def open_market(client: Client, tokens: Tokens, tag: str, flash_stock: int) -> Market:
    """Four verified providers in four regencies delivering province-wide, the listing, and the flash
    product with a promotion running now. Returns once the orders service knows every product."""
    admin = tokens.get("admin", "biro-pbj", "35")

    async def ok(method: str, path: str, token: str | None = None, body: Any = None) -> Any:
        for _ in range(50):
            status, answer = await client.call("setup", method, path, token, body, setup=True)
            if 200 <= status < 300:
                return answer
            if status not in (0, 429, 502, 503, 504):
                raise RuntimeError(f"setup: {method} {path} -> {status}: {answer}")
            await asyncio.sleep(0.5)
        raise RuntimeError(f"setup: {method} {path} kept failing")

    categories = (await ok("GET", "/api/v1/categories"))["items"]
    category = next(c["id"] for c in categories if c["parent_id"])
    products: list[Product] = []
    providers = [(f"hb-{tag}-{n}", pemda) for n, pemda in enumerate(("35.78", "35.15", "35.07", "35.09"))]
    for provider_id, pemda in providers:
        seller = seller_token(tokens, provider_id, pemda)
        body = provider_body(name=f"CV Harbolnas {provider_id}", pemda_code=pemda, email=f"{provider_id}@example.id")
        await ok("POST", "/api/v1/providers", seller, body)
        await ok("POST", f"/api/v1/providers/{provider_id}/verify", admin, {"reason": "dokumen lengkap"})
    for n, (name, price) in enumerate(LISTING):
        provider_id, pemda = providers[n % len(providers)]
        body = {"name": name, "description": f"{name} untuk instansi", "category": category, "unit": "pak",
                "price": price, "het": price + 20_000, "stock": 1_000_000, "regions": ["35"]}  # fmt: skip
        created = await ok("POST", "/api/v1/products", seller_token(tokens, provider_id, pemda), body)
        products.append(Product(created["id"], provider_id, pemda, price))
    provider_id, pemda = providers[0]
    seller = seller_token(tokens, provider_id, pemda)
    body = {"name": "Laptop Core i5 Harbolnas", "description": "flash sale 12.12", "category": category,
            "unit": "unit", "price": 9_500_000, "het": 9_900_000, "stock": flash_stock, "regions": ["35"]}  # fmt: skip
    flash_doc = await ok("POST", "/api/v1/products", seller, body)
    flash = Product(flash_doc["id"], provider_id, pemda, 9_500_000)
    now = time.time()
    await ok("POST", "/api/v1/promotions", seller, {
        "name": "Harbolnas 12.12", "scope": "products", "product_ids": [flash.id], "discount_kind": "percent",
        "discount_value": 12, "starts_at": _iso(now - 60), "ends_at": _iso(now + 3600),
    })  # fmt: skip

    probe = Buyer(REGIONS[0], "probe")

    async def known(product: Product) -> bool:
        status, problem = await client.call(
            "setup", "POST", "/api/v1/orders", probe.pp(tokens), order_body(probe, product, 1_000_000),
            {"Idempotency-Key": uuid.uuid4().hex}, setup=True,
        )  # fmt: skip
        return status == 422 and "not_found" not in orjson.dumps(problem).decode()

    for product in [*products, flash]:
        deadline = time.monotonic() + 60
        while not await known(product):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the orders service never learnt of {product.id}")
            await asyncio.sleep(0.3)
    return Market(products, flash, flash_stock)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def order_body(buyer: Buyer, product: Product, quantity: int) -> dict[str, Any]:
    return samples.order_body(
        [(product.id, quantity)],
        delivery_address=f"Jl. Pahlawan 1, {buyer.satker}",
        rup_code=f"RUP-{buyer.pemda}-2026-0001",
        ppk_id=f"ppk-{buyer.satker}",
    )


# -- the actors --------------------------------------------------------------------------------------


async def browser(client: Client, market: Market, rng: random.Random, number: int) -> None:
    """An anonymous shopper. Its address goes in X-Forwarded-For: the gateway believes it only when
    the load generator's address is among GATEWAY_TRUSTED_PROXIES (as an ingress would be);
    otherwise every shopper shares the one loopback address, and its rate limit."""
    ids = [p.id for p in market.products] + [market.flash.id]
    me = {"X-Forwarded-For": f"198.51.100.{number % 250 + 1}"}  # documentation range: only a header
    while client.budget.open():
        pick = rng.random()
        try:
            if pick < 0.5:
                params = f"q={rng.choice(TERMS).replace(' ', '+')}&region={rng.choice(REGIONS)}&limit=20"
                await client.call("browse: search", "GET", f"/api/v1/products?{params}", headers=me)
            elif pick < 0.8:
                await client.call("browse: product page", "GET", f"/api/v1/products/{rng.choice(ids)}", headers=me)
            elif pick < 0.9:
                await client.call("browse: categories", "GET", "/api/v1/categories", headers=me)
            else:
                await client.call("browse: promotions", "GET", "/api/v1/promotions", headers=me)
        except Stopped:
            return


async def wait_status(client: Client, order_id: str, token: str, wanted: set[str]) -> str:
    deadline = time.monotonic() + STEP_WITHIN
    while True:
        status, order = await client.call("saga: poll order", "GET", f"/api/v1/orders/{order_id}", token, draining=True)
        if status == 200 and order["status"] in wanted:
            return str(order["status"])
        if status == 200 and order["status"] in ("rejected", "cancelled", "expired"):
            return str(order["status"])
        if time.monotonic() > deadline:
            return "stuck"
        await asyncio.sleep(POLL)


async def checkout_saga(client: Client, tokens: Tokens, market: Market, buyer: Buyer, rng: random.Random) -> None:
    """One order from placement to completion; its time from placed to completed is recorded."""
    product = rng.choice(market.products)
    pp, ppk = buyer.pp(tokens), buyer.ppk(tokens)
    seller = seller_token(tokens, product.provider_id, product.pemda)
    started = time.perf_counter()
    status, checkout = await client.call(
        "order: place (PP)", "POST", "/api/v1/orders", pp, order_body(buyer, product, rng.randint(1, 3)),
        {"Idempotency-Key": uuid.uuid4().hex},
    )  # fmt: skip
    if status != 201:
        client.stats.outcomes["not placed"] += 1
        return
    order_id = checkout["orders"][0]["id"]
    if await wait_status(client, order_id, pp, {"reserved"}) != "reserved":
        client.stats.outcomes["not reserved"] += 1
        return
    for operation, path, token, body in (
        ("order: approve (PPK)", "approve", ppk, None),
        ("order: accept (penyedia)", "accept", seller, None),
        ("order: ship (penyedia)", "ship", seller, {"tracking_note": "JNE 0123456789"}),
        ("order: receive, BAST (PPK)", "receive", ppk, None),
    ):
        status, _ = await client.call(
            operation, "POST", f"/api/v1/orders/{order_id}/{path}", token, body, draining=True
        )
        if status != 200:
            client.stats.outcomes[f"stopped at {path}"] += 1
            return
    payment = None
    deadline = time.monotonic() + STEP_WITHIN
    while payment is None and time.monotonic() < deadline:
        status, found = await client.call(
            "payment: find VA (bendahara)", "GET", f"/api/v1/payments?order_id={order_id}",
            buyer.bendahara(tokens), draining=True,
        )  # fmt: skip
        items = found.get("items", []) if status == 200 and found else []
        if items and items[0].get("va_number"):
            payment = items[0]
        else:
            await asyncio.sleep(POLL)
    if payment is None:
        client.stats.outcomes["no invoice"] += 1
        return
    admin = tokens.get("admin", "biro-pbj", "35")
    status, paid = await client.call(
        "payment: sandbox bank pays (signed SNAP callback)", "POST", f"/api/v1/sandbox/va/{payment['va_number']}/pay",
        admin, {"amount": payment["invoice"]["total"]}, draining=True,
    )  # fmt: skip
    if status != 200 or (paid or {}).get("http_status") != 200:
        client.stats.outcomes["payment refused"] += 1
        client.stats.errors[("payment: SNAP callback answer", str((paid or {}).get("response", {})))[:80]] += 1
        return
    end = await wait_status(client, order_id, pp, {"completed"})
    client.stats.outcomes[end] += 1
    if end == "completed":
        client.stats.sagas.append(time.perf_counter() - started)


async def buyer_loop(client: Client, tokens: Tokens, market: Market, buyers: list[Buyer], rng: random.Random) -> None:
    while client.budget.open():
        try:
            await checkout_saga(client, tokens, market, rng.choice(buyers), rng)
        except Stopped:
            return


async def flash_sale(client: Client, tokens: Tokens, market: Market, buyers: list[Buyer], at: float) -> dict[str, Any]:
    await asyncio.sleep(at)
    client.stats.flash_at = time.monotonic() - client.budget.started
    rush = buyers[: max(1, len(buyers))]

    async def grab(buyer: Buyer) -> str | None:
        try:
            status, checkout = await client.call(
                "flash sale: place (PP)", "POST", "/api/v1/orders", buyer.pp(tokens),
                order_body(buyer, market.flash, 1), {"Idempotency-Key": uuid.uuid4().hex},
            )  # fmt: skip
        except Stopped:
            return None
        return str(checkout["orders"][0]["id"]) if status == 201 else None

    placed = [o for o in await asyncio.gather(*(grab(b) for b in rush)) if o]
    outcomes: Counter[str] = Counter()
    viewer = tokens.get("auditor", "bpk-jatim", "35")
    for order_id in placed:
        outcomes[await wait_status(client, order_id, viewer, {"reserved"})] += 1
    status, product = await client.call("setup", "GET", f"/api/v1/products/{market.flash.id}", setup=True)
    stock = product.get("stock") if status == 200 and product else None
    oversold = max(0, outcomes.get("reserved", 0) - market.flash_stock) + max(0, -(stock or 0))
    return {"rush": len(rush), "placed": len(placed), "stock": market.flash_stock, "outcomes": dict(outcomes),
            "stock_left": stock, "oversold": oversold}  # fmt: skip


async def sample_queues(
    http: aiohttp.ClientSession, stats: Stats, stop: asyncio.Event, started: float, namespace: str
) -> None:
    """Each second, the depth of the platform's queues: those of `namespace` (named without it), or
    with no namespace every queue but the benchmarks' own."""
    auth = {"Authorization": "Basic " + base64.b64encode(RABBIT_USER.encode()).decode()}
    while not stop.is_set():
        try:
            async with http.get(RABBIT_API + "?columns=name,messages", headers=auth) as answer:
                queues = await answer.json()
            depths = {
                q["name"].removeprefix(namespace): int(q.get("messages") or 0)
                for q in queues
                if (q["name"].startswith(namespace) if namespace else not q["name"].startswith(("bench", "hb")))
            }
            stats.depths.append((time.monotonic() - started, depths))
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
            pass
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


# -- the report --------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def plot(stats: Stats, path: Path) -> bool:
    if not stats.depths:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peak: Counter[str] = Counter()
    for _, depths in stats.depths:
        for name, depth in depths.items():
            peak[name] = max(peak[name], depth)
    shown = [name for name, top in peak.most_common(8) if top > 0] or [n for n, _ in peak.most_common(4)]
    figure, axes = plt.subplots(figsize=(9, 4.5), dpi=100)
    times = [t for t, _ in stats.depths]
    for name in shown:
        axes.plot(times, [d.get(name, 0) for _, d in stats.depths], label=name, linewidth=1.4)
    axes.plot(times, [sum(d.values()) for _, d in stats.depths], label="all queues", color="black", linestyle="--")
    if stats.flash_at is not None:
        axes.axvline(stats.flash_at, color="red", linestyle=":", label="flash sale")
    axes.set_xlabel("seconds since the start of the load")
    axes.set_ylabel("messages waiting")
    # RabbitMQ's management API refreshes its counts every 5 s by default: hence the steps.
    axes.set_title("Harbolnas scenario: queue depths (RabbitMQ management API, sampled each second)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return True


def summarise(stats: Stats, seconds: float, flash: dict[str, Any], plot_path: Path | None) -> list[str]:
    lines = [f"load: {stats.requests} requests in {seconds:.0f} s = {stats.requests / seconds:.0f} req/s"]
    lines.append(f"  {'operation':<50} {'n':>6} {'per s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for operation in sorted(stats.latencies):
        values = stats.latencies[operation]
        lines.append(
            f"  {operation:<50} {len(values):>6} {len(values) / seconds:>7.1f} {pct(values, 0.5):>8.1f} "
            f"{pct(values, 0.95):>8.1f} {pct(values, 0.99):>8.1f}"
        )
    if stats.sagas:
        lines.append(
            f"saga placed -> completed: {len(stats.sagas)} orders, p50 {statistics.median(stats.sagas):.1f} s, "
            f"p95 {pct(stats.sagas, 0.95) / 1000:.1f} s, p99 {pct(stats.sagas, 0.99) / 1000:.1f} s "
            f"(polled every {POLL} s)"
        )
    lines.append(f"saga outcomes: {dict(stats.outcomes)}")
    lines.append(
        f"flash sale: {flash.get('rush')} PPs rushed {flash.get('placed')} orders for a stock of "
        f"{flash.get('stock', '?')}: {flash.get('outcomes')}, stock left {flash.get('stock_left')}, "
        f"oversold {flash.get('oversold')}"
    )
    errors = ", ".join(f"{op}: {kind} x{n}" for (op, kind), n in stats.errors.most_common(12)) or "none"
    lines.append(f"errors by kind: {errors}")
    if stats.depths:
        peak = max(sum(d.values()) for _, d in stats.depths)
        lines.append(f"queue depth: peak {peak} messages in all queues; plot {plot_path}")
    return lines


# -- running -----------------------------------------------------------------------------------------


Outcome = tuple[list[str], Stats, dict[str, Any]]


async def scenario(base: str, seconds: float, max_requests: int, browsers: int, shoppers: int, flash_stock: int,
                   plot_path: Path | None, seed: int = 1212, namespace: str = "") -> Outcome:  # fmt: skip
    rng = random.Random(seed)
    tag = uuid.uuid4().hex[:6]
    stats = Stats()
    tokens = Tokens()
    buyers = [
        Buyer(pemda, f"{kind}-{pemda.replace('.', '')}-{tag}") for pemda in REGIONS for kind in ("dinkes", "disdik")
    ]
    connector = aiohttp.TCPConnector(limit=browsers + shoppers + len(buyers) + 8)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        setup_budget = Budget(3600, 10**9)
        market = await open_market(Client(base, http, stats, setup_budget), tokens, tag, flash_stock)
        print(f"market open: {len(market.products)} products + the flash product; {len(buyers)} satkers in "
              f"{len(REGIONS)} regencies/cities", flush=True)  # fmt: skip
        budget = Budget(seconds, max_requests)
        budget.drain_until = budget.deadline + STEP_WITHIN  # sagas in flight may finish, then stop
        client = Client(base, http, stats, budget)
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_queues(http, stats, stop, budget.started, namespace))
        flash_task = asyncio.create_task(flash_sale(client, tokens, market, buyers, seconds / 3))
        actors = [browser(client, market, random.Random(rng.random()), n) for n in range(browsers)]
        actors += [buyer_loop(client, tokens, market, buyers, random.Random(rng.random())) for _ in range(shoppers)]
        await asyncio.gather(*actors)
        flash = await flash_task
        elapsed = time.monotonic() - budget.started
        await asyncio.sleep(2)  # the last events drain: the plot shows the queues empty again
        stop.set()
        await sampler
    stats.requests = budget.sent
    plotted = plot_path is not None and plot(stats, plot_path)
    return summarise(stats, elapsed, flash, plot_path if plotted else None), stats, flash


SERVICES = ("catalog", "orders", "payments", "notifications")


def start_platform(tag: str) -> subprocess.Popen[bytes]:
    """`make run`'s script in a session of its own (stopped as a group), its output to a log file,
    with empty databases and a bus namespace of its own (so it starts at once and leaves nothing)."""
    log = (REPO / ".state" / "bench" / "harbolnas-run.log").open("ab")
    env = {**os.environ, "BUS_NAMESPACE": f"hb{tag}.", "BUS_QUEUE_EXPIRES_MS": "300000"}
    # The load generator stands in for the ingress: it names each simulated shopper's address.
    env["GATEWAY_TRUSTED_PROXIES"] = '["127.0.0.1/32"]'

    env |= {f"{name.upper()}_MONGODB_DATABASE": f"bench_hb{tag}_{name}" for name in SERVICES}
    return subprocess.Popen(["scripts/run.sh"], cwd=REPO, env=env, stdout=log, stderr=log, start_new_session=True)


async def drop_platform_databases(tag: str) -> None:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")
    )
    try:
        for name in SERVICES:
            await client.drop_database(f"bench_hb{tag}_{name}")
    finally:
        await client.close()


def gateway_ready(base: str) -> bool:
    """Every upstream answers (the gateway alone says `degraded` while a service still starts)."""
    import urllib.request

    try:
        with urllib.request.urlopen(base + "/readyz", timeout=5) as answer:
            return bool(orjson.loads(answer.read()).get("status") == "ready")
    except (OSError, ValueError):
        return False


async def run() -> None:
    """Row 8 of `make bench`: against a running `make run`, or one started here and stopped after."""
    base = loopback_only(os.environ.get("BENCH_GATEWAY", "http://127.0.0.1:8080"))
    seconds = float(os.environ.get("BENCH_LOAD_SECONDS", "60"))
    started_here: subprocess.Popen[bytes] | None = None
    tag = uuid.uuid4().hex[:6]
    namespace = ""
    if not await asyncio.to_thread(gateway_ready, base):
        print("no platform answers at", base, "- starting scripts/run.sh (make run) for the scenario")
        started_here = await asyncio.to_thread(start_platform, tag)
        namespace = f"hb{tag}."
        deadline = time.monotonic() + 90
        while not await asyncio.to_thread(gateway_ready, base):
            if started_here.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("make run did not become ready; see .state/bench/harbolnas-run.log")
            await asyncio.sleep(1)
    try:
        plot_path = REPO / "docs" / "benchmarks-harbolnas-queues.png"
        lines, stats, flash = await scenario(base, seconds, 40_000, 24, 12, 20, plot_path, namespace=namespace)
    finally:
        if started_here is not None:
            os.killpg(started_here.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.to_thread(started_here.wait), 60)
            except TimeoutError:
                os.killpg(started_here.pid, signal.SIGKILL)
            await drop_platform_databases(tag)
    for line in lines:
        print(line)
    elapsed = max(seconds, 1.0)
    browse = sum(len(v) for k, v in stats.latencies.items() if k.startswith("browse"))
    record("8", "Harbolnas: requests through the gateway", f"{stats.requests / elapsed:.0f} req/s",
           note=f"{stats.requests} in {seconds:.0f} s; {browse} anonymous browsing")  # fmt: skip
    search = stats.latencies.get("browse: search", [])
    if search:
        figure = f"{pct(search, 0.5):.0f} / {pct(search, 0.95):.0f} / {pct(search, 0.99):.0f} ms"
        record("8", "Harbolnas: search p50 / p95 / p99", figure)
    place = stats.latencies.get("order: place (PP)", [])
    if place:
        figure = f"{pct(place, 0.5):.0f} / {pct(place, 0.95):.0f} / {pct(place, 0.99):.0f} ms"
        record("8", "Harbolnas: place order p50 / p95 / p99", figure)
    if stats.sagas:
        record("8", "Harbolnas: saga placed -> completed p50 / p95",
               f"{statistics.median(stats.sagas):.1f} / {pct(stats.sagas, .95) / 1000:.1f} s",
               note=f"{len(stats.sagas)} orders completed")  # fmt: skip
    record("8", "Harbolnas: flash sale oversell", f"{flash.get('oversold')}",
           note=f"{flash.get('placed')} orders for {20} units: {flash.get('outcomes')}",
           goal="0", met=flash.get("oversold") == 0)  # fmt: skip
    errors = sum(n for (op, kind), n in stats.errors.items() if not kind.startswith("4"))
    record("8", "Harbolnas: server errors and failed connections", str(errors))
    if plot_path.exists():
        REPORT.artefacts.append(str(plot_path.relative_to(REPO)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.harbolnas", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", default="http://127.0.0.1:8080", help="loopback only")
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration (sagas in flight then finish)")
    parser.add_argument("--max-requests", type=int, default=40_000, help="stop after this many requests")
    parser.add_argument("--browsers", type=int, default=24, help="concurrent anonymous browsers")
    parser.add_argument("--shoppers", type=int, default=12, help="concurrent checkout sagas")
    parser.add_argument("--flash-stock", type=int, default=20)
    parser.add_argument("--plot", default=str(REPO / ".state" / "load" / "harbolnas-queues.png"))
    parser.add_argument(
        "--namespace", default=os.environ.get("BUS_NAMESPACE", ""), help="the platform's BUS_NAMESPACE, for the plot"
    )
    args = parser.parse_args(argv)
    base = loopback_only(args.gateway)
    if not gateway_ready(base):
        print(f"nothing ready at {base}/readyz: start the platform first (make run)", file=sys.stderr)
        return 1
    import uvloop

    lines, _, _ = uvloop.run(scenario(base, args.seconds, args.max_requests, args.browsers, args.shoppers,
                                      args.flash_stock, Path(args.plot), namespace=args.namespace))  # fmt: skip
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
