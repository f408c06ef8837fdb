"""Event handlers: the catalog's product read model and stock saga, and the payments saga."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bejo_contracts.catalog import (
    ProductUpserted,
    ProviderEvent,
    ProviderRegistered,
    ProviderSuspended,
    ProviderVerified,
    StockRejected,
    StockReserved,
)
from bejo_contracts.payments import InvoiceIssued, PaymentSucceeded, RefundCompleted, SettlementCompleted
from bejo_contracts.topology import queue_spec
from bejo_kit.bus import Bus, IncomingEvent
from bejo_kit.logging import get_logger

from .repository import Repository
from .transitions import Transitions

log = get_logger(__name__)
Handler = Callable[[IncomingEvent], Awaitable[None]]
PROVIDER_EVENTS: dict[str, type[ProviderEvent]] = {
    model.TYPE: model for model in (ProviderRegistered, ProviderVerified, ProviderSuspended)
}


class Consumers:
    def __init__(self, transitions: Transitions, repo: Repository) -> None:
        self.transitions = transitions
        self.repo = repo
        self.catalog_handlers: dict[str, Handler] = {
            ProductUpserted.TYPE: self.product_upserted,
            ProviderRegistered.TYPE: self.provider_changed,
            ProviderVerified.TYPE: self.provider_changed,
            ProviderSuspended.TYPE: self.provider_changed,
            StockReserved.TYPE: self.stock_reserved,
            StockRejected.TYPE: self.stock_rejected,
        }
        self.payment_handlers: dict[str, Handler] = {
            InvoiceIssued.TYPE: self.invoice_issued,
            PaymentSucceeded.TYPE: self.payment_succeeded,
            SettlementCompleted.TYPE: self.settlement_completed,
            RefundCompleted.TYPE: self.refund_completed,
        }

    def subscribe(self, bus: Bus) -> None:
        bus.subscribe(queue_spec("orders.catalog-events"), self._dispatch(self.catalog_handlers))
        bus.subscribe(queue_spec("orders.payment-events"), self._dispatch(self.payment_handlers))

    @staticmethod
    def _dispatch(handlers: dict[str, Handler]) -> Handler:
        async def handle(event: IncomingEvent) -> None:
            handler = handlers.get(event.event_type)
            if handler is None:
                # e.g. stock released/committed, VA issued/expired: facts we do not act on
                log.debug("event not needed by orders", event_type=event.event_type)
                return
            await handler(event)

        return handle

    async def product_upserted(self, event: IncomingEvent) -> None:
        await self.repo.upsert_product(event.data(ProductUpserted).product)

    async def provider_changed(self, event: IncomingEvent) -> None:
        data = event.data(PROVIDER_EVENTS[event.event_type])
        await self.repo.upsert_provider(data.provider_id, data.status, event.envelope.time)

    async def stock_reserved(self, event: IncomingEvent) -> None:
        await self.transitions.on_stock_reserved(event.id, event.data(StockReserved))

    async def stock_rejected(self, event: IncomingEvent) -> None:
        await self.transitions.on_stock_rejected(event.id, event.data(StockRejected))

    async def invoice_issued(self, event: IncomingEvent) -> None:
        await self.transitions.on_invoice_issued(event.id, event.data(InvoiceIssued))

    async def payment_succeeded(self, event: IncomingEvent) -> None:
        await self.transitions.on_payment_succeeded(event.id, event.data(PaymentSucceeded))

    async def settlement_completed(self, event: IncomingEvent) -> None:
        await self.transitions.on_settlement_completed(event.id, event.data(SettlementCompleted))

    async def refund_completed(self, event: IncomingEvent) -> None:
        await self.transitions.on_refund_completed(event.id, event.data(RefundCompleted))
