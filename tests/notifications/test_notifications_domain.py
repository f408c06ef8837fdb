"""Pure rules of the notifications service: formatting, routing, templates, signing, retries, URL safety."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone

import pytest
from notifications_samples import PLACED_AT, order_fields, sample_events

from bejo_contracts import Envelope, EventData, all_models
from bejo_contracts import catalog as cat
from bejo_contracts import orders as ords
from bejo_notifications import domain
from bejo_notifications.templates import Renderer

SIGNATURE_HEX = "1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940"


@pytest.mark.parametrize(
    ("amount", "text"),
    [(0, "Rp 0"), (999, "Rp 999"), (1000, "Rp 1.000"), (2_614_000, "Rp 2.614.000"), (-50_000, "-Rp 50.000")],
)
def test_rupiah_groups_thousands_with_dots(amount: int, text: str) -> None:
    assert domain.format_rupiah(amount) == text


def test_rupiah_refuses_non_integers() -> None:
    with pytest.raises(TypeError):
        domain.format_rupiah(10.5)  # type: ignore[arg-type]


def test_dates_are_shown_in_wib_whatever_the_input_zone() -> None:
    assert domain.format_wib(datetime(2026, 11, 27, 7, 5, tzinfo=UTC)) == "27 November 2026 14:05 WIB"
    # 23:30 UTC on the 31st of December is already New Year in Jakarta.
    assert domain.format_wib(datetime(2026, 12, 31, 23, 30, tzinfo=UTC), "id") == "1 Januari 2027 06:30 WIB"
    tokyo = timezone(timedelta(hours=9))
    assert domain.format_wib(datetime(2026, 8, 17, 10, 0, tzinfo=tokyo), "en") == "17 August 2026 08:00 WIB"
    assert domain.format_wib(datetime(2026, 8, 17, 3, 0, tzinfo=UTC), "id") == "17 Agustus 2026 10:00 WIB"


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError):
        domain.format_wib(datetime(2026, 1, 1))


def _keys(event_type: str, data: dict[str, object]) -> list[tuple[str, str]]:
    return [(r.key, r.role) for r in domain.recipients_for(event_type, data)]


def test_routing_sends_each_event_to_the_parties_named_in_the_spec() -> None:
    by_type = {e.TYPE: e.model_dump(mode="json") for e in sample_events("1")}
    pp, ppk, provider = "user:pp-1", "user:ppk-1", "provider:prov-1"
    bendahara = "role:bendahara@pemda:35.15@satker:35.15.dinkes"
    expected = {
        "bejo.orders.order.reserved.v1": [(ppk, "ppk"), (provider, "provider")],
        "bejo.orders.order.approved.v1": [(pp, "pp"), (provider, "provider")],
        "bejo.orders.order.shipped.v1": [(pp, "pp"), (ppk, "ppk")],
        "bejo.payments.invoice.issued.v1": [(bendahara, "bendahara")],
        "bejo.payments.va.issued.v1": [(bendahara, "bendahara")],
        "bejo.orders.order.paid.v1": [(provider, "provider")],
        "bejo.orders.order.expired.v1": [(pp, "pp"), (ppk, "ppk"), (provider, "provider")],
        "bejo.orders.order.cancelled.v1": [(pp, "pp"), (ppk, "ppk"), (provider, "provider")],
        "bejo.orders.order.rejected.v1": [(pp, "pp"), (ppk, "ppk"), (provider, "provider")],
        "bejo.catalog.provider.verified.v1": [(provider, "provider")],
        "bejo.catalog.provider.suspended.v1": [(provider, "provider")],
        "bejo.notifications.webhook.disabled.v1": [("user:admin-1", "owner")],
    }
    for event_type, recipients in expected.items():
        assert _keys(event_type, by_type[event_type]) == recipients, event_type


def test_one_person_in_two_roles_is_told_once() -> None:
    data = next(e for e in sample_events() if e.TYPE == "bejo.orders.order.shipped.v1").model_dump(mode="json")
    data["ppk_id"] = data["pp_id"]
    assert _keys("bejo.orders.order.shipped.v1", data) == [("user:pp-1", "pp")]


def test_unrouted_events_notify_nobody() -> None:
    assert domain.recipients_for("bejo.catalog.product.upserted.v1", {"product": {}}) == []
    assert domain.recipients_for("bejo.unknown.v1", {}) == []


def test_every_routed_type_is_a_contract_event() -> None:
    assert set(domain.ROUTES) <= set(all_models())


def test_tokens_answer_to_their_sub_and_their_audiences() -> None:
    assert domain.recipients_of_user("b1", "bendahara", "35.15", "35.15.dinkes", None) == [
        "user:b1",
        "role:bendahara@pemda:35.15@satker:35.15.dinkes",
    ]
    assert domain.recipients_of_user("u9", "penyedia", "35.15", None, "prov-1") == ["user:u9", "provider:prov-1"]
    assert domain.recipients_of_user("a1", "admin", "35", None, None) == ["user:a1"]


def test_a_satker_code_reused_in_another_pemda_is_another_audience() -> None:
    """Every kabupaten has a `dinkes`: the bendahara of one must not read the other's invoices."""
    sidoarjo = domain.recipients_of_user("b1", "bendahara", "35.15", "dinkes", None)[1]
    serang = domain.recipients_of_user("b2", "bendahara", "36.03", "dinkes", None)[1]
    assert sidoarjo != serang
    issued = "bejo.payments.invoice.issued.v1"
    assert [r.key for r in domain.recipients_for(issued, {"satker": "dinkes", "pemda": "36.03"})] == [serang]
    assert domain.recipients_for(issued, {"satker": "dinkes"}) == []  # no pemda: no audience to reach


