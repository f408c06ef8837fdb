"""The one catalogue of words people read: stable codes (statuses, rejection codes, reasons the
services write into events) in Bahasa Indonesia.

Events keep their English codes and reasons (they are contracts); only what a person reads is
translated, here, so every service words a status or a reason the same way.
"""

from __future__ import annotations

import re
from typing import Literal

from .catalog import ProviderStatus, RejectionCode
from .common import PaymentMethod
from .orders import OrderStatus

# The payments service's own status field (not in any event); kept equal to it by a test.
PaymentStatus = Literal["awaiting_payment", "va_expired", "paid", "settled", "refunded", "cancelled"]

ORDER_STATUS: dict[OrderStatus, str] = {
    "placed": "dibuat",
    "reserved": "menunggu persetujuan PPK",
    "approved": "disetujui",
    "accepted": "diterima penyedia",
    "shipped": "dikirim",
    "received": "diterima (BAST terbit)",
    "payment_pending": "menunggu pembayaran",
    "paid": "dibayar",
    "completed": "selesai",
    "rejected": "ditolak",
    "cancelled": "dibatalkan",
    "expired": "kedaluwarsa",
    "refunded": "dananya dikembalikan",
}

PAYMENT_STATUS: dict[PaymentStatus, str] = {
    "awaiting_payment": "menunggu pembayaran",
    "va_expired": "virtual account kedaluwarsa",
    "paid": "dibayar",
    "settled": "dana diteruskan ke penyedia",
    "refunded": "dana dikembalikan",
    "cancelled": "dibatalkan",
}

PAYMENT_METHOD: dict[PaymentMethod, str] = {"va": "Virtual account", "kkpd": "KKPD"}

PROVIDER_STATUS: dict[ProviderStatus, str] = {
    "pending": "menunggu verifikasi",
    "verified": "terverifikasi",
    "suspended": "dibekukan",
}

_STOCK_REJECTIONS: dict[RejectionCode, str] = {
    "not_found": "produk tidak ditemukan pada penyedia ini",
    "out_of_stock": "stok tidak mencukupi",
    "inactive": "produk sudah tidak ditawarkan",
    "provider_suspended": "akun penyedia dibekukan",
    "provider_not_verified": "penyedia belum terverifikasi",
    "below_min_qty": "jumlah di bawah pemesanan minimum",
}

# Why an order was refused or ended: catalog rejection codes plus the orders service's own.
REASONS: dict[str, str] = {code: text for code, text in _STOCK_REJECTIONS.items()} | {
    "not_orderable": "produk tidak dapat dipesan saat ini",
    "cap_exceeded": "total pesanan melebihi batas metode pembayaran",
    "stock_rejected": "stok tidak dapat dicadangkan",
    "approval_deadline_passed": "PPK tidak bertindak sebelum batas waktu persetujuan",
}

_CAP_NAMES = {"virtual-account": "virtual account", "KKPD": "KKPD", "KKPD per-supplier": "KKPD per penyedia"}

# The English sentences the orders service writes into `reason` (see bejo_orders.transitions/rules).
_FIXED_SENTENCES = {
    "stock rejected": "stock_rejected",
    "approval deadline passed": "approval_deadline_passed",
    "the PPK did not act before the approval deadline": "approval_deadline_passed",
}
_STOCK_LINE = re.compile(r"^(?P<product>\S+): (?P<code>[a-z_]+) \(.*\)$")
_CAP = re.compile(
    r"^order total Rp (?P<total>[\d.]+) for provider (?P<provider>\S+) "
    r"exceeds the (?P<cap>.+) cap of Rp (?P<limit>[\d.]+)$"
)
_CODE = re.compile(r"^[a-z]+(?:_[a-z]+)+$")


def phrase(code: str) -> str:
    """A code in words; an unknown code still gets a readable phrase around it."""
    return REASONS.get(code) or f"alasan lain (kode {code})"


def reason_text(reason: str) -> str:
    """A reason from an event as an Indonesian sentence part. Known system reasons are translated;
    free text a person typed (a PPK's rejection, a refund note) is theirs and is kept as written."""
    text = reason.strip()
    if text in _FIXED_SENTENCES:
        return phrase(_FIXED_SENTENCES[text])
    if text in REASONS or _CODE.fullmatch(text):
        return phrase(text)
    if cap := _CAP.fullmatch(text):
        name = _CAP_NAMES.get(cap["cap"], cap["cap"])
        return (
            f"total pesanan Rp {cap['total']} untuk penyedia {cap['provider']} melebihi "
            f"batas {name} sebesar Rp {cap['limit']}"
        )
    parts = text.split("; ")
    lines = [_STOCK_LINE.fullmatch(part) for part in parts]
    if parts and all(lines):
        return "; ".join(f"{m['product']}: {phrase(m['code'])}" for m in lines if m)
    return reason
