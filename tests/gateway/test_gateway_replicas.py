"""Several replicas per upstream: requests spread over them, a stopped one is passed over, all down is
a 503; the URL lists are read from the environment and checked."""

from __future__ import annotations

import re
from typing import Any

import pytest
from gateway_harness import echo_app
from pydantic import ValidationError
from support import bearer, serve, token

from bejo_gateway.settings import GatewaySettings

PP = bearer(token("pp", "pp-1", satker="dinkes"))
SELLER = bearer(token("penyedia", "owner-1", provider_id="prov-1"))


async def connect_errors(http: Any, gateway: str, upstream: str) -> float:
    async with http.get(gateway + "/metrics") as answer:
        text = await answer.text()
    found = re.search(rf'bejo_gateway_upstream_errors_total{{kind="connect",upstream="{upstream}"}} (\S+)', text)
    return float(found.group(1)) if found else 0.0


async def test_requests_are_spread_over_the_replicas(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway(replicas=2)
    first, second = stack.replicas["orders"]
    for method in ("GET",) * 10 + ("POST",) * 10:
        async with http.request(method, stack.gateway + "/api/v1/orders", headers=PP, json={}) as answer:
            assert answer.status == 200
    # Round-robin, whatever the method.
    for replica in (first, second):
        assert [s["method"] for s in replica.seen] == ["GET"] * 5 + ["POST"] * 5
    assert stack.replicas["catalog"][0].seen == stack.replicas["catalog"][1].seen == []
    async with http.get(stack.gateway + "/readyz") as answer:
        ready = await answer.json()
    assert answer.status == 200 and ready["status"] == "ready"
    assert ready["upstreams"]["orders"] | {"detail": None} == {
        "status": "up",
        "detail": None,
        "replicas": 2,
        "replicas_up": 2,
    }


async def test_a_stopped_replica_is_skipped_and_requests_still_succeed(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway(replicas=2, upstream_down_seconds=60)
    stopped, alive = stack.replicas["catalog"]
    assert stopped.stop is not None
    await stopped.stop()
    errors_before = await connect_errors(http, stack.gateway, "catalog")
    # The first request meets the stopped replica first: a POST is never sent twice, but one that
    # never reached a replica (connection refused) goes on to the next.
    for _ in range(4):
        async with http.post(stack.gateway + "/api/v1/products", headers=SELLER, json={"name": "x"}) as answer:
            assert answer.status == 200, await answer.text()
    for _ in range(10):
        async with http.get(stack.gateway + "/api/v1/products") as answer:
            assert answer.status == 200, await answer.text()
            assert answer.headers["X-Upstream"] == "catalog"
    assert len(alive.seen) == 14
    # Passive health: the refused replica was tried once, then passed over while marked down.
    assert await connect_errors(http, stack.gateway, "catalog") - errors_before == 1
    async with http.get(stack.gateway + "/readyz") as answer:
        ready = await answer.json()
    assert answer.status == 200 and ready["status"] == "ready"
    assert ready["upstreams"]["catalog"]["status"] == "up"
    assert (ready["upstreams"]["catalog"]["replicas"], ready["upstreams"]["catalog"]["replicas_up"]) == (2, 1)
    # The merged OpenAPI document still has the catalog's routes, from the replica that answers.
    async with http.get(stack.gateway + "/api/v1/openapi.json") as answer:
        document = await answer.json()
    assert "/api/v1/catalog/documented" in document["paths"]
    assert document["x-upstreams"]["catalog"] == {"status": "included"}


async def test_a_replica_back_on_its_port_gets_requests_again(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway(replicas=2, upstream_down_seconds=0.2)
    alive, stopped = stack.replicas["payments"]
    assert stopped.stop is not None
    await stopped.stop()
    for _ in range(4):
        async with http.get(stack.gateway + "/api/v1/payments", headers=PP) as answer:
            assert answer.status == 200
    assert len(alive.seen) == 4
    port = int(stopped.url.rsplit(":", 1)[1])
    async with serve(echo_app(stopped), port=port):
        # /readyz finds it answering and clears its mark at once (otherwise it would after 0.2 s).
        async with http.get(stack.gateway + "/readyz") as answer:
            assert (await answer.json())["upstreams"]["payments"]["replicas_up"] == 2
        for _ in range(6):
            async with http.get(stack.gateway + "/api/v1/payments", headers=PP) as answer:
                assert answer.status == 200
    assert len(stopped.seen) == 3 and len(alive.seen) == 7


async def test_every_replica_down_gives_503_problem(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway(replicas=2, down=("notifications",))
    for method in ("GET", "POST"):
        async with http.request(method, stack.gateway + "/api/v1/notifications", headers=PP, json={}) as answer:
            assert answer.status == 503
            assert answer.content_type == "application/problem+json"
            problem = await answer.json()
        assert problem["code"] == "upstream_unavailable" and problem["upstream"] == "notifications"
        assert problem["status"] == 503 and problem["request_id"] == answer.headers["X-Request-ID"]
    async with http.get(stack.gateway + "/api/v1/orders", headers=PP) as answer:
        assert answer.status == 200  # the other upstreams are unaffected
    async with http.get(stack.gateway + "/readyz") as answer:
        ready = await answer.json()
    assert answer.status == 200 and ready["status"] == "degraded"
    assert ready["upstreams"]["notifications"]["status"] == "down"
    assert ready["upstreams"]["notifications"]["replicas_up"] == 0
    async with http.get(stack.gateway + "/api/v1/openapi.json") as answer:
        document = await answer.json()
    assert document["x-upstreams"]["notifications"]["status"] == "unavailable"


def test_url_lists_come_from_the_environment_comma_separated_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_CATALOG_URLS", "http://10.0.0.5:8081, http://10.0.0.6:8081/,")
    monkeypatch.setenv("GATEWAY_ORDERS_URLS", '["https://orders.internal"]')
    monkeypatch.setenv("GATEWAY_PAYMENTS_URLS", "http://payments:8083")
    urls = GatewaySettings().upstream_urls()
    assert urls == {
        "catalog": ["http://10.0.0.5:8081", "http://10.0.0.6:8081"],
        "orders": ["https://orders.internal"],
        "payments": ["http://payments:8083"],
        "notifications": ["http://127.0.0.1:8084"],
    }


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("", "at least one upstream URL is required"),
        (" , ", "at least one upstream URL is required"),
        ("[]", "at least one upstream URL is required"),
        ("127.0.0.1:8081", "must start with http:// or https://"),
        ("ftp://catalog:8081", "must start with http:// or https://"),
        ("http://catalog:8081/api/v1", "must be a base URL"),
        ("http://catalog:8081?x=1", "must be a base URL"),
        ("http://a:8081;http://b:8081", "separate URLs with commas"),
        ("http://catalog:8081,http://catalog:99999", "URL 2: 'http://catalog:99999' has an invalid port"),
        ("http://:8081", "has no host"),
        ("http://catalog:8081,http://catalog:8081/", "http://catalog:8081 is listed twice"),
        ('["http://catalog:8081"', "not a valid JSON list"),
        ("[8081]", "expected URLs"),
    ],
)
def test_a_malformed_url_list_is_refused_clearly(monkeypatch: pytest.MonkeyPatch, value: str, complaint: str) -> None:
    monkeypatch.setenv("GATEWAY_CATALOG_URLS", value)
    with pytest.raises(ValidationError) as caught:
        GatewaySettings()
    message = str(caught.value)
    assert "GATEWAY_CATALOG_URLS" in message and complaint in message, message
