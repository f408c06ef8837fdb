"""Who listens to what on the bus. One place, so the CLI, docs and services agree.

Routing keys are the event types. Each service owns durable quorum queues named
`<service>.<purpose>`; replicas of a service consume them as competing consumers.
"""

from __future__ import annotations

from dataclasses import dataclass

EVENTS_EXCHANGE = "bejo.events"
# Public change stream of the catalog for national e-catalog consumers; they bind their own queues.
CATALOG_SYNC_EXCHANGE = "catalog.sync"


@dataclass(frozen=True)
class QueueSpec:
    name: str
    bindings: tuple[str, ...]

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.name}.dlq"

    def retry_queue(self, delay_ms: int) -> str:
        return f"{self.name}.retry.{delay_ms}ms"


QUEUES: dict[str, tuple[QueueSpec, ...]] = {
    "catalog": (
        QueueSpec(
            "catalog.order-events",
            (
                "bejo.orders.order.placed.v1",
                "bejo.orders.order.rejected.v1",
                "bejo.orders.order.cancelled.v1",
                "bejo.orders.order.expired.v1",
                "bejo.orders.order.shipped.v1",
            ),
        ),
    ),
    "orders": (
        QueueSpec(
            "orders.catalog-events",
            ("bejo.catalog.stock.*.v1", "bejo.catalog.product.*.v1", "bejo.catalog.provider.*.v1"),
        ),
        QueueSpec("orders.payment-events", ("bejo.payments.#",)),
    ),
    "payments": (
        QueueSpec("payments.order-events", ("bejo.orders.order.received.v1", "bejo.orders.order.cancelled.v1")),
    ),
    "notifications": (QueueSpec("notifications.all-events", ("bejo.#",)),),
}


def queue_spec(name: str) -> QueueSpec:
    for specs in QUEUES.values():
        for spec in specs:
            if spec.name == name:
                return spec
    raise KeyError(f"unknown queue {name!r}; known: {', '.join(all_queue_names())}")


def all_queue_names() -> list[str]:
    return [spec.name for specs in QUEUES.values() for spec in specs]
