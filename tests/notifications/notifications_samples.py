"""Real contract events for the notifications tests (built from bejo_contracts models)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bejo_contracts import SYSTEM, Actor, Envelope, EventData
from bejo_contracts import catalog as cat
from bejo_contracts import notifications as notif
from bejo_contracts import orders as ords
from bejo_contracts import payments as pay

# 27 November 2026 14:05 WIB
PLACED_AT = datetime(2026, 11, 27, 7, 5, tzinfo=UTC)


def order_fields(suffix: str = "1", **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "order_id": f"ORD-{suffix}",
        "checkout_id": f"CHK-{suffix}",
        "pemda": "35.15",
        "satker": "35.15.dinkes",
        "pp_id": f"pp-{suffix}",
        "pp_name": "Siti Rahayu",
        "ppk_id": f"ppk-{suffix}",
        "provider_id": f"prov-{suffix}",
        "provider_name": "CV Maju Jaya",
        "provider_pkp": True,
        "payment_method": "va",
        "rup_code": "RUP-2026-0042",
        "delivery_address": "Jl. Raya Sidoarjo 1",
        "lines": [
            ords.OrderLine(product_id="p-kertas", name="Kertas A4 80gsm", unit="rim", quantity=20, unit_price=55_700),
            ords.OrderLine(product_id="p-tinta", name="Tinta printer", unit="botol", quantity=12, unit_price=125_000),
        ],
        "total": 2_614_000,
        "from_status": "placed",
        "status": "reserved",
        "actor": Actor(sub=f"pp-{suffix}", role="pp", name="Siti Rahayu"),
        "occurred_at": PLACED_AT,
    }
    fields.update(overrides)
    return fields


def payment_fields(suffix: str = "1") -> dict[str, Any]:
    return {
        "payment_id": f"PAY-{suffix}",
        "order_id": f"ORD-{suffix}",
        "pemda": "35.15",
        "satker": "35.15.dinkes",
        "provider_id": f"prov-{suffix}",
        "provider_name": "CV Maju Jaya",
        "method": "va",
    }


def provider_fields(suffix: str = "1", status: str = "verified") -> dict[str, Any]:
    return {
        "provider_id": f"prov-{suffix}",
        "name": "Maju Jaya",
        "legal_entity": "CV",
        "pemda_code": "35.15",
        "email": f"admin@maju-jaya-{suffix}.co.id",
        "pkp": True,
        "status": status,
        "actor": SYSTEM,
    }


def sample_events(suffix: str = "1") -> list[EventData]:
    """One event of every type the notifications service routes."""
    due = PLACED_AT + timedelta(days=3)
    invoice = pay.InvoiceFigures(
        number="INV-1", base=2_354_955, ppn=259_045, pph22=11_775, total=2_614_000, net_to_provider=2_343_180
    )
    return [
        ords.OrderPlaced(**order_fields(suffix, status="placed", from_status=None)),
        ords.OrderReserved(**order_fields(suffix), approval_due_at=due),
        ords.OrderApproved(**order_fields(suffix, status="approved")),
        ords.OrderRejected(**order_fields(suffix, status="rejected"), reason="anggaran tidak cukup", rejected_by="ppk"),
        ords.OrderAccepted(**order_fields(suffix, status="accepted")),
        ords.OrderShipped(**order_fields(suffix, status="shipped"), tracking_note="JNE 1234"),
        ords.OrderReceived(**order_fields(suffix, status="received"), bast_number="BAST-77"),
        ords.OrderPaid(**order_fields(suffix, status="paid"), payment_id=f"PAY-{suffix}"),
        ords.OrderCancelled(**order_fields(suffix, status="cancelled"), reason="dibatalkan PP"),
        ords.OrderExpired(**order_fields(suffix, status="expired"), reason="PPK tidak bertindak dalam 3 hari kerja"),
        ords.OrderRefunded(
            **order_fields(suffix, status="refunded"), payment_id=f"PAY-{suffix}", refund_amount=2_614_000
        ),
        pay.InvoiceIssued(**payment_fields(suffix), invoice=invoice, bast_number="BAST-77"),
        pay.VirtualAccountIssued(**payment_fields(suffix), va_number="8808123456", amount=2_614_000, expires_at=due),
        pay.VirtualAccountExpired(**payment_fields(suffix), va_number="8808123456"),
        pay.PaymentSucceeded(**payment_fields(suffix), amount=2_614_000, paid_at=PLACED_AT, reference="SNAP-1"),
        pay.SettlementCompleted(**payment_fields(suffix), net_to_provider=2_343_180, ppn=259_045, pph22=11_775),
        pay.RefundCompleted(**payment_fields(suffix), amount=2_614_000, reason="barang rusak", actor=SYSTEM),
        cat.ProviderVerified(**provider_fields(suffix)),
        cat.ProviderSuspended(**provider_fields(suffix, "suspended"), reason="dokumen NIB kedaluwarsa"),
        notif.WebhookDisabled(
            webhook_id="wh-1",
            owner_sub=f"admin-{suffix}",
            owner_pemda="35.15",
            url="https://example.org/hook",
            consecutive_failures=15,
        ),
    ]


def envelope_of(data: EventData, time: datetime = PLACED_AT) -> Envelope:
    envelope = Envelope.wrap(data, source="bejo/test")
    return envelope.model_copy(update={"time": time})
