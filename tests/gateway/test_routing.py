"""Route table, header filtering and client identification (pure)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from bejo_gateway.routing import (
    ROUTES,
    acceptable_request_id,
    accepts_gzip,
    client_address,
    client_response_headers,
    forwarded_for_chain,
    parse_networks,
    suspicious_path,
    upstream_for,
    upstream_request_headers,
)


@pytest.mark.parametrize(
    ("path", "upstream"),
    [
        ("/api/v1/products", "catalog"),
        ("/api/v1/products/p-1", "catalog"),
        ("/api/v1/providers/x/verify", "catalog"),
        ("/api/v1/categories", "catalog"),
        ("/api/v1/promotions", "catalog"),
        ("/api/v1/catalog/feed", "catalog"),
        ("/api/v1/orders", "orders"),
        ("/api/v1/orders/o-1/approve", "orders"),
        ("/api/v1/ocds/releases", "orders"),
        ("/api/v1/payments/callbacks/snap", "payments"),
        ("/api/v1/sandbox/pay", "payments"),
        ("/api/v1/notifications", "notifications"),
        ("/api/v1/webhooks/w-1/deliveries", "notifications"),
        ("/api/v1/ordersx", None),
        ("/api/v1/catalogue", None),
        ("/api/v2/orders", None),
        ("/api/v1/", None),
        ("/orders", None),
    ],
)
def test_prefixes_match_whole_segments(path: str, upstream: str | None) -> None:
    assert upstream_for(path) == upstream


def test_every_prefix_of_the_agreement_routes_to_its_service() -> None:
    for prefix, upstream in ROUTES:
        assert upstream_for(prefix) == upstream
        assert upstream_for(prefix + "/anything/below") == upstream


def test_hop_by_hop_and_connection_listed_headers_do_not_cross() -> None:
    incoming = CIMultiDict(
        [
            ("Host", "gateway.example"),
            ("Connection", "keep-alive, X-Private-Hop"),
            ("X-Private-Hop", "secret"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authorization", "Basic eA=="),
            ("TE", "trailers"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("Content-Length", "12"),
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Request-ID", "client-chosen"),
            ("Authorization", "Bearer abc"),
            ("Accept", "application/json"),
            ("Idempotency-Key", "k1"),
            ("Cookie", "a=1"),
            ("Cookie", "b=2"),
        ]
    )
    out = upstream_request_headers(
        incoming, request_id="rid", correlation_id="cid", forwarded_for="10.0.0.9", scheme="https", host="gw.example"
    )
    names = {name.lower() for name in out}
    for dropped in ("connection", "x-private-hop", "keep-alive", "proxy-authorization", "te", "transfer-encoding",
                    "upgrade", "content-length", "host"):  # fmt: skip
        assert dropped not in names
    assert out["Authorization"] == "Bearer abc"
    assert out["Idempotency-Key"] == "k1"
    assert out.getall("Cookie") == ["a=1", "b=2"]
    assert out["X-Request-ID"] == "rid"
    assert out["X-Correlation-ID"] == "cid"
    assert out["X-Forwarded-For"] == "10.0.0.9"
    assert out["X-Forwarded-Proto"] == "https"
    assert out["X-Forwarded-Host"] == "gw.example"


def test_response_headers_keep_end_to_end_fields_only() -> None:
    upstream = CIMultiDict(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", "99"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "close"),
            ("ETag", '"v1"'),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("Server", "Python/3.11 aiohttp"),
            ("Access-Control-Allow-Origin", "*"),
            ("RateLimit-Remaining", "999"),
        ]
    )
    out = client_response_headers(upstream)
    assert set(out.keys()) == {"Content-Type", "ETag", "Set-Cookie"}
    assert out.getall("Set-Cookie") == ["a=1", "b=2"]


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    proxies = parse_networks(["10.0.0.0/8", "127.0.0.1"])
    # Untrusted peer: its X-Forwarded-For could say anything.
    assert client_address("203.0.113.7", "1.2.3.4", proxies) == "203.0.113.7"
    # Trusted peer: the right-most address that is not a trusted proxy is the client.
    assert client_address("10.1.1.1", "6.6.6.6, 198.51.100.4, 10.2.2.2", proxies) == "198.51.100.4"
    # Nothing trusted configured: always the peer.
    assert client_address("10.1.1.1", "198.51.100.4", ()) == "10.1.1.1"
    # Only proxies in the chain: the left-most of them.
    assert client_address("127.0.0.1", "10.3.3.3", proxies) == "10.3.3.3"
    assert forwarded_for_chain("10.1.1.1", "198.51.100.4", proxies) == "198.51.100.4, 10.1.1.1"
    assert forwarded_for_chain("203.0.113.7", "1.2.3.4", proxies) == "203.0.113.7"


def test_a_bad_trusted_proxy_entry_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        parse_networks(["not-an-address"])


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.8", True),
        ("gzip;q=0", False),
        ("*", True),
        ("identity", False),
        ("deflate", False),
        (None, False),
        ("", False),
    ],
)
def test_accept_encoding(header: str | None, accepted: bool) -> None:
    assert accepts_gzip(header) is accepted


def test_request_ids_are_kept_only_when_plain() -> None:
    assert acceptable_request_id("4f1c-abc_DEF.12:3")
    assert not acceptable_request_id("")
    assert not acceptable_request_id(None)
    assert not acceptable_request_id("a" * 129)
    assert not acceptable_request_id('evil"\nlog line')


def test_paths_that_could_be_read_two_ways_are_suspicious() -> None:
    assert suspicious_path("/api/v1/products/../orders", "/api/v1/products/../orders")
    assert suspicious_path("/api/v1/products/a/b", "/api/v1/products/a%2Fb")
    assert suspicious_path("/api/v1/products/../x", "/api/v1/products/%2e%2e/x")
    assert not suspicious_path("/api/v1/products/kopi robusta", "/api/v1/products/kopi%20robusta?q=a%2Fb")
