"""Events published by the payments service."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from .common import Actor, PaymentMethod
from .envelope import EventData
from .registry import event


class InvoiceFigures(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    number: str
    base: int
    ppn: int
    pph22: int
    total: int  # what the buyer pays: base + ppn
    net_to_provider: int  # base - pph22


class PaymentEvent(EventData):
    payment_id: str
    order_id: str
    pemda: str
    satker: str
    provider_id: str
    provider_name: str
    method: PaymentMethod

    def subject(self) -> str:
        return self.payment_id

    def pemda_scope(self) -> str:
        return self.pemda


@event
class InvoiceIssued(PaymentEvent):
    TYPE = "bejo.payments.invoice.issued.v1"
    invoice: InvoiceFigures
    bast_number: str


@event
class VirtualAccountIssued(PaymentEvent):
    TYPE = "bejo.payments.va.issued.v1"
    va_number: str
    amount: int
    expires_at: datetime


@event
class VirtualAccountExpired(PaymentEvent):
    TYPE = "bejo.payments.va.expired.v1"
    va_number: str


@event
class PaymentSucceeded(PaymentEvent):
    TYPE = "bejo.payments.payment.succeeded.v1"
    amount: int
    paid_at: datetime
    reference: str  # the bank's reference (SNAP external id) or the card authorisation


@event
class SettlementCompleted(PaymentEvent):
    TYPE = "bejo.payments.settlement.completed.v1"
    net_to_provider: int
    ppn: int
    pph22: int


@event
class RefundCompleted(PaymentEvent):
    TYPE = "bejo.payments.refund.completed.v1"
    amount: int
    reason: str
    actor: Actor
