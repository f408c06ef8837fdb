"""The payment's ledger: append-only postings of balanced legs, written in the same conditional write
as the status change they belong to (so a posting is never missed or doubled)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bejo_kit.mongo import Document

from . import domain


def posting(kind: domain.PostingKind, legs: list[domain.Leg], at: datetime) -> Document:
    return {"kind": kind, "at": at, "legs": [{"account": leg.account, "amount": leg.amount} for leg in legs]}


def payment_received(invoice: domain.Invoice, satker: str, at: datetime) -> Document:
    return posting("payment_received", domain.payment_received_legs(invoice, satker), at)


def settlement(invoice: domain.Invoice, provider_id: str, at: datetime) -> Document:
    return posting("settlement", domain.settlement_legs(invoice, provider_id), at)


def refund(invoice: domain.Invoice, satker: str, provider_id: str, settled: bool, at: datetime) -> list[Document]:
    return [posting(kind, legs, at) for kind, legs in domain.refund_postings(invoice, satker, provider_id, settled)]


def lines(doc: Document) -> list[dict[str, Any]]:
    """One line per leg, oldest posting first: the read model of GET .../ledger."""
    return [
        {"account": leg["account"], "amount": leg["amount"], "kind": entry["kind"], "at": entry["at"]}
        for entry in doc["ledger"]
        for leg in entry["legs"]
    ]
