"""Orders as Open Contracting Data Standard (OCDS 1.1) releases. Pure: no I/O, no clock.

Each order is one contracting process (`ocid`). It becomes public once its PPK approved it (the
Surat Pesanan is signed): that is the award and the contract. Every later material change is one
more release of the same `ocid`, so that `ocdskit compile` builds a versioned record:

| order step            | release tags                                   | what the release adds                  |
|-----------------------|------------------------------------------------|----------------------------------------|
| approved              | planning, tender, award, contract              | Kode RUP, the purchase, award, contract |
| received              | implementation                                 | the BAST as a met delivery milestone    |
| paid                  | implementation                                 | the payment, as paid (PPN included)     |
| completed             | contractTermination                            | contract `terminated` (fulfilled)       |
| refunded              | implementation, contractTermination            | the refund transaction; `terminated`    |
| cancelled (after approval) | contractTermination                       | contract `terminated` before delivery   |

The purchase is an e-purchasing buy from the electronic catalogue (toko daring): a `direct`
award by electronic submission, flagged `tender.techniques.hasElectronicCatalogue` (the OCDS
techniques field). Items are classified with the catalog's category tree (scheme
`X-BEJO-KATEGORI`, ids as served by `GET /api/v1/categories`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .domain import HistoryEntry, Order

CURRENCY = "IDR"
# Statuses an order may be in once it has been published (approved at some point). A cancelled
# order is published only if it was approved before it was cancelled.
PUBLISHED_STATUSES = (
    "approved",
    "accepted",
    "shipped",
    "received",
    "payment_pending",
    "paid",
    "completed",
    "refunded",
    "cancelled",
)
# The order steps that make a new release, and the tags of that release.
RELEASE_STEPS: dict[str, list[str]] = {
    "approved": ["planning", "tender", "award", "contract"],
    "received": ["implementation"],
    "paid": ["implementation"],
    "completed": ["contractTermination"],
    "refunded": ["implementation", "contractTermination"],
    "cancelled": ["contractTermination"],
}
# OCDS `contractStatus`: `cancelled` is for contracts cancelled before signing; a signed Surat
# Pesanan that ends (fulfilled, refunded or cancelled before shipping) is `terminated`.
TERMINATED = frozenset({"completed", "refunded", "cancelled"})
CATEGORY_SCHEME = "X-BEJO-KATEGORI"
PROVIDER_SCHEME = "X-BEJO-PENYEDIA"
SATKER_SCHEME = "X-BEJO-SATKER"


@dataclass(frozen=True)
class Publication:
    """Where and under which terms the data is published (from the settings)."""

    ocid_prefix: str
    public_url: str  # the gateway's public base URL, no trailing slash
    publisher: str
    license: str
    publication_policy: str

    def url(self, path: str) -> str:
        return self.public_url.rstrip("/") + path


def ocid(prefix: str, order_id: str) -> str:
    return f"{prefix}-{order_id}"


def _money(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": CURRENCY}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _entry(order: Order, status: str) -> HistoryEntry | None:
    return next((h for h in order.history if h.to_status == status), None)


def _parties(order: Order, pub: Publication) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    buyer_id = f"satker:{order.pemda}:{order.satker}"
    buyer = {"id": buyer_id, "name": order.satker_name or order.satker}
    supplier = {"id": f"penyedia:{order.provider_id}", "name": order.provider_name}
    parties = [
        {
            **buyer,
            "identifier": {
                "scheme": SATKER_SCHEME,
                "id": f"{order.pemda}:{order.satker}",
                "legalName": buyer["name"],
            },
            "address": {"region": order.pemda, "countryName": "Indonesia"},
            "roles": ["buyer", "procuringEntity", "payer"],
        },
        {
            **supplier,
            "identifier": {
                "scheme": PROVIDER_SCHEME,
                "id": order.provider_id,
                "legalName": order.provider_name,
                # the provider's public page carries its NIB (Nomor Induk Berusaha)
                "uri": pub.url(f"/api/v1/providers/{order.provider_id}"),
            },
            "details": {"pkp": order.provider_pkp},
            "roles": ["supplier", "payee"],
        },
    ]
    return buyer, supplier, parties


def _items(order: Order, categories: dict[str, str], pub: Publication) -> list[dict[str, Any]]:
    items = []
    for index, line in enumerate(order.lines, start=1):
        item: dict[str, Any] = {
            "id": str(index),
            "description": line.name,
            "quantity": line.quantity,
            "unit": {"name": line.unit, "value": _money(line.unit_price)},
        }
        if category := categories.get(line.product_id):
            item["classification"] = {
                "scheme": CATEGORY_SCHEME,
                "id": category,
                "uri": pub.url("/api/v1/categories"),
            }
        item["additionalClassifications"] = [
            {"scheme": "X-BEJO-PRODUK", "id": line.product_id, "uri": pub.url(f"/api/v1/products/{line.product_id}")}
        ]
        items.append(item)
    return items


def releases(order: Order, pub: Publication, categories: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every release of one order's contracting process, oldest first (none before approval)."""
    approved = _entry(order, "approved")
    if approved is None:
        return []
    buyer, supplier, parties = _parties(order, pub)
    items = _items(order, categories or {}, pub)
    base: dict[str, Any] = {
        "ocid": ocid(pub.ocid_prefix, order.id),
        "initiationType": "tender",
        "language": "id",
        "parties": parties,
        "buyer": buyer,
        "planning": {
            "rationale": "Belanja melalui toko daring (e-purchasing)",
            "budget": {"id": order.rup_code, "description": "Kode RUP (rencana umum pengadaan)"},
        },
        "tender": {
            "id": order.checkout_id,
            "title": f"Pembelian toko daring {order.id}",
            "status": "complete",
            "procuringEntity": buyer,
            "items": items,
            "value": _money(order.total),
            "procurementMethod": "direct",
            "procurementMethodDetails": "E-purchasing: pembelian dari katalog elektronik (toko daring / e-marketplace)",
            "procurementMethodRationale": "Belanja barang melalui toko daring pemerintah daerah",
            "mainProcurementCategory": "goods",
            "submissionMethod": ["electronicSubmission"],
            "submissionMethodDetails": "Pesanan elektronik di bejo, disetujui PPK (Surat Pesanan)",
            "techniques": {"hasElectronicCatalogue": True},
            "numberOfTenderers": 1,
            "tenderers": [supplier],
        },
        "awards": [
            {
                "id": f"{order.id}-award",
                "title": f"Surat Pesanan {order.id}",
                "status": "active",
                "date": _iso(approved.at),
                "value": _money(order.total),
                "suppliers": [supplier],
                "items": items,
            }
        ],
    }
    out: list[dict[str, Any]] = []
    for index, entry in enumerate(order.history):
        if entry.to_status not in RELEASE_STEPS:
            continue  # (a cancellation is terminal, so one seen here came after the approval)
        done = order.history[: index + 1]
        out.append(
            {
                **base,
                "id": f"{order.id}-{index + 1}",
                "date": _iso(entry.at),
                "tag": RELEASE_STEPS[entry.to_status],
                "contracts": [_contract(order, done, approved, buyer, supplier, items, pub)],
            }
        )
    return out


