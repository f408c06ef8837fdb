"""The notifications service end to end on the real RabbitMQ and Mongo-wire server, with a real
SMTP sink and a real webhook receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from notifications_harness import Receiver, Service, eventually, start_service
from notifications_samples import PLACED_AT, envelope_of, order_fields, provider_fields, sample_events
from support import token

from bejo_contracts import catalog as cat
from bejo_contracts import orders as ords
from bejo_contracts import payments as pay
from bejo_notifications.smtp_sink import SmtpSink

pytestmark = pytest.mark.e2e


PPK = token("ppk", "ppk-1", satker="35.15.dinkes", name="Bambang")
PP = token("pp", "pp-1", satker="35.15.dinkes", name="Siti Rahayu")
PENYEDIA = token("penyedia", "seller-1", provider_id="prov-1")
ADMIN = token("admin", "admin-1", pemda="35.15")
PRODUCTION_SECRET = "a-production-secret-of-at-least-32-bytes"


def event_of(event_type: str, suffix: str = "1") -> object:
    return next(e for e in sample_events(suffix) if event_type == e.TYPE)


def mails_to(sink: SmtpSink, address: str) -> list[object]:
    return [m for m in sink.messages() if m["To"] == address]


async def test_new_order_reaches_the_ppk_inbox_and_mailbox_in_indonesian(service: Service, smtp_sink: SmtpSink) -> None:
    status, contact = await service.call(
        "PUT", "/api/v1/notifications/contact", PPK, {"email": "bambang@dinkes.jatimprov.go.id"}
    )
    assert status == 200 and contact["locale"] == "id"
    await service.publish(envelope_of(cat.ProviderRegistered(**provider_fields("1", "pending"))))
    await service.publish(envelope_of(ords.OrderPlaced(**order_fields("1", status="placed", from_status=None))))
    await service.publish(
        envelope_of(ords.OrderReserved(**order_fields("1"), approval_due_at=PLACED_AT + timedelta(days=3)))
    )

    page = await eventually(inbox_not_empty(service, PPK))
    assert page["unread_count"] == 1
    [item] = page["items"]
    assert item["title"] == "Persetujuan diperlukan: pesanan ORD-1"
    assert "Siti Rahayu memesan dari CV Maju Jaya senilai Rp 2.614.000" in item["body"]
    assert item["event_type"] == "bejo.orders.order.reserved.v1" and item["read"] is False

    [mail] = await eventually(lambda: mails_to(smtp_sink, "bambang@dinkes.jatimprov.go.id"))
    assert mail["Subject"] == "Persetujuan diperlukan: pesanan ORD-1"
    assert mail["Content-Language"] == "id"
    text = mail.get_body(preferencelist=("plain",)).get_content()
    html = mail.get_body(preferencelist=("html",)).get_content()
    assert "Rp 2.614.000" in text and "Siti Rahayu" in text and "CV Maju Jaya" in text
    assert "mohon setujui atau tolak sebelum 30 November 2026 14:05 WIB" in text
    assert "Kertas A4 80gsm: 20 rim x Rp 55.700 = Rp 1.114.000" in text
    assert "<td>Tinta printer</td>" in html and "Rp 2.614.000" in html

    # The provider's users see it through their provider audience; its official address gets mail.
    provider_page = await eventually(inbox_not_empty(service, PENYEDIA))
    assert [i["title"] for i in provider_page["items"]] == ["Pesanan baru ORD-1 dari 35.15.dinkes"]
    await eventually(lambda: mails_to(smtp_sink, "admin@maju-jaya-1.co.id"))
    # The PP heard about the placement; the PPK did not get a second notice for it.
    pp_page = await service.inbox(PP)
    assert [i["title"] for i in pp_page["items"]] == ["Pesanan ORD-1 telah dibuat"]
    assert len((await service.inbox(PPK))["items"]) == 1


def inbox_not_empty(service: Service, jwt: str) -> object:
    async def non_empty() -> dict[str, object] | None:
        page = await service.inbox(jwt)
        return page if page["items"] else None

    return non_empty


async def test_a_duplicate_event_makes_no_second_notification_or_mail(service: Service, smtp_sink: SmtpSink) -> None:
    await service.call("PUT", "/api/v1/notifications/contact", PP, {"email": "siti@dinkes.jatimprov.go.id"})
    approved = envelope_of(event_of("bejo.orders.order.approved.v1"))
    await service.publish(approved)
    await service.publish(approved)  # same event id: a redelivery
    marker = envelope_of(event_of("bejo.orders.order.shipped.v1"))
    await service.publish(marker)

    # One message at a time: once the later event is in, both copies have been handled.
    async def both_mails() -> list[object] | None:
        mails = mails_to(smtp_sink, "siti@dinkes.jatimprov.go.id")
        subjects = {m["Subject"] for m in mails}
        return mails if {"Pesanan ORD-1 disetujui", "Pesanan ORD-1 dikirim"} <= subjects else None

    mails = await eventually(both_mails)
    page = await service.inbox(PP)
    assert sorted(i["event_type"] for i in page["items"]) == [
        "bejo.orders.order.approved.v1",
        "bejo.orders.order.shipped.v1",
    ]
    assert [m["Subject"] for m in mails].count("Pesanan ORD-1 disetujui") == 1


async def test_users_see_and_mark_only_their_own_notifications(service: Service) -> None:
    bendahara = token("bendahara", "bend-1", satker="35.15.dinkes")
    other_bendahara = token("bendahara", "bend-2", satker="35.15.dinkes")
    elsewhere = token("bendahara", "bend-9", satker="35.15.dishub")
    other_pp = token("pp", "pp-2", satker="35.15.dinkes")
    await service.publish(envelope_of(event_of("bejo.orders.order.approved.v1")))
    await service.publish(envelope_of(event_of("bejo.payments.va.issued.v1")))

    page = await eventually(inbox_not_empty(service, bendahara))
    [va] = page["items"]
    assert va["title"] == "Virtual account untuk pesanan ORD-1"
    assert "8808123456" in va["body"] and "Rp 2.614.000" in va["body"]
    pp_page = await eventually(inbox_not_empty(service, PP))
    [approved] = pp_page["items"]

    # Not the same person, not the same satker: nothing to see, and others' ids are unknown (404).
    assert (await service.inbox(other_pp))["items"] == []
    assert (await service.inbox(elsewhere))["items"] == []
    status, problem = await service.call("POST", f"/api/v1/notifications/{approved['id']}/read", other_pp)
    assert status == 404 and problem["code"] == "notification_not_found"
    status, _ = await service.call("POST", f"/api/v1/notifications/{va['id']}/read", elsewhere)
    assert status == 404

    # The owner marks it read, twice (idempotent).
    for _ in range(2):
        status, body = await service.call("POST", f"/api/v1/notifications/{approved['id']}/read", PP)
        assert status == 200 and body["read"] is True
    assert (await service.inbox(PP))["unread_count"] == 0

    # Sent to the satker's bendahara: read state is per user.
    status, _ = await service.call("POST", f"/api/v1/notifications/{va['id']}/read", bendahara)
    assert status == 200
    assert (await service.inbox(bendahara))["unread_count"] == 0
    other_view = await service.inbox(other_bendahara)
    assert other_view["unread_count"] == 1 and other_view["items"][0]["read"] is False


async def test_inbox_pages_newest_first_with_a_cursor(service: Service) -> None:
    ppk = token("ppk", "ppk-9", satker="35.15.dinkes")
    for suffix in ("1", "2", "3"):
        cancelled = ords.OrderCancelled(**order_fields(suffix, status="cancelled", ppk_id="ppk-9"), reason="batal")
        await service.publish(envelope_of(cancelled))

    async def all_three() -> bool:
        return len((await service.inbox(ppk))["items"]) == 3

    await eventually(all_three)
    first = await service.inbox(ppk, limit="2")
    assert len(first["items"]) == 2 and first["next_cursor"] and first["unread_count"] == 3
    second = await service.inbox(ppk, limit="2", cursor=first["next_cursor"])
    assert len(second["items"]) == 1 and second["next_cursor"] is None
    pages = first["items"] + second["items"]
    assert sorted(i["subject_id"] for i in pages) == ["ORD-1", "ORD-2", "ORD-3"]
    assert [i["created_at"] for i in pages] == sorted((i["created_at"] for i in pages), reverse=True)

    await service.call("POST", f"/api/v1/notifications/{pages[0]['id']}/read", ppk)
    unread = await service.inbox(ppk, unread_only="true")
    assert unread["unread_count"] == 2 and {i["id"] for i in unread["items"]} == {i["id"] for i in pages[1:]}

    status, problem = await service.call("GET", "/api/v1/notifications?cursor=bm90IGpzb24", ppk)
    assert status == 422 and problem["errors"][0]["field"] == "cursor"
    status, problem = await service.call("GET", "/api/v1/notifications?limit=0", ppk)
    assert status == 422 and problem["errors"][0]["field"] == "limit"


async def test_contact_validation(service: Service) -> None:
    status, problem = await service.call("PUT", "/api/v1/notifications/contact", PP, {"email": "not an address"})
    assert status == 422 and problem["errors"][0]["field"] == "email"
    status, problem = await service.call(
        "PUT", "/api/v1/notifications/contact", PP, {"email": "a@b.id", "locale": "fr"}
    )
    assert status == 422 and problem["errors"][0]["field"] == "locale"
    status, _ = await service.call("GET", "/api/v1/notifications/contact", PP)
    assert status == 404
    status, _ = await service.call("PUT", "/api/v1/notifications/contact", PP, {"email": "a@b.id", "locale": "en"})
    status, contact = await service.call("GET", "/api/v1/notifications/contact", PP)
    assert status == 200 and contact == {**contact, "email": "a@b.id", "locale": "en", "sub": "pp-1"}


async def test_webhook_gets_signed_deliveries_retried_after_500s(service: Service, receiver: Receiver) -> None:
    receiver.statuses = [500, 500]
    status, hook = await service.call(
        "POST",
        "/api/v1/webhooks",
        ADMIN,
        {"url": receiver.url, "secret": receiver.secret, "event_types": ["bejo.orders.order.*.v1"]},
    )
    assert status == 201 and hook["status"] == "active" and "secret" not in hook
    approved = envelope_of(event_of("bejo.orders.order.approved.v1"))
    await service.publish(envelope_of(event_of("bejo.payments.va.issued.v1")))  # not subscribed
    await service.publish(approved)

    await eventually(lambda: len(receiver.received) >= 3)
    assert all(r["verified"] for r in receiver.received)
    assert {r["event_id"] for r in receiver.received} == {approved.id}
    assert receiver.received[-1]["json"]["type"] == "bejo.orders.order.approved.v1"
    assert receiver.received[-1]["json"]["data"]["total"] == 2_614_000
    assert receiver.received[-1]["content_type"].startswith("application/cloudevents+json")

    async def settled() -> list[dict[str, object]] | None:
        _, log = await service.call("GET", f"/api/v1/webhooks/{hook['id']}/deliveries", ADMIN)
        return log["items"] if log["items"] and log["items"][0]["status"] == "succeeded" else None

    [delivery] = await eventually(settled)
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 200]
    assert [a["error"] for a in delivery["attempts"]] == ["HTTP 500", "HTTP 500", None]
    assert delivery["event_id"] == approved.id

    status, again = await service.call(
        "POST", f"/api/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver", ADMIN
    )
    assert status == 202 and again["status"] == "pending"
    await eventually(lambda: len(receiver.received) == 4)
    _, log = await service.call("GET", f"/api/v1/webhooks/{hook['id']}/deliveries", ADMIN)
    assert len(log["items"]) == 1

    # Someone else's webhook is not there for them.
    other_admin = token("admin", "admin-2", pemda="35.15")
    status, _ = await service.call("GET", f"/api/v1/webhooks/{hook['id']}/deliveries", other_admin)
    assert status == 404
    status, _ = await service.call("DELETE", f"/api/v1/webhooks/{hook['id']}", other_admin)
    assert status == 404
    status, _ = await service.call("DELETE", f"/api/v1/webhooks/{hook['id']}", ADMIN)
    assert status == 204
    status, listing = await service.call("GET", "/api/v1/webhooks", ADMIN)
    assert listing == {"items": []}


async def test_penyedia_webhooks_carry_only_their_own_providers_events(service: Service, receiver: Receiver) -> None:
    status, hook = await service.call(
        "POST",
        "/api/v1/webhooks",
        PENYEDIA,
        {"url": receiver.url, "secret": receiver.secret, "event_types": ["bejo.orders.#"]},
    )
    assert status == 201
    other_provider = envelope_of(event_of("bejo.orders.order.approved.v1", "2"))
    own = envelope_of(event_of("bejo.orders.order.approved.v1", "1"))
    await service.publish(other_provider)
    await service.publish(own)
    await eventually(lambda: receiver.received)
    _, log = await service.call("GET", f"/api/v1/webhooks/{hook['id']}/deliveries", PENYEDIA)
    assert [d["event_id"] for d in log["items"]] == [own.id]
    assert [r["event_id"] for r in receiver.received] == [own.id]


async def test_subscription_rules(service: Service) -> None:
    body = {"url": "http://127.0.0.1:9/hook", "secret": "0123456789abcdef", "event_types": ["bejo.#"]}
    status, problem = await service.call("POST", "/api/v1/webhooks", PP, body)
    assert status == 403
    status, problem = await service.call("POST", "/api/v1/webhooks", ADMIN, {**body, "event_types": ["bejo..x"]})
    assert status == 422 and problem["errors"][0]["field"] == "event_types"
    status, problem = await service.call("POST", "/api/v1/webhooks", ADMIN, {**body, "secret": "short"})
    assert status == 422 and problem["errors"][0]["field"] == "secret"
    status, problem = await service.call("POST", "/api/v1/webhooks", ADMIN, {**body, "url": "ftp://x.org/"})
    assert status == 422 and problem["errors"][0]["field"] == "url"


@pytest.fixture
async def production_service(
    amqp_url: str, mongodb_url: str, unique: str, smtp_sink: SmtpSink
) -> AsyncIterator[Service]:
    # Production refuses the development JWT secret: a secret of its own, and tokens signed with it.
    async for running in start_service(
        amqp_url, mongodb_url, unique, smtp_sink.port, environment="production", jwt_secret=PRODUCTION_SECRET
    ):
        yield running


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.org/bejo",
        "https://127.0.0.1/hook",
        "https://localhost:8443/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.7/hook",
        "https://[::1]/hook",
    ],
)
async def test_production_refuses_plain_http_and_inside_addresses(production_service: Service, url: str) -> None:
    body = {"url": url, "secret": "0123456789abcdef", "event_types": ["bejo.#"]}
    admin = token("admin", "admin-1", pemda="35.15", settings=production_service.settings)
    status, problem = await production_service.call("POST", "/api/v1/webhooks", admin, body)
    assert status == 422, problem
    assert problem["errors"][0]["field"] == "url" and problem["errors"][0]["type"] == "unsafe_url"
    status, _ = await production_service.call("POST", "/api/v1/webhooks", ADMIN, body)
    assert status == 401  # signed with the development secret, which production does not trust


async def test_failing_webhook_is_disabled_and_its_owner_told(
    amqp_url: str, mongodb_url: str, unique: str, smtp_sink: SmtpSink, receiver: Receiver
) -> None:
    receiver.statuses = [503] * 50
    async for service in start_service(amqp_url, mongodb_url, unique, smtp_sink.port, webhook_disable_after_failures=3):
        status, hook = await service.call(
            "POST",
            "/api/v1/webhooks",
            ADMIN,
            {"url": receiver.url, "secret": receiver.secret, "event_types": ["bejo.payments.#"]},
        )
        assert status == 201
        await service.publish(envelope_of(event_of("bejo.payments.invoice.issued.v1")))

        page = await eventually(inbox_not_empty(service, ADMIN))
        [notice] = page["items"]
        assert notice["event_type"] == "bejo.notifications.webhook.disabled.v1"
        assert notice["title"] == "Webhook dinonaktifkan" and receiver.url in notice["body"]
        _, current = await service.call("GET", f"/api/v1/webhooks/{hook['id']}", ADMIN)
        assert current["status"] == "disabled" and current["consecutive_failures"] == 3
        _, log = await service.call("GET", f"/api/v1/webhooks/{hook['id']}/deliveries", ADMIN)
        [delivery] = log["items"]
        assert delivery["status"] == "failed"
        assert [a["status_code"] for a in delivery["attempts"]] == [503, 503, 503]
        status, problem = await service.call(
            "POST", f"/api/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver", ADMIN
        )
        assert status == 409 and problem["code"] == "webhook_disabled"


async def test_payment_events_reach_the_satker_bendahara_by_mail(service: Service, smtp_sink: SmtpSink) -> None:
    bendahara = token("bendahara", "bend-1", satker="35.15.dinkes")
    await service.call(
        "PUT", "/api/v1/notifications/contact", bendahara, {"email": "bendahara@dinkes.id", "locale": "en"}
    )
    invoice = event_of("bejo.payments.invoice.issued.v1")
    assert isinstance(invoice, pay.InvoiceIssued)
    await service.publish(envelope_of(invoice))
    [mail] = await eventually(lambda: mails_to(smtp_sink, "bendahara@dinkes.id"))
    assert mail["Subject"] == "Invoice INV-1 for order ORD-1"
    assert "Rp 2.614.000" in mail.get_body(preferencelist=("plain",)).get_content()
