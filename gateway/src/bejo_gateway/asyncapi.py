"""AsyncAPI 3.0 document of bejo's events, generated from the contracts package.

One channel per event type: its address is the routing key (the CloudEvents type) on the topic
exchange `bejo.events` (the catalog's sync feed items on `catalog.sync`). The payload is the
CloudEvents envelope whose `data` is the event's pydantic model. Each service queue of
`bejo_contracts.topology` gets a receive operation per channel its bindings match.

    python -m bejo_gateway.asyncapi > docs/asyncapi.json     # regenerate the committed copy
"""

from __future__ import annotations

import re
import sys
from typing import Any, Literal

import orjson
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bejo_contracts import Envelope, all_models, topology
from bejo_contracts.catalog import CatalogChange
from bejo_contracts.envelope import EventData

AMQP_BINDING_VERSION = "0.3.0"
_REF = "#/components/schemas/{model}"


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: `*` is exactly one word, `#` zero or more."""
    words = routing_key.split(".")
    parts = pattern.split(".")

    def match(i: int, j: int) -> bool:
        if i == len(parts):
            return j == len(words)
        if parts[i] == "#":
            return any(match(i + 1, k) for k in range(j, len(words) + 1))
        return j < len(words) and (parts[i] in ("*", words[j])) and match(i + 1, j + 1)

    return match(0, 0)


def _ident(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def exchange_of(model: type[EventData]) -> str:
    return topology.CATALOG_SYNC_EXCHANGE if issubclass(model, CatalogChange) else topology.EVENTS_EXCHANGE


def producer_of(event_type: str) -> str:
    """`bejo.orders.order.placed.v1` is published by orders."""
    return event_type.split(".")[1]


def _first_line(model: type[BaseModel]) -> str:
    doc = (model.__doc__ or "").strip()
    return doc.split("\n")[0] if doc else ""


def build() -> dict[str, Any]:
    models = dict(sorted(all_models().items()))
    keyed: list[tuple[type[BaseModel], Literal["serialization"]]] = [(Envelope, "serialization")]
    keyed += [(m, "serialization") for m in models.values()]
    refs, defs = models_json_schema(keyed, ref_template=_REF)
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    envelope_ref = refs[(Envelope, "serialization")]

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for event_type, model in models.items():
        channel_id = _ident(event_type)
        message_id = model.__name__
        exchange = exchange_of(model)
        messages[message_id] = {
            "name": message_id,
            "title": event_type,
            "summary": _first_line(model) or f"{event_type} (CloudEvents envelope)",
            "contentType": "application/json",
            "payload": {
                "allOf": [
                    envelope_ref,
                    {
                        "type": "object",
                        "required": ["type", "data"],
                        "properties": {
                            "type": {"const": event_type},
                            "data": refs[(model, "serialization")],
                        },
                    },
                ]
            },
            "correlationId": {"location": "$message.payload#/correlationid"},
            "bindings": {"amqp": {"messageType": event_type, "bindingVersion": AMQP_BINDING_VERSION}},
        }
        channels[channel_id] = {
            "address": event_type,
            "title": event_type,
            "description": f"Routing key `{event_type}` on the topic exchange `{exchange}`.",
            "messages": {message_id: {"$ref": f"#/components/messages/{message_id}"}},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {"name": exchange, "type": "topic", "durable": True, "autoDelete": False, "vhost": "/"},
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
        }
        channel_ref = {"$ref": f"#/channels/{channel_id}"}
        message_ref = {"$ref": f"#/channels/{channel_id}/messages/{message_id}"}
        operations[_ident(f"{producer_of(event_type)}.publishes.{event_type}")] = {
            "action": "send",
            "title": f"{producer_of(event_type)} publishes {event_type}",
            "channel": channel_ref,
            "messages": [message_ref],
            "bindings": {"amqp": {"deliveryMode": 2, "mandatory": True, "bindingVersion": AMQP_BINDING_VERSION}},
        }
        if exchange != topology.EVENTS_EXCHANGE:
            continue
        for service, specs in topology.QUEUES.items():
            for spec in specs:
                if any(topic_matches(pattern, event_type) for pattern in spec.bindings):
                    operations[_ident(f"{spec.name}.receives.{event_type}")] = {
                        "action": "receive",
                        "title": f"{service} consumes {event_type} from queue {spec.name}",
                        "channel": channel_ref,
                        "messages": [message_ref],
                        "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
                        "x-queue": spec.name,
                        "x-dead-letter-queue": spec.dead_letter_queue,
                    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "bejo events",
            "version": "1.0.0",
            "description": (
                "Events between bejo's services, on RabbitMQ. Every message is a CloudEvents 1.0 envelope "
                "(JSON) whose `type` is the routing key and whose `data` follows the event's schema. "
                "Types carry their version (`.v1`); consumers must be idempotent (delivery is at-least-once, "
                "dedupe on `id`) and tolerate out-of-order events. A handler that keeps failing has its "
                "message parked in `<queue>.dlq`. External consumers of the catalog change stream bind "
                "their own queue to the `catalog.sync` exchange. Generated from the bejo_contracts package."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "RabbitMQ started by `make infra` (set AMQP_URL elsewhere)",
            }
        },
        "channels": channels,
        "operations": dict(sorted(operations.items())),
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def render() -> bytes:
    return orjson.dumps(build(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def main() -> None:
    sys.stdout.buffer.write(render())


if __name__ == "__main__":
    main()