@pytest.mark.parametrize("locale", ["id", "en"])
def test_every_routed_event_renders_subject_text_and_html(locale: str) -> None:
    renderer = Renderer()
    for event in sample_events():
        route = domain.ROUTES[event.TYPE]
        for role in route.audience:
            message = renderer.render(
                route.template,
                locale,  # type: ignore[arg-type]
                event.model_dump(mode="json"),
                event_type=event.TYPE,
                event_time=PLACED_AT,
                recipient_role=role,
            )
            assert message.subject and "\n" not in message.subject, event.TYPE
            assert message.summary in message.text
            assert message.html.startswith("<!DOCTYPE html>")
            assert f'lang="{locale}"' in message.html


def test_order_approval_request_in_indonesian() -> None:
    reserved = next(e for e in sample_events() if e.TYPE == "bejo.orders.order.reserved.v1")
    message = Renderer().render(
        "order_reserved",
        "id",
        reserved.model_dump(mode="json"),
        event_type=reserved.TYPE,
        event_time=PLACED_AT,
        recipient_role="ppk",
    )
    assert message.subject == "Persetujuan diperlukan: pesanan ORD-1"
    assert "Siti Rahayu memesan dari CV Maju Jaya senilai Rp 2.614.000" in message.summary
    assert "30 November 2026 14:05 WIB" in message.summary
    assert "Kertas A4 80gsm: 20 rim x Rp 55.700 = Rp 1.114.000" in message.text
    assert "Total             : Rp 2.614.000" in message.text
    assert "27 November 2026 14:05 WIB" in message.text
    assert "<td>Kertas A4 80gsm</td>" in message.html


def test_same_event_in_english_and_for_the_provider() -> None:
    reserved = next(e for e in sample_events() if e.TYPE == "bejo.orders.order.reserved.v1")
    message = Renderer().render(
        "order_reserved",
        "en",
        reserved.model_dump(mode="json"),
        event_type=reserved.TYPE,
        event_time=PLACED_AT,
        recipient_role="provider",
    )
    assert message.subject == "New order ORD-1 from 35.15.dinkes"
    assert "30 November 2026 14:05 WIB" in message.summary
    assert "Order details" in message.text


def test_html_escapes_event_text() -> None:
    rejected = next(e for e in sample_events() if e.TYPE == "bejo.orders.order.rejected.v1")
    data = {**rejected.model_dump(mode="json"), "reason": "<script>alert(1)</script>"}
    message = Renderer().render(
        "order_rejected", "id", data, event_type=rejected.TYPE, event_time=PLACED_AT, recipient_role="pp"
    )
    assert "<script>" not in message.html
    assert "&lt;script&gt;" in message.html


