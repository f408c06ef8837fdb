"""A purchase from listing to settled payment, driven only through the gateway, as clients would."""

from __future__ import annotations

import uuid

import pytest
import support
from e2e_harness import Platform

pytestmark = pytest.mark.e2e

PEMDA = "35.15"
SATKER = "dinkes-sidoarjo"


async def test_purchase_from_listing_to_completed_payment(platform: Platform) -> None:
    provider_id = f"prov-{platform.unique}"
    seller = support.token("penyedia", "owner-sari", pemda=PEMDA, provider_id=provider_id, name="Sari")
    admin = support.token("admin", "biro-pbj", pemda="35", name="Biro PBJ")
    pp = support.token("pp", "pp-ani", pemda=PEMDA, satker=SATKER, name="Ani Lestari")
    ppk = support.token("ppk", "ppk-budi", pemda=PEMDA, satker=SATKER, name="Budi Santoso")
    treasurer = support.token("bendahara", "bdh-citra", pemda=PEMDA, satker=SATKER, name="Citra")

    # Anonymous browsing works; the PPK registers an address for e-mail notices.
    categories = (await platform.ok("GET", "/api/v1/categories"))["items"]
    category = next(c["id"] for c in categories if c["parent_id"])
    await platform.ok("PUT", "/api/v1/notifications/contact", ppk, {"email": "budi@dinkes.example.id"})

    # A provider registers, an admin verifies it, it lists a product.
    await platform.ok(
        "POST",
        "/api/v1/providers",
        seller,
        {
            "name": "CV Sumber Rejeki",
            "legal_entity": "CV",
            "nib": "1234567890123",
            "npwp": "01.234.567.8-901.000",
            "pkp": True,
            "pemda_code": PEMDA,
            "address": "Jl. Raya Porong 1, Sidoarjo",
            "email": "cv@example.id",
            "phone": "+62315550100",
        },
    )
    await platform.ok("POST", f"/api/v1/providers/{provider_id}/verify", admin, {"reason": "dokumen lengkap"})
    product = await platform.ok(
        "POST",
        "/api/v1/products",
        seller,
        {
            "name": "Kopi Robusta Dampit 1kg",
            "description": "Kopi bubuk",
            "category": category,
            "unit": "pak",
            "price": 95_000,
            "het": 120_000,
            "stock": 5,
        },
    )
    found = await support.wait_until(lambda: _search(platform, "robusta dampit"), within=30)
    assert product["id"] in found

    # The PP checks out; the orders service learns of the product from catalog events, so retry
    # with fresh keys until its read model has it.
    async def place() -> dict | None:
        status, body = await platform.call(
            "POST",
            "/api/v1/orders",
            pp,
            {
                "lines": [{"product_id": product["id"], "quantity": 2}],
                "delivery_address": "Jl. Pahlawan 1, Sidoarjo",
                "rup_code": "RUP-35.15-2026-0001",
                "ppk_id": "ppk-budi",
                "payment_method": "va",
            },
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        return body if status == 201 else None

    checkout = await support.wait_until(place, within=30, interval=0.3)
    [order] = checkout["orders"]
    order_id = order["id"]
    assert order["total"] == 190_000 and order["provider_id"] == provider_id

    async def status_is(wanted: str) -> bool:
        return (await platform.ok("GET", f"/api/v1/orders/{order_id}", pp))["status"] == wanted

    await support.wait_until(lambda: status_is("reserved"), within=30)
    # Only a PPK may approve: the gateway refuses the PP's token and names the role.
    status, problem = await platform.call("POST", f"/api/v1/orders/{order_id}/approve", pp)
    assert status == 403 and problem["required_roles"] == ["ppk"]
    await platform.ok("POST", f"/api/v1/orders/{order_id}/approve", ppk)
    await platform.ok("POST", f"/api/v1/orders/{order_id}/accept", seller)
    await platform.ok("POST", f"/api/v1/orders/{order_id}/ship", seller, {"tracking_note": "JNE 1234567890"})
    received = await platform.ok("POST", f"/api/v1/orders/{order_id}/receive", ppk)
    assert received["bast_number"].startswith(f"BAST/{PEMDA}/")

    # Payments invoices the received order: PPN 11 % (the provider is PKP), PPh 22 0.5 % withheld.
    async def payment() -> dict | None:
        items = (await platform.ok("GET", f"/api/v1/payments?order_id={order_id}", treasurer))["items"]
        return items[0] if items and items[0].get("va_number") else None

    pay = await support.wait_until(payment, within=30)
    assert pay["invoice"] | {"number": None} == {
        "number": None,
        "base": 190_000,
        "ppn": 20_900,
        "pph22": 950,
        "total": 210_900,
        "net_to_provider": 189_050,
    }

    # The buyer pays the VA at the (sandbox) bank, which calls back signed, SNAP-style.
    await platform.ok("POST", f"/api/v1/sandbox/va/{pay['va_number']}/pay", treasurer, {"amount": 210_900})
    await support.wait_until(lambda: status_is("completed"), within=45)

    ledger = (await platform.ok("GET", f"/api/v1/payments/{pay['id']}/ledger", treasurer))["items"]
    assert ledger and sum(entry["amount"] for entry in ledger) == 0

    history = (await platform.ok("GET", f"/api/v1/orders/{order_id}/history", pp))["items"]
    assert [h["to"] for h in history] == [
        "placed",
        "reserved",
        "approved",
        "accepted",
        "shipped",
        "received",
        "payment_pending",
        "paid",
        "completed",
    ]

    # The PPK was told about the order in-app and by e-mail, in Indonesian.
    inbox = (await platform.ok("GET", "/api/v1/notifications", ppk))["items"]
    assert any(order_id in str(n) for n in inbox)
    mails = await support.wait_until(
        lambda: [m for m in platform.sink.messages() if "budi@dinkes.example.id" in str(m["To"])], within=30
    )
    body = mails[0].get_body(preferencelist=("plain",))
    assert body is not None and "Rp 190.000" in body.get_content()

    # Object-level scoping: another pemda's admin and another satker's PP see nothing; the
    # province's auditor sees it.
    outsiders = [
        support.token("admin", "admin-malang", pemda="35.07"),
        support.token("pp", "pp-other", pemda=PEMDA, satker="dinas-pendidikan"),
    ]
    for outsider in outsiders:
        status, _ = await platform.call("GET", f"/api/v1/orders/{order_id}", outsider)
        assert status == 404
    auditor = support.token("auditor", "bpk-jatim", pemda="35")
    assert (await platform.ok("GET", f"/api/v1/orders/{order_id}", auditor))["id"] == order_id

    # The contracting process is public as OCDS: buyer, supplier, contract value and the payment.
    package = await platform.ok("GET", f"/api/v1/ocds/releases?pemda={PEMDA}")
    [release] = package["releases"]
    assert release["ocid"].endswith(order_id) and release["buyer"]["name"] == SATKER
    [contract] = release["contracts"]
    assert contract["value"] == {"amount": 190_000, "currency": "IDR"}
    assert contract["implementation"]["transactions"][0]["id"] == pay["id"]

    # The public figures add up.
    stats = await platform.ok("GET", f"/api/v1/stats?pemda={PEMDA}")
    assert (stats["orders"], stats["transaction_value"], stats["providers"], stats["products"]) == (1, 190_000, 1, 1)


async def _search(platform: Platform, q: str) -> list[str]:
    page = await platform.ok("GET", f"/api/v1/products?q={q.replace(' ', '+')}")
    return [p["id"] for p in page["items"]]
