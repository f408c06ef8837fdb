"""Background sweeps of the payments service: VA expiry and re-driving interrupted settlements.

Every replica runs them; the conditional writes of the use cases let exactly one replica act on
each payment, so no leader election is needed."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from bejo_kit.concurrency import WriteConflict
from bejo_kit.mongo import utcnow

from .service import PaymentsService

SWEEP_BATCH = 100
# A payment still `paid` this long after its write lost its settlement (the writer died or failed).
SETTLEMENT_GRACE = timedelta(seconds=30)


async def expire_due(service: PaymentsService, now: datetime) -> int:
    """Expire the VAs due at `now`. The conditional transition lets exactly one replica expire each
    VA, and a payment paid meanwhile is left alone."""
    expired = 0
    for payment in await service.repo.due_expiries(now, SWEEP_BATCH):
        try:
            await service.expire_va(payment, now)
        except WriteConflict:
            continue  # changed since the query (paid, cancelled, expired elsewhere): the next pass re-reads
        expired += 1
    return expired


async def settle_stalled(service: PaymentsService, now: datetime) -> int:
    """Settle payments left `paid` by a writer that died or failed before settling them."""
    stalled = await service.repo.stalled_paid(now - SETTLEMENT_GRACE, SWEEP_BATCH)
    for payment in stalled:
        await service.settle_quietly(payment.id)
    return len(stalled)


async def run(service: PaymentsService) -> None:
    """The sweep loop; see `expire_due` and `PaymentsService.settle` for why every replica may run it."""
    loop = asyncio.get_running_loop()
    next_settlement_sweep = 0.0
    while True:
        now = utcnow()
        if loop.time() >= next_settlement_sweep:
            await settle_stalled(service, now)
            next_settlement_sweep = loop.time() + service.settings.rescan_interval_seconds
        await expire_due(service, now)
        await asyncio.sleep(service.settings.expiry_check_interval_seconds)