@pytest.mark.parametrize(
    ("pattern", "event_type", "matches"),
    [
        ("bejo.orders.#", "bejo.orders.order.placed.v1", True),
        ("bejo.orders.*", "bejo.orders.order.placed.v1", False),
        ("bejo.orders.order.*.v1", "bejo.orders.order.placed.v1", True),
        ("bejo.#.v1", "bejo.catalog.product.upserted.v1", True),
        ("#", "bejo.payments.va.issued.v1", True),
        ("bejo.payments.#", "bejo.orders.order.paid.v1", False),
        ("bejo.orders.order.placed.v1", "bejo.orders.order.placed.v1", True),
        ("bejo.orders.order.placed.v1.#", "bejo.orders.order.placed.v1", True),
        ("#.#", "a", True),
        ("#.*", "a", True),
        ("*.*", "a", False),
        ("a.*.#", "a", False),
        ("a.#.b.#", "a.x.b", True),
        ("a.#.#.z", "a.z", True),
        ("#.v2", "bejo.orders.order.placed.v1", False),
    ],
)
def test_topic_patterns(pattern: str, event_type: str, matches: bool) -> None:
    assert domain.is_valid_pattern(pattern)
    assert domain.topic_matches(pattern, event_type) is matches


def test_a_pattern_of_many_hashes_is_matched_in_linear_steps() -> None:
    """A subscriber's pattern must not make fan-out exponential or recurse past Python's limit
    (one such subscription would fail every event's handling)."""
    assert not domain.topic_matches(".".join(["#"] * 3000) + ".x", "bejo.orders.order.placed.v1")
    assert domain.topic_matches(".".join(["#"] * 3000), "bejo.orders.order.placed.v1")
    assert domain.topic_matches(".".join(["*", "#"] * 1000), "a." * 999 + "z")


@pytest.mark.parametrize(
    "pattern", ["", "bejo..orders", "bejo.orders.*x", "Bejo.Orders", "bejo orders", "bejo.orders."]
)
def test_malformed_patterns_are_refused(pattern: str) -> None:
    assert not domain.is_valid_pattern(pattern)


def _scope(data: EventData) -> domain.EventScope:
    return domain.event_scope(Envelope.wrap(data, source="bejo/test"))


def stock_reserved(pemda: str = "35.15", provider_id: str = "prov-1") -> cat.StockReserved:
    line = cat.ReservedLine(product_id="p-1", name="Kertas", unit="rim", quantity=2, list_price=50, unit_price=50)
    return cat.StockReserved(
        order_id="ORD-1",
        pemda=pemda,
        provider_id=provider_id,
        provider_name="CV Maju Jaya",
        provider_pkp=True,
        lines=[line],
        total=100,
    )


def test_every_event_type_names_its_pemda_but_the_public_feed() -> None:
    """The contract, not a guess from field names, scopes each event: only the catalog's public
    sync feed has no pemda (and it is not on the notifications queue)."""
    unscoped = {t for t, model in all_models().items() if model.pemda_scope is EventData.pemda_scope}
    assert unscoped == {cat.CatalogProductChanged.TYPE, cat.CatalogProviderChanged.TYPE}
    for event in sample_events():
        assert _scope(event).pemda == "35.15", event.TYPE


def test_penyedia_subscriptions_see_only_their_provider() -> None:
    order = _scope(ords.OrderApproved(**order_fields("1", status="approved")))
    assert domain.subscription_may_see("penyedia", "35.15", "prov-1", order)
    assert domain.subscription_may_see("penyedia", "36", "prov-1", _scope(stock_reserved()))
    assert not domain.subscription_may_see("penyedia", "35.15", "prov-2", order)
    assert not domain.subscription_may_see("penyedia", "35.15", None, order)
    assert not domain.subscription_may_see("penyedia", "35.15", "prov-1", domain.NO_SCOPE)


def test_admin_subscriptions_see_the_pemdas_they_oversee() -> None:
    assert domain.subscription_may_see("admin", "35", None, _scope(stock_reserved("35.15")))
    assert domain.subscription_may_see("admin", "35.15", None, _scope(stock_reserved("35.15")))
    assert not domain.subscription_may_see("admin", "36", None, _scope(stock_reserved("35.15")))
    assert not domain.subscription_may_see("admin", "35.15", None, _scope(stock_reserved("35.16")))
    assert not domain.subscription_may_see("admin", "35.1", None, _scope(stock_reserved("35.15")))
    assert not domain.subscription_may_see("pp", "35.15", None, _scope(stock_reserved("35.15")))


