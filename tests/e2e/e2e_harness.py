"""The whole platform in one process: catalog, orders, payments, notifications and the gateway,
on the real RabbitMQ and Mongo-wire server, sharing one bus namespace, plus a real SMTP sink.

`platform` runs one instance of each service; `platform_two_replicas` runs two of each (separate
`build(settings)` calls: their own apps, Mongo clients and bus connections, the same database and
bus namespace — which is what two replicas are) behind a gateway given both URLs per upstream.

The platform itself is `support.platform`. The steps of a purchase (`register_verified_provider`,
`list_product`, `place_order`, ...) and the whole purchase scenario live here so every platform
shape runs the same flow.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import support
from support.platform import Platform, start_platform

from bejo_cli import samples
from bejo_cli.samples import product_body, provider_body

PEMDA = "35.15"
SATKER = "dinkes-sidoarjo"


@pytest.fixture
async def platform(amqp_url: str, mongodb_url: str, unique: str, tmp_path: Path) -> AsyncIterator[Platform]:
    async with start_platform(amqp_url, mongodb_url, unique, tmp_path / "mail") as started:
        yield started


@pytest.fixture
async def platform_two_replicas(
    amqp_url: str, mongodb_url: str, unique: str, tmp_path: Path
) -> AsyncIterator[Platform]:
    async with start_platform(amqp_url, mongodb_url, unique, tmp_path / "mail", replicas=2) as started:
        yield started


# -- the steps of a purchase ----------------------------------------------------------------------


@dataclass(frozen=True)
class Cast:
    """The people of one purchase, as tokens."""

    provider_id: str
    seller: str
    admin: str
    pp: str
    ppk: str
    treasurer: str


def cast_of(platform: Platform) -> Cast:
    provider_id = f"prov-{platform.unique}"
    return Cast(
        provider_id=provider_id,
        seller=support.token("penyedia", "owner-sari", pemda=PEMDA, provider_id=provider_id, name="Sari"),
        admin=support.token("admin", "biro-pbj", pemda="35", name="Biro PBJ"),
        pp=support.token("pp", "pp-ani", pemda=PEMDA, satker=SATKER, name="Ani Lestari"),
        ppk=support.token("ppk", "ppk-budi", pemda=PEMDA, satker=SATKER, name="Budi Santoso"),
        treasurer=support.token("bendahara", "bdh-citra", pemda=PEMDA, satker=SATKER, name="Citra"),
    )


async def register_verified_provider(platform: Platform, cast: Cast) -> None:
    """The provider registers and an admin verifies it."""
    await platform.ok(
        "POST",
        "/api/v1/providers",
        cast.seller,
        provider_body(pemda_code=PEMDA),
    )
    await platform.ok("POST", f"/api/v1/providers/{cast.provider_id}/verify", cast.admin, {"reason": "dokumen lengkap"})


async def list_product(platform: Platform, cast: Cast, *, stock: int, price: int = 95_000) -> dict[str, Any]:
    """The provider lists a product (browsing anonymously for a category first); returns it once
    search finds it."""
    categories = (await platform.ok("GET", "/api/v1/categories"))["items"]
    category = next(c["id"] for c in categories if c["parent_id"])
    product: dict[str, Any] = await platform.ok(
        "POST",
        "/api/v1/products",
        cast.seller,
        product_body(category=category, price=price, stock=stock),
    )
    found = await support.wait_until(lambda: search(platform, "robusta dampit"), within=30)
    assert product["id"] in found
    return product


async def search(platform: Platform, q: str) -> list[str]:
    page = await platform.ok("GET", f"/api/v1/products?q={q.replace(' ', '+')}")
    return [p["id"] for p in page["items"]]


def order_body(product_id: str, quantity: int, ppk_id: str = "ppk-budi") -> dict[str, Any]:
    return samples.order_body([(product_id, quantity)], ppk_id=ppk_id)


async def place_order(platform: Platform, pp: str, product_id: str, quantity: int) -> tuple[int, Any]:
    """POST /orders once, with a fresh Idempotency-Key."""
    return await platform.call(
        "POST",
        "/api/v1/orders",
        pp,
        order_body(product_id, quantity),
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )


async def wait_until_orders_knows(platform: Platform, pp: str, product_id: str) -> None:
    """The orders service learns of a product from catalog events. Ask without ordering anything: a
    quantity far over the VA cap is refused as `cap_va` once the product is known (`not_found` before)."""

    async def known() -> bool:
        status, problem = await place_order(platform, pp, product_id, 1_000_000)
        assert status == 422, problem
        return any(e.get("type") == "cap_va" for e in problem.get("errors", []))

    await support.wait_until(known, within=30, interval=0.3)


async def order_status_is(platform: Platform, token: str, order_id: str, wanted: str) -> bool:
    return bool((await platform.ok("GET", f"/api/v1/orders/{order_id}", token))["status"] == wanted)


# -- the whole purchase ---------------------------------------------------------------------------


async def purchase_from_listing_to_completed_payment(platform: Platform) -> None:
    """A purchase from listing to settled payment, driven only through the gateway, as clients would."""
    cast = cast_of(platform)
    # The PPK registers an address for e-mail notices.
    await platform.ok("PUT", "/api/v1/notifications/contact", cast.ppk, {"email": "budi@dinkes.example.id"})
    await register_verified_provider(platform, cast)
    product = await list_product(platform, cast, stock=5)

    # The PP checks out; the orders service learns of the product from catalog events, so retry
    # with fresh keys until its read model has it.
    async def place() -> dict[str, Any] | None:
        status, body = await place_order(platform, cast.pp, product["id"], 2)
        return body if status == 201 else None

    checkout = await support.wait_until(place, within=30, interval=0.3)
    [order] = checkout["orders"]
    order_id = order["id"]
    assert order["total"] == 190_000 and order["provider_id"] == cast.provider_id

    await support.wait_until(lambda: order_status_is(platform, cast.pp, order_id, "reserved"), within=30)
    # Only a PPK may approve: the gateway refuses the PP's token and names the role.
    status, problem = await platform.call("POST", f"/api/v1/orders/{order_id}/approve", cast.pp)
    assert status == 403 and problem["required_roles"] == ["ppk"]
    await platform.ok("POST", f"/api/v1/orders/{order_id}/approve", cast.ppk)
    await platform.ok("POST", f"/api/v1/orders/{order_id}/accept", cast.seller)
    await platform.ok("POST", f"/api/v1/orders/{order_id}/ship", cast.seller, {"tracking_note": "JNE 1234567890"})
    received = await platform.ok("POST", f"/api/v1/orders/{order_id}/receive", cast.ppk)
    assert received["bast_number"].startswith(f"BAST/{PEMDA}/")

    # Payments invoices the received order: PPN 11 % (the provider is PKP), PPh 22 0.5 % withheld.
    async def payment() -> dict[str, Any] | None:
        items = (await platform.ok("GET", f"/api/v1/payments?order_id={order_id}", cast.treasurer))["items"]
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
    await platform.ok("POST", f"/api/v1/sandbox/va/{pay['va_number']}/pay", cast.admin, {"amount": 210_900})
    await support.wait_until(lambda: order_status_is(platform, cast.pp, order_id, "completed"), within=45)

    ledger = (await platform.ok("GET", f"/api/v1/payments/{pay['id']}/ledger", cast.treasurer))["items"]
    assert ledger and sum(entry["amount"] for entry in ledger) == 0

    history = (await platform.ok("GET", f"/api/v1/orders/{order_id}/history", cast.pp))["items"]
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
    inbox = (await platform.ok("GET", "/api/v1/notifications", cast.ppk))["items"]
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
    # every release of the one contracting process, oldest first: the last one is the current state
    *_, release = package["releases"]
    assert {r["ocid"] for r in package["releases"]} == {release["ocid"]}
    assert release["ocid"].endswith(order_id) and release["buyer"]["name"] == SATKER
    [contract] = release["contracts"]
    assert contract["value"] == {"amount": 190_000, "currency": "IDR"}
    assert contract["implementation"]["transactions"][0]["id"] == pay["id"]

    # The public figures add up.
    stats = await platform.ok("GET", f"/api/v1/stats?pemda={PEMDA}")
    assert (stats["orders"], stats["transaction_value"], stats["providers"], stats["products"]) == (1, 190_000, 1, 1)
