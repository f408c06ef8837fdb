"""The order aggregate and its rules. Pure: no I/O, no clock (callers pass `now`).

- `RULES`: which action moves an order from which statuses to which status, and for which roles;
- `authorize` / `transition`: who may act on one order (object level) and the resulting order;
- `event_for`: the versioned contract event of a transition, carrying all the order's facts;
- caps, working-day approval deadline and BAST numbering.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bejo_contracts import orders as events
from bejo_contracts.common import Actor, PaymentMethod
from bejo_contracts.orders import OrderLine, OrderStatus
from bejo_kit.errors import Conflict, Forbidden, ValidationProblem

# Western Indonesia Time: a fixed UTC+7 with no daylight saving, so no tz database is needed.
WIB = timezone(timedelta(hours=7), "WIB")

Action = Literal[
    "reserve",
    "reject_stock",
    "reject_cap",
    "approve",
    "reject",
    "accept",
    "ship",
    "receive",
    "cancel",
    "expire",
    "invoice",
    "pay",
    "settle",
    "refund",
]
ActorRole = Literal["pp", "ppk", "bendahara", "penyedia", "admin", "auditor", "system"]

PRE_SHIPPING: frozenset[OrderStatus] = frozenset({"placed", "reserved", "approved", "accepted"})
TERMINAL: frozenset[OrderStatus] = frozenset({"completed", "rejected", "cancelled", "expired", "refunded"})
# A reservation made by the catalog is still held in these statuses (released on leaving them
# through reject/cancel/expire, made final on shipping).
HOLDS_STOCK: frozenset[OrderStatus] = frozenset({"reserved", "approved", "accepted"})


@dataclass(frozen=True)
class Rule:
    """An action is allowed when the actor's role maps to a set of statuses holding the order's status."""

    target: OrderStatus
    allowed: dict[str, frozenset[OrderStatus]]

    def sources(self) -> frozenset[OrderStatus]:
        return frozenset().union(*self.allowed.values())


def _only(role: str, *statuses: OrderStatus) -> dict[str, frozenset[OrderStatus]]:
    return {role: frozenset(statuses)}


RULES: dict[Action, Rule] = {
    # saga steps driven by the catalog's stock events
    "reserve": Rule("reserved", _only("system", "placed")),
    "reject_stock": Rule("rejected", _only("system", "placed")),
    "reject_cap": Rule("rejected", _only("system", "placed")),
    # the PPK signs the Surat Pesanan, or refuses it
    "approve": Rule("approved", _only("ppk", "reserved")),
    "reject": Rule("rejected", _only("ppk", "reserved")),
    # the provider's steps
    "accept": Rule("accepted", _only("penyedia", "approved")),
    "ship": Rule("shipped", _only("penyedia", "accepted")),
    # the PPK checks the goods: the BAST is issued
    "receive": Rule("received", _only("ppk", "shipped")),
    # Cancelling is possible until shipping. The buyer side (the PP who placed it, the order's PPK)
    # may cancel any time before shipping; the provider may decline only until it has accepted.
    "cancel": Rule(
        "cancelled",
        {
            "pp": PRE_SHIPPING,
            "ppk": PRE_SHIPPING,
            "penyedia": frozenset({"reserved", "approved"}),
        },
    ),
    "expire": Rule("expired", _only("system", "reserved")),
    # payments: events may overtake each other, so a later fact also covers the skipped step
    "invoice": Rule("payment_pending", _only("system", "received")),
    "pay": Rule("paid", _only("system", "received", "payment_pending")),
    "settle": Rule("completed", _only("system", "received", "payment_pending", "paid")),
    "refund": Rule("refunded", _only("system", "paid", "completed")),
}


class IllegalTransition(Conflict):
    code = "illegal_transition"


@dataclass(frozen=True)
class Caller:
    """Who acts: a token's principal, or the system (saga consumers, timers)."""

    sub: str
    role: ActorRole
    name: str | None = None
    pemda: str | None = None
    satker: str | None = None
    provider_id: str | None = None

    @property
    def actor(self) -> Actor:
        return Actor(sub=self.sub, role=self.role, name=self.name)


SYSTEM_CALLER = Caller(sub="system", role="system", name="bejo")


class HistoryEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    actor_sub: str = Field(description="the `sub` of the acting user, or `system`")
    role: str = Field(description="role of the actor when acting (`system` for saga events and timers)")
    name: str | None = Field(default=None, description="display name of the actor")
    at: datetime
    from_status: OrderStatus | None = Field(alias="from", serialization_alias="from")
    to_status: OrderStatus = Field(alias="to", serialization_alias="to")
    reason: str | None = None


class Order(BaseModel):
    """The aggregate as stored (extra storage fields such as `outbox` are ignored on load)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: str = Field(alias="_id")
    checkout_id: str
    pemda: str
    satker: str
    pp_id: str
    pp_name: str | None = None
    ppk_id: str
    provider_id: str
    provider_name: str
    provider_pkp: bool
    payment_method: PaymentMethod
    rup_code: str
    delivery_address: str
    lines: list[OrderLine]
    total: int
    status: OrderStatus
    version: int = 0
    created_at: datetime
    updated_at: datetime
    approval_due_at: datetime | None = None
    bast_number: str | None = None
    tracking_note: str | None = None
    payment_id: str | None = None
    paid_at: datetime | None = None
    reason: str | None = None
    rejected_by: Literal["ppk", "catalog", "cap"] | None = None
    refund_amount: int | None = None
    history: list[HistoryEntry] = Field(default_factory=list)
    inbox: list[str] = Field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


# -- object-level rules -------------------------------------------------------------------------


def can_see(order: Order, caller: Caller) -> bool:
    """Buyers see their satker's orders, a provider its own, admin/auditor their pemda and below."""
    if caller.role == "system":
        return True
    if caller.role in ("pp", "ppk", "bendahara"):
        return order.pemda == caller.pemda and order.satker == caller.satker
    if caller.role == "penyedia":
        return order.provider_id == caller.provider_id
    if caller.role in ("admin", "auditor") and caller.pemda is not None:
        return order.pemda == caller.pemda or order.pemda.startswith(caller.pemda + ".")
    return False


