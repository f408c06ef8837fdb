"""A zero-rupiah invoice (a 100% discount) settles at once with no payment: no VA or card charge,
InvoiceIssued + PaymentSucceeded (amount 0) + SettlementCompleted, postings of zero in the ledger."""

from __future__ import annotations

import pytest
from payments_harness import StartPayments, callback
from support import wait_until

from bejo_contracts.payments import InvoiceIssued, PaymentSucceeded, SettlementCompleted, VirtualAccountIssued
from bejo_payments.domain import ZERO_AMOUNT_REFERENCE

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("method", ["va", "kkpd"])
async def test_a_zero_rupiah_invoice_is_settled_at_once_with_its_events_and_ledger(
    start_payments: StartPayments, method: str
) -> None:
    async with start_payments() as p:
        order = p.received(lines=[(3, 0)], method=method)
        payment = await p.invoiced(order)
        assert payment["status"] == "settled" and payment["invoice"]["total"] == 0
        assert payment["va_number"] is None and payment["virtual_accounts"] == []
        assert payment["reference"] == ZERO_AMOUNT_REFERENCE and payment["paid_at"] == payment["settled_at"]

        await wait_until(lambda: p.events_of(payment["id"], SettlementCompleted.TYPE))
        kinds = [e.type for e in p.events_of(payment["id"])]
        assert sorted(kinds) == sorted([InvoiceIssued.TYPE, PaymentSucceeded.TYPE, SettlementCompleted.TYPE])
        assert VirtualAccountIssued.TYPE not in kinds
        succeeded = p.events_of(payment["id"], PaymentSucceeded.TYPE)[0].data
        assert (succeeded["amount"], succeeded["reference"]) == (0, ZERO_AMOUNT_REFERENCE)

        ledger = await p.ledger(payment["id"])
        assert [(e["kind"], e["account"], e["amount"]) for e in ledger] == [
            ("payment_received", f"satker:{p.satker}", 0),
            ("payment_received", "escrow", 0),
            ("settlement", "escrow", 0),
            ("settlement", f"provider:{p.provider_id}", 0),
            ("settlement", "tax:ppn", 0),
            ("settlement", "tax:pph22", 0),
        ]

        # Nothing more can be paid on it: no card charge, and no VA to reissue.
        if method == "kkpd":
            problem = await p.post(
                f"/api/v1/payments/{payment['id']}/charge", p.bendahara(), {"card_token": "kkpd-tok-0"}, status=409
            )
            assert problem["code"] == "illegal_transition"
        else:
            problem = await p.post(f"/api/v1/payments/{payment['id']}/va", p.bendahara(), status=409)
            assert problem["code"] == "illegal_transition"
        # A redelivered OrderReceived changes nothing.
        await p.publish(order)
        status, _ = await callback(p, "8808000000000000", 1)
        assert status == 404
        assert await p.get(f"/api/v1/payments/{payment['id']}", p.admin()) == payment
