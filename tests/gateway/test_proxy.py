"""Proxying against real upstream apps: ids, headers, bodies, failures, compression, CORS, probes."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from gateway_harness import BIG_BODY
from support import bearer, token
from yarl import URL

PP = bearer(token("pp", "pp-1", satker="dinkes"))


async def test_unknown_paths_are_404_problems(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway()
    for path in ("/api/v1/nothing-here", "/api/v1/ordersx", "/elsewhere", "/api/v1/products/%2e%2e/orders"):
        async with http.get(URL(stack.gateway + path, encoded=True)) as answer:
            assert answer.status == 404, path
            assert answer.content_type == "application/problem+json"
            assert (await answer.json())["code"] == "not_found"
    async with http.post(stack.gateway + "/healthz") as answer:
        assert answer.status == 405
        assert (await answer.json())["code"] == "method_not_allowed"


async def test_request_ids_travel_up_and_come_back(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway()
    orders = stack.upstreams["orders"]
    async with http.get(stack.gateway + "/api/v1/orders", headers={**PP, "X-Request-ID": "trace-42"}) as answer:
        assert answer.headers["X-Request-ID"] == "trace-42"
    assert orders.last()["headers"]["X-Request-ID"] == ["trace-42"]
    assert orders.last()["headers"]["X-Correlation-ID"] == ["trace-42"]
    async with http.get(stack.gateway + "/api/v1/orders", headers=PP) as answer:
        generated = answer.headers["X-Request-ID"]
    assert len(generated) == 32 and orders.last()["headers"]["X-Request-ID"] == [generated]
    headers = {**PP, "X-Request-ID": "bad id\twith tab", "X-Correlation-ID": "saga-7"}
    async with http.get(stack.gateway + "/api/v1/orders", headers=headers) as answer:
        replaced = answer.headers["X-Request-ID"]
    assert replaced != "bad id\twith tab"
    assert orders.last()["headers"]["X-Request-ID"] == [replaced]
    assert orders.last()["headers"]["X-Correlation-ID"] == ["saga-7"]


async def test_paths_queries_and_end_to_end_headers_pass_unchanged(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway()
    headers = {
        **PP,
        "Idempotency-Key": "k-1",
        "Connection": "keep-alive, X-Hop-Only",
        "X-Hop-Only": "secret",
        "Proxy-Authorization": "Basic eA==",
    }
    url = stack.gateway + "/api/v1/orders?status=placed&satker=dinkes%20kab&limit=5"
    async with http.post(url, headers=headers, json={"lines": []}) as answer:
        assert answer.status == 200
        assert answer.headers["X-Upstream"] == "orders"
        assert "keep-alive" not in answer.headers.get("Connection", "")
    seen = stack.upstreams["orders"].last()
    assert seen["raw_path"] == "/api/v1/orders?status=placed&satker=dinkes%20kab&limit=5"
    assert seen["body"] == b'{"lines": []}'
    assert seen["headers"]["Idempotency-Key"] == ["k-1"]
    assert "X-Hop-Only" not in seen["headers"] and "Proxy-Authorization" not in seen["headers"]
    assert seen["headers"]["X-Forwarded-Proto"] == ["http"]
    async with http.get(stack.gateway + "/api/v1/products/cookie") as answer:
        assert answer.cookies["session"].value == "upstream-set"


async def test_large_bodies_stream_both_ways(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway(max_body_bytes=2 * 1024 * 1024)
    async with http.get(stack.gateway + "/api/v1/products/big") as answer:
        assert answer.status == 200
        assert await answer.read() == BIG_BODY

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(BIG_BODY), 50_000):
            yield BIG_BODY[start : start + 50_000]

    async with http.put(stack.gateway + "/api/v1/products/p-1", data=chunks(), headers=bearer(
        token("penyedia", "u-p", provider_id="pv-1"))) as answer:  # fmt: skip
        assert answer.status == 200
        assert (await answer.json())["body_bytes"] == len(BIG_BODY)
    assert stack.upstreams["catalog"].last()["body"] == BIG_BODY


async def test_oversized_bodies_get_413(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway(max_body_bytes=100_000)
    url = stack.gateway + "/api/v1/orders"
    async with http.post(url, headers=PP, data=b"x" * 100_001) as answer:
        assert answer.status == 413
        problem = await answer.json()
    assert problem["code"] == "payload_too_large" and problem["max_bytes"] == 100_000
    assert stack.upstreams["orders"].seen == []

    async def endless() -> AsyncIterator[bytes]:  # chunked: no Content-Length to check up front
        for _ in range(20):
            yield b"y" * 10_000

    async with http.post(url, headers=PP, data=endless()) as answer:
        assert answer.status == 413
        assert (await answer.json())["code"] == "payload_too_large"
    async with http.post(url, headers=PP, data=b"z" * 99_000) as answer:
        assert answer.status == 200


async def test_a_down_upstream_gives_503_naming_it(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway(down=("notifications",))
    async with http.get(stack.gateway + "/api/v1/notifications", headers=PP) as answer:
        assert answer.status == 503
        problem = await answer.json()
    assert problem["code"] == "upstream_unavailable"
    assert problem["upstream"] == "notifications"
    assert "notifications" in problem["detail"]
    async with http.get(stack.gateway + "/api/v1/orders", headers=PP) as answer:
        assert answer.status == 200  # the others are unaffected
    async with http.get(stack.gateway + "/readyz") as answer:
        assert answer.status == 200
        ready = await answer.json()
    assert ready["status"] == "degraded"
    assert ready["upstreams"]["notifications"]["status"] == "down"
    assert ready["upstreams"]["orders"]["status"] == "up"
    async with http.get(stack.gateway + "/metrics") as answer:
        text = await answer.text()
    assert 'bejo_gateway_upstream_errors_total{kind="connect",upstream="notifications"}' in text
    assert 'bejo_gateway_request_duration_seconds_count{status="503",upstream="notifications"}' in text


async def test_readiness_can_require_every_upstream(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway(down=("payments",), ready_requires_all_upstreams=True)
    async with http.get(stack.gateway + "/readyz") as answer:
        assert answer.status == 503
        assert (await answer.json())["status"] == "not_ready"
    async with http.get(stack.gateway + "/healthz") as answer:
        assert answer.status == 200


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """Accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_an_upstream_that_never_answers_gives_504(silent_server: str, start_gateway: Any, http: Any) -> None:
    stack = await start_gateway(urls={"payments": silent_server}, upstream_timeout_seconds=0.5)
    async with http.get(stack.gateway + "/api/v1/payments", headers=PP) as answer:
        assert answer.status == 504
        problem = await answer.json()
    assert problem["code"] == "upstream_timeout" and problem["upstream"] == "payments"


