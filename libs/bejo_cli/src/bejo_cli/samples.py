"""Request bodies of a sample provider, product and order: one definition shared by the tests, the
benchmarks and the load generator, so that they all send what the API accepts today. Override any
field by keyword."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SAMPLE_PEMDA = "35.15"  # Kabupaten Sidoarjo


def provider_body(**overrides: Any) -> dict[str, Any]:
    """POST /api/v1/providers: a PKP CV in Sidoarjo."""
    return {
        "name": "CV Sumber Rejeki",
        "legal_entity": "CV",
        "nib": "1234567890123",
        "npwp": "01.234.567.8-901.000",
        "pkp": True,
        "pemda_code": SAMPLE_PEMDA,
        "address": "Jl. Raya Porong 1, Sidoarjo",
        "email": "cv@example.id",
        "phone": "+62315550100",
        **overrides,
    }


def product_body(**overrides: Any) -> dict[str, Any]:
    """POST /api/v1/products: a pack of local coffee, under its HET."""
    return {
        "name": "Kopi Robusta Dampit 1kg",
        "description": "Kopi bubuk robusta dari Dampit, Malang",
        "category": "makanan-minuman.kopi-teh",
        "unit": "pak",
        "price": 95_000,
        "het": 120_000,
        "stock": 5,
        "min_order_qty": 1,
        **overrides,
    }


def order_body(lines: Sequence[tuple[str, int]], **overrides: Any) -> dict[str, Any]:
    """POST /api/v1/orders: the lines as (product id, quantity), paid by virtual account."""
    return {
        "lines": [{"product_id": product_id, "quantity": quantity} for product_id, quantity in lines],
        "delivery_address": "Jl. Pahlawan 1, Sidoarjo",
        "rup_code": "RUP-35.15-2026-0001",
        "ppk_id": "ppk-budi",
        "payment_method": "va",
        **overrides,
    }