def test_events_of_no_or_unknown_scope_reach_no_scoped_subscriber() -> None:
    unknown = Envelope(source="bejo/test", type="bejo.catalog.stock.reserved.v1", data={"order_id": "ORD-1"})
    foreign = Envelope(source="bejo/test", type="bejo.elsewhere.thing.v1", data={"pemda": "35.15"})
    feed = cat.CatalogProductChanged(seq=1, op="delete", kind="product", id="p-1", version=2)
    for scope in (domain.event_scope(unknown), domain.event_scope(foreign), _scope(feed)):
        assert scope == domain.NO_SCOPE
        assert not domain.subscription_may_see("admin", "35", None, scope)
        assert not domain.subscription_may_see("admin", "35.15", None, scope)


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    # Reference value computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac s3cret
    signature = domain.sign("s3cret", "1700000000", b'{"a":1}')
    assert signature == "sha256=" + hmac.new(b"s3cret", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert domain.verify_signature("s3cret", "1700000000", b'{"a":1}', signature)
    assert not domain.verify_signature("other", "1700000000", b'{"a":1}', signature)
    assert not domain.verify_signature("s3cret", "1700000001", b'{"a":1}', signature)
    assert not domain.verify_signature("s3cret", "1700000000", b'{"a":2}', signature)


def test_retry_delay_grows_exponentially_within_jitter_and_cap() -> None:
    delays = [domain.retry_delay(n, base=1.0, cap=60.0, jitter=0.0) for n in range(1, 9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert domain.retry_delay(3, base=1.0, cap=60.0, jitter=0.999) == pytest.approx(3.998)
    with pytest.raises(ValueError):
        domain.retry_delay(0, base=1.0, cap=60.0, jitter=0.5)
    with pytest.raises(ValueError):
        domain.retry_delay(1, base=1.0, cap=60.0, jitter=1.0)


def test_retryable_statuses() -> None:
    assert all(domain.is_retryable_status(s) for s in (500, 502, 503, 504, 408, 429))
    assert not any(domain.is_retryable_status(s) for s in (400, 401, 403, 404, 410, 422))


def test_dedup_ids_are_stable_and_distinct() -> None:
    assert domain.notification_id("e1", "user:a") == domain.notification_id("e1", "user:a")
    assert domain.notification_id("e1", "user:a") != domain.notification_id("e1", "user:b")
    assert domain.notification_id("e1", "user:a") != domain.notification_id("e2", "user:a")
    assert domain.email_id("e1", "A@X.id") == domain.email_id("e1", "a@x.id")


@pytest.mark.parametrize(
    "url",
    ["http://example.org/hook", "ftp://example.org/", "https:///nohost", "https://u:p@example.org/", "example.org"],
)
def test_production_refuses_bad_url_shapes(url: str) -> None:
    with pytest.raises(domain.UnsafeUrl):
        domain.parse_webhook_url(url, "production")


def test_local_and_test_allow_loopback_http() -> None:
    target = domain.parse_webhook_url("http://127.0.0.1:9000/hook", "test")
    assert (target.scheme, target.host, target.port) == ("http", "127.0.0.1", 9000)
    domain.check_resolved_addresses("127.0.0.1", ["127.0.0.1"], "test")
    domain.check_resolved_addresses("localhost", ["::1", "127.0.0.1"], "local")


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.5",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "224.0.0.1",
    ],
)
def test_production_refuses_non_public_addresses(address: str) -> None:
    assert not domain.is_public_address(address)
    with pytest.raises(domain.UnsafeUrl):
        domain.check_resolved_addresses("hooks.example.org", ["93.184.215.14", address], "production")


def test_production_accepts_public_addresses_and_needs_some() -> None:
    domain.check_resolved_addresses(
        "hooks.example.org", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"], "production"
    )
    with pytest.raises(domain.UnsafeUrl):
        domain.check_resolved_addresses("nxdomain.example", [], "production")
