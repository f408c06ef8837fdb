"""Request and response models of the HTTP API (also the stored shape of a checkout's response)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bejo_contracts.common import MAX_CART_LINES, PaymentMethod, PositiveQuantity
from bejo_contracts.orders import OrderLine, OrderStatus

from .domain import HistoryEntry, Order
from .ocds import Publication
from .redflags import Indicator, RedFlag


class CartLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: str = Field(min_length=1, max_length=100, examples=["prd_3f2a"])
    quantity: PositiveQuantity = Field(examples=[2])


class PlaceOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lines: list[CartLineIn] = Field(
        min_length=1, max_length=MAX_CART_LINES, description="products and quantities; may span several providers"
    )
    delivery_address: str = Field(min_length=5, max_length=500, examples=["Jl. Pahlawan 110, Surabaya"])
    rup_code: str = Field(min_length=3, max_length=64, description="Kode RUP", examples=["RUP-35.15-2026-0001"])
    ppk_id: str = Field(min_length=1, max_length=200, description="`sub` of the approving PPK's token")
    satker_name: str | None = Field(
        default=None,
        min_length=2,
        max_length=200,
        description="the buyer satker's name, as published (OCDS)",
        examples=["Dinas Kesehatan Kabupaten Sidoarjo"],
    )
    payment_method: PaymentMethod = Field(examples=["va"])


class OrderView(BaseModel):
    id: str
    checkout_id: str
    status: OrderStatus
    lines: list[OrderLine]
    total: int = Field(description="integer rupiah: estimated when placed, from the reservation afterwards")
    provider_id: str
    provider_name: str
    pemda: str
    satker: str
    satker_name: str | None = None
    pp_id: str
    ppk_id: str
    payment_method: PaymentMethod
    rup_code: str
    delivery_address: str
    bast_number: str | None = Field(description="null until received")
    approval_due_at: datetime | None
    tracking_note: str | None
    payment_id: str | None
    reason: str | None = Field(description="why it was rejected, cancelled or expired")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, order: Order) -> OrderView:
        return cls.model_validate(order.model_dump())


class CheckoutView(BaseModel):
    checkout_id: str
    orders: list[OrderView] = Field(description="one order per provider in the cart")


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=1000, examples=["anggaran dialihkan"])


class ShipIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tracking_note: str = Field(min_length=1, max_length=1000, examples=["JNE 0123456789"])


class OrderList(BaseModel):
    items: list[OrderView]
    next_cursor: str | None


class HistoryView(BaseModel):
    order_id: str
    items: list[HistoryEntry]


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: OrderStatus | None = None
    satker: str | None = Field(default=None, max_length=100)
    provider_id: str | None = Field(default=None, max_length=100)
    pemda: str | None = Field(default=None, max_length=50, description="admin/auditor: narrow to a pemda and below")
    from_: date | None = Field(default=None, alias="from", description="created on or after (ISO date, WIB)")
    to: date | None = Field(default=None, description="created on or before (ISO date, WIB)")
    cursor: str | None = None
    limit: int = Field(default=20, ge=1, le=100)


class StatsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pemda: str | None = Field(default=None, max_length=50, description="a pemda code; matches its children too")
    from_: date | None = Field(default=None, alias="from", description="paid on or after (ISO date, WIB)")
    to: date | None = Field(default=None, description="paid on or before (ISO date, WIB)")


class PemdaFigures(BaseModel):
    pemda: str
    orders: int
    transaction_value: int


class PeriodFigures(BaseModel):
    period: str = Field(examples=["2026-11"])
    orders: int
    transaction_value: int


class ProviderFigures(BaseModel):
    provider_id: str
    provider_name: str
    orders: int
    transaction_value: int


class CategoryFigures(BaseModel):
    category: str = Field(description="top-level category id of the catalog's tree", examples=["makanan-minuman"])
    orders: int = Field(description="orders with at least one line in the category")
    transaction_value: int = Field(description="sum of those lines (quantity x unit price), integer rupiah")


class Stats(BaseModel):
    orders: int = Field(description="orders that are paid or completed")
    transaction_value: int = Field(description="sum of their totals, integer rupiah")
    participating_pemda: int
    by_pemda: list[PemdaFigures]
    by_period: list[PeriodFigures]
    top_providers: list[ProviderFigures] = Field(description="the 10 providers with the most value, largest first")
    by_category: list[CategoryFigures] = Field(description="every top-level category sold, largest value first")


class OcdsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pemda: str | None = Field(default=None, max_length=50, description="a pemda code; matches its children too")
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=500, description="opaque, from `links.next`")


class OcdsPublisher(BaseModel):
    name: str
    uri: str | None = None


class OcdsLinks(BaseModel):
    next: str


class ReleasePackage(BaseModel):
    """An OCDS 1.1 release package; each release is one order's contracting process."""

    uri: str
    version: str = Field(examples=["1.1"])
    publishedDate: str
    publisher: OcdsPublisher
    license: str
    publicationPolicy: str
    releases: list[dict[str, Any]]
    links: OcdsLinks | None = None


class OcdsPolicy(BaseModel):
    """How bejo publishes its contracting data (OCDS `publicationPolicy`)."""

    publisher: str
    license: str
    ocid_prefix: str
    policy: list[str]

    @classmethod
    def of(cls, pub: Publication) -> OcdsPolicy:
        return cls(
            publisher=pub.publisher,
            license=pub.license,
            ocid_prefix=pub.ocid_prefix,
            policy=[
                "Setiap pesanan yang disetujui PPK (Surat Pesanan ditandatangani) diterbitkan sebagai satu proses "
                "pengadaan (ocid); setiap perubahan penting (BAST, pembayaran, selesai, refund, batal) menambah rilis.",
                "Data terbit seketika, langsung dari sistem pesanan; pesanan sebelum persetujuan tidak diterbitkan.",
                "Nilai dalam rupiah bulat; transaksi menunjukkan jumlah yang benar-benar dibayar (termasuk PPN).",
                "Barang diklasifikasikan dengan pohon kategori katalog (skema X-BEJO-KATEGORI, "
                "GET /api/v1/categories).",
                "Every order approved by its PPK is published as one contracting process; each material change "
                "(BAST, payment, completion, refund, cancellation) adds a release. Published as it happens.",
            ],
        )


# -- red flags -----------------------------------------------------------------------------------


class RedFlagQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pemda: str | None = Field(default=None, max_length=50, description="a pemda code within the caller's; and below")
    from_: date | None = Field(default=None, alias="from", description="orders placed on or after (ISO date, WIB)")
    to: date | None = Field(default=None, description="orders placed on or before (ISO date, WIB)")
    indicator: Indicator | None = Field(default=None, description="only this indicator")
    cursor: str | None = Field(default=None, max_length=500, description="opaque, from `next_cursor`")
    limit: int = Field(default=50, ge=1, le=200)


class IndicatorSummary(BaseModel):
    indicator: Indicator
    rule: str
    examined: int = Field(description="orders, order lines, groups or attempts the rule looked at")
    flags: int


class RedFlagList(BaseModel):
    items: list[RedFlag]
    next_cursor: str | None
    summary: list[IndicatorSummary]
    orders_examined: int
    truncated: bool = Field(description="more orders than the examination bound; narrow the pemda or period")
