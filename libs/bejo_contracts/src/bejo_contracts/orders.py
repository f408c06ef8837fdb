"""Events published by the orders service: one type per lifecycle transition.

Every event carries the whole order's facts, so consumers (catalog, payments, notifications,
e-catalog sync) never call back to ask.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from .common import Actor, PaymentMethod
from .envelope import EventData
from .registry import event

OrderStatus = Literal[
    "placed",
    "reserved",
    "approved",
    "accepted",
    "shipped",
    "received",
    "payment_pending",
    "paid",
    "completed",
    "rejected",
    "cancelled",
    "expired",
    "refunded",
]


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    product_id: str
    name: str
    unit: str
    quantity: int
    unit_price: int  # estimated from the catalog snapshot when placed, snapshotted from the reservation after


class OrderEvent(EventData):
    order_id: str
    checkout_id: str
    pemda: str
    satker: str
    pp_id: str
    pp_name: str | None
    ppk_id: str
    provider_id: str
    provider_name: str
    provider_pkp: bool
    payment_method: PaymentMethod
    rup_code: str
    delivery_address: str
    lines: list[OrderLine]
    total: int
    from_status: OrderStatus | None
    status: OrderStatus
    actor: Actor
    occurred_at: datetime

    def subject(self) -> str:
        return self.order_id

    def pemda_scope(self) -> str:
        return self.pemda


@event
class OrderPlaced(OrderEvent):
    TYPE = "bejo.orders.order.placed.v1"


@event
class OrderReserved(OrderEvent):
    TYPE = "bejo.orders.order.reserved.v1"
    approval_due_at: datetime


@event
class OrderApproved(OrderEvent):
    TYPE = "bejo.orders.order.approved.v1"


@event
class OrderRejected(OrderEvent):
    TYPE = "bejo.orders.order.rejected.v1"
    reason: str
    rejected_by: Literal["ppk", "catalog", "cap"]


@event
class OrderAccepted(OrderEvent):
    TYPE = "bejo.orders.order.accepted.v1"


@event
class OrderShipped(OrderEvent):
    TYPE = "bejo.orders.order.shipped.v1"
    tracking_note: str


@event
class OrderReceived(OrderEvent):
    """Goods received and checked by the PPK: the BAST is issued. Payments invoices from this."""

    TYPE = "bejo.orders.order.received.v1"
    bast_number: str


@event
class OrderPaymentPending(OrderEvent):
    TYPE = "bejo.orders.order.payment_pending.v1"
    payment_id: str


@event
class OrderPaid(OrderEvent):
    TYPE = "bejo.orders.order.paid.v1"
    payment_id: str


@event
class OrderCompleted(OrderEvent):
    TYPE = "bejo.orders.order.completed.v1"


@event
class OrderCancelled(OrderEvent):
    TYPE = "bejo.orders.order.cancelled.v1"
    reason: str


@event
class OrderExpired(OrderEvent):
    TYPE = "bejo.orders.order.expired.v1"
    reason: str


@event
class OrderRefunded(OrderEvent):
    TYPE = "bejo.orders.order.refunded.v1"
    payment_id: str
    refund_amount: int
