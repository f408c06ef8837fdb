"""Inspect and replay messages parked in dead-letter queues (`bejo dlq list|replay`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import ChannelClosed

from bejo_contracts.topology import all_queue_names, queue_spec

from .bus import ATTEMPT_HEADER, LAST_ERROR_HEADER, ORIGINAL_QUEUE_HEADER, PARKED_AT_HEADER, attempt_of


@dataclass(frozen=True)
class ParkedMessage:
    queue: str
    message_id: str | None
    type: str | None
    attempts: int
    last_error: str
    parked_at: str | None

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _describe(queue: str, message: AbstractIncomingMessage) -> ParkedMessage:
    headers = message.headers or {}
    return ParkedMessage(
        queue=queue,
        message_id=message.message_id,
        type=message.type,
        attempts=attempt_of(message),
        last_error=str(headers.get(LAST_ERROR_HEADER, "")),
        parked_at=str(headers[PARKED_AT_HEADER]) if PARKED_AT_HEADER in headers else None,
    )


def _queues(queue: str | None) -> list[str]:
    return [queue_spec(queue).name] if queue else all_queue_names()


def _dlq(namespace: str, queue: str) -> str:
    return namespace + queue_spec(queue).dead_letter_queue


async def _drain(channel: aio_pika.abc.AbstractChannel, dlq_name: str, limit: int) -> list[AbstractIncomingMessage]:
    try:
        dlq = await channel.declare_queue(dlq_name, passive=True)
    except ChannelClosed:
        return []
    held: list[AbstractIncomingMessage] = []
    while len(held) < limit:
        message = await dlq.get(no_ack=False, fail=False)
        if message is None:
            break
        held.append(message)
    return held


async def list_parked(
    amqp_url: str, queue: str | None = None, limit: int = 100, namespace: str = ""
) -> list[ParkedMessage]:
    """Parked messages, oldest first; they stay parked (taken and then returned)."""
    connection = await aio_pika.connect(amqp_url)
    found: list[ParkedMessage] = []
    async with connection:
        for name in _queues(queue):
            channel = await connection.channel()
            held = await _drain(channel, _dlq(namespace, name), limit)
            found.extend(_describe(name, m) for m in held)
            # Closing the channel returns unacked messages to the queue in their original order.
            await channel.close()
    return found


async def replay_parked(
    amqp_url: str,
    queue: str | None = None,
    message_id: str | None = None,
    limit: int = 10_000,
    namespace: str = "",
) -> list[ParkedMessage]:
    """Move parked messages back to their work queue with a fresh attempt count. Returns what moved."""
    connection = await aio_pika.connect(amqp_url)
    moved: list[ParkedMessage] = []
    async with connection:
        for name in _queues(queue):
            channel = await connection.channel(publisher_confirms=True)
            held = await _drain(channel, _dlq(namespace, name), limit)
            for message in held:
                if message_id and message.message_id != message_id:
                    continue
                headers = dict(message.headers or {})
                original = str(headers.pop(ORIGINAL_QUEUE_HEADER, namespace + name))
                headers.pop(PARKED_AT_HEADER, None)
                headers[ATTEMPT_HEADER] = 1
                headers["x-bejo-replayed-error"] = headers.pop(LAST_ERROR_HEADER, "")
                copy = aio_pika.Message(
                    body=message.body,
                    content_type=message.content_type,
                    message_id=message.message_id,
                    correlation_id=message.correlation_id,
                    type=message.type,
                    headers=headers,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )
                await channel.default_exchange.publish(copy, routing_key=original, mandatory=True)
                await message.ack()
                moved.append(_describe(name, message))
            await channel.close()
    return moved
