"""Two replicas of the orders service on the real RabbitMQ and Mongo-wire server.

Both apps are built from the same settings: one database, competing consumers on the same queues,
each with its own expiry sweep and outbox relay. Every race that matters for orders is run through
both at once: exactly the right number of commands succeed, and no effect happens twice.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import support
from orders_harness import Harness, key, product

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("harness", [{"replicas": 2}], indirect=True)]

FAR_FUTURE = datetime.now(UTC) + timedelta(days=365)


async def reserved_orders(h: Harness, count: int) -> list[dict[str, Any]]:
    await h.seed_product("p-1", "prov-a", 10_000)
    await h.wait_products("p-1")
    orders = []
    for n in range(count):
        status, checkout = await h.replica(n % 2).place([("p-1", 1)], key())
        assert status == 201, checkout
        orders.append(checkout["orders"][0])
    for order in orders:
        await h.reserve(order)
    return [await h.wait_status(o["id"], "reserved") for o in orders]


async def history(h: Harness, order_id: str) -> list[tuple[str | None, str]]:
    status, body, _ = await h.call("GET", f"/api/v1/orders/{order_id}/history", h.pp)
    assert status == 200, body
    return [(e["from"], e["to"]) for e in body["items"]]


async def drained(h: Harness) -> None:
    """Every event written is published (no order holds an unpublished outbox entry)."""

    async def empty() -> bool:
        return await h.db["orders"].count_documents({"outbox_pending": True}) == 0

    await support.wait_until(empty)


def distinct_events(h: Harness, order_id: str, *kinds: str) -> set[str]:
    return {e.id for e in h.seen if e.subject == order_id and e.type.split(".")[3] in kinds}


async def test_concurrent_commands_on_one_order_through_both_replicas_one_wins(harness: Harness) -> None:
    h = harness
    orders = await reserved_orders(h, 3)
    seller = h.seller("prov-a")
    approve = ("approve", h.ppk, {})
    reject = ("reject", h.ppk, {"reason": "anggaran dialihkan"})
    cancel_pp = ("cancel", h.pp, {"reason": "salah pesan"})
    cancel_seller = ("cancel", seller, {"reason": "stok habis"})
    # Commands that exclude each other once one is applied (a cancel after an approval would be
    # legal, so approvals only meet rejections): each is sent four times, half through each replica.
    contests = [[approve], [approve, reject], [reject, cancel_pp, cancel_seller]]
    target = {"approve": "approved", "reject": "rejected", "cancel": "cancelled"}

    async def contest(order_id: str, commands: list[Any]) -> list[tuple[str, int, dict[str, Any]]]:
        sent = [(n % 2, command) for command in commands for n in range(4)]
        random.shuffle(sent)
        results = await asyncio.gather(
            *(h.replica(n).act(order_id, action, headers, **body) for n, (action, headers, body) in sent)
        )
        return [(c[0], status, body) for (_, c), (status, body) in zip(sent, results, strict=True)]

    outcomes = await asyncio.gather(*(contest(o["id"], c) for o, c in zip(orders, contests, strict=True)))
    await drained(h)
    for order, results in zip(orders, outcomes, strict=True):
        winners = [(action, body) for action, status, body in results if status == 200]
        assert len(winners) == 1, results
        assert all(status == 409 for _, status, _ in results if status != 200), results
        action, body = winners[0]
        final = await h.order(order["id"])
        assert final["status"] == body["status"] == target[action]
        steps = await history(h, order["id"])
        assert steps == [(None, "placed"), ("placed", "reserved"), ("reserved", final["status"])]
        await h.wait_event(order["id"], final["status"])
        assert len(distinct_events(h, order["id"], *target.values())) == 1


async def test_expiry_sweeps_on_both_replicas_race_the_ppk_and_act_once(harness: Harness) -> None:
    h = harness
    orders = await reserved_orders(h, 6)
    approvals = [o for n, o in enumerate(orders) if n % 2 == 0]

    # Both replicas sweep twice, as if every deadline had passed, while the PPK approves half.
    sweeps = [service.transitions.expire_due(FAR_FUTURE) for service in h.services * 2]
    approving = [h.replica(n % 2).act(o["id"], "approve", h.ppk) for n, o in enumerate(approvals)]
    results = await asyncio.gather(*sweeps, *approving)
    expired_here: list[int] = list(results[: len(sweeps)])
    approved_ids = {o["id"] for o, (status, _) in zip(approvals, results[len(sweeps) :], strict=True) if status == 200}

    await drained(h)
    statuses = {o["id"]: (await h.order(o["id"]))["status"] for o in orders}
    assert {oid for oid, s in statuses.items() if s == "approved"} == approved_ids
    expired = [oid for oid, s in statuses.items() if s == "expired"]
    assert len(expired) + len(approved_ids) == len(orders)
    # each overdue order was expired by exactly one sweep on one replica
    assert sum(expired_here) == len(expired) >= len(orders) - len(approvals)
    for oid, status in statuses.items():
        assert await history(h, oid) == [(None, "placed"), ("placed", "reserved"), ("reserved", status)]
        await h.wait_event(oid, status)
        assert len(distinct_events(h, oid, "approved", "expired")) == 1
    assert all([await service.transitions.expire_due(FAR_FUTURE) == 0 for service in h.services])


async def test_bast_numbers_issued_through_both_replicas_are_unique(harness: Harness) -> None:
    h = harness
    orders = await reserved_orders(h, 6)
    seller = h.seller("prov-a")
    for n, order in enumerate(orders):
        replica = h.replica(n % 2)
        assert (await replica.act(order["id"], "approve", h.ppk))[0] == 200
        assert (await replica.act(order["id"], "accept", seller))[0] == 200
        assert (await replica.act(order["id"], "ship", seller, tracking_note=f"JNE {n}"))[0] == 200
    # every order received twice at once, once through each replica
    results = await asyncio.gather(*(h.replica(n).act(o["id"], "receive", h.ppk) for o in orders for n in (0, 1)))
    numbers = [body["bast_number"] for status, body in results if status == 200]
    assert len(numbers) == len(orders), results
    assert all(status == 409 for status, _ in results if status != 200)
    assert len(set(numbers)) == len(orders)
    # numbers are unique and increasing; a receive that lost its race may leave a gap
    sequences = sorted(int(n.rsplit("/", 1)[1]) for n in numbers)
    assert sequences[0] >= 1 and sequences[-1] <= 2 * len(orders)
    stored = {(await h.order(o["id"]))["bast_number"] for o in orders}
    assert stored == set(numbers)


async def test_one_checkout_and_one_effect_per_event_across_replicas(harness: Harness) -> None:
    h = harness
    await h.seed_product("p-1", "prov-a", 10_000)
    await h.wait_products("p-1")
    k = key()
    results = await asyncio.gather(*(h.replica(n % 2).place([("p-1", 2)], k) for n in range(6)))
    assert {status for status, _ in results} == {201}
    assert len({body["orders"][0]["id"] for _, body in results}) == 1
    order = results[0][1]["orders"][0]
    status, listing, _ = await h.call("GET", "/api/v1/orders", h.pp)
    assert status == 200
    assert [o["id"] for o in listing["items"]] == [order["id"]]

    # a StockReserved delivered four times: the replicas compete for the copies, one applies it
    first = await h.reserve(order)
    for _ in range(3):
        await h.bus.publish(first)
    await h.wait_status(order["id"], "reserved")
    await drained(h)
    await h.wait_event(order["id"], "reserved")
    assert await history(h, order["id"]) == [(None, "placed"), ("placed", "reserved")]
    assert len(distinct_events(h, order["id"], "placed")) == 1
    assert len(distinct_events(h, order["id"], "reserved")) == 1


async def test_product_and_provider_read_models_keep_the_newest_across_replicas(harness: Harness) -> None:
    h = harness
    repos = [service.repo for service in h.services]
    for pid in ("p-a", "p-b", "p-c"):
        versions = list(range(1, 9)) * 2
        random.shuffle(versions)
        await asyncio.gather(
            *(repos[n % 2].upsert_product(product(pid, "prov-a", 1_000 * v, version=v)) for n, v in enumerate(versions))
        )
        stored = await h.stored_product(pid)
        assert stored is not None
        assert stored["version"] == 8 and stored["snapshot"]["price"] == 8_000

    base = datetime.now(UTC).replace(microsecond=0)
    changes = [(base + timedelta(seconds=s), status) for s, status in enumerate(["registered", "verified"] * 4)]
    random.shuffle(changes)
    await asyncio.gather(
        *(repos[n % 2].upsert_provider("prov-x", status, at) for n, (at, status) in enumerate(changes))
    )
    assert await repos[0].provider_statuses(["prov-x"]) == {"prov-x": "verified"}  # the latest was verified
    assert not await repos[1].upsert_provider("prov-x", "suspended", base)  # older than what is stored
