"""The plan of `bejo seed --history` (pure, repeatable from its random seed): which orders, on
which day, in which pemda and satker, from which product, for how much. `Plan.table()` is the
figures the public stats must show once the plan is driven through the platform (`history`)."""

from __future__ import annotations

import bisect
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from bejo_contracts.pemda import covers

ORDERS = 13_701
VALUE = 35_800_000_000  # rupiah
RANDOM_SEED = 20211212
# The KKPD card limit (Rp 50 juta) applies to the invoice, PPN included: orders paid by card stay
# at or under 45 juta before tax, so that a PKP provider's invoice (+11%) still fits.
KKPD_CAP = 45_000_000
VA_CAP = 200_000_000

# Share of the year's value each top-level category should take; food and drink leads, as in the
# program's report.
CATEGORY_SHARE = {
    "makanan-minuman": 42,
    "alat-tulis-kantor": 16,
    "komputer-elektronik": 10,
    "jasa": 8,
    "perlengkapan-kebersihan": 7,
    "perabot-kantor": 6,
    "kesehatan": 5,
    "kerajinan-batik": 4,
    "pertanian-peternakan": 2,
}
SATKERS = [
    ("setda", "Sekretariat Daerah"),
    ("dinkes", "Dinas Kesehatan"),
    ("dindik", "Dinas Pendidikan"),
    ("diskominfo", "Dinas Komunikasi dan Informatika"),
    ("bappeda", "Badan Perencanaan Pembangunan Daerah"),
    ("dpupr", "Dinas Pekerjaan Umum dan Penataan Ruang"),
    ("dinsos", "Dinas Sosial"),
    ("bpbd", "Badan Penanggulangan Bencana Daerah"),
    ("disperindag", "Dinas Perindustrian dan Perdagangan"),
    ("rsud", "Rumah Sakit Umum Daerah"),
]
# Working hours of the day (WIB) at which each step of that day's orders is taken.
STEPS_AT = {"place": 8, "approve": 10, "ship": 13, "receive": 15, "pay": 16}


def year_ending(today: date) -> tuple[date, date]:
    """The twelve months up to the last 30 November before `today` (the program reports per 30 Nov)."""
    end_year = today.year if today > date(today.year, 11, 30) else today.year - 1
    return date(end_year - 1, 12, 1), date(end_year, 11, 30)


def day_weight(day: date) -> float:
    """Relative number of orders on a day: working days, the December year-end rush, Harbolnas 12-12."""
    weight = 1.0 if day.weekday() < 5 else 0.12
    if day.month == 12:
        weight *= 1.5  # the budget year closes
        if day.day == 12:
            weight = 20.0  # Harbolnas: the program's promotion day
        elif 10 <= day.day <= 14:
            weight *= 2.5
    elif day.month == 1:
        weight *= 0.5  # budgets not yet released
    elif day.month == 11:
        weight *= 1.3
    return weight


# -- the catalog as the public feed shows it -------------------------------------------------------


@dataclass
class Product:
    id: str
    provider_id: str
    provider_name: str
    category: str
    price: int
    min_qty: int
    regions: tuple[str, ...]
    stock: int


def orderable_products(items: list[dict[str, Any]]) -> list[Product]:
    """The latest state of each product in feed items, kept if it can be ordered and is in stock."""
    latest: dict[str, dict[str, Any]] = {}
    for item in items:
        if item.get("kind") == "product":
            if item.get("op") == "delete":
                latest.pop(item["id"], None)
            elif item.get("document"):
                latest[item["id"]] = item["document"]
    return [
        Product(
            id=doc["id"],
            provider_id=doc["provider_id"],
            provider_name=doc["provider_name"],
            category=doc["category"],
            price=int(doc["price"]),
            min_qty=int(doc.get("min_order_qty", 1)),
            regions=tuple(doc.get("regions", ())),
            stock=int(doc.get("stock", 0)),
        )
        for doc in sorted(latest.values(), key=lambda d: d["id"])
        if doc.get("orderable")
        and int(doc.get("stock", 0)) >= int(doc.get("min_order_qty", 1))
        and not doc.get("promotions")  # a steady price: the planned value is the charged value
    ]


# -- the plan (pure) ---------------------------------------------------------------------------------


@dataclass
class PlannedOrder:
    number: int
    day: date
    pemda: str
    satker: str
    product: Product
    quantity: int
    method: str

    @property
    def value(self) -> int:
        return self.product.price * self.quantity


