"""Helpers shared by the integration and end-to-end tests (importable as `support`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiohttp import web

from bejo_kit.auth import mint_token
from bejo_kit.settings import KitSettings

S = TypeVar("S", bound=KitSettings)


def service_settings(cls: type[S], *, amqp_url: str, mongodb_url: str, namespace: str, **overrides: Any) -> S:
    """Settings for a service under test: its own database and its own bus namespace, so tests
    never see each other's data or messages; fast retries; test queues expire when unused."""
    base: dict[str, Any] = {
        "amqp_url": amqp_url,
        "mongodb_url": mongodb_url,
        "bus_namespace": f"t{namespace}.",
        "bus_queue_expires_ms": 120_000,
        "retry_delays_ms": [50, 100],
        "outbox_poll_interval": 0.5,
        "environment": "test",
        "log_json": True,
        "log_level": "WARNING",
    }
    settings = cls(**{**base, **overrides})
    settings.mongodb_database = f"test_{namespace}_{settings.service_name}"
    return settings


@asynccontextmanager
async def serve(app: web.Application, port: int = 0) -> AsyncIterator[str]:
    """Run an aiohttp app (with its start-up and shutdown hooks) on 127.0.0.1; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server = site._server
    assert server is not None and isinstance(server, asyncio.base_events.Server)
    bound_port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{bound_port}"
    finally:
        await runner.cleanup()


def token(
    role: str,
    sub: str,
    *,
    pemda: str = "35.15",
    satker: str | None = None,
    provider_id: str | None = None,
    name: str | None = None,
    settings: KitSettings | None = None,
) -> str:
    return mint_token(
        settings or KitSettings(),
        sub=sub,
        role=role,
        pemda=pemda,
        satker=satker,
        provider_id=provider_id,
        name=name,
    )


def bearer(jwt: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt}"}


async def wait_until(predicate: Callable[[], Any], within: float = 15.0, interval: float = 0.05) -> Any:
    """Poll a sync or async predicate until it returns something truthy; fail after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)
