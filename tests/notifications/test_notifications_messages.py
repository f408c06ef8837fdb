"""The Indonesian catalogue of codes and reasons, and its use in rendered messages."""

from __future__ import annotations

from typing import get_args

import pytest
from notifications_samples import PLACED_AT, sample_events

from bejo_contracts import messages
from bejo_contracts.catalog import ProviderStatus, RejectionCode
from bejo_contracts.common import PaymentMethod
from bejo_contracts.orders import OrderStatus
from bejo_notifications.templates import Renderer
from bejo_payments.domain import PaymentStatus as PaymentsServiceStatus


def test_every_status_literal_has_an_indonesian_entry() -> None:
    assert set(messages.ORDER_STATUS) == set(get_args(OrderStatus))
    assert set(messages.PAYMENT_STATUS) == set(get_args(messages.PaymentStatus))
    assert set(get_args(messages.PaymentStatus)) == set(get_args(PaymentsServiceStatus))
    assert set(messages.PROVIDER_STATUS) == set(get_args(ProviderStatus))
    assert set(messages.PAYMENT_METHOD) == set(get_args(PaymentMethod))
    assert set(get_args(RejectionCode)) <= set(messages.REASONS)
    assert {"not_orderable", "cap_exceeded", "approval_deadline_passed"} <= set(messages.REASONS)


@pytest.mark.parametrize(
    ("reason", "text"),
    [
        ("prd-1: out_of_stock (3 rim left, 20 requested)", "prd-1: stok tidak mencukupi"),
        (
            "prd-1: inactive (the product is no longer offered); prd-2: below_min_qty (order at least 5 rim)",
            "prd-1: produk sudah tidak ditawarkan; prd-2: jumlah di bawah pemesanan minimum",
        ),
        ("stock rejected", "stok tidak dapat dicadangkan"),
        ("the PPK did not act before the approval deadline", messages.REASONS["approval_deadline_passed"]),
        ("approval deadline passed", messages.REASONS["approval_deadline_passed"]),
        (
            "order total Rp 60.000.000 for provider prv-1 exceeds the KKPD per-supplier cap of Rp 50.000.000",
            "total pesanan Rp 60.000.000 untuk penyedia prv-1 melebihi batas KKPD per penyedia sebesar Rp 50.000.000",
        ),
        ("cap_exceeded", "total pesanan melebihi batas metode pembayaran"),
        ("anggaran dialihkan", "anggaran dialihkan"),  # a person's own words stay as written
    ],
)
def test_reasons_read_in_indonesian(reason: str, text: str) -> None:
    assert messages.reason_text(reason) == text


def test_unknown_codes_still_get_a_phrase() -> None:
    assert messages.reason_text("brand_new_code") == "alasan lain (kode brand_new_code)"
    assert messages.reason_text("prd-1: brand_new_code (whatever)") == "prd-1: alasan lain (kode brand_new_code)"


def test_rejection_mail_shows_the_indonesian_reason_not_the_code() -> None:
    rejected = next(e for e in sample_events() if e.TYPE == "bejo.orders.order.rejected.v1")
    data = {**rejected.model_dump(mode="json"), "reason": "prd-1: out_of_stock (not enough stock left)"}
    message = Renderer().render(
        "order_rejected", "id", data, event_type=rejected.TYPE, event_time=PLACED_AT, recipient_role="pp"
    )
    assert "Alasan: prd-1: stok tidak mencukupi" in message.summary
    assert "out_of_stock" not in message.text
    assert "out_of_stock" not in message.html
    english = Renderer().render(
        "order_rejected", "en", data, event_type=rejected.TYPE, event_time=PLACED_AT, recipient_role="pp"
    )
    assert "out_of_stock" in english.summary  # the English templates keep the services' own wording
