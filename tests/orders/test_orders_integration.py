"""The orders service on the real RabbitMQ and Mongo-wire server.

The catalog and payments are represented by their contract events, published onto the real bus
by the test; the orders service's own events are observed on a queue bound like a consumer's.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest
from orders_harness import PEMDA, SATKER, Harness, key, payment_fields

from bejo_contracts.catalog import LineRejection, StockRejected
from bejo_contracts.payments import InvoiceFigures, InvoiceIssued, PaymentSucceeded, SettlementCompleted
from bejo_contracts.pricing import PromotionTerms
from bejo_kit.mongo import create_client, database
from bejo_kit.outbox import Outbox
from bejo_orders.repository import Repository

pytestmark = pytest.mark.integration


async def reserved_order(h: Harness, product_id: str = "p-kertas", provider: str = "prov-a") -> dict[str, object]:
    await h.seed_product(product_id, provider, 50_000)
    await h.wait_products(product_id)
    status, checkout = await h.place([(product_id, 2)], key())
    assert status == 201, checkout
    order = checkout["orders"][0]
    await h.wait_event(order["id"], "placed")
    await h.reserve(order)
    return await h.wait_status(order["id"], "reserved")


async def test_happy_path_placed_to_completed_with_split_cart_and_history(harness: Harness) -> None:
    h = harness
    now = datetime.now(UTC)
    promo = PromotionTerms(
        promotion_id="harbolnas",
        discount_kind="percent",
        discount_value=10,
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=1),
    )
    await h.seed_product("p-kertas", "prov-a", 50_000, promotions=[promo])
    await h.seed_product("p-tinta", "prov-a", 120_000)
    await h.seed_product("p-kursi", "prov-b", 750_000)
    await h.wait_products("p-kertas", "p-tinta", "p-kursi")

    status, checkout = await h.place([("p-kertas", 10), ("p-kursi", 2), ("p-tinta", 1)], key())
    assert status == 201, checkout
    by_provider = {o["provider_id"]: o for o in checkout["orders"]}
    assert set(by_provider) == {"prov-a", "prov-b"}
    # estimated with the promotional price: 10 x 45,000 + 120,000
    assert by_provider["prov-a"]["total"] == 570_000
    assert by_provider["prov-b"]["total"] == 1_500_000
    assert all(o["status"] == "placed" and o["checkout_id"] == checkout["checkout_id"] for o in checkout["orders"])

    order = by_provider["prov-a"]
    oid = order["id"]
    placed = (await h.wait_event(oid, "placed"))[0]
    assert placed.data["pemda"] == PEMDA and placed.data["satker"] == SATKER and placed.data["actor"]["sub"] == "pp-ani"

    # the catalog reserves at a (newer) price: the order snapshots it
    await h.reserve(order, unit_prices={"p-kertas": 44_000})
    reserved = await h.wait_status(oid, "reserved")
    assert reserved["total"] == 10 * 44_000 + 120_000
    assert reserved["approval_due_at"] is not None

    assert (await h.act(oid, "approve", h.ppk))[0] == 200
    seller = h.seller("prov-a")
    assert (await h.act(oid, "accept", seller))[0] == 200
    status, shipped = await h.act(oid, "ship", seller, tracking_note="JNE 123")
    assert status == 200 and shipped["tracking_note"] == "JNE 123", shipped
    status, received = await h.act(oid, "receive", h.ppk)
    assert status == 200
    assert re.fullmatch(r"BAST/35\.15/\d{4}/\d{6}", received["bast_number"]), received["bast_number"]

    fields = payment_fields(received, "pay-1")
    invoice = InvoiceFigures(
        number="INV-1", base=560_000, ppn=61_600, pph22=2_800, total=621_600, net_to_provider=557_200
    )
    await h.publish(InvoiceIssued(**fields, invoice=invoice, bast_number=received["bast_number"]))  # type: ignore[arg-type]
    await h.wait_status(oid, "payment_pending")
    paid = PaymentSucceeded(**fields, amount=621_600, paid_at=datetime.now(UTC), reference="SNAP-1")  # type: ignore[arg-type]
    first = await h.publish(paid)
    await h.wait_status(oid, "paid")
    await h.publish(paid, envelope_id=first.id)  # a redelivered duplicate changes nothing
    await h.publish(SettlementCompleted(**fields, net_to_provider=557_200, ppn=61_600, pph22=2_800))  # type: ignore[arg-type]
    await h.wait_status(oid, "completed")

    status, history, _ = await h.call("GET", f"/api/v1/orders/{oid}/history", h.auth("auditor", "bpk", pemda="35"))
    assert status == 200
    steps = [(e["from"], e["to"], e["role"], e["actor_sub"]) for e in history["items"]]
    assert steps == [
        (None, "placed", "pp", "pp-ani"),
        ("placed", "reserved", "system", "system"),
        ("reserved", "approved", "ppk", "ppk-budi"),
        ("approved", "accepted", "penyedia", "owner-prov-a"),
        ("accepted", "shipped", "penyedia", "owner-prov-a"),
        ("shipped", "received", "ppk", "ppk-budi"),
        ("received", "payment_pending", "system", "system"),
        ("payment_pending", "paid", "system", "system"),
        ("paid", "completed", "system", "system"),
    ]
    await h.wait_event(oid, "completed")
    # at-least-once delivery may repeat an envelope, and the bus does not order across publishes:
    # one distinct event per transition, in lifecycle order by when it happened
    distinct = {e.id: e for e in h.seen if e.subject == oid}.values()
    by_time = sorted(distinct, key=lambda e: e.data["occurred_at"])
    assert [e.type.split(".")[3] for e in by_time] == [
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
    received_event = (await h.wait_event(oid, "received"))[0]
    assert received_event.data["bast_number"] == received["bast_number"]
    assert received_event.data["total"] == 560_000

    status, stats, _ = await h.call("GET", "/api/v1/orders/stats?pemda=35", {})
    assert status == 200
    assert stats["orders"] == 1 and stats["transaction_value"] == 560_000
    assert stats["by_pemda"] == [{"pemda": PEMDA, "orders": 1, "transaction_value": 560_000}]
    assert stats["participating_pemda"] == 1 and len(stats["by_period"]) == 1
    status, before, _ = await h.call("GET", "/api/v1/orders/stats?pemda=35&to=2000-01-31", {})
    assert status == 200 and before["orders"] == 0 and before["by_period"] == []
    status, elsewhere, _ = await h.call("GET", "/api/v1/orders/stats?pemda=36&from=2000-01-01", {})
    assert elsewhere["orders"] == 0
    status, problem, _ = await h.call("GET", "/api/v1/orders/stats?from=yesterday", {})
    assert status == 422 and problem["errors"][0]["field"] == "from"


async def test_idempotency_key_replays_and_refuses_a_different_body(harness: Harness) -> None:
    h = harness
    await h.seed_product("p-1", "prov-a", 10_000)
    await h.wait_products("p-1")
    k = key()
    results = await asyncio.gather(*(h.place([("p-1", 3)], k) for _ in range(5)))
    assert {status for status, _ in results} == {201}
    assert len({body["checkout_id"] for _, body in results}) == 1
    assert len({body["orders"][0]["id"] for _, body in results}) == 1

    status, problem = await h.place([("p-1", 4)], k)
    assert status == 409 and problem["code"] == "idempotency_key_reused"
    status, problem = await h.place([("p-1", 3)], None)
    assert status == 422 and problem["errors"][0]["field"] == "Idempotency-Key"

    status, listing, _ = await h.call("GET", "/api/v1/orders", h.pp)
    assert status == 200 and len(listing["items"]) == 1


async def test_bad_checkouts_name_the_problem_and_create_nothing(harness: Harness) -> None:
    h = harness
    await h.seed_product("p-cheap", "prov-a", 10_000)
    await h.seed_product("p-car", "prov-b", 30_000_000)
    await h.seed_product("p-off", "prov-a", 10_000, orderable=False)
    await h.wait_products("p-cheap", "p-car", "p-off")

    status, problem = await h.place([("p-cheap", 1), ("nope", 1)], key())
    assert status == 422 and problem["errors"][0]["field"] == "lines.1.product_id"
    status, problem = await h.place([("p-off", 1)], key())
    assert status == 422 and problem["errors"][0]["type"] == "not_orderable"
    status, problem = await h.place([("p-car", 2)], key(), payment_method="kkpd")
    assert status == 422 and problem["code"] == "cap_exceeded", problem
    status, problem = await h.place([("p-car", 7)], key())  # 210 juta over the VA cap
    assert status == 422 and problem["code"] == "cap_exceeded"
    status, problem = await h.place([("p-cheap", 1)], key(), ppk_id="pp-ani")
    assert status == 422 and problem["errors"][0]["field"] == "ppk_id"
    status, problem = await h.place([("p-cheap", 0)], key())
    assert status == 422 and problem["errors"][0]["field"] == "lines.0.quantity"
    status, problem = await h.place([("p-cheap", 1)], key(), headers=h.ppk)
    assert status == 403

    status, listing, _ = await h.call("GET", "/api/v1/orders", h.pp)
    assert listing["items"] == []


async def test_object_level_access_and_separation_of_duties(harness: Harness) -> None:
    h = harness
    order = await reserved_order(h)
    oid = order["id"]
    outsiders = {
        "other satker": h.auth("pp", "pp-x", satker="bappeda"),
        "other pemda ppk": h.auth("ppk", "ppk-budi", pemda="35.16"),
        "other pemda admin": h.auth("admin", "adm", pemda="35.16"),
        "other provider": h.seller("prov-z"),
    }
    for who, headers in outsiders.items():
        status, problem, _ = await h.call("GET", f"/api/v1/orders/{oid}", headers)
        assert status == 404, who
        assert "pemda" not in problem, who
    assert (await h.order(oid, h.auth("admin", "prov-admin", pemda="35")))["id"] == oid
    assert (await h.order(oid, h.auth("bendahara", "bend")))["id"] == oid

    status, problem = await h.act(oid, "approve", h.auth("ppk", "ppk-lain", name="Lain"))
    assert status == 403 and problem["code"] == "not_order_ppk"
    # the PP holding a PPK token cannot approve an order they placed
    status, problem = await h.act(oid, "approve", h.auth("ppk", "pp-ani"))
    assert status == 403 and problem["code"] in ("not_order_ppk", "separation_of_duties")
    status, problem = await h.act(oid, "approve", h.pp)
    assert status == 403 and problem["code"] == "role_required"
    status, problem = await h.act(oid, "approve", h.auth("ppk", "ppk-budi", pemda="35.16"))
    assert status == 404

    status, listing, _ = await h.call("GET", "/api/v1/orders", h.auth("admin", "adm", pemda="35.16"))
    assert listing["items"] == []
    status, listing, _ = await h.call("GET", "/api/v1/orders", h.seller("prov-a"))
    assert [o["id"] for o in listing["items"]] == [oid]


async def test_rejection_cancellation_and_illegal_transitions_emit_release_events(harness: Harness) -> None:
    h = harness
    rejected = await reserved_order(h, "p-1")
    status, problem, _ = await h.call("POST", f"/api/v1/orders/{rejected['id']}/reject", h.ppk, {})
    assert status == 422 and problem["errors"][0]["field"] == "reason"
    status, body = await h.act(rejected["id"], "reject", h.ppk, reason="anggaran dialihkan")
    assert status == 200 and body["status"] == "rejected" and body["reason"] == "anggaran dialihkan"
    event = (await h.wait_event(rejected["id"], "rejected"))[0]
    assert event.data["rejected_by"] == "ppk" and event.data["actor"]["sub"] == "ppk-budi"

    cancelled = await reserved_order(h, "p-2")
    assert (await h.act(cancelled["id"], "approve", h.ppk))[0] == 200
    status, problem = await h.act(cancelled["id"], "ship", h.seller("prov-a"), tracking_note="x")
    assert status == 409 and problem["code"] == "illegal_transition" and problem["current_status"] == "approved"
    assert (await h.act(cancelled["id"], "accept", h.seller("prov-a")))[0] == 200
    status, problem = await h.act(cancelled["id"], "cancel", h.seller("prov-a"), reason="stok habis")
    assert status == 409 and problem["current_status"] == "accepted"
    status, body = await h.act(cancelled["id"], "cancel", h.pp, reason="salah pesan")
    assert status == 200 and body["status"] == "cancelled"
    event = (await h.wait_event(cancelled["id"], "cancelled"))[0]
    assert event.data["reason"] == "salah pesan" and event.data["from_status"] == "accepted"
    status, problem = await h.act(cancelled["id"], "cancel", h.pp, reason="lagi")
    assert status == 409 and problem["current_status"] == "cancelled"

    status, history, _ = await h.call("GET", f"/api/v1/orders/{cancelled['id']}/history", h.pp)
    assert [e["to"] for e in history["items"]] == ["placed", "reserved", "approved", "accepted", "cancelled"]
    assert history["items"][-1]["reason"] == "salah pesan"


async def test_catalog_rejection_and_reservation_over_the_cap(harness: Harness) -> None:
    h = harness
    await h.seed_product("p-1", "prov-a", 10_000)
    await h.wait_products("p-1")
    _, checkout = await h.place([("p-1", 5)], key())
    order = checkout["orders"][0]
    await h.wait_event(order["id"], "placed")
    rejection = LineRejection(product_id="p-1", code="out_of_stock", message="only 2 left")
    await h.publish(StockRejected(order_id=order["id"], pemda=order["pemda"], rejections=[rejection]))
    body = await h.wait_status(order["id"], "rejected")
    assert "out_of_stock" in body["reason"]

    _, checkout = await h.place([("p-1", 5)], key())
    order = checkout["orders"][0]
    await h.wait_event(order["id"], "placed")
    await h.reserve(order, unit_prices={"p-1": 50_000_000})  # 250 juta by the time it was reserved
    await h.wait_status(order["id"], "rejected")
    event = (await h.wait_event(order["id"], "rejected"))[0]
    assert event.data["rejected_by"] == "cap" and event.data["total"] == 250_000_000


async def test_late_reservation_after_cancel_asks_the_catalog_to_release_again(harness: Harness) -> None:
    h = harness
    await h.seed_product("p-1", "prov-a", 10_000)
    await h.wait_products("p-1")
    _, checkout = await h.place([("p-1", 1)], key())
    order = checkout["orders"][0]
    status, _ = await h.act(order["id"], "cancel", h.pp, reason="batal cepat")
    assert status == 200
    await h.wait_event(order["id"], "cancelled")
    await h.reserve(order)
    await h.wait_event(order["id"], "cancelled", count=2)
    assert (await h.order(order["id"]))["status"] == "cancelled"


async def test_reservation_expires_when_the_ppk_does_not_act(harness: Harness) -> None:
    h = harness
    order = await reserved_order(h)
    due = datetime.fromisoformat(str(order["approval_due_at"]))
    sweep = h.services[0].transitions.expire_due
    # the clock is the test's: nothing is due a second before the deadline, this order is at it
    assert await sweep(due - timedelta(seconds=1)) == 0
    assert await sweep(due + timedelta(seconds=1)) == 1
    expired = await h.wait_status(order["id"], "expired")
    assert expired["reason"]
    event = (await h.wait_event(order["id"], "expired"))[0]
    assert event.data["actor"]["role"] == "system"
    status, problem = await h.act(order["id"], "approve", h.ppk)
    assert status == 409 and problem["current_status"] == "expired"
    status, history, _ = await h.call("GET", f"/api/v1/orders/{order['id']}/history", h.pp)
    assert [e["to"] for e in history["items"]] == ["placed", "reserved", "expired"]


async def test_listing_is_newest_first_with_a_cursor_and_filters(harness: Harness) -> None:
    h = harness
    await h.seed_product("p-1", "prov-a", 10_000)
    await h.seed_product("p-2", "prov-b", 10_000)
    await h.wait_products("p-1", "p-2")
    ids = []
    for n in range(5):
        _, checkout = await h.place([("p-1" if n % 2 else "p-2", 1)], key())
        ids.append(checkout["orders"][0]["id"])
    seen: list[str] = []
    cursor = ""
    while True:
        status, page, _ = await h.call("GET", f"/api/v1/orders?limit=2&cursor={cursor}", h.pp)
        assert status == 200
        seen += [o["id"] for o in page["items"]]
        if not page["next_cursor"]:
            break
        cursor = page["next_cursor"]
    assert seen == list(reversed(ids))
    status, page, _ = await h.call("GET", "/api/v1/orders?provider_id=prov-a&status=placed", h.pp)
    assert {o["id"] for o in page["items"]} == {ids[1], ids[3]}
    status, problem, _ = await h.call("GET", "/api/v1/orders?cursor=!!!", h.pp)
    assert status == 422 and problem["errors"][0]["field"] == "cursor"
    status, problem, _ = await h.call("GET", "/api/v1/orders?status=lost", h.pp)
    assert status == 422


async def test_bast_sequences_are_unique_and_gap_free_across_replicas(harness: Harness) -> None:
    clients = [create_client(harness.settings) for _ in range(2)]
    replicas = [Repository(database(c, harness.settings), Outbox()) for c in clients]
    sequences = await asyncio.gather(*(replicas[n % 2].next_bast_sequence(PEMDA, 2026) for n in range(20)))
    assert sorted(sequences) == list(range(1, 21))
    assert await replicas[0].next_bast_sequence(PEMDA, 2027) == 1  # per pemda and year
    assert await replicas[1].next_bast_sequence("35.16", 2026) == 1
    for client in clients:
        await client.close()


async def test_openapi_documents_every_route(harness: Harness) -> None:
    status, document, _ = await harness.call("GET", "/openapi.json", {})
    assert status == 200
    paths = document["paths"]
    for action in ("approve", "reject", "accept", "ship", "receive", "cancel", "history"):
        assert f"/api/v1/orders/{{id}}/{action}" in paths
    assert paths["/api/v1/orders"]["post"]["x-roles"] == ["pp"]
    assert "security" not in paths["/api/v1/orders/stats"]["get"]
