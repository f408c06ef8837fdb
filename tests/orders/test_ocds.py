"""Orders as OCDS 1.1 releases (pure mapping)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bejo_orders import ocds
from bejo_orders.domain import Order

T0 = datetime(2026, 12, 12, 2, 0, tzinfo=UTC)


def order(status: str, **extra: object) -> Order:
    steps = ["placed", "reserved", "approved", "accepted", "shipped", "received", "payment_pending", "paid"]
    steps = steps[: steps.index(status) + 1] if status in steps else [*steps, status]
    history = [
        {"actor_sub": "x", "role": "system", "at": T0 + timedelta(hours=i), "from": prev, "to": to}
        for i, (prev, to) in enumerate(zip([None, *steps], steps, strict=False))
    ]
    return Order.model_validate(
        {
            "_id": "ord_1",
            "checkout_id": "chk_1",
            "pemda": "35.15",
            "satker": "dinkes-sidoarjo",
            "pp_id": "pp-ani",
            "ppk_id": "ppk-budi",
            "provider_id": "cv-sumber",
            "provider_name": "CV Sumber Rejeki",
            "provider_pkp": True,
            "payment_method": "va",
            "rup_code": "RUP-35.15-2026-0001",
            "delivery_address": "Jl. A 1",
            "lines": [
                {"product_id": "p1", "name": "Kopi Robusta 1kg", "unit": "pak", "quantity": 2, "unit_price": 95_000}
            ],
            "total": 190_000,
            "status": status,
            "version": len(steps),
            "created_at": T0,
            "updated_at": T0 + timedelta(hours=len(steps)),
            "history": history,
            **extra,
        }
    )


def test_an_approved_order_is_an_award_and_a_contract() -> None:
    release = ocds.release(order("approved"), "ocds-test")
    assert release["ocid"] == "ocds-test-ord_1" and release["tag"] == ["award", "contract"]
    assert release["buyer"] == {"id": "satker:35.15:dinkes-sidoarjo", "name": "dinkes-sidoarjo"}
    roles = {p["id"]: p["roles"] for p in release["parties"]}
    assert "supplier" in roles["penyedia:cv-sumber"] and "buyer" in roles["satker:35.15:dinkes-sidoarjo"]
    [contract] = release["contracts"]
    assert contract["value"] == {"amount": 190_000, "currency": "IDR"} and contract["status"] == "active"
    assert contract["dateSigned"] == (T0 + timedelta(hours=2)).isoformat()
    assert release["awards"][0]["suppliers"] == [{"id": "penyedia:cv-sumber", "name": "CV Sumber Rejeki"}]
    assert release["planning"]["budget"]["id"] == "RUP-35.15-2026-0001"
    assert "implementation" not in contract


def test_a_paid_order_shows_the_payment_as_a_transaction() -> None:
    paid_at = T0 + timedelta(days=2)
    release = ocds.release(order("paid", payment_id="pay-ord_1", paid_at=paid_at), "ocds-test")
    [transaction] = release["contracts"][0]["implementation"]["transactions"]
    assert transaction["id"] == "pay-ord_1" and transaction["value"]["amount"] == 190_000
    assert transaction["date"] == paid_at.isoformat() and release["tag"][-1] == "implementation"


def test_orders_before_approval_are_not_published() -> None:
    assert "placed" not in ocds.PUBLISHED_STATUSES and "reserved" not in ocds.PUBLISHED_STATUSES
    assert {"approved", "completed", "refunded"} <= set(ocds.PUBLISHED_STATUSES)


def test_package_wraps_releases_with_paging_link() -> None:
    package = ocds.release_package(
        [], uri="https://x/api/v1/ocds/releases", published=T0, publisher="bejo", next_uri="https://x/next"
    )
    assert package["version"] == "1.1" and package["links"] == {"next": "https://x/next"}
