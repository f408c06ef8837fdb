"""Two replicas of the payments service (two `build(settings)` apps on the same settings: one database,
competing consumers, each running its own sweeps) racing on the same payments, against the real
RabbitMQ and Mongo-wire server. Whatever interleaving happens, each effect happens exactly once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from payments_harness import PEMDA, Payments, StartPayments, by_account, callback, ledger_sum
from support import wait_until

from bejo_contracts.common import WIB
from bejo_contracts.payments import (
    InvoiceIssued,
    PaymentSucceeded,
    RefundCompleted,
    SettlementCompleted,
    VirtualAccountExpired,
)
from bejo_kit.mongo import utcnow
from bejo_payments import scheduler
from bejo_payments.domain import Payment

pytestmark = pytest.mark.integration


async def post(p: Payments, path: str, headers: dict[str, str], json: Any) -> tuple[int, Any]:
    async with p.http.post(p.base_url + path, headers=headers, json=json) as response:
        return response.status, await response.json(content_type=None)


def statuses(payment: Payment) -> list[str]:
    return [entry.status for entry in payment.history]


async def test_the_same_bank_callback_on_both_replicas_pays_once_with_one_set_of_postings(
    start_payments: StartPayments,
) -> None:
    async with start_payments(replicas=2) as p:
        a, b = p.replicas
        payment = await p.invoiced(p.received(lines=[(1, 750_000)], pkp=False))
        va, total = payment["va_number"], payment["invoice"]["total"]
        moment = datetime.now(UTC)
        # The bank resends one notification to both replicas at once, while two other notifications
        # (other external ids) for the same bill race it.
        same = [callback(replica, va, total, external_id="88001", now=moment) for replica in (a, b, a, b, a, b)]
        others = [callback(replica, va, total, external_id=f"8810{i}", now=moment) for i, replica in enumerate((a, b))]
        results = await asyncio.gather(*same, *others)
        duplicates, competitors = results[: len(same)], results[len(same) :]
        assert all(result == duplicates[0] for result in duplicates), duplicates
        answers = [duplicates[0][1]["responseCode"]] + [body["responseCode"] for _, body in competitors]
        assert sorted(answers) == ["2002500", "4042514", "4042514"], answers
        # Resends to either replica get the first answer back.
        assert await callback(b, va, total, external_id="88001", now=moment) == duplicates[0]
        assert await callback(a, va, total, external_id="88100", now=moment) == competitors[0]

        doc = await p.service.repo.get(payment["id"])
        assert doc is not None and statuses(doc) == ["awaiting_payment", "paid", "settled"]
        assert [entry.kind for entry in doc.ledger] == ["payment_received", "settlement"]
        ledger = await p.ledger(payment["id"])
        assert ledger_sum(ledger) == 0
        assert by_account(ledger) == {
            f"satker:{p.satker}": -750_000,
            f"provider:{p.provider_id}": 746_250,
            "tax:pph22": 3_750,
        }
        await wait_until(lambda: p.events_of(payment["id"], SettlementCompleted.TYPE))
        await wait_until(lambda: p.events_of(payment["id"], PaymentSucceeded.TYPE))
        assert len(p.events_of(payment["id"], PaymentSucceeded.TYPE)) == 1
        assert len(p.events_of(payment["id"], SettlementCompleted.TYPE)) == 1


async def test_both_replicas_sweeping_expire_each_va_once(start_payments: StartPayments) -> None:
    async with start_payments(replicas=2) as p:
        payments = [await p.invoiced(p.received(lines=[(1, 100_000 + n)])) for n in range(3)]
        # Due for both sweeps at once (their own loops, on the real clock, see nothing due for a day).
        later = utcnow() + timedelta(days=2)
        counts = await asyncio.gather(*(scheduler.expire_due(replica.service, later) for replica in p.replicas))
        assert sum(counts) == len(payments), counts
        assert await asyncio.gather(*(scheduler.expire_due(replica.service, later) for replica in p.replicas)) == [0, 0]
        for payment in payments:
            doc = await p.service.repo.get(payment["id"])
            assert doc is not None and statuses(doc) == ["awaiting_payment", "va_expired"]
            await wait_until(lambda pid=payment["id"]: p.events_of(pid, VirtualAccountExpired.TYPE))
            assert len(p.events_of(payment["id"], VirtualAccountExpired.TYPE)) == 1


async def test_invoices_from_both_replicas_are_numbered_without_duplicates_or_gaps(
    start_payments: StartPayments,
) -> None:
    async with start_payments(replicas=2) as p:
        orders = [p.received(lines=[(1, 10_000)]) for _ in range(12)]
        await asyncio.gather(*(p.replicas[n % 2].service.on_order_received(o) for n, o in enumerate(orders)))
        year = orders[0].occurred_at.astimezone(WIB).year
        numbers = sorted([(await p.payment_of(o.order_id))["invoice"]["number"] for o in orders])
        assert numbers == [f"INV/{PEMDA}/{year}/{n:06d}" for n in range(1, 13)]

        # One OrderReceived handled by both replicas at once: one payment, one InvoiceIssued.
        order = p.received(lines=[(1, 20_000)])
        await asyncio.gather(*(replica.service.on_order_received(order) for replica in p.replicas))
        payment = await p.payment_of(order.order_id)
        await wait_until(lambda: p.events_of(payment["id"], InvoiceIssued.TYPE))
        assert len(p.events_of(payment["id"], InvoiceIssued.TYPE)) == 1


async def test_racing_charges_and_refunds_through_both_replicas_take_effect_once(
    start_payments: StartPayments,
) -> None:
    async with start_payments(replicas=2) as p:
        a, b = p.replicas
        payment = await p.invoiced(p.received(lines=[(2, 40_000)], method="kkpd"))
        path = f"/api/v1/payments/{payment['id']}"
        charges = await asyncio.gather(
            *(post(replica, f"{path}/charge", p.bendahara(), {"card_token": "kkpd-tok-9"}) for replica in (a, b))
        )
        assert sorted(status for status, _ in charges) == [200, 409], charges
        assert [body["code"] for status, body in charges if status == 409] == ["illegal_transition"]

        refunds = await asyncio.gather(
            *(post(replica, f"{path}/refund", p.admin(), {"reason": "barang rusak"}) for replica in (a, b))
        )
        assert sorted(status for status, _ in refunds) == [200, 409], refunds

        doc = await p.service.repo.get(payment["id"])
        assert doc is not None and statuses(doc) == ["awaiting_payment", "paid", "settled", "refunded"]
        ledger = await p.ledger(payment["id"])
        assert [entry.kind for entry in doc.ledger] == [
            "payment_received",
            "settlement",
            "settlement_reversal",
            "refund",
        ]
        assert ledger_sum(ledger) == 0 and by_account(ledger) == {}
        await wait_until(lambda: p.events_of(payment["id"], RefundCompleted.TYPE))
        assert len(p.events_of(payment["id"], PaymentSucceeded.TYPE)) == 1
        assert len(p.events_of(payment["id"], RefundCompleted.TYPE)) == 1
