"""The pieces every service wires the same way: Mongo, the bus, the outbox relay, the HTTP app.

A service's composition root creates one `Runtime`, registers its routes, consumers and
background loops on it, and calls `run_service`. Start-up order: Mongo (with indexes), bus, relay,
background loops, consumers. Shutdown (SIGTERM) reverses it: stop consuming and let handlers in
flight finish, stop loops, flush the outbox, close the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import uvloop
from aiohttp import web
from pymongo.asynchronous.database import AsyncDatabase
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from .api import TOKEN_VERIFIER, openapi_document
from .auth import TokenVerifier
from .bus import Bus
from .http import add_readiness_check, create_app, json_response
from .logging import configure_logging, get_logger
from .mongo import Document, Indexes, create_client, database, ping
from .outbox import Outbox, OutboxRelay
from .settings import KitSettings

log = get_logger(__name__)
RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime")
BackgroundLoop = Callable[[], Awaitable[None]]


class Runtime:
    def __init__(
        self,
        settings: KitSettings,
        *,
        outbox_collections: Iterable[str] = (),
        indexes: Indexes | None = None,
    ) -> None:
        self.settings = settings
        self.client = create_client(settings)
        self.db: AsyncDatabase[Document] = database(self.client, settings)
        self.bus = Bus(settings)
        self.relay = OutboxRelay(self.db, outbox_collections, self.bus, settings)
        self.outbox = Outbox(self.relay)
        self.indexes = (indexes or Indexes()).merged(self.relay.indexes)
        self._loops: list[tuple[str, BackgroundLoop]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._on_start: list[Callable[[], Awaitable[None]]] = []

    def add_loop(self, name: str, loop: BackgroundLoop) -> None:
        """A long-running coroutine (a timer sweep, say) started after the bus and cancelled at shutdown."""
        self._loops.append((name, loop))

    def on_start(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run after Mongo and the bus are up, before consumers start (seed data, extra exchanges)."""
        self._on_start.append(hook)

    async def start(self) -> None:
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(30),
            wait=wait_exponential(multiplier=0.2, max=3),
            retry=retry_if_exception_type(Exception),
            reraise=True,
        ):
            with attempt:
                await self.db.command("ping")
        await self.indexes.ensure(self.db)
        await self.bus.connect()
        for hook in self._on_start:
            await hook()
        self.relay.start()
        for name, loop in [*self._loops, ("queue-depth", self._sample_queue_depths)]:
            self._tasks.append(asyncio.create_task(self._guarded(name, loop), name=name))
        await self.bus.start_consuming()
        log.info("service started", database=self.settings.database_name)

    async def stop(self) -> None:
        await self.bus.stop_consuming()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.relay.stop()
        await self.bus.close()
        await self.client.close()
        log.info("service stopped")

    async def _guarded(self, name: str, loop: BackgroundLoop) -> None:
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a background loop restarts rather than dying silently
                log.error("background loop failed; restarting", loop=name, error=str(exc))
                await asyncio.sleep(1.0)

    async def _sample_queue_depths(self) -> None:
        """Keep `bejo_queue_depth` current for this service's queues and dead-letter queues."""
        while True:
            await asyncio.sleep(self.settings.queue_depth_interval)
            try:
                await self.bus.sample_queue_depths()
            except Exception as exc:  # noqa: BLE001 - a broker blip: the gauge keeps its last value
                log.warning("queue depth sample failed", error=str(exc))

    def create_app(self, *, title: str, description: str = "", client_max_size: int = 1024 * 1024) -> web.Application:
        app = create_app(client_max_size=client_max_size)
        app[RUNTIME] = self
        app[TOKEN_VERIFIER] = TokenVerifier(self.settings)
        add_readiness_check(app, "mongo", lambda: ping(self.db))
        add_readiness_check(app, "bus", self._bus_ready)

        async def openapi(request: web.Request) -> web.Response:
            return json_response(openapi_document(request.app, title=title, description=description))

        app.router.add_get("/openapi.json", openapi)

        async def lifecycle(app: web.Application) -> AsyncIterator[None]:
            await self.start()
            yield
            await self.stop()

        app.cleanup_ctx.append(lifecycle)
        return app

    async def _bus_ready(self) -> bool:
        return self.bus.is_ready


def run_service(settings: KitSettings, build: Callable[[], web.Application], *, reuse_port: bool = False) -> None:
    """Entry point of a service process: logging, uvloop, serve until SIGTERM, graceful shutdown.
    `reuse_port`: several processes listen on the one port (SO_REUSEPORT; the kernel spreads connections)."""
    # Logging first: anything logged while building must already use the service's format, and
    # structlog caches a logger on first use with whatever configuration is current then.
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    app = build()
    log.info("listening", host=settings.http_host, port=settings.http_port)
    web.run_app(
        app,
        host=settings.http_host,
        port=settings.http_port,
        access_log=None,
        print=None,
        shutdown_timeout=settings.shutdown_grace_seconds,
        handle_signals=True,
        reuse_port=reuse_port or None,
    )