def authorize(order: Order, action: Action, caller: Caller) -> Rule:
    """The rule for `action` once the caller may take it on this order in its current status.

    Raises Forbidden (wrong person for this order) or IllegalTransition (wrong status)."""
    rule = RULES[action]
    if caller.role not in rule.allowed:
        raise Forbidden(f"role {caller.role!r} may not {action} an order", code="role_not_allowed", action=action)
    if caller.role == "ppk" and caller.sub != order.ppk_id:
        raise Forbidden("only the PPK named on the order may act on it", code="not_order_ppk")
    if caller.role == "ppk" and action == "approve" and caller.sub == order.pp_id:
        raise Forbidden(
            "separation of duties: the PPK approving cannot be the PP who placed the order",
            code="separation_of_duties",
        )
    if caller.role == "pp" and caller.sub != order.pp_id:
        raise Forbidden("only the PP who placed the order may cancel it", code="not_order_pp")
    if caller.role == "penyedia" and caller.provider_id != order.provider_id:
        raise Forbidden("the order belongs to another provider", code="not_order_provider")
    if order.status not in rule.allowed[caller.role]:
        raise IllegalTransition(
            f"cannot {action} an order that is {order.status}",
            current_status=order.status,
            action=action,
            allowed_from=sorted(rule.allowed[caller.role]),
        )
    return rule


def transition(
    order: Order,
    action: Action,
    caller: Caller,
    now: datetime,
    *,
    reason: str | None = None,
    changes: dict[str, Any] | None = None,
) -> Order:
    """The order after `action` (authorised here), with its history entry appended."""
    rule = authorize(order, action, caller)
    entry = HistoryEntry(
        actor_sub=caller.sub,
        role=caller.role,
        name=caller.name,
        at=now,
        **{"from": order.status, "to": rule.target},
        reason=reason,
    )
    return order.model_copy(
        update={
            **(changes or {}),
            "status": rule.target,
            "version": order.version + 1,
            "updated_at": now,
            "history": [*order.history, entry],
        }
    )


def placed_entry(caller: Caller, now: datetime) -> HistoryEntry:
    return HistoryEntry(
        actor_sub=caller.sub, role=caller.role, name=caller.name, at=now, **{"from": None, "to": "placed"}
    )


# -- events -------------------------------------------------------------------------------------

_EVENT_BY_STATUS: dict[OrderStatus, type[events.OrderEvent]] = {
    "placed": events.OrderPlaced,
    "reserved": events.OrderReserved,
    "approved": events.OrderApproved,
    "rejected": events.OrderRejected,
    "accepted": events.OrderAccepted,
    "shipped": events.OrderShipped,
    "received": events.OrderReceived,
    "payment_pending": events.OrderPaymentPending,
    "paid": events.OrderPaid,
    "completed": events.OrderCompleted,
    "cancelled": events.OrderCancelled,
    "expired": events.OrderExpired,
    "refunded": events.OrderRefunded,
}
_EXTRA_FIELDS: dict[OrderStatus, tuple[str, ...]] = {
    "reserved": ("approval_due_at",),
    "rejected": ("reason", "rejected_by"),
    "shipped": ("tracking_note",),
    "received": ("bast_number",),
    "payment_pending": ("payment_id",),
    "paid": ("payment_id",),
    "cancelled": ("reason",),
    "expired": ("reason",),
    "refunded": ("payment_id", "refund_amount"),
}


def event_for(order: Order) -> events.OrderEvent:
    """The event of the order's last transition (the last history entry)."""
    last = order.history[-1]
    model = _EVENT_BY_STATUS[order.status]
    extra = {name: getattr(order, name) for name in _EXTRA_FIELDS.get(order.status, ())}
    return model(
        order_id=order.id,
        checkout_id=order.checkout_id,
        pemda=order.pemda,
        satker=order.satker,
        pp_id=order.pp_id,
        pp_name=order.pp_name,
        ppk_id=order.ppk_id,
        provider_id=order.provider_id,
        provider_name=order.provider_name,
        provider_pkp=order.provider_pkp,
        payment_method=order.payment_method,
        rup_code=order.rup_code,
        delivery_address=order.delivery_address,
        lines=order.lines,
        total=order.total,
        from_status=last.from_status,
        status=order.status,
        actor=Actor(sub=last.actor_sub, role=last.role, name=last.name),  # type: ignore[arg-type]
        occurred_at=last.at,
        **extra,
    )


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
    return not regions or any(pemda == r or pemda.startswith(r + ".") for r in regions)


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
    """[start, end) in UTC for inclusive WIB calendar dates."""
    start = datetime.combine(day_from, time(0), WIB).astimezone(UTC) if day_from else None
    end = datetime.combine(day_to + timedelta(days=1), time(0), WIB).astimezone(UTC) if day_to else None
    return start, end


def period_of(at: datetime) -> str:
    return at.astimezone(WIB).strftime("%Y-%m")
