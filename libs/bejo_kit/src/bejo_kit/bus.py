"""RabbitMQ event bus on aio-pika.

- One durable topic exchange (`bejo.events`); the routing key is the event type.
- Publishing waits for the broker's confirm and is `mandatory`: an unroutable event raises.
- Each service consumes its own durable quorum queues; replicas compete on them.
- A message is acked only after its handler returned, i.e. after the handler's writes are durable.
- A failing handler's message goes to a TTL retry queue that dead-letters back to the work queue,
  once per configured delay; after the last attempt it is parked in `<queue>.dlq` with the error.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aio_pika
import orjson
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from pydantic import ValidationError

from bejo_contracts import Envelope, EventData
from bejo_contracts.topology import EVENTS_EXCHANGE, QueueSpec

from . import context, metrics
from .logging import get_logger
from .settings import KitSettings

log = get_logger(__name__)
T = TypeVar("T", bound=EventData)

ATTEMPT_HEADER = "x-bejo-attempt"
LAST_ERROR_HEADER = "x-bejo-last-error"
ORIGINAL_QUEUE_HEADER = "x-bejo-original-queue"
PARKED_AT_HEADER = "x-bejo-parked-at"
CONTENT_TYPE = "application/cloudevents+json"


@dataclass(frozen=True)
class IncomingEvent:
    envelope: Envelope
    queue: str
    attempt: int

    @property
    def id(self) -> str:
        return self.envelope.id

    @property
    def event_type(self) -> str:
        return self.envelope.type

    def data(self, model: builtins.type[T]) -> T:
        return model.model_validate(self.envelope.data)


Handler = Callable[[IncomingEvent], Awaitable[None]]


def encode(envelope: Envelope, attempt: int = 1) -> aio_pika.Message:
    return encode_json(envelope.model_dump(mode="json"), attempt)


def encode_json(envelope: dict[str, Any], attempt: int = 1) -> aio_pika.Message:
    """A message from an envelope already in JSON form (as the outbox stores it): no re-validation."""
    headers: dict[str, Any] = {ATTEMPT_HEADER: attempt}
    if envelope.get("causationid"):
        headers["x-causation-id"] = envelope["causationid"]
    return aio_pika.Message(
        body=orjson.dumps(envelope),
        content_type=CONTENT_TYPE,
        message_id=envelope["id"],
        correlation_id=envelope.get("correlationid"),
        type=envelope["type"],
        headers=headers,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def attempt_of(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get(ATTEMPT_HEADER, 1)
    return value if isinstance(value, int) and value > 0 else 1


def quorum_queue_arguments(expires_ms: int | None = None) -> dict[str, Any]:
    arguments: dict[str, Any] = {"x-queue-type": "quorum"}
    if expires_ms:
        arguments["x-expires"] = expires_ms
    return arguments


def retry_queue_arguments(work_queue: str, delay_ms: int, expires_ms: int | None = None) -> dict[str, Any]:
    # Classic queue with a fixed TTL: messages wait `delay_ms`, then dead-letter to the work queue.
    arguments: dict[str, Any] = {
        "x-message-ttl": delay_ms,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": work_queue,
    }
    if expires_ms:
        arguments["x-expires"] = expires_ms
    return arguments


def namespaced(settings: KitSettings, name: str) -> str:
    return f"{settings.bus_namespace}{name}"


def namespaced_spec(settings: KitSettings, spec: QueueSpec) -> QueueSpec:
    return QueueSpec(namespaced(settings, spec.name), spec.bindings)


class Bus:
    def __init__(self, settings: KitSettings, source: str | None = None) -> None:
        self.settings = settings
        self.source = source or f"bejo/{settings.service_name}"
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._consume_channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._subscriptions: list[tuple[QueueSpec, Handler, str]] = []
        self._consumers: dict[str, tuple[AbstractQueue, str]] = {}
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._stopping = False

    # -- lifecycle -----------------------------------------------------------------------------

    async def connect(self) -> None:
        self._connection = await aio_pika.connect_robust(
            self.settings.amqp_url, client_properties={"connection_name": self.source}
        )
        self._publish_channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        self._consume_channel = await self._connection.channel()
        await self._consume_channel.set_qos(prefetch_count=self.settings.prefetch)
        await self.declare_exchange(EVENTS_EXCHANGE)

    async def declare_exchange(self, name: str) -> AbstractExchange:
        channel = self._require(self._publish_channel)
        exchange = await channel.declare_exchange(
            namespaced(self.settings, name), aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._exchanges[name] = exchange
        return exchange

    async def close(self) -> None:
        await self.stop_consuming()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    @property
    def is_ready(self) -> bool:
        channels_open = all(
            ch is not None and not ch.is_closed for ch in (self._publish_channel, self._consume_channel)
        )
        consumers_active = len(self._consumers) == len(self._subscriptions) and not self._stopping
        return self._connection is not None and not self._connection.is_closed and channels_open and consumers_active

    # -- publishing ----------------------------------------------------------------------------

    def envelope(self, data: EventData) -> Envelope:
        """Wrap event data, carrying the current correlation and causation ids."""
        ctx = context.current()
        return Envelope.wrap(
            data,
            source=self.source,
            correlationid=ctx.get(context.CORRELATION_ID),
            causationid=ctx.get(context.CAUSATION_ID),
        )

    async def publish(self, envelope: Envelope, *, exchange: str = EVENTS_EXCHANGE, mandatory: bool = True) -> None:
        """Publish and wait for the broker's confirm. Raises if unroutable (mandatory) or nacked."""
        await self.publish_message(encode(envelope), envelope.type, exchange=exchange, mandatory=mandatory)

    async def publish_message(
        self, message: aio_pika.Message, routing_key: str, *, exchange: str = EVENTS_EXCHANGE, mandatory: bool = True
    ) -> None:
        target = self._exchanges.get(exchange) or await self.declare_exchange(exchange)
        await target.publish(message, routing_key=routing_key, mandatory=mandatory)
        metrics.MESSAGES_PUBLISHED.labels(routing_key).inc()

    async def publish_many(
        self, envelopes: Sequence[Envelope], *, exchange: str = EVENTS_EXCHANGE, mandatory: bool = True
    ) -> list[BaseException | None]:
        """Publish with pipelined confirms. Returns, per envelope, None or the error it met."""
        results = await asyncio.gather(
            *(self.publish(e, exchange=exchange, mandatory=mandatory) for e in envelopes), return_exceptions=True
        )
        return [r if isinstance(r, BaseException) else None for r in results]

    async def send_to_queue(self, queue: str, message: aio_pika.Message) -> None:
        """Publish straight to a (namespaced) queue through the default exchange, with confirm."""
        channel = self._require(self._publish_channel)
        await channel.default_exchange.publish(message, routing_key=queue, mandatory=True)

    # -- topology ------------------------------------------------------------------------------

    async def declare_queue(self, spec: QueueSpec, exchange_name: str = EVENTS_EXCHANGE) -> AbstractQueue:
        """Declare a work queue with its bindings, its retry ladder and its dead-letter queue.

        `spec` is already namespaced (see `subscribe`).
        """
        channel = self._require(self._consume_channel)
        expires = self.settings.bus_queue_expires_ms
        queue = await channel.declare_queue(spec.name, durable=True, arguments=quorum_queue_arguments(expires))
        exchange = self._exchanges.get(exchange_name) or await self.declare_exchange(exchange_name)
        for routing_key in spec.bindings:
            await queue.bind(exchange, routing_key=routing_key)
        for delay_ms in self.settings.retry_delays_ms:
            await channel.declare_queue(
                spec.retry_queue(delay_ms),
                durable=True,
                arguments=retry_queue_arguments(spec.name, delay_ms, expires),
            )
        await channel.declare_queue(spec.dead_letter_queue, durable=True, arguments=quorum_queue_arguments(expires))
        return queue

    # -- consuming -----------------------------------------------------------------------------

    def subscribe(self, spec: QueueSpec, handler: Handler, exchange: str = EVENTS_EXCHANGE) -> None:
        """Register a handler; queues are declared and consumed by `start_consuming`."""
        self._subscriptions.append((namespaced_spec(self.settings, spec), handler, exchange))

    async def start_consuming(self) -> None:
        self._stopping = False
        for spec, handler, exchange in self._subscriptions:
            queue = await self.declare_queue(spec, exchange)

            async def on_message(
                message: AbstractIncomingMessage, spec: QueueSpec = spec, handler: Handler = handler
            ) -> None:
                task = asyncio.current_task()
                if task is not None:
                    self._in_flight.add(task)
                try:
                    await self._handle(spec, handler, message)
                finally:
                    if task is not None:
                        self._in_flight.discard(task)

            metrics.prepare_queue(spec.name)
            tag = await queue.consume(on_message)
            self._consumers[spec.name] = (queue, tag)
            log.info("consuming", queue=spec.name, bindings=list(spec.bindings))

    async def stop_consuming(self, grace_seconds: float | None = None) -> None:
        """Stop taking new messages and let the handlers in flight finish (unfinished ones are redelivered)."""
        self._stopping = True
        for name, (queue, tag) in list(self._consumers.items()):
            try:
                await queue.cancel(tag)
            except Exception as exc:  # noqa: BLE001 - the channel may already be gone at shutdown
                log.warning("cancel consumer failed", queue=name, error=str(exc))
        self._consumers.clear()
        if self._in_flight:
            grace = self.settings.shutdown_grace_seconds if grace_seconds is None else grace_seconds
            await asyncio.wait(set(self._in_flight), timeout=grace)

    async def sample_queue_depths(self) -> dict[str, int]:
        """Messages ready in each consumed queue and its dead-letter queue, also set on the
        `bejo_queue_depth` gauge. Asks on a channel of its own: a missing queue closes only that."""
        connection = self._connection
        if connection is None or connection.is_closed:
            return {}
        depths: dict[str, int] = {}
        channel = await connection.channel()
        try:
            for spec, _, _ in self._subscriptions:
                for name in (spec.name, spec.dead_letter_queue):
                    declared = await channel.declare_queue(name, passive=True)
                    count = declared.declaration_result.message_count or 0
                    metrics.QUEUE_DEPTH.labels(name).set(count)
                    depths[name] = count
        finally:
            if not channel.is_closed:
                await channel.close()
        return depths

    async def _handle(self, spec: QueueSpec, handler: Handler, message: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        outcome = await self._handle_once(spec, handler, message)
        metrics.CONSUMER_LATENCY.labels(spec.name, outcome).observe(time.perf_counter() - started)

    async def _handle_once(self, spec: QueueSpec, handler: Handler, message: AbstractIncomingMessage) -> str:
        """Handle one delivery; returns the outcome: acked, retried or parked."""
        attempt = attempt_of(message)
        try:
            envelope = Envelope.model_validate_json(message.body)
        except ValidationError as exc:
            # Not a CloudEvent at all: retrying cannot help, park it at once.
            await self._park(spec, message, attempt, f"malformed envelope: {exc}")
            return "parked"
        with context.bound(
            correlation_id=envelope.correlationid or envelope.id,
            causation_id=envelope.id,
            event_id=envelope.id,
            event_type=envelope.type,
        ):
            try:
                await handler(IncomingEvent(envelope=envelope, queue=spec.name, attempt=attempt))
            except asyncio.CancelledError:
                await message.nack(requeue=True)
                raise
            except Exception as exc:  # any handler failure takes the retry path
                error = f"{type(exc).__name__}: {exc}"
                # One line per failed attempt; the traceback (at ERROR) on the first attempt and the
                # last one, so a poison message shows it without repeating it on every retry.
                if attempt == 1 or attempt >= self.settings.max_attempts:
                    log.error("handler failed", queue=spec.name, attempt=attempt, error=error, exc_info=True)
                else:
                    log.warning("handler failed", queue=spec.name, attempt=attempt, error=error)
                if attempt >= self.settings.max_attempts:
                    await self._park(spec, message, attempt, error)
                    return "parked"
                await self._retry(spec, message, attempt, error)
                return "retried"
        await message.ack()
        metrics.MESSAGES_CONSUMED.labels(spec.name, envelope.type).inc()
        return "acked"

    async def _retry(self, spec: QueueSpec, message: AbstractIncomingMessage, attempt: int, error: str) -> None:
        delay_ms = self.settings.retry_delays_ms[min(attempt - 1, len(self.settings.retry_delays_ms) - 1)]
        await self._forward(
            message, spec.retry_queue(delay_ms), {ATTEMPT_HEADER: attempt + 1, LAST_ERROR_HEADER: error[:2000]}
        )
        metrics.MESSAGES_RETRIED.labels(spec.name).inc()

    async def _park(self, spec: QueueSpec, message: AbstractIncomingMessage, attempt: int, error: str) -> None:
        from .mongo import utcnow  # local import: bus stays importable without Mongo concerns

        headers = {
            ATTEMPT_HEADER: attempt,
            LAST_ERROR_HEADER: error[:2000],
            ORIGINAL_QUEUE_HEADER: spec.name,
            PARKED_AT_HEADER: utcnow().isoformat(),
        }
        await self._forward(message, spec.dead_letter_queue, headers)
        metrics.MESSAGES_PARKED.labels(spec.name).inc()
        log.error("message parked", queue=spec.name, attempts=attempt, error=error, dlq=spec.dead_letter_queue)

    async def _forward(self, message: AbstractIncomingMessage, queue: str, headers: dict[str, Any]) -> None:
        """Copy to another queue (confirmed), then ack; if the copy fails, requeue so nothing is lost."""
        copy = aio_pika.Message(
            body=message.body,
            content_type=message.content_type,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            type=message.type,
            headers={**(message.headers or {}), **headers},
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            await self.send_to_queue(queue, copy)
        except Exception as exc:  # noqa: BLE001
            log.error("could not forward message; requeueing", queue=queue, error=str(exc))
            await message.nack(requeue=True)
            return
        await message.ack()

    @staticmethod
    def _require(channel: AbstractChannel | None) -> AbstractChannel:
        if channel is None:
            raise RuntimeError("bus is not connected; call connect() first")
        return channel