def _contract(
    order: Order,
    done: list[HistoryEntry],
    approved: HistoryEntry,
    buyer: dict[str, Any],
    supplier: dict[str, Any],
    items: list[dict[str, Any]],
    pub: Publication,
) -> dict[str, Any]:
    """The contract as it stood after the history entries `done`."""
    reached = {h.to_status: h for h in done}
    contract: dict[str, Any] = {
        "id": f"{order.id}-contract",
        "awardID": f"{order.id}-award",
        "title": f"Surat Pesanan {order.id}",
        "status": "terminated" if TERMINATED & reached.keys() else "active",
        "value": _money(order.total),
        "items": items,
        "dateSigned": _iso(approved.at),
    }
    implementation: dict[str, Any] = {}
    if (received := reached.get("received")) and order.bast_number:
        implementation["milestones"] = [
            {
                "id": order.bast_number,
                "title": f"Berita Acara Serah Terima {order.bast_number}",
                "type": "delivery",
                "status": "met",
                "dateMet": _iso(received.at),
            }
        ]
    paid = reached.get("paid") or reached.get("completed")
    if order.payment_id and paid is not None:
        transactions = [
            {
                "id": order.payment_id,
                "source": pub.url(f"/api/v1/payments/{order.payment_id}"),
                "date": _iso(order.paid_at or paid.at),
                # what the buyer actually paid: the invoice total, PPN included
                "value": _money(order.paid_amount if order.paid_amount is not None else order.total),
                "payer": buyer,
                "payee": supplier,
            }
        ]
        if (refunded := reached.get("refunded")) and order.refund_amount is not None:
            transactions.append(
                {
                    "id": f"{order.payment_id}-refund",
                    "source": pub.url(f"/api/v1/payments/{order.payment_id}"),
                    "date": _iso(refunded.at),
                    "value": _money(order.refund_amount),
                    "payer": supplier,
                    "payee": buyer,
                }
            )
        implementation["transactions"] = transactions
    if implementation:
        contract["implementation"] = implementation
    return contract


def release_package(
    releases: list[dict[str, Any]], *, pub: Publication, uri: str, published: datetime, next_uri: str | None
) -> dict[str, Any]:
    package: dict[str, Any] = {
        "uri": uri,
        "version": "1.1",
        "publishedDate": published.isoformat(),
        "publisher": {"name": pub.publisher, "uri": pub.public_url},
        "license": pub.license,
        "publicationPolicy": pub.publication_policy,
        "releases": releases,
    }
    if next_uri:
        package["links"] = {"next": next_uri}
    return package
