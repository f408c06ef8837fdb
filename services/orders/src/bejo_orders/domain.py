"""The order aggregate and its rules. Pure: no I/O, no clock (callers pass `now`).

- `RULES`: which action moves an order from which statuses to which status, and for which roles;
- `authorize` / `transition`: who may act on one order (object level) and the resulting order;
- `event_for`: the versioned contract event of a transition, carrying all the order's facts;
- caps, cart splitting, the approval deadline, BAST numbers and WIB dates: `rules`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bejo_contracts import orders as events
from bejo_contracts.common import Actor, PaymentMethod, Role
from bejo_contracts.errors import IllegalTransition, NotPermitted
from bejo_contracts.orders import OrderLine, OrderStatus
from bejo_contracts.pemda import covers

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
ActorRole = Role | Literal["system"]

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
    role: ActorRole = Field(description="role of the actor when acting (`system` for saga events and timers)")
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
    # the satker's display name given at checkout (published in OCDS); the code when absent
    satker_name: str | None = None
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
    # what the buyer actually paid (the invoice total, PPN included), from the payment event
    paid_amount: int | None = None
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
        return covers(caller.pemda, order.pemda)
    return False


def authorize(order: Order, action: Action, caller: Caller) -> Rule:
    """The rule for `action` once the caller may take it on this order in its current status.

    Raises NotPermitted (wrong person for this order) or IllegalTransition (wrong status)."""
    rule = RULES[action]
    if caller.role not in rule.allowed:
        raise NotPermitted(f"role {caller.role!r} may not {action} an order", code="role_not_allowed", action=action)
    if caller.role == "ppk" and caller.sub != order.ppk_id:
        raise NotPermitted("only the PPK named on the order may act on it", code="not_order_ppk")
    if caller.role == "ppk" and action == "approve" and caller.sub == order.pp_id:
        raise NotPermitted(
            "separation of duties: the PPK approving cannot be the PP who placed the order",
            code="separation_of_duties",
        )
    if caller.role == "pp" and caller.sub != order.pp_id:
        raise NotPermitted("only the PP who placed the order may cancel it", code="not_order_pp")
    if caller.role == "penyedia" and caller.provider_id != order.provider_id:
        raise NotPermitted("the order belongs to another provider", code="not_order_provider")
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
        actor=Actor(sub=last.actor_sub, role=last.role, name=last.name),
        occurred_at=last.at,
        **extra,
    )
