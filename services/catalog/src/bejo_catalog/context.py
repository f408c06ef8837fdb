"""What every catalog use case shares: the store, this replica's search model, the bus and the
outbox, and the small steps each use case takes the same way."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from bejo_contracts import Actor, Envelope, EventData
from bejo_contracts.pricing import PromotionTerms
from bejo_kit.auth import Principal
from bejo_kit.bus import Bus
from bejo_kit.concurrency import WriteConflict, retry_on_conflict
from bejo_kit.errors import Conflict, ValidationProblem
from bejo_kit.outbox import Outbox

from . import domain
from .domain import RuleViolation
from .feed import Feed
from .repository import CatalogStore
from .search import CatalogIndex

T = TypeVar("T")


def actor_of(principal: Principal) -> Actor:
    return Actor(sub=principal.sub, role=principal.role, name=principal.name)


def problem(violation: RuleViolation) -> ValidationProblem:
    return ValidationProblem.field(violation.field, violation.message)


async def user_retry(operation: Callable[[], Awaitable[T]], what: str) -> T:
    """A user's load-decide-write, retried on fresh state; a race lost every time answers 409."""
    try:
        return await retry_on_conflict(operation)
    except WriteConflict:
        raise Conflict(f"the {what} changed meanwhile; reload and retry", code="version_conflict") from None


@dataclass
class CatalogContext:
    store: CatalogStore
    feed: Feed
    index: CatalogIndex  # replaceable (the benchmark swaps in a prebuilt one)
    bus: Bus
    outbox: Outbox
    # Tells the feed sequencer that a marked write is waiting, so it need not wait for its tick.
    wake_sequencer: Callable[[], None] = field(default=lambda: None)

    def envelope(self, data: EventData) -> Envelope:
        return self.bus.envelope(data)

    def fed(self) -> None:
        self.wake_sequencer()

    async def terms_for(self, product_id: str, provider_id: str, now: datetime) -> list[PromotionTerms]:
        return domain.terms_for(await self.store.promotions_of(provider_id), product_id, provider_id, now)

    async def own_provider(self, principal: Principal) -> domain.Provider:
        provider_id = principal.provider_id or ""
        provider = await self.store.provider(provider_id)
        if provider is None:
            raise Conflict(
                f"provider {provider_id} is not registered; POST /api/v1/providers first",
                code="provider_not_registered",
            )
        return provider
