"""Pure rules of placing and paying for orders: caps, cart splitting, the working-day approval
deadline, BAST numbering and WIB calendar dates. No I/O, no clock (callers pass `now`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from bejo_contracts.common import WIB, PaymentMethod
from bejo_contracts.orders import OrderLine
from bejo_contracts.pemda import covers
from bejo_kit.errors import ValidationProblem

# -- caps ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caps:
    """Value caps in rupiah (DOMAIN.md: toko daring Rp 50 juta per transaction, KKP Rp 50 juta per
    supplier per transaction, VA caps differ per bank: up to Rp 200 juta)."""

    va: int = 200_000_000
    kkpd: int = 50_000_000
    kkpd_per_supplier: int = 50_000_000


@dataclass(frozen=True)
class CapBreach:
    cap: Literal["va", "kkpd", "kkpd_per_supplier"]
    limit: int
    total: int
    provider_id: str

    def message(self) -> str:
        names = {"va": "virtual-account", "kkpd": "KKPD", "kkpd_per_supplier": "KKPD per-supplier"}
        return (
            f"order total Rp {self.total:,} for provider {self.provider_id} exceeds the "
            f"{names[self.cap]} cap of Rp {self.limit:,}"
        ).replace(",", ".")


def cap_breach(method: PaymentMethod, totals_by_provider: dict[str, int], caps: Caps) -> CapBreach | None:
    """The first cap a checkout breaks. One order per provider, so an order's total is both the
    transaction total for its method and the amount paid to that supplier."""
    for provider_id, total in sorted(totals_by_provider.items()):
        if method == "va" and total > caps.va:
            return CapBreach("va", caps.va, total, provider_id)
        if method == "kkpd" and total > caps.kkpd:
            return CapBreach("kkpd", caps.kkpd, total, provider_id)
        if method == "kkpd" and total > caps.kkpd_per_supplier:
            return CapBreach("kkpd_per_supplier", caps.kkpd_per_supplier, total, provider_id)
    return None


def order_total(lines: list[OrderLine]) -> int:
    return sum(line.unit_price * line.quantity for line in lines)


# -- approval deadline --------------------------------------------------------------------------


def add_working_days(start: datetime, days: int) -> datetime:
    """`start` plus `days` working days (Mon-Fri, counted in WIB), as UTC.

    A start on a weekend counts from Monday 00:00 WIB. Public holidays are not modelled.
    """
    if days < 0:
        raise ValueError("days must not be negative")
    local = start.astimezone(WIB)
    while local.weekday() >= 5:
        local = datetime.combine(local.date() + timedelta(days=1), time(0), WIB)
    remaining = days
    while remaining:
        local += timedelta(days=1)
        if local.weekday() < 5:
            remaining -= 1
    return local.astimezone(UTC)


def approval_due_at(reserved_at: datetime, *, working_days: int, timeout_seconds: float | None) -> datetime:
    """When an unapproved reservation expires: a fixed number of seconds if set (tests), else working days."""
    if timeout_seconds is not None:
        return reserved_at + timedelta(seconds=timeout_seconds)
    return add_working_days(reserved_at, working_days)


# -- BAST ---------------------------------------------------------------------------------------

BAST_DIGITS = 6


def bast_number(pemda: str, year: int, sequence: int) -> str:
    if not 1 <= sequence < 10**BAST_DIGITS:
        raise ValueError(f"BAST sequence out of range: {sequence}")
    return f"BAST/{pemda}/{year}/{sequence:0{BAST_DIGITS}d}"


def bast_year(now: datetime) -> int:
    return now.astimezone(WIB).year


# -- placing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductFacts:
    """What checkout needs to know about a product (from the local read model of the catalog)."""

    product_id: str
    provider_id: str
    provider_name: str
    provider_pkp: bool
    name: str
    unit: str
    unit_price: int
    min_order_qty: int
    regions: tuple[str, ...]
    orderable: bool


@dataclass(frozen=True)
class CartLine:
    product_id: str
    quantity: int


@dataclass
class ProviderCart:
    provider_id: str
    provider_name: str
    provider_pkp: bool
    lines: list[OrderLine] = field(default_factory=list)

    @property
    def total(self) -> int:
        return order_total(self.lines)


def in_region(regions: tuple[str, ...], pemda: str) -> bool:
    """No regions: sold everywhere. A region covers itself and the pemdas below it."""
    return not regions or any(covers(r, pemda) for r in regions)


def split_cart(cart: list[CartLine], products: dict[str, ProductFacts | None], buyer_pemda: str) -> list[ProviderCart]:
    """One cart per provider, in first-seen order; every bad line is named in one 422."""
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    carts: dict[str, ProviderCart] = {}
    for index, line in enumerate(cart):
        where = f"lines.{index}.product_id"
        product = products.get(line.product_id)
        if line.product_id in seen:
            errors.append({"field": where, "message": f"product {line.product_id} appears twice", "type": "duplicate"})
            continue
        seen.add(line.product_id)
        if product is None:
            errors.append({"field": where, "message": f"unknown product {line.product_id}", "type": "not_found"})
            continue
        if not product.orderable:
            errors.append(
                {"field": where, "message": f"product {line.product_id} cannot be ordered now", "type": "not_orderable"}
            )
            continue
        if not in_region(product.regions, buyer_pemda):
            errors.append(
                {"field": where, "message": f"product {line.product_id} is not sold in {buyer_pemda}", "type": "region"}
            )
            continue
        if line.quantity < product.min_order_qty:
            errors.append(
                {
                    "field": f"lines.{index}.quantity",
                    "message": f"minimum order quantity of {line.product_id} is {product.min_order_qty}",
                    "type": "below_min_qty",
                }
            )
            continue
        provider_cart = carts.setdefault(
            product.provider_id, ProviderCart(product.provider_id, product.provider_name, product.provider_pkp)
        )
        provider_cart.lines.append(
            OrderLine(
                product_id=product.product_id,
                name=product.name,
                unit=product.unit,
                quantity=line.quantity,
                unit_price=product.unit_price,
            )
        )
    if errors:
        raise ValidationProblem("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)
    return list(carts.values())


def wib_day_bounds(day_from: date | None, day_to: date | None) -> tuple[datetime | None, datetime | None]:
    """[start, end) in UTC for inclusive WIB calendar dates. The first and last representable days
    have no bound in UTC (0001-01-01 WIB starts in year 0, the day after 9999-12-31 does not exist):
    they leave that side open, which is what they mean."""
    start = datetime.combine(day_from, time(0), WIB).astimezone(UTC) if day_from and day_from > date.min else None
    end = (
        datetime.combine(day_to + timedelta(days=1), time(0), WIB).astimezone(UTC)
        if day_to and day_to < date.max
        else None
    )
    return start, end


def period_of(at: datetime) -> str:
    return at.astimezone(WIB).strftime("%Y-%m")
