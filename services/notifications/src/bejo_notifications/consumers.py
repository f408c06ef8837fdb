"""Event handlers: every event on the bus reaches `notifications.all-events` (bound to `bejo.#`)."""

from __future__ import annotations

from bejo_contracts.topology import queue_spec
from bejo_kit.bus import Bus, IncomingEvent
from bejo_kit.metrics import MESSAGES_DUPLICATE

from .service import Notifier
from .webhooks import Webhooks

ALL_EVENTS = queue_spec("notifications.all-events")


def subscribe(bus: Bus, notifier: Notifier, webhooks: Webhooks) -> None:
    async def on_event(event: IncomingEvent) -> None:
        # Both steps are idempotent (ids derived from the event), so a retry after a failure
        # part-way redoes only what is missing.
        created = await notifier.handle(event.envelope)
        await webhooks.enqueue(event.envelope)
        if created == 0 and event.attempt > 1:
            MESSAGES_DUPLICATE.labels(event.queue).inc()

    bus.subscribe(ALL_EVENTS, on_event)