@pytest.fixture
async def flaky_server() -> AsyncIterator[tuple[str, list[str]]]:
    """Drops the first connection after reading the request, answers the ones after."""
    requests: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        requests.append(head.split(b" ", 1)[0].decode())
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
        )
        await reader.readexactly(length)
        if len(requests) > 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n")
            writer.write(b'{"ok":true}')
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", requests
    server.close()
    await server.wait_closed()


async def test_only_idempotent_requests_are_retried_after_a_connection_error(
    flaky_server: tuple[str, list[str]], start_gateway: Any, http: Any
) -> None:
    url, requests = flaky_server
    stack = await start_gateway(urls={"orders": url})
    async with http.post(stack.gateway + "/api/v1/orders", headers=PP, json={}) as answer:
        assert answer.status == 503  # a POST is never sent twice
    assert requests == ["POST"]
    async with http.get(stack.gateway + "/api/v1/orders/o-1", headers=PP) as answer:
        assert answer.status == 200
        assert await answer.json() == {"ok": True}
    assert requests == ["POST", "GET"]
    requests.clear()
    async with http.delete(stack.gateway + "/api/v1/orders/o-1", headers=PP) as answer:
        assert answer.status == 200
    assert requests == ["DELETE", "DELETE"]


async def test_gzip_when_accepted_and_never_twice(start_gateway: Any) -> None:
    stack = await start_gateway()
    async with aiohttp.ClientSession(auto_decompress=False) as raw:
        async with raw.get(stack.gateway + "/api/v1/products/big", headers={"Accept-Encoding": "gzip"}) as answer:
            assert answer.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(await answer.read()) == BIG_BODY
        async with raw.get(stack.gateway + "/api/v1/products/big", headers={"Accept-Encoding": "identity"}) as answer:
            assert "Content-Encoding" not in answer.headers
            assert await answer.read() == BIG_BODY
        async with raw.get(
            stack.gateway + "/api/v1/products/pregzipped", headers={"Accept-Encoding": "gzip"}
        ) as answer:
            assert answer.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(await answer.read()) == BIG_BODY[:5000]  # compressed once only
        async with raw.get(stack.gateway + "/api/v1/openapi.json", headers={"Accept-Encoding": "gzip"}) as answer:
            assert answer.headers["Content-Encoding"] == "gzip"
    # The client's own Accept-Encoding goes up; none is invented for a client that sent none.
    assert stack.upstreams["catalog"].seen[1]["headers"]["Accept-Encoding"] == ["identity"]


async def test_cors_preflight_and_simple_requests(start_gateway: Any, http: Any) -> None:
    stack = await start_gateway(cors_origins=["https://belanja.jatimprov.go.id"])
    preflight = {
        "Origin": "https://belanja.jatimprov.go.id",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
    }
    async with http.options(stack.gateway + "/api/v1/orders", headers=preflight) as answer:
        assert answer.status == 204
        assert answer.headers["Access-Control-Allow-Origin"] == "https://belanja.jatimprov.go.id"
        assert "POST" in answer.headers["Access-Control-Allow-Methods"]
        assert "Idempotency-Key" in answer.headers["Access-Control-Allow-Headers"]
    assert stack.upstreams["orders"].seen == []  # answered by the gateway, without a token
    async with http.options(
        stack.gateway + "/api/v1/orders", headers={**preflight, "Origin": "https://evil.example"}
    ) as answer:
        assert answer.status == 403
        assert (await answer.json())["code"] == "cors_origin_not_allowed"
    async with http.get(
        stack.gateway + "/api/v1/products", headers={"Origin": "https://belanja.jatimprov.go.id"}
    ) as answer:
        assert answer.headers["Access-Control-Allow-Origin"] == "https://belanja.jatimprov.go.id"
        assert "X-Request-ID" in answer.headers["Access-Control-Expose-Headers"]
        assert "Origin" in answer.headers.getall("Vary")
    async with http.get(stack.gateway + "/api/v1/products", headers={"Origin": "https://evil.example"}) as answer:
        assert "Access-Control-Allow-Origin" not in answer.headers
