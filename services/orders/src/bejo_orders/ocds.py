"""Orders as Open Contracting Data Standard (OCDS 1.1) releases. Pure: no I/O, no clock.

An order becomes public once its PPK approved it (the Surat Pesanan is signed): that is the award
and the contract. Each order is one contracting process (`ocid`); its release shows the buyer (the
satker), the supplier (the penyedia), the items, and the payment as an implementation transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .domain import Order

CURRENCY = "IDR"
# Statuses at or past approval: the contracting process exists and may be published.
PUBLISHED_STATUSES = ("approved", "accepted", "shipped", "received", "payment_pending", "paid", "completed", "refunded")
CONTRACT_STATUS = {"completed": "terminated", "refunded": "cancelled"}


def ocid(prefix: str, order_id: str) -> str:
    return f"{prefix}-{order_id}"


def _money(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": CURRENCY}


def _when(order: Order, status: str) -> datetime | None:
    return next((h.at for h in order.history if h.to_status == status), None)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def release(order: Order, ocid_prefix: str) -> dict[str, Any]:
    """The latest release of one order's contracting process."""
    buyer = {"id": f"satker:{order.pemda}:{order.satker}", "name": order.satker}
    supplier = {"id": f"penyedia:{order.provider_id}", "name": order.provider_name}
    items = [
        {
            "id": str(index),
            "description": line.name,
            "quantity": line.quantity,
            "unit": {"name": line.unit, "value": _money(line.unit_price)},
        }
        for index, line in enumerate(order.lines, start=1)
    ]
    approved_at = _when(order, "approved")
    contract: dict[str, Any] = {
        "id": f"{order.id}-contract",
        "awardID": f"{order.id}-award",
        "title": f"Surat Pesanan {order.id}",
        "status": CONTRACT_STATUS.get(order.status, "active"),
        "value": _money(order.total),
        "items": items,
        "dateSigned": _iso(approved_at),
    }
    if order.payment_id and order.paid_at:
        contract["implementation"] = {
            "transactions": [
                {
                    "id": order.payment_id,
                    "source": "bejo payments",
                    "date": _iso(order.paid_at),
                    "value": _money(order.total),
                    "payer": buyer,
                    "payee": supplier,
                }
            ]
        }
    tags = ["award", "contract"] + (["implementation"] if "implementation" in contract else [])
    return {
        "ocid": ocid(ocid_prefix, order.id),
        "id": f"{order.id}-{order.version}",
        "date": _iso(order.updated_at),
        "tag": tags,
        "initiationType": "tender",
        "language": "id",
        "parties": [
            {**buyer, "roles": ["buyer", "procuringEntity", "payer"], "address": {"region": order.pemda}},
            {**supplier, "roles": ["supplier", "payee"]},
        ],
        "buyer": buyer,
        "planning": {"budget": {"id": order.rup_code, "description": "Kode RUP (rencana umum pengadaan)"}},
        "tender": {
            "id": order.checkout_id,
            "title": f"Pembelian toko daring {order.id}",
            "status": "complete",
            "procurementMethod": "direct",
            "procurementMethodDetails": "Toko daring / e-marketplace (e-purchasing)",
            "procuringEntity": buyer,
            "items": items,
            "value": _money(order.total),
        },
        "awards": [
            {
                "id": f"{order.id}-award",
                "status": "active",
                "date": _iso(approved_at),
                "value": _money(order.total),
                "suppliers": [supplier],
                "items": items,
            }
        ],
        "contracts": [contract],
    }


def release_package(
    releases: list[dict[str, Any]], *, uri: str, published: datetime, publisher: str, next_uri: str | None
) -> dict[str, Any]:
    package: dict[str, Any] = {
        "uri": uri,
        "version": "1.1",
        "publishedDate": published.isoformat(),
        "publisher": {"name": publisher},
        "releases": releases,
    }
    if next_uri:
        package["links"] = {"next": next_uri}
    return package
