"""Gateway findings of the outside review: absolute-form targets, the Server header, per-route latency."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from support import bearer, token
from yarl import URL

from bejo_gateway.metrics import route_template

PP = bearer(token("pp", "pp-1", satker="dinkes"))


async def raw_exchange(base: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `request` as written (aiohttp would normalise its target) and read one answer."""
    url = URL(base)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 20)
        return status, headers, body
    finally:
        writer.close()


async def test_an_absolute_form_target_is_a_400_problem_and_reaches_no_upstream(start_gateway: Any) -> None:
    stack = await start_gateway()
    orders = stack.upstreams["orders"]
    auth = PP["Authorization"]
    for target in ("http://127.0.0.1/api/v1/orders/o-1", "http://evil.example/api/v1/orders", "https://x/api/v1/"):
        request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        status, headers, body = await raw_exchange(stack.gateway, request.encode())
        assert status == 400, (target, body)
        assert headers["content-type"].startswith("application/problem+json")
        problem = orjson.loads(body)
        assert problem["code"] == "absolute_form_target" and problem["status"] == 400
        assert problem["request_id"] == headers["x-request-id"]
    assert orders.seen == []
    # The origin form of the same target still goes through.
    request = f"GET /api/v1/orders/o-1 HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
    status, _, _ = await raw_exchange(stack.gateway, request.encode())
    assert status == 200 and orders.last()["path"] == "/api/v1/orders/o-1"


async def test_no_answer_names_the_server_software_or_its_version(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway(down=("payments",))
    answers = []
    for method, path, headers in (
        ("GET", "/healthz", {}),
        ("GET", "/api/v1/orders/o-1", PP),  # relayed from an upstream (which sends its own Server header)
        ("GET", "/api/v1/orders/o-1", {}),  # 401 problem
        ("GET", "/api/v1/payments/p-1", PP),  # 503: the upstream is down
        ("GET", "/api/v1/nowhere", {}),  # 404
        ("POST", "/healthz", {}),  # 405
    ):
        async with http.request(method, stack.gateway + path, headers=headers) as answer:
            await answer.read()
            answers.append((path, answer.status, answer.headers.getall("Server", [])))
    assert {status for _, status, _ in answers} >= {200, 401, 503, 404, 405}
    for path, status, servers in answers:
        assert servers == ["bejo"], (path, status, servers)


def test_route_templates_replace_ids_and_stay_few() -> None:
    assert route_template("/api/v1/orders/ORD-35.15-000123/approve") == "/api/v1/orders/{id}/approve"
    assert route_template("/api/v1/orders") == "/api/v1/orders"
    assert route_template("/api/v1/orders/stats") == "/api/v1/orders/stats"
    assert route_template("/api/v1/products/prd-9f2") == "/api/v1/products/{id}"
    assert route_template("/api/v1/payments/callbacks/snap") == "/api/v1/payments/callbacks/snap"
    assert route_template("/api/v1/sandbox/va/8808123400001/pay") == "/api/v1/sandbox/va/{id}/pay"
    assert (
        route_template("/api/v1/webhooks/wh-1/deliveries/d-2/redeliver")
        == "/api/v1/webhooks/{id}/deliveries/{id}/redeliver"
    )
    # Probing paths cannot mint new label values beyond ids and one catch-all for depth.
    scans = {route_template(f"/api/v1/orders/{n}/x{n}") for n in range(500)}
    assert scans == {"/api/v1/orders/{id}/{id}"}
    assert route_template("/a" * 50) == "/{too_deep}"


async def test_metrics_have_a_latency_histogram_per_route_template(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway()
    for order_id in ("o-1", "o-2", "o-3"):
        async with http.get(f"{stack.gateway}/api/v1/orders/{order_id}", headers=PP) as answer:
            assert answer.status == 200
    async with http.post(f"{stack.gateway}/api/v1/orders/o-9/approve", headers=PP) as answer:
        assert answer.status == 403  # a PP may not approve: counted under its template all the same
    async with http.get(stack.gateway + "/metrics") as answer:
        text = await answer.text()
    series = 'bejo_gateway_route_duration_seconds_count{method="GET",route="/api/v1/orders/{id}",status_class="2xx"}'
    counts = [line for line in text.splitlines() if line.startswith(series)]
    assert counts and float(counts[0].split()[-1]) >= 3
    approve = 'route="/api/v1/orders/{id}/approve",status_class="4xx"'
    assert any(approve in line and "_bucket" in line for line in text.splitlines())
    assert "o-1" not in text and "o-2" not in text  # no raw paths as labels
    # Failure counters exist before any failure, so alerts have a series to watch.
    assert 'bejo_gateway_upstream_errors_total{kind="connect",upstream="catalog"}' in text
    assert 'bejo_gateway_rate_limited_total{client_kind="anonymous"}' in text
