"""Harness for the notifications integration tests: the service (one or more replicas) on the real
bus and store, a publisher in the test's bus namespace, and a webhook receiver that verifies
signatures."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from pymongo.asynchronous.database import AsyncDatabase
from support import Api, AppSpec, run_apps, service_settings, wait_until

from bejo_contracts import Envelope
from bejo_kit.bus import Bus
from bejo_kit.mongo import Document, create_client
from bejo_notifications.app import build
from bejo_notifications.domain import verify_signature
from bejo_notifications.settings import NotificationsSettings


@dataclass
class Service:
    """The service's replicas (same settings: one database, competing consumers on one queue)."""

    urls: list[str]
    settings: NotificationsSettings
    bus: Bus
    http: aiohttp.ClientSession
    db: AsyncDatabase[Document]

    @property
    def url(self) -> str:
        return self.urls[0]

    async def publish(self, envelope: Envelope) -> None:
        await self.bus.publish(envelope)

    async def call(self, method: str, path: str, jwt: str, json: Any = None, replica: int = 0) -> tuple[int, Any]:
        reply = await Api(self.http, self.urls[replica]).call(method, path, jwt, json)
        return reply.status, reply.body

    async def inbox(self, jwt: str, **query: str) -> dict[str, Any]:
        status, body = await self.call("GET", "/api/v1/notifications" + _query(query), jwt)
        assert status == 200, body
        return body  # type: ignore[no-any-return]


def _query(params: dict[str, str]) -> str:
    return ("?" + "&".join(f"{k}={v}" for k, v in params.items())) if params else ""


async def start_service(
    amqp_url: str, mongodb_url: str, unique: str, smtp_port: int, *, replicas: int = 1, **overrides: Any
) -> AsyncIterator[Service]:
    defaults: dict[str, Any] = {
        # One message at a time, so "a later event was handled" implies "the earlier ones were"
        # (with one replica).
        "prefetch": 1,
        "delivery_poll_interval": 0.1,
        "retry_backoff_base_seconds": 0.2,
        "retry_backoff_max_seconds": 1.0,
        "webhook_timeout_seconds": 2.0,
    }
    settings = service_settings(
        NotificationsSettings,
        amqp_url=amqp_url,
        mongodb_url=mongodb_url,
        namespace=unique,
        smtp_port=smtp_port,
        **{**defaults, **overrides},
    )
    publisher = Bus(settings, source="bejo/test")
    client = create_client(settings)
    async with contextlib.AsyncExitStack() as closing:
        closing.push_async_callback(client.close)
        closing.push_async_callback(publisher.close)
        async with (
            run_apps([AppSpec("notifications", build, settings, replicas=replicas)], stack=closing) as running,
            aiohttp.ClientSession() as http,
        ):
            await publisher.connect()
            yield Service(running.urls["notifications"], settings, publisher, http, client[settings.database_name])


async def eventually(predicate: Any, within: float = 45) -> Any:
    """Generous: the shared Mongo-wire server can be slow when other suites run beside this one."""
    return await wait_until(predicate, within=within)


@dataclass
class Receiver:
    """A webhook receiver: answers with the scripted statuses (then 200) and verifies signatures."""

    secret: str
    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    # While set, requests are held open until it is set (to catch a delivery mid-attempt).
    held: asyncio.Event | None = None

    async def handle(self, request: web.Request) -> web.Response:
        if self.held is not None:
            await self.held.wait()
        body = await request.read()
        timestamp = request.headers["X-Bejo-Timestamp"]
        self.received.append(
            {
                "event_id": request.headers["X-Bejo-Event-Id"],
                "delivery_id": request.headers["X-Bejo-Delivery-Id"],
                "verified": verify_signature(self.secret, timestamp, body, request.headers["X-Bejo-Signature"]),
                "content_type": request.headers["Content-Type"],
                "json": await request.json(),
            }
        )
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="ok" if status < 300 else "boom")
