"""Fixtures: real aiohttp upstream apps that echo what reached them, and a gateway in front of them."""

from __future__ import annotations

import gzip
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from support import serve

from bejo_gateway.app import build
from bejo_gateway.settings import GatewaySettings
from bejo_kit.api import Router, openapi_document
from bejo_kit.http import create_app

BIG_BODY = orjson.dumps({"items": [{"id": f"p-{i}", "name": "Kopi Robusta Dampit 1kg " * 4} for i in range(2500)]})


# A route each upstream declares, so it has an OpenAPI document of its own.
DOCUMENTED = {
    "catalog": "/api/v1/catalog/documented",
    "orders": "/api/v1/orders/documented",
    "payments": "/api/v1/payments/documented",
    "notifications": "/api/v1/notifications/documented",
}


@dataclass
class Upstream:
    """What one upstream app saw; `figures` is what it answers on its stats route."""

    name: str
    seen: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    url: str = ""
    stop: Callable[[], Awaitable[None]] | None = None  # shuts this replica's server down

    def last(self) -> dict[str, Any]:
        return self.seen[-1]


def echo_app(upstream: Upstream) -> web.Application:
    """Answers every /api/v1/... request with what it received; a few paths behave specially."""
    router = Router(tag=upstream.name)

    @router.get(DOCUMENTED[upstream.name])
    async def documented(req: Any) -> dict[str, str]:
        """A documented route, so the service has an OpenAPI document of its own"""
        return {}

    app = create_app(client_max_size=16 * 1024 * 1024)
    router.install(app)

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(openapi_document(request.app, title=upstream.name))

    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        upstream.seen.append(
            {
                "method": request.method,
                "path": request.path,
                "raw_path": request.raw_path,
                "query": dict(request.query),
                "headers": {k: request.headers.getall(k) for k in request.headers},
                "body": body,
            }
        )
        tail = request.match_info["tail"]
        if tail.endswith("stats") and upstream.figures:
            return web.json_response(upstream.figures)
        if tail.endswith("big"):
            stream = web.StreamResponse(headers={"Content-Type": "application/json"})
            await stream.prepare(request)
            for start in range(0, len(BIG_BODY), 10_000):
                await stream.write(BIG_BODY[start : start + 10_000])
            await stream.write_eof()
            return stream
        if tail.endswith("pregzipped"):
            return web.Response(
                body=gzip.compress(BIG_BODY[:5000]),
                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            )
        if tail.endswith("cookie"):
            response = web.json_response({"ok": True})
            response.set_cookie("session", "upstream-set")
            return response
        return web.json_response(
            {"upstream": upstream.name, "method": request.method, "path": request.path, "body_bytes": len(body)},
            headers={"X-Upstream": upstream.name, "Connection": "keep-alive"},
        )

    app.router.add_get("/openapi.json", openapi)
    app.router.add_route("*", "/api/v1/{tail:.*}", echo)
    return app


def closed_port_url() -> str:
    """A local port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@dataclass
class Stack:
    gateway: str
    upstreams: dict[str, Upstream]  # the first replica of each
    settings: GatewaySettings
    replicas: dict[str, list[Upstream]] = field(default_factory=dict)


GatewayFactory = Callable[..., Any]


@pytest.fixture
async def start_gateway() -> AsyncIterator[Callable[..., Any]]:
    """`await start_gateway(down=("orders",), rate_limit_burst=3)` → Stack with every upstream echoing;
    `replicas=2` gives each upstream two echoing replicas (each can be stopped: `await u.stop()`)."""
    async with AsyncExitStack() as stack:

        async def start(
            down: tuple[str, ...] = (), urls: dict[str, str] | None = None, replicas: int = 1, **overrides: Any
        ) -> Stack:
            all_replicas: dict[str, list[Upstream]] = {}
            for name in ("catalog", "orders", "payments", "notifications"):
                all_replicas[name] = []
                for _ in range(replicas):
                    upstream = Upstream(name)
                    if urls and name in urls:
                        upstream.url = urls[name]
                    elif name in down:
                        upstream.url = closed_port_url()
                    else:
                        own = AsyncExitStack()
                        upstream.url = await own.enter_async_context(serve(echo_app(upstream)))
                        upstream.stop = own.aclose
                        stack.push_async_callback(own.aclose)
                    all_replicas[name].append(upstream)
            settings = GatewaySettings(
                **{f"{name}_urls": [u.url for u in group] for name, group in all_replicas.items()},
                rate_limit_per_second=overrides.pop("rate_limit_per_second", 1000.0),
                rate_limit_burst=overrides.pop("rate_limit_burst", 1000),
                access_log=overrides.pop("access_log", False),
                **overrides,
            )
            gateway = await stack.enter_async_context(serve(build(settings)))
            return Stack(gateway, {name: group[0] for name, group in all_replicas.items()}, settings, all_replicas)

        yield start


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # The total timeout guards against a hang; nothing here asserts on speed.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session
