"""Order events -> payments use cases. Both handlers are idempotent: a redelivered OrderReceived finds
the payment (its id is derived from the order) and a redelivered OrderCancelled finds it cancelled."""

from __future__ import annotations

from bejo_contracts.orders import OrderCancelled, OrderReceived
from bejo_contracts.topology import queue_spec
from bejo_kit.bus import Bus, IncomingEvent
from bejo_kit.logging import get_logger

from .service import PaymentsService

log = get_logger(__name__)


def subscribe(bus: Bus, service: PaymentsService) -> None:
    async def on_order_event(event: IncomingEvent) -> None:
        if event.event_type == OrderReceived.TYPE:
            await service.on_order_received(event.data(OrderReceived))
        elif event.event_type == OrderCancelled.TYPE:
            await service.on_order_cancelled(event.data(OrderCancelled))
        else:
            log.warning("ignoring unexpected event", event_type=event.event_type)

    bus.subscribe(queue_spec("payments.order-events"), on_order_event)
