"""The payments service end to end on the real RabbitMQ and Mongo-wire server: OrderReceived envelopes
go onto the bus, bank callbacks arrive over real HTTP, signed as the sandbox bank signs them."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from payments_harness import PEMDA, Payments, StartPayments, access_token, by_account, callback, ledger_sum
from support import bearer, serve, service_settings, token, wait_until

from bejo_contracts.common import WIB
from bejo_contracts.orders import OrderCancelled, OrderReceived
from bejo_contracts.payments import (
    InvoiceIssued,
    PaymentSucceeded,
    RefundCompleted,
    SettlementCompleted,
    VirtualAccountExpired,
    VirtualAccountIssued,
)
from bejo_payments import scheduler
from bejo_payments.app import build
from bejo_payments.callbacks import CALLBACK_PATH
from bejo_payments.scheduler import SETTLEMENT_GRACE
from bejo_payments.settings import PaymentsSettings

pytestmark = pytest.mark.integration


async def test_received_to_invoice_to_va_to_signed_callback_to_paid_and_settled(start_payments: StartPayments) -> None:
    async with start_payments() as p:
        order = p.received(lines=[(3, 250_000), (1, 250_001)])  # base 1,000,001
        received = p.bus.envelope(order)
        await p.bus.publish(received)
        payment = await p.payment_of(order.order_id)
        year = order.occurred_at.astimezone(WIB).year
        assert payment["invoice"] == {
            "number": f"INV/{PEMDA}/{year}/000001",
            "base": 1_000_001,
            "ppn": 110_000,  # 110000.11 floored
            "pph22": 5_000,  # 5000.005 floored
            "total": 1_110_001,
            "net_to_provider": 995_001,
        }
        assert payment["status"] == "awaiting_payment" and payment["method"] == "va"
        va = payment["va_number"]
        assert va.startswith(p.settings.va_prefix) and len(va) == 16
        await wait_until(lambda: p.events_of(payment["id"], VirtualAccountIssued.TYPE))
        issued = p.events_of(payment["id"], InvoiceIssued.TYPE)[0]
        assert issued.data["invoice"] == payment["invoice"] and issued.data["bast_number"] == order.bast_number

        # A redelivered OrderReceived changes nothing; the next order gets the next number.
        await p.bus.publish(received)
        second = await p.invoiced(p.received(lines=[(1, 10_000)]))
        assert second["invoice"]["number"] == f"INV/{PEMDA}/{year}/000002"
        assert (await p.payment_of(order.order_id)) == payment

        paid = await p.sandbox_pay(va, 1_110_001)
        assert paid["http_status"] == 200 and paid["response"]["responseCode"] == "2002500", paid

        settled = await p.get(f"/api/v1/payments/{payment['id']}", p.bendahara())
        assert settled["status"] == "settled" and settled["reference"] == paid["external_id"]
        await wait_until(lambda: p.events_of(payment["id"], SettlementCompleted.TYPE))
        succeeded = p.events_of(payment["id"], PaymentSucceeded.TYPE)
        assert len(succeeded) == 1 and succeeded[0].data["amount"] == 1_110_001
        settlement = p.events_of(payment["id"], SettlementCompleted.TYPE)[0].data
        assert (settlement["net_to_provider"], settlement["ppn"], settlement["pph22"]) == (995_001, 110_000, 5_000)

        ledger = await p.ledger(payment["id"])
        assert [(e["kind"], e["account"], e["amount"]) for e in ledger] == [
            ("payment_received", f"satker:{p.satker}", -1_110_001),
            ("payment_received", "escrow", 1_110_001),
            ("settlement", "escrow", -1_110_001),
            ("settlement", f"provider:{p.provider_id}", 995_001),
            ("settlement", "tax:ppn", 110_000),
            ("settlement", "tax:pph22", 5_000),
        ]
        assert ledger_sum(ledger) == 0


async def test_refused_callbacks_are_answered_with_their_code_and_change_nothing(start_payments: StartPayments) -> None:
    async with start_payments() as p:
        payment = await p.invoiced(p.received(lines=[(2, 500_000)]))
        va, total = payment["va_number"], payment["invoice"]["total"]
        assert total == 1_110_000

        sandbox_token = await access_token(p)
        refusals = {
            "forged signature": await callback(p, va, total, secret="not-the-bank-secret"),
            "partner other than the token's": await callback(p, va, total, partner_id="SOMEBANK", token=sandbox_token),
            "unknown token": await callback(p, va, total, token="not-a-token-we-issued"),
            "stale timestamp": await callback(p, va, total, now=datetime.now(UTC) - timedelta(minutes=6)),
            "future timestamp": await callback(p, va, total, now=datetime.now(UTC) + timedelta(minutes=6)),
            "wrong amount": await callback(p, va, total - 1),
            "unknown VA": await callback(p, va, total, va_number="8808999999999999"),
        }
        assert {case: (status, body["responseCode"]) for case, (status, body) in refusals.items()} == {
            "forged signature": (401, "4012500"),
            "partner other than the token's": (401, "4012501"),
            "unknown token": (401, "4012501"),
            "stale timestamp": (401, "4012502"),
            "future timestamp": (401, "4012502"),
            "wrong amount": (404, "4042513"),
            "unknown VA": (404, "4042512"),
        }
        assert await p.get(f"/api/v1/payments/{payment['id']}", p.admin()) == payment
        assert await p.ledger(payment["id"]) == []

        status, body = await callback(p, va, total)
        assert (status, body["responseCode"]) == (200, "2002500")
        settled = await p.get(f"/api/v1/payments/{payment['id']}", p.admin())
        ledger = await p.ledger(payment["id"])

        # A second payment of the same bill (new external id) is refused and changes nothing.
        status, body = await callback(p, va, total)
        assert (status, body["responseCode"]) == (404, "4042514")
        assert await p.get(f"/api/v1/payments/{payment['id']}", p.admin()) == settled
        assert await p.ledger(payment["id"]) == ledger


async def test_malformed_callbacks_get_snap_codes_not_500(start_payments: StartPayments) -> None:
    async with start_payments() as p:
        async with p.http.post(p.base_url + CALLBACK_PATH, data=b"{}", headers={"X-TIMESTAMP": "x"}) as response:
            assert response.status == 400
            assert (await response.json())["responseCode"] == "4002502"  # X-SIGNATURE missing
        headers = {
            "X-TIMESTAMP": "27-11-2026",
            "X-SIGNATURE": "s",
            "X-PARTNER-ID": "SANDBOXBANK",
            "X-EXTERNAL-ID": "1",
            "CHANNEL-ID": "95231",
            "Authorization": "Bearer t",
        }
        async with p.http.post(p.base_url + CALLBACK_PATH, data=b"{}", headers=headers) as response:
            assert response.status == 400
            assert (await response.json())["responseCode"] == "4002501"


async def test_duplicate_callbacks_make_one_ledger_entry_and_get_the_same_answer(start_payments: StartPayments) -> None:
    async with start_payments() as p:
        payment = await p.invoiced(p.received(lines=[(1, 750_000)], pkp=False))
        va, total = payment["va_number"], payment["invoice"]["total"]
        assert total == 750_000
        moment = datetime.now(UTC)
        same = [callback(p, va, total, external_id="77001", now=moment) for _ in range(5)]
        others = [callback(p, va, total, external_id=f"7710{i}", now=moment) for i in range(3)]
        results = await asyncio.gather(*same, *others)
        duplicates, competitors = results[:5], results[5:]
        assert all(result == duplicates[0] for result in duplicates)
        # Racing external ids: exactly one of them pays (the repeated one counts once), the rest meet a paid bill.
        answers = {"77001": duplicates[0][1]["responseCode"]} | {
            f"7710{i}": body["responseCode"] for i, (_, body) in enumerate(competitors)
        }
        assert sorted(answers.values()) == ["2002500", "4042514", "4042514", "4042514"], answers

        # Later resends of every one of them get their first answer back, and nothing is posted twice.
        assert await asyncio.gather(
            *(callback(p, va, total, external_id=f"7710{i}", now=moment) for i in range(3))
        ) == list(competitors)
        assert await callback(p, va, total, external_id="77001", now=moment) == duplicates[0]
        # The same external id the same day with another body is a conflict.
        status, body = await callback(p, va, total + 1, external_id="77001", now=moment)
        assert (status, body["responseCode"]) == (409, "4092500")

        ledger = await p.ledger(payment["id"])
        assert [e["kind"] for e in ledger].count("payment_received") == 2  # two legs, one posting
        assert by_account(ledger) == {
            f"satker:{p.satker}": -750_000,
            f"provider:{p.provider_id}": 746_250,
            "tax:pph22": 3_750,
        }
        assert ledger_sum(ledger) == 0
        await wait_until(lambda: p.events_of(payment["id"], SettlementCompleted.TYPE))
        assert len(p.events_of(payment["id"], PaymentSucceeded.TYPE)) == 1


async def test_va_expires_then_the_bendahara_gets_a_new_one(start_payments: StartPayments) -> None:
    async with start_payments(va_validity_seconds=1) as p:
        payment = await p.invoiced(p.received(lines=[(4, 125_000)]))
        old_va = payment["va_number"]

        async def expired() -> bool:
            body = await p.get(f"/api/v1/payments/{payment['id']}", p.admin())
            return bool(body["status"] == "va_expired")

        await wait_until(expired)
        await wait_until(lambda: p.events_of(payment["id"], VirtualAccountExpired.TYPE))
        snapshot = await p.get(f"/api/v1/payments/{payment['id']}", p.admin())
        status, body = await callback(p, old_va, 555_000)
        assert (status, body["responseCode"]) == (404, "4042519")
        assert await p.get(f"/api/v1/payments/{payment['id']}", p.admin()) == snapshot

        await p.post(f"/api/v1/payments/{payment['id']}/va", p.bendahara(satker="another-satker"), status=404)
        await p.post(f"/api/v1/payments/{payment['id']}/va", p.admin(), status=403)
        p.settings.va_validity_seconds = 3600  # the new VA must outlive the rest of the test
        renewed = await p.post(f"/api/v1/payments/{payment['id']}/va", p.bendahara())
        assert renewed["status"] == "awaiting_payment" and renewed["va_number"] != old_va
        assert renewed["virtual_accounts"] == [old_va, renewed["va_number"]]
        problem = await p.post(f"/api/v1/payments/{payment['id']}/va", p.bendahara(), status=409)
        assert problem["code"] == "va_still_valid"

        # The old VA stays dead; the new one pays.
        status, body = await callback(p, old_va, 555_000)
        assert (status, body["responseCode"]) == (404, "4042519")
        status, body = await callback(p, renewed["va_number"], 555_000)
        assert (status, body["responseCode"]) == (200, "2002500")
        assert ledger_sum(await p.ledger(payment["id"])) == 0
        await wait_until(lambda: len(p.events_of(payment["id"], VirtualAccountIssued.TYPE)) == 2)


async def test_kkpd_charge(start_payments: StartPayments) -> None:
    async with start_payments() as p:
        payment = await p.invoiced(p.received(lines=[(10, 99_999)], method="kkpd"))
        assert payment["va_number"] is None and payment["invoice"]["total"] == 1_109_988  # 999990 + 109998
        problem = await p.post(f"/api/v1/payments/{payment['id']}/va", p.bendahara(), status=409)
        assert problem["code"] == "wrong_method"
        problem = await p.post(
            f"/api/v1/payments/{payment['id']}/charge", p.bendahara(), {"card_token": "x"}, status=422
        )
        assert problem["errors"][0]["field"] == "card_token"
        await p.post(
            f"/api/v1/payments/{payment['id']}/charge", p.bendahara("other"), {"card_token": "tok-1"}, status=404
        )

        charged = await p.post(f"/api/v1/payments/{payment['id']}/charge", p.bendahara(), {"card_token": "kkpd-tok-1"})
        assert charged["status"] == "settled" and charged["reference"].startswith("AUTH-")
        ledger = await p.ledger(payment["id"])
        assert ledger_sum(ledger) == 0 and {e["kind"] for e in ledger} == {"payment_received", "settlement"}
        problem = await p.post(
            f"/api/v1/payments/{payment['id']}/charge", p.bendahara(), {"card_token": "kkpd-tok-1"}, status=409
        )
        assert problem["code"] == "illegal_transition"
        await wait_until(lambda: p.events_of(payment["id"], SettlementCompleted.TYPE))

        # Above the KKP cap the card is declined and the payment stays payable.
        big = await p.invoiced(p.received(lines=[(1, 50_000_000)], method="kkpd"))
        problem = await p.post(
            f"/api/v1/payments/{big['id']}/charge", p.bendahara(), {"card_token": "kkpd-tok-2"}, status=402
        )
        assert problem["code"] == "card_declined"
        assert await p.get(f"/api/v1/payments/{big['id']}", p.admin()) == big


async def test_refund_writes_reversing_entries(start_payments: StartPayments) -> None:
    async with start_payments() as p:
        payment = await p.invoiced(p.received(lines=[(1, 1_999)]))
        problem = await p.post(f"/api/v1/payments/{payment['id']}/refund", p.admin(), {"reason": "x"}, status=422)
        assert problem["errors"][0]["field"] == "reason"
        problem = await p.post(
            f"/api/v1/payments/{payment['id']}/refund", p.admin(), {"reason": "barang rusak"}, status=409
        )
        assert problem["code"] == "illegal_transition"  # not paid yet

        await p.sandbox_pay(payment["va_number"], 2_218)
        await p.post(
            f"/api/v1/payments/{payment['id']}/refund", p.admin(pemda="36"), {"reason": "barang rusak"}, status=404
        )
        await p.post(f"/api/v1/payments/{payment['id']}/refund", p.bendahara(), {"reason": "barang rusak"}, status=403)
        refunded = await p.post(f"/api/v1/payments/{payment['id']}/refund", p.admin(), {"reason": "barang rusak"})
        assert refunded["status"] == "refunded" and refunded["refund_reason"] == "barang rusak"

        ledger = await p.ledger(payment["id"])
        assert [e["kind"] for e in ledger] == ["payment_received"] * 2 + ["settlement"] * 4 + [
            "settlement_reversal"
        ] * 4 + ["refund"] * 2
        assert ledger_sum(ledger) == 0 and by_account(ledger) == {}
        await wait_until(lambda: p.events_of(payment["id"], RefundCompleted.TYPE))
        event = p.events_of(payment["id"], RefundCompleted.TYPE)[0].data
        assert (event["amount"], event["reason"], event["actor"]["sub"]) == (2_218, "barang rusak", "admin-1")
        await p.post(f"/api/v1/payments/{payment['id']}/refund", p.admin(), {"reason": "lagi"}, status=409)
        status, body = await callback(p, payment["va_number"], 2_218)
        assert (status, body["responseCode"]) == (404, "4042514")
        assert await p.ledger(payment["id"]) == ledger


async def cancel_and_wait_for_void(p: Payments, order: OrderReceived, payment: dict[str, Any]) -> None:
    """The buyer cancels a received order; wait until payments has voided its payment."""
    await p.publish(
        OrderCancelled(
            **order.model_dump(exclude={"bast_number", "from_status", "status"}),
            from_status="received",
            status="cancelled",
            reason="dibatalkan",
        )
    )

    async def cancelled() -> bool:
        return bool((await p.get(f"/api/v1/payments/{payment['id']}", p.admin()))["status"] == "cancelled")

    await wait_until(cancelled)


async def test_cancelled_order_voids_the_unpaid_payment(start_payments: StartPayments) -> None:
    async with start_payments() as p:
        order = p.received(lines=[(1, 300_000)])
        payment = await p.invoiced(order)
        await cancel_and_wait_for_void(p, order, payment)
        status, body = await callback(p, payment["va_number"], 333_000)
        assert (status, body["responseCode"]) == (404, "4042504")
        assert await p.ledger(payment["id"]) == []


async def test_illegal_transition_is_a_409_problem(start_payments: StartPayments) -> None:
    # A cancelled KKPD payment can become nothing else: charging it is refused with a problem the
    # client can act on (never a 500), naming the status it is in and the one it was asked for.
    async with start_payments() as p:
        order = p.received(lines=[(1, 100_000)], method="kkpd")
        payment = await p.invoiced(order)
        await cancel_and_wait_for_void(p, order, payment)
        url = f"{p.base_url}/api/v1/payments/{payment['id']}/charge"
        async with p.http.post(url, headers=p.bendahara(), json={"card_token": "kkpd-tok-9"}) as response:
            assert response.status == 409
            assert response.content_type == "application/problem+json"
            problem = await response.json(content_type=None)
        assert problem["status"] == 409
        assert problem["code"] == "illegal_transition"
        assert problem["type"] == "https://bejo.dev/problems/illegal_transition"
        assert (problem["current_status"], problem["target_status"]) == ("cancelled", "paid")
        assert (await p.get(f"/api/v1/payments/{payment['id']}", p.admin()))["status"] == "cancelled"


async def test_object_level_authorization(start_payments: StartPayments) -> None:
    async with start_payments() as p:
        order = p.received(lines=[(1, 100_000)])
        payment = await p.invoiced(order)
        path = f"/api/v1/payments/{payment['id']}"
        allowed = {
            "bendahara of the satker": p.bendahara(),
            "pp of the satker": bearer(token("pp", "pp-1", pemda=PEMDA, satker=p.satker)),
            "ppk of the satker": bearer(token("ppk", "ppk-1", pemda=PEMDA, satker=p.satker)),
            "penyedia of the provider": bearer(token("penyedia", "s-1", pemda=PEMDA, provider_id=p.provider_id)),
            "admin of the province": p.admin("35"),
            "auditor of the pemda": bearer(token("auditor", "a-1", pemda=PEMDA)),
        }
        denied = {
            "bendahara of another satker": p.bendahara("dinas-lain"),
            "another penyedia": bearer(token("penyedia", "s-2", pemda=PEMDA, provider_id="prov-other")),
            "admin of another province": p.admin("36"),
            "auditor of a sibling pemda": bearer(token("auditor", "a-2", pemda="35.16")),
        }
        for who, headers in allowed.items():
            assert (await p.get(path, headers))["id"] == payment["id"], who
            assert len((await p.get(f"{path}/ledger", headers))["items"]) == 0, who
        for who, headers in denied.items():
            problem = await p.get(path, headers, status=404)
            assert problem["code"] == "payment_not_found", who
            await p.get(f"{path}/ledger", headers, status=404)
            assert (await p.get(f"/api/v1/payments?order_id={order.order_id}", headers))["items"] == [], who
        await p.get(path, {}, status=401)
        problem = await p.get("/api/v1/payments", p.admin(), status=422)
        assert problem["errors"][0]["field"] == "order_id"


async def test_sandbox_endpoint_exists_only_in_sandbox_mode(amqp_url: str, mongodb_url: str, unique: str) -> None:
    settings = service_settings(PaymentsSettings, amqp_url=amqp_url, mongodb_url=mongodb_url, namespace=unique + "x")
    assert settings.sandbox_enabled is False
    import aiohttp

    async with serve(build(settings)) as base_url, aiohttp.ClientSession() as http:
        async with http.post(f"{base_url}/api/v1/sandbox/va/8808000000000001/pay", json={"amount": 1}) as response:
            assert response.status == 404
        async with http.get(f"{base_url}/openapi.json") as response:
            paths = (await response.json())["paths"]
            assert CALLBACK_PATH in paths and not any(path.startswith("/api/v1/sandbox") for path in paths)
    with pytest.raises(ValueError, match="production"):
        PaymentsSettings(sandbox_enabled=True, environment="production")


async def test_bejo_sandbox_pay_command(start_payments: StartPayments) -> None:
    async with start_payments() as p:
        payment = await p.invoiced(p.received(lines=[(1, 40_000)]))
        bejo = Path(sys.executable).with_name("bejo")
        process = await asyncio.create_subprocess_exec(
            str(bejo),
            "sandbox",
            "pay",
            payment["va_number"],
            "44400",
            "--callback-url",
            p.base_url + CALLBACK_PATH,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "LOG_LEVEL": "WARNING"},
        )
        stdout, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
        assert '"responseCode":"2002500"' in stdout.decode()
        assert (await p.get(f"/api/v1/payments/{payment['id']}", p.admin()))["status"] == "settled"


async def test_the_sweep_settles_a_payment_whose_writer_died_after_the_paid_write(
    start_payments: StartPayments,
) -> None:
    """A crash right after the `paid` write (which carries its posting) leaves the payment unsettled;
    the settlement sweep, run by every replica, settles it exactly once."""
    async with start_payments(replicas=2) as p:
        payment = await p.invoiced(p.received(lines=[(2, 50_000)]))
        doc = await p.service.repo.get(payment["id"])
        assert doc is not None
        # What a paying callback writes first; the process "dies" before settling.
        paid = await p.service.mark_paid(doc, reference="X", via="test", now=doc.created_at)
        assert [e["kind"] for e in await p.ledger(payment["id"])] == ["payment_received"] * 2
        # Within the grace its writer may still be settling it: the sweep leaves it alone.
        assert await scheduler.settle_stalled(p.service, paid.updated_at) == 0

        later = paid.updated_at + SETTLEMENT_GRACE * 2
        await asyncio.gather(*(scheduler.settle_stalled(replica.service, later) for replica in p.replicas))
        await asyncio.gather(*(scheduler.settle_stalled(replica.service, later) for replica in p.replicas))
        after = await p.service.repo.get(payment["id"])
        assert after is not None and after.status == "settled"
        assert [h.status for h in after.history] == ["awaiting_payment", "paid", "settled"]
        ledger = await p.ledger(payment["id"])
        assert [e["kind"] for e in ledger] == ["payment_received"] * 2 + ["settlement"] * 4
        assert ledger_sum(ledger) == 0
        await wait_until(lambda: p.events_of(payment["id"], SettlementCompleted.TYPE))
        assert len(p.events_of(payment["id"], SettlementCompleted.TYPE)) == 1
