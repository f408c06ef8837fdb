"""Red-flag indicators on the real orders service (RabbitMQ, Mongo-wire server): each pattern is
planted through the API and the bus (or, for states the service itself can never produce, written
into its database) and found at GET /api/v1/redflags; clean purchases raise none."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import support
from orders_harness import Harness, payment_fields

from bejo_contracts.common import WIB
from bejo_contracts.payments import InvoiceFigures, InvoiceIssued, PaymentSucceeded, SettlementCompleted
from bejo_gateway import rbac, routing
from bejo_kit.auth import Principal
from bejo_kit.outbox import WITHOUT_OUTBOX
from bejo_orders.redflags import INDICATORS
from bejo_orders.settings import RedFlagSettings

pytestmark = pytest.mark.integration

EVERY_DAY = RedFlagSettings(working_days=[0, 1, 2, 3, 4, 5, 6])


def auditor(h: Harness, pemda: str = "35") -> dict[str, str]:
    return h.auth("auditor", "bpk", pemda=pemda)


async def flags(h: Harness, query: str = "", headers: dict[str, str] | None = None) -> dict[str, Any]:
    status, body, _ = await h.call("GET", f"/api/v1/redflags{query}", headers or auditor(h))
    assert status == 200, body
    return body


def of(listing: dict[str, Any], indicator: str) -> list[dict[str, Any]]:
    return [f for f in listing["items"] if f["indicator"] == indicator]


def summary(listing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["indicator"]: s for s in listing["summary"]}


async def place(h: Harness, product_id: str, quantity: int = 1, *, pp: str = "pp-ani", satker: str = "dinkes") -> str:
    status, checkout = await h.place(
        [(product_id, quantity)], uuid.uuid4().hex, headers=h.auth("pp", pp, satker=satker)
    )
    assert status == 201, checkout
    order_id: str = checkout["orders"][0]["id"]
    return order_id


async def reserve(h: Harness, order_id: str, satker: str = "dinkes") -> dict[str, Any]:
    await h.wait_event(order_id, "placed")
    order = await h.order(order_id, h.auth("pp", "pp-ani", satker=satker))
    await h.reserve(order)
    return await wait(h, order_id, "reserved", satker)


async def wait(h: Harness, order_id: str, status: str, satker: str = "dinkes") -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        order = await h.order(order_id, h.auth("pp", "pp-ani", satker=satker))
        return order if order["status"] == status else None

    result: dict[str, Any] = await support.wait_until(reached)
    return result


async def deliver(h: Harness, order_id: str, satker: str = "dinkes") -> dict[str, Any]:
    """Reserved -> approved -> accepted -> shipped -> received (BAST)."""
    order = await reserve(h, order_id, satker)
    ppk = h.auth("ppk", "ppk-budi", satker=satker)
    seller = h.seller(order["provider_id"])
    for action, headers, body in (
        ("approve", ppk, {}),
        ("accept", seller, {}),
        ("ship", seller, {"tracking_note": "JNE 1"}),
        ("receive", ppk, {}),
    ):
        status, payload = await h.act(order_id, action, headers, **body)
        assert status == 200, payload
    return await h.order(order_id, h.auth("pp", "pp-ani", satker=satker))


async def pay(h: Harness, order: dict[str, Any], satker: str = "dinkes") -> None:
    fields = payment_fields(order, f"pay-{order['id']}")
    total = order["total"]
    invoice = InvoiceFigures(
        number="INV", base=total, ppn=total * 11 // 100, pph22=total // 200, total=total * 111 // 100, net_to_provider=0
    )
    await h.publish(InvoiceIssued(**fields, invoice=invoice, bast_number=order["bast_number"]))
    await h.publish(PaymentSucceeded(**fields, amount=invoice.total, paid_at=datetime.now(UTC), reference="R"))
    await wait(h, order["id"], "paid", satker)
    await h.publish(SettlementCompleted(**fields, net_to_provider=0, ppn=invoice.ppn, pph22=invoice.pph22))
    await wait(h, order["id"], "completed", satker)


async def seed(h: Harness, *products: tuple[str, str, int, str, int | None]) -> None:
    for product_id, provider, price, category, het in products:
        await h.seed_product(product_id, provider, price, category_id=category, het=het)
    await h.wait_products(*(p[0] for p in products))


# -- clean data ---------------------------------------------------------------------------------


@pytest.mark.parametrize("harness", [{"redflags": EVERY_DAY}], indirect=True)
async def test_clean_purchases_raise_no_flag_and_every_rule_says_what_it_examined(harness: Harness) -> None:
    h = harness
    await seed(
        h,
        ("p-a", "prov-a", 50_000, "atk", 60_000),
        ("p-b", "prov-b", 52_000, "atk", None),
        ("p-c", "prov-c", 48_000, "atk", None),
    )
    # six paid purchases spread evenly over three providers, ordinary prices, far under any cap
    for product_id in ("p-a", "p-b", "p-c", "p-a", "p-b", "p-c"):
        await pay(h, await deliver(h, await place(h, product_id, 3)))

    listing = await flags(h, "?pemda=35.15")
    assert listing["items"] == [] and listing["next_cursor"] is None
    counts = summary(listing)
    assert set(counts) == set(INDICATORS) and all(s["flags"] == 0 for s in counts.values())
    assert listing["orders_examined"] == 6 and not listing["truncated"]
    # the money rule checked every order: zero is a finding, not an absence of data
    assert counts["out_of_sequence_money"]["examined"] == 6
    assert counts["off_hours_approval"]["examined"] == 12  # six Surat Pesanan, six BAST
    assert counts["price_outlier"]["examined"] == 6 and counts["supplier_concentration"]["examined"] == 2
    assert "HET" in counts["above_het"]["rule"]


# -- planted patterns ---------------------------------------------------------------------------


@pytest.mark.parametrize("harness", [{"redflags": EVERY_DAY}], indirect=True)
async def test_split_purchases_just_under_the_cap_are_found(harness: Harness) -> None:
    h = harness
    # Rp 45 juta each: within 80% of the Rp 50 juta toko daring cap, three together far over it
    await seed(h, ("p-laptop", "prov-a", 45_000_000, "komputer", None), ("p-meja", "prov-b", 1_000_000, "mebel", None))
    split = [await place(h, "p-laptop") for _ in range(3)]
    await place(h, "p-laptop", satker="bappeda")  # one such order elsewhere is no split
    await place(h, "p-meja", 10)

    listing = await flags(h, "?indicator=split_purchase")
    [flag] = listing["items"]
    assert flag["indicator"] == "split_purchase" and sorted(flag["order_ids"]) == sorted(split)
    assert flag["satker"] == "dinkes" and flag["provider_id"] == "prov-a"
    assert flag["amount"] == 135_000_000 and flag["evidence"]["cap"] == 50_000_000
    assert flag["evidence"]["totals"] == [45_000_000] * 3 and flag["rule"].startswith("2+ orders")


@pytest.mark.parametrize(
    "harness", [{"redflags": EVERY_DAY.model_copy(update={"concentration_min_orders": 3})}], indirect=True
)
async def test_one_provider_taking_most_of_a_satkers_spend_is_found(harness: Harness) -> None:
    h = harness
    await seed(h, ("p-a", "prov-a", 100_000, "atk", None), ("p-b", "prov-b", 100_000, "atk", None))
    mine = []
    for product_id, quantity in (("p-a", 5), ("p-a", 4), ("p-b", 1)):
        order_id = await place(h, product_id, quantity)
        await pay(h, await deliver(h, order_id))
        if product_id == "p-a":
            mine.append(order_id)

    listing = await flags(h, "?indicator=supplier_concentration&pemda=35.15")
    by_scope = {f["evidence"]["scope"]: f for f in listing["items"]}
    assert set(by_scope) == {"satker", "pemda"}
    flag = by_scope["satker"]
    assert flag["provider_id"] == "prov-a" and sorted(flag["order_ids"]) == sorted(mine)
    assert flag["amount"] == 900_000 and flag["evidence"]["total_spend"] == 1_000_000
    assert flag["evidence"]["share"] == 0.9 and flag["satker"] == "dinkes"


@pytest.mark.parametrize("harness", [{"redflags": EVERY_DAY}], indirect=True)
async def test_price_far_above_the_category_median_and_above_het_are_found(harness: Harness) -> None:
    h = harness
    await seed(
        h,
        ("p-kertas", "prov-a", 50_000, "atk", None),
        ("p-emas", "prov-b", 400_000, "atk", None),  # "paper" at 8x what the category pays
        ("p-tinta", "prov-c", 130_000, "tinta", 100_000),  # over its HET
    )
    ordinary = [await place(h, "p-kertas", 2) for _ in range(5)]
    outlier = await place(h, "p-emas", 2)
    over_het = await place(h, "p-tinta", 3)

    listing = await flags(h)
    [high] = of(listing, "price_outlier")
    assert high["order_ids"] == [outlier] and high["evidence"]["category_median"] == 50_000
    assert high["evidence"]["unit_price"] == 400_000 and high["evidence"]["ratio"] == 8.0
    assert high["amount"] == 800_000 and high["provider_id"] == "prov-b"
    [het] = of(listing, "above_het")
    assert (
        het["order_ids"] == [over_het] and het["evidence"]["het"] == 100_000 and het["evidence"]["over_het"] == 30_000
    )
    assert not set(ordinary) & {o for f in listing["items"] for o in f["order_ids"]}


@pytest.mark.parametrize("harness", [{"redflags": EVERY_DAY}], indirect=True)
async def test_separation_of_duties_attempts_are_recorded_when_refused(harness: Harness) -> None:
    h = harness
    await seed(h, ("p-a", "prov-a", 75_000, "atk", None))
    # the PP names themselves as the approving PPK: refused at checkout
    status, problem = await h.place([("p-a", 2)], uuid.uuid4().hex, ppk_id="pp-ani")
    assert status == 422 and problem["errors"][0]["field"] == "ppk_id"
    order_id = await place(h, "p-a", 4)
    await reserve(h, order_id)
    # the PP, holding a PPK token, tries to sign their own order; another PPK tries to sign it
    status, problem = await h.act(order_id, "approve", h.auth("ppk", "pp-ani"))
    assert status == 403
    status, problem = await h.act(order_id, "approve", h.auth("ppk", "ppk-lain"))
    assert status == 403 and problem["code"] == "not_order_ppk"
    # and, in the stored history, an order its PP also approved (the service never writes one)
    planted = await h.db["orders"].find_one({"_id": order_id})
    assert planted is not None
    planted["_id"] = "ord_planted_sod"  # inserted without the outbox fields: no events are raised
    planted["history"].append(
        {
            "actor_sub": "pp-ani",
            "role": "ppk",
            "name": None,
            "at": datetime.now(UTC),
            "from": "reserved",
            "to": "approved",
        }
    )
    planted["status"] = "approved"
    await h.db["orders"].insert_one({k: v for k, v in planted.items() if k not in WITHOUT_OUTBOX})

    listing = await flags(h, "?indicator=separation_of_duties")
    kinds = sorted(f["evidence"].get("kind") for f in listing["items"])
    assert kinds == ["placed_and_approved", "sod_not_order_ppk", "sod_same_person_checkout", "sod_self_approval"]
    by_kind = {f["evidence"]["kind"]: f for f in listing["items"]}
    assert by_kind["sod_same_person_checkout"]["amount"] == 150_000
    assert by_kind["sod_same_person_checkout"]["evidence"]["refused"] is True
    assert by_kind["sod_self_approval"]["order_ids"] == [order_id]
    assert by_kind["sod_self_approval"]["evidence"]["actor_sub"] == "pp-ani"
    assert by_kind["sod_not_order_ppk"]["evidence"]["actor_sub"] == "ppk-lain"
    assert by_kind["placed_and_approved"]["order_ids"] == ["ord_planted_sod"]
    assert by_kind["placed_and_approved"]["evidence"]["refused"] is False


@pytest.mark.parametrize("harness", [{"redflags": EVERY_DAY}], indirect=True)
async def test_money_without_a_bast_is_refused_and_listed_and_a_corrupt_order_is_found(harness: Harness) -> None:
    h = harness
    await seed(h, ("p-a", "prov-a", 100_000, "atk", None))
    order_id = await place(h, "p-a", 2)
    order = await reserve(h, order_id)
    seller = h.seller("prov-a")
    assert (await h.act(order_id, "approve", h.ppk))[0] == 200
    assert (await h.act(order_id, "accept", seller))[0] == 200
    assert (await h.act(order_id, "ship", seller, tracking_note="JNE 2"))[0] == 200
    # a payment for goods nobody signed a BAST for: the order refuses it (stays shipped)
    paid = PaymentSucceeded(
        **payment_fields(order, "pay-early"), amount=222_000, paid_at=datetime.now(UTC), reference="R"
    )
    envelope = await h.publish(paid)
    await h.publish(paid, envelope_id=envelope.id)  # redelivered: still one attempt

    async def listed() -> dict[str, Any] | None:
        listing = await flags(h, "?indicator=out_of_sequence_money")
        return listing if listing["items"] else None

    listing = await support.wait_until(listed)
    [refused] = listing["items"]
    assert refused["order_ids"] == [order_id] and refused["evidence"]["refused"] is True
    assert refused["evidence"]["kind"] == "money_without_bast" and refused["evidence"]["status"] == "shipped"
    assert (await h.order(order_id))["status"] == "shipped"

    # a stored order that is completed without a BAST, paid after its settlement (never written by
    # the service): the state check finds it
    corrupt = await h.db["orders"].find_one({"_id": order_id})
    assert corrupt is not None
    now = datetime.now(UTC)
    corrupt.update(
        _id="ord_corrupt",
        status="completed",
        paid_at=now,
        history=[
            *corrupt["history"],
            {"actor_sub": "system", "role": "system", "name": None, "at": now - timedelta(hours=1)}
            | {"from": "shipped", "to": "completed"},
        ],
    )
    await h.db["orders"].insert_one({k: v for k, v in corrupt.items() if k not in WITHOUT_OUTBOX})
    listing = await flags(h, "?indicator=out_of_sequence_money")
    found = {f["order_ids"][0]: f for f in listing["items"]}
    assert set(found) == {order_id, "ord_corrupt"}
    assert found["ord_corrupt"]["evidence"]["problems"] == ["payment_without_bast", "settled_before_paid"]


today = datetime.now(WIB).date()


@pytest.mark.parametrize(
    "harness", [{"redflags": RedFlagSettings(working_days=[0, 1, 2, 3, 4, 5, 6], holidays=[today])}], indirect=True
)
async def test_surat_pesanan_and_bast_signed_on_a_holiday_are_found(harness: Harness) -> None:
    h = harness
    # today is configured a holiday: signing today is the planted anomaly (independent of the clock)
    await seed(h, ("p-a", "prov-a", 100_000, "atk", None))
    order_id = await place(h, "p-a", 1)
    if datetime.now(WIB).date() != today:  # pragma: no cover - midnight WIB passed meanwhile
        pytest.skip("the WIB date changed during the test")
    await deliver(h, order_id)
    listing = await flags(h, "?indicator=off_hours_approval")
    assert sorted(f["evidence"]["document"] for f in listing["items"]) == ["bast", "surat_pesanan"]
    assert {f["evidence"]["why"] for f in listing["items"]} == {"holiday"}
    assert {f["evidence"]["signed_by"] for f in listing["items"]} == {"ppk-budi"}


# -- access, filters and paging -----------------------------------------------------------------


@pytest.mark.parametrize("harness", [{"redflags": EVERY_DAY}], indirect=True)
async def test_scoped_to_the_callers_pemda_filtered_by_period_and_paged(harness: Harness) -> None:
    h = harness
    await seed(h, ("p-laptop", "prov-a", 45_000_000, "komputer", None), ("p-x", "prov-b", 90_000, "atk", 50_000))
    for _ in range(2):
        await place(h, "p-laptop")
    for _ in range(3):
        await place(h, "p-x")  # three above-HET flags

    listing = await flags(h, "?limit=2")
    assert len(listing["items"]) == 2 and listing["next_cursor"]
    rest = await flags(h, f"?limit=2&cursor={listing['next_cursor']}")
    more = await flags(h, f"?limit=2&cursor={rest['next_cursor']}") if rest["next_cursor"] else {"items": []}
    seen = [f["id"] for page in (listing, rest, more) for f in page["items"]]
    assert len(seen) == len(set(seen)) == 4  # one split flag + three above HET
    times = [f["at"] for page in (listing, rest, more) for f in page["items"]]
    assert times == sorted(times, reverse=True)

    # the caller's own pemda and below only
    assert (await flags(h, "", auditor(h, "35.15")))["items"]
    assert (await flags(h, "", h.auth("admin", "adm", pemda="35.15")))["items"]
    status, problem, _ = await h.call("GET", "/api/v1/redflags?pemda=35.15", auditor(h, "35.16"))
    assert status == 403 and problem["code"] == "pemda_out_of_scope"
    assert (await flags(h, "", auditor(h, "35.16")))["items"] == []
    for role in ("pp", "ppk", "bendahara"):
        status, _, _ = await h.call("GET", "/api/v1/redflags", h.auth(role, f"{role}-x"))
        assert status == 403
    status, _, _ = await h.call("GET", "/api/v1/redflags", {})
    assert status == 401

    # the period: orders placed before 2000 there are none
    assert (await flags(h, "?to=2000-01-31"))["items"] == []
    assert len((await flags(h, f"?from={today.isoformat()}"))["items"]) == 4
    for bad in ("?from=kemarin", "?indicator=nope", "?limit=0", "?cursor=!!!", "?extra=1"):
        status, problem, _ = await h.call("GET", f"/api/v1/redflags{bad}", auditor(h))
        assert status == 422, (bad, problem)

    status, document, _ = await h.call("GET", "/openapi.json", {})
    assert document["paths"]["/api/v1/redflags"]["get"]["x-roles"] == ["admin", "auditor"]


def test_the_gateway_routes_red_flags_to_orders_for_oversight_only() -> None:
    assert routing.upstream_for("/api/v1/redflags") == "orders"
    rule = rbac.AccessTable().rule_for("GET", "/api/v1/redflags")
    assert rule.access is rbac.Access.ROLES and set(rule.roles) == {"admin", "auditor"}
    rbac.authorize(rule, Principal(sub="bpk", name=None, role="auditor", pemda="35"))
    with pytest.raises(Exception, match="role"):
        rbac.authorize(rule, Principal(sub="x", name=None, role="pp", pemda="35", satker="s"))
