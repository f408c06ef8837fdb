"""Events published by the notifications service."""

from __future__ import annotations

from .envelope import EventData
from .registry import event


@event
class WebhookDisabled(EventData):
    """A subscription was switched off after too many consecutive failed deliveries."""

    TYPE = "bejo.notifications.webhook.disabled.v1"
    webhook_id: str
    owner_sub: str
    owner_pemda: str  # the owner's pemda: whose admins may hear of it
    url: str
    consecutive_failures: int

    def subject(self) -> str:
        return self.webhook_id

    def pemda_scope(self) -> str:
        return self.owner_pemda