@dataclass
class Plan:
    orders: list[PlannedOrder]
    start: date
    end: date
    random_seed: int = RANDOM_SEED

    def by_day(self) -> Iterator[tuple[date, list[PlannedOrder]]]:
        days: dict[date, list[PlannedOrder]] = defaultdict(list)
        for order in self.orders:
            days[order.day].append(order)
        yield from sorted(days.items())

    def table(self) -> dict[str, Any]:
        """The figures the public stats must show once the plan has run."""
        pemda: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        period: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        category: dict[str, int] = defaultdict(int)
        for o in self.orders:
            for bucket in (pemda[o.pemda], period[o.day.strftime("%Y-%m")]):
                bucket[0] += 1
                bucket[1] += o.value
            category[o.product.category.split(".")[0]] += o.value
        return {
            "orders": len(self.orders),
            "transaction_value": sum(o.value for o in self.orders),
            "participating_pemda": sum(1 for code in pemda if "." in code),
            "by_pemda": {k: tuple(v) for k, v in sorted(pemda.items())},
            "by_period": {k: tuple(v) for k, v in sorted(period.items())},
            "by_category": dict(sorted(category.items(), key=lambda kv: -kv[1])),
        }


def make_plan(
    products: list[Product],
    pemdas: list[tuple[str, int]],
    *,
    orders: int,
    value: int,
    start: date,
    end: date,
    random_seed: int = RANDOM_SEED,
) -> Plan:
    """`orders` orders worth about `value` rupiah in all over the days start..end, each pemda's
    share by its weight. One product line per order (one provider per order, as checkout splits
    carts anyway); quantities within the stock the feed shows and the payment caps."""
    rng = random.Random(random_seed)
    days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    day_of = rng.choices(days, weights=[day_weight(d) for d in days], k=orders)
    # Every pemda takes part: the first len(pemdas) orders go one to each, the rest by weight.
    codes = [code for code, _ in pemdas]
    pemda_of = codes[:orders] + rng.choices(codes, weights=[w for _, w in pemdas], k=max(0, orders - len(codes)))
    # Each order's target value: a long tail (many small buys, a few large), scaled to sum to `value`.
    raw = [rng.lognormvariate(0, 1.1) for _ in range(orders)]
    targets = [value * r / sum(raw) for r in raw]
    stock = {p.id: p.stock for p in products}
    # Candidates per (category, pemda), cheapest first, so an affordable one is a bisection away.
    candidates: dict[tuple[str, str], list[Product]] = {}

    def pool(category: str | None, pemda: str) -> list[Product]:
        key = (category or "*", pemda)
        if key not in candidates:
            candidates[key] = sorted(
                (
                    p
                    for p in products
                    if (category is None or p.category.split(".")[0] == category) and _delivers(p, pemda)
                ),
                key=lambda p: (p.price * p.min_qty, p.id),
            )
        return candidates[key]

    present = {p.category.split(".")[0] for p in products}
    shares = [(c, w) for c, w in CATEGORY_SHARE.items() if c in present]
    planned: list[PlannedOrder] = []
    for number, (day, pemda, target) in enumerate(zip(sorted(day_of), pemda_of, targets, strict=True), start=1):
        category = rng.choices([c for c, _ in shares], weights=[w for _, w in shares])[0]
        product = _pick(rng, pool(category, pemda), target, stock) or _pick(rng, pool(None, pemda), target, stock)
        if product is None:
            raise ValueError(f"no product in stock can be delivered to pemda {pemda}")
        quantity = max(product.min_qty, min(stock[product.id], round(target / product.price)))
        method = "kkpd" if product.price * quantity <= KKPD_CAP and rng.random() < 0.55 else "va"
        quantity = min(quantity, (KKPD_CAP if method == "kkpd" else VA_CAP) // product.price)
        stock[product.id] -= quantity
        satker = rng.choice(SATKERS[: 4 + len(pemda) % 7])[0]
        planned.append(PlannedOrder(number, day, pemda, satker, product, quantity, method))
    _close_gap(planned, value, stock)
    return Plan(planned, start, end, random_seed)


def _pick(rng: random.Random, pool: list[Product], target: float, stock: dict[str, int]) -> Product | None:
    """A product of `pool` (cheapest first) whose smallest order fits the target, with stock left."""
    affordable = bisect.bisect_right(pool, target * 1.5, key=lambda p: p.price * p.min_qty) or len(pool)
    for _ in range(30):
        product = pool[rng.randrange(affordable)] if pool else None
        if product is not None and stock[product.id] >= product.min_qty:
            return product
    return next((p for p in pool if stock[p.id] >= p.min_qty), None)


def _delivers(product: Product, pemda: str) -> bool:
    return any(covers(region, pemda) for region in product.regions)


def _close_gap(planned: list[PlannedOrder], value: int, stock: dict[str, int]) -> None:
    """Rounding quantities moves the sum off `value`: change quantities, dearest unit first, until
    the sum is as close as the unit prices allow."""
    gap = value - sum(o.value for o in planned)
    for order in sorted(planned, key=lambda o: -o.product.price):
        price = order.product.price
        if abs(gap) < price:
            continue
        cap = KKPD_CAP if order.method == "kkpd" else VA_CAP
        step = min(int(gap / price), stock[order.product.id], (cap // price) - order.quantity)
        step = max(step, order.product.min_qty - order.quantity)
        order.quantity += step
        stock[order.product.id] -= step
        gap -= step * price
