"""Order events → stock reservations (queue `catalog.order-events`)."""

from __future__ import annotations

from bejo_contracts.orders import OrderCancelled, OrderEvent, OrderExpired, OrderPlaced, OrderRejected, OrderShipped
from bejo_contracts.topology import queue_spec
from bejo_kit.bus import Bus, IncomingEvent
from bejo_kit.logging import get_logger

from .domain import RequestedLine
from .service import CatalogService

log = get_logger(__name__)

ORDER_EVENTS = queue_spec("catalog.order-events")
RELEASING: dict[str, type[OrderEvent]] = {
    OrderRejected.TYPE: OrderRejected,
    OrderCancelled.TYPE: OrderCancelled,
    OrderExpired.TYPE: OrderExpired,
}


def _lines(order: OrderEvent) -> list[RequestedLine]:
    return [RequestedLine(line.product_id, line.quantity) for line in order.lines]


def register(bus: Bus, service: CatalogService) -> None:
    async def on_order_event(event: IncomingEvent) -> None:
        if event.event_type == OrderPlaced.TYPE:
            placed = event.data(OrderPlaced)
            state = await service.reservations.reserve(
                placed.order_id, placed.provider_id, _lines(placed), pemda=placed.pemda
            )
        elif event.event_type in RELEASING:
            ended: OrderEvent = event.data(RELEASING[event.event_type])
            state = await service.reservations.release(
                ended.order_id, ended.provider_id, _lines(ended), pemda=ended.pemda
            )
        elif event.event_type == OrderShipped.TYPE:
            shipped = event.data(OrderShipped)
            state = await service.reservations.commit(shipped.order_id, pemda=shipped.pemda)
        else:
            log.warning("ignoring unexpected event", event_type=event.event_type)
            return
        log.info("order event handled", event_type=event.event_type, reservation=state)

    bus.subscribe(ORDER_EVENTS, on_order_event)
