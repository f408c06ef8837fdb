"""The load the faults are injected into: buyers of two regencies ordering from two providers,
through the gateway only, each order driven to its planned end as people would: the PP places
(with an Idempotency-Key), the PPK approves or rejects, the PP may cancel, the provider accepts and
ships, the PPK receives (BAST), the sandbox bank pays the virtual account with a signed SNAP
callback, and the order completes when payments settles.

Every step tolerates the faults: a connection error or 5xx is retried (a POST of the same checkout
with the same Idempotency-Key), and a step that did happen but whose answer was lost is recognised
by the order's status (409 `illegal_transition` naming a status at or past the step).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import support

SIDOARJO, MALANG = "35.15", "35.07"
HAPPY = ("placed", "reserved", "approved", "accepted", "shipped", "received", "payment_pending", "paid", "completed")
TERMINAL = frozenset({"completed", "rejected", "cancelled", "expired", "refunded"})
# States an order may rest in: each waits for a person (or the bank) to act, or for a parked message.
WAITING = frozenset({"reserved", "approved", "accepted", "shipped", "received", "payment_pending"})
# Answers worth retrying: no connection, the gateway or a service down or restarting, throttled.
TRANSIENT = frozenset({0, 429, 500, 502, 503, 504})
STEP_WITHIN = 150.0  # a step may wait out a broker restart and a 30 s settlement grace


class Gateway:
    """An HTTP client of the gateway that counts what failed, by status, for the report."""

    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base = base
        self.http = http
        self.failures: Counter[int] = Counter()

    async def call(
        self, method: str, path: str, token: str | None = None, json: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        sent = {**(headers or {}), **(support.bearer(token) if token else {})}
        try:
            async with self.http.request(
                method, self.base + path, json=json, headers=sent, timeout=aiohttp.ClientTimeout(total=30)
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.failures[0] += 1
            return 0, f"{type(exc).__name__}: {exc}"
        if status in TRANSIENT:
            self.failures[status] += 1
        try:
            return status, orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return status, raw.decode(errors="replace")

    async def until_ok(self, method: str, path: str, token: str | None = None, json: Any = None, **kw: Any) -> Any:
        """Retry through transient failures; anything else than 2xx fails the test."""
        deadline = time.monotonic() + STEP_WITHIN
        while True:
            status, body = await self.call(method, path, token, json, **kw)
            if 200 <= status < 300:
                return body
            if status not in TRANSIENT or time.monotonic() > deadline:
                raise AssertionError(f"{method} {path} -> {status}: {body}")
            await asyncio.sleep(0.3)


@dataclass(frozen=True)
class Buyer:
    """A satker: its PP, PPK and bendahara."""

    pemda: str
    satker: str
    pp_sub: str
    ppk_sub: str

    @property
    def pp(self) -> str:
        return str(support.token("pp", self.pp_sub, pemda=self.pemda, satker=self.satker, name=self.pp_sub))

    @property
    def ppk(self) -> str:
        return str(support.token("ppk", self.ppk_sub, pemda=self.pemda, satker=self.satker, name=self.ppk_sub))

    @property
    def bendahara(self) -> str:
        return str(support.token("bendahara", f"bdh-{self.satker}", pemda=self.pemda, satker=self.satker))


@dataclass(frozen=True)
class Seller:
    provider_id: str
    pemda: str

    @property
    def token(self) -> str:
        return str(
            support.token("penyedia", f"owner-{self.provider_id}", pemda=self.pemda, provider_id=self.provider_id)
        )


@dataclass(frozen=True)
class Product:
    id: str
    seller: Seller
    price: int
    initial_stock: int


BUYERS = (
    Buyer(SIDOARJO, "dinkes-sidoarjo", "pp-ani", "ppk-budi"),
    Buyer(SIDOARJO, "disdik-sidoarjo", "pp-dewi", "ppk-eko"),
    Buyer(MALANG, "dinkes-malang", "pp-fajar", "ppk-gita"),
)
SELLERS = (Seller("cv-sumber-rejeki", SIDOARJO), Seller("ud-tani-makmur", MALANG))
ADMIN = support.token("admin", "biro-pbj", pemda="35", name="Biro PBJ")
# Reads for the checks: the province's auditor sees every order and payment of its regencies.
AUDITOR = support.token("auditor", "bpk-jatim", pemda="35")


@dataclass
class Market:
    products: list[Product]

    @property
    def plentiful(self) -> list[Product]:
        return [p for p in self.products if p.initial_stock > 100]

    @property
    def scarce(self) -> list[Product]:
        return [p for p in self.products if p.initial_stock <= 100]


async def open_market(gw: Gateway) -> Market:
    """Two verified providers in two regencies, delivering province-wide; five products, one of them
    scarce (its stock runs out, so some orders are rejected by the catalog and cancellations give
    units back); the PPKs registered an e-mail address. Returns once the orders service knows every
    product."""
    for seller in SELLERS:
        await gw.until_ok(
            "POST",
            "/api/v1/providers",
            seller.token,
            {
                "name": f"{seller.provider_id.replace('-', ' ').title()}",
                "legal_entity": "CV",
                "nib": "1234567890123",
                "npwp": "01.234.567.8-901.000",
                "pkp": True,
                "pemda_code": seller.pemda,
                "address": "Jl. Raya Porong 1, Sidoarjo",
                "email": f"{seller.provider_id}@example.id",
                "phone": "+62315550100",
            },
        )
        await gw.until_ok("POST", f"/api/v1/providers/{seller.provider_id}/verify", ADMIN, {"reason": "lengkap"})
    categories = (await gw.until_ok("GET", "/api/v1/categories"))["items"]
    category = next(c["id"] for c in categories if c["parent_id"])
    listing = [
        (SELLERS[0], "Kopi Robusta Dampit 1kg", 95_000, 5_000),
        (SELLERS[0], "Masker Medis 50 pcs", 45_000, 5_000),
        (SELLERS[0], "Termometer Digital", 150_000, 12),
        (SELLERS[1], "Beras Premium 5kg", 80_000, 5_000),
        (SELLERS[1], "Kertas HVS A4 70gsm", 55_000, 5_000),
    ]
    products = []
    for seller, name, price, stock in listing:
        created = await gw.until_ok(
            "POST",
            "/api/v1/products",
            seller.token,
            {
                "name": name,
                "description": name,
                "category": category,
                "unit": "pak",
                "price": price,
                "het": price + 20_000,
                "stock": stock,
                "regions": ["35"],
            },
        )
        products.append(Product(created["id"], seller, price, stock))
    for buyer in BUYERS:
        await gw.until_ok("PUT", "/api/v1/notifications/contact", buyer.ppk, {"email": f"{buyer.ppk_sub}@example.id"})

    async def orders_knows(product: Product) -> bool:
        # A quantity far over the VA cap is refused as `cap_va` once orders knows the product.
        status, problem = await gw.call(
            "POST",
            "/api/v1/orders",
            BUYERS[0].pp,
            order_body([(product, 5_000)], BUYERS[0]),
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        return status == 422 and any(e.get("type") == "cap_va" for e in problem.get("errors", []))

    for product in products:
        await support.wait_until(lambda product=product: orders_knows(product), within=60, interval=0.3)
    return Market(products)


def order_body(lines: list[tuple[Product, int]], buyer: Buyer) -> dict[str, Any]:
    return {
        "lines": [{"product_id": p.id, "quantity": q} for p, q in lines],
        "delivery_address": f"Jl. Pahlawan 1, {buyer.satker}",
        "rup_code": f"RUP-{buyer.pemda}-2026-0001",
        "ppk_id": buyer.ppk_sub,
        "payment_method": "va",
    }


@dataclass(frozen=True)
class Plan:
    buyer: Buyer
    lines: list[tuple[Product, int]]
    intent: str  # complete | cancel (by the PP once reserved) | reject (by the PPK)


def make_plans(
    rng: random.Random, market: Market, count: int, *, buyers: tuple[Buyer, ...] = BUYERS, intents: bool = True
) -> list[Plan]:
    plans = []
    for _ in range(count):
        roll = rng.random()
        lines = [(rng.choice(market.plentiful), rng.randint(1, 3))]
        if roll < 0.15:
            lines.append((rng.choice(market.scarce), rng.randint(1, 2)))
        elif roll < 0.30:  # a cart over both providers: one checkout, two orders
            other = [p for p in market.plentiful if p.seller != lines[0][0].seller]
            lines.append((rng.choice(other), 1))
        intent = "complete"
        if intents:
            intent = rng.choices(("complete", "cancel", "reject"), weights=(70, 15, 15))[0]
        plans.append(Plan(rng.choice(buyers), lines, intent))
    return plans


@dataclass
class OrderRun:
    id: str
    buyer: Buyer
    provider_id: str
    intent: str
    phase: str
    final: str | None = None
    payment_id: str | None = None
    error: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def seller(self) -> Seller:
        return next(s for s in SELLERS if s.provider_id == self.provider_id)


def reached(current: str, target: str) -> bool:
    if current in HAPPY and target in HAPPY:
        return HAPPY.index(current) >= HAPPY.index(target)
    return current == target


class Driver:
    """Runs plans as checkouts, `concurrency` at a time, each order to its planned end."""

    def __init__(self, gw: Gateway, concurrency: int = 6) -> None:
        self.gw = gw
        self.concurrency = concurrency
        self.runs: list[OrderRun] = []
        self.checkouts = 0

    def in_flight(self, phase: str) -> list[OrderRun]:
        return [r for r in self.runs if r.phase == phase and not r.done.is_set()]

    def of_phase(self, phase: str) -> list[OrderRun]:
        return [r for r in self.runs if r.phase == phase]

    async def run(self, plans: list[Plan], phase: str, *, concurrency: int | None = None) -> None:
        gate = asyncio.Semaphore(concurrency or self.concurrency)

        async def one(plan: Plan) -> None:
            async with gate:
                await self._checkout(plan, phase)

        await asyncio.gather(*(one(plan) for plan in plans))

    async def _checkout(self, plan: Plan, phase: str) -> None:
        key = str(uuid.uuid4())  # the same key on every retry: one checkout, however often it is sent
        body = order_body(plan.lines, plan.buyer)
        checkout = await self.gw.until_ok(
            "POST", "/api/v1/orders", plan.buyer.pp, body, headers={"Idempotency-Key": key}
        )
        self.checkouts += 1
        runs = [OrderRun(o["id"], plan.buyer, o["provider_id"], plan.intent, phase) for o in checkout["orders"]]
        self.runs.extend(runs)
        await asyncio.gather(*(self._order(run) for run in runs))

    async def _order(self, run: OrderRun) -> None:
        try:
            status = await self.wait_status(run, lambda s: s != "placed")
            if status == "reserved":
                if run.intent == "cancel":
                    await self._act(run, "cancel", run.buyer.pp, {"reason": "anggaran dialihkan"}, "cancelled")
                elif run.intent == "reject":
                    await self._act(run, "reject", run.buyer.ppk, {"reason": "spesifikasi tidak sesuai"}, "rejected")
                else:
                    await self._act(run, "approve", run.buyer.ppk, None, "approved")
                    await self._act(run, "accept", run.seller.token, None, "accepted")
                    await self._act(run, "ship", run.seller.token, {"tracking_note": f"JNE {run.id}"}, "shipped")
                    await self._act(run, "receive", run.buyer.ppk, None, "received")
                    await self._pay(run)
                    await self.wait_status(run, lambda s: s == "completed")
            run.final = (await self.gw.until_ok("GET", f"/api/v1/orders/{run.id}", run.buyer.pp))["status"]
        except Exception as exc:  # noqa: BLE001 - reported per order by the checks
            run.error = f"{type(exc).__name__}: {exc}"
        finally:
            run.done.set()

    async def wait_status(self, run: OrderRun, wanted: Callable[[str], bool], within: float = STEP_WITHIN) -> str:
        deadline = time.monotonic() + within
        last: Any = None
        while True:
            status, body = await self.gw.call("GET", f"/api/v1/orders/{run.id}", run.buyer.pp)
            if status == 200:
                last = body["status"]
                if wanted(last):
                    return str(last)
            elif status not in TRANSIENT:
                raise AssertionError(f"GET order {run.id} -> {status}: {body}")
            if time.monotonic() > deadline:
                raise AssertionError(f"order {run.id} still {last!r} after {within}s")
            await asyncio.sleep(0.3)

    async def _act(self, run: OrderRun, action: str, token: str, body: Any, target: str) -> None:
        deadline = time.monotonic() + STEP_WITHIN
        while True:
            status, answer = await self.gw.call("POST", f"/api/v1/orders/{run.id}/{action}", token, body)
            if 200 <= status < 300:
                return
            code = answer.get("code") if isinstance(answer, dict) else None
            if status == 409 and code == "illegal_transition" and reached(str(answer.get("current_status")), target):
                return  # it happened; the answer was lost to the fault
            if status not in TRANSIENT and code != "concurrent_update":
                raise AssertionError(f"{action} {run.id} -> {status}: {answer}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{action} {run.id} still failing after {STEP_WITHIN}s: {status} {answer}")
            await asyncio.sleep(0.3)

    async def _pay(self, run: OrderRun) -> None:
        """The bendahara sees the invoice and its VA; the (sandbox) bank pays it, calling back signed."""

        async def payment() -> dict[str, Any] | None:
            status, body = await self.gw.call("GET", f"/api/v1/payments?order_id={run.id}", run.buyer.bendahara)
            if status == 200 and body["items"] and body["items"][0].get("va_number"):
                return dict(body["items"][0])
            return None

        pay = await support.wait_until(payment, within=STEP_WITHIN, interval=0.3)
        run.payment_id = pay["id"]
        deadline = time.monotonic() + STEP_WITHIN
        while True:
            status, answer = await self.gw.call(
                "POST", f"/api/v1/sandbox/va/{pay['va_number']}/pay", ADMIN, {"amount": pay["invoice"]["total"]}
            )
            code = (answer.get("response") or {}).get("responseCode") if status == 200 else None
            # 2002500 paid now; 4042514 paid already (an earlier attempt whose answer was lost).
            if code in ("2002500", "4042514"):
                return
            bank_status = answer.get("http_status") if status == 200 else None
            if status not in TRANSIENT and code is None and bank_status not in TRANSIENT:
                raise AssertionError(f"paying {pay['va_number']} -> {status}: {answer}")
            if code is not None and code not in ("2002500", "4042514") and bank_status not in TRANSIENT:
                raise AssertionError(f"the bank's callback for {run.id} was refused: {answer}")
            if time.monotonic() > deadline:
                raise AssertionError(f"paying {run.id} still failing after {STEP_WITHIN}s: {status} {answer}")
            await asyncio.sleep(0.3)
