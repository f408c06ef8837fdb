"""Running services under test: settings of their own, real servers, and teardown in the right order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pymongo import AsyncMongoClient

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


@dataclass(frozen=True)
class AppSpec:
    """One service to run: its name, its composition root and its settings. `owns_database` says
    whether its database is dropped at teardown (the gateway has none)."""

    name: str
    build: Callable[[Any], web.Application]
    settings: KitSettings
    replicas: int = 1
    owns_database: bool = True


@dataclass
class Running:
    """What `run_apps` started: each service's apps and base URLs, replica 0 first."""

    apps: dict[str, list[web.Application]] = field(default_factory=dict)
    urls: dict[str, list[str]] = field(default_factory=dict)
    settings: dict[str, KitSettings] = field(default_factory=dict)

    def url(self, name: str, replica: int = 0) -> str:
        return self.urls[name][replica]

    def app(self, name: str, replica: int = 0) -> web.Application:
        return self.apps[name][replica]


@asynccontextmanager
async def run_apps(specs: Sequence[AppSpec], *, stack: AsyncExitStack | None = None) -> AsyncIterator[Running]:
    """Start every spec's replicas (each a separate `build(settings)`: its own app, Mongo client and
    bus connection, sharing one database and bus namespace, which is what replicas are), in order.
    On exit, every app stops (last started first) before any database is dropped, so no consumer or
    relay writes into a database that is going away. `stack`, when given, holds things (SMTP sinks,
    observers) that must close after the apps and before the databases."""
    running = Running()
    try:
        async with AsyncExitStack() as apps_stack:
            for spec in specs:
                running.settings[spec.name] = spec.settings
                for _ in range(spec.replicas):
                    app = spec.build(spec.settings)
                    running.apps.setdefault(spec.name, []).append(app)
                    running.urls.setdefault(spec.name, []).append(await apps_stack.enter_async_context(serve(app)))
            yield running
    finally:
        if stack is not None:
            await stack.aclose()
        await drop_databases(s.settings for s in specs if s.owns_database)


async def drop_databases(settings: Any) -> None:
    """Drop each settings' database (one client per server URL)."""
    by_url: dict[str, list[str]] = {}
    for each in settings:
        by_url.setdefault(each.mongodb_url, []).append(each.database_name)
    for url, names in by_url.items():
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
        try:
            for name in names:
                await client.drop_database(name)
        finally:
            await client.close()
