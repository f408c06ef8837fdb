"""Due work kept on the documents themselves (e-mail records, webhook deliveries).

A document is due while it is `pending` and `next_attempt_at <= now` (indexed in that order, so a
claim reads only unfinished work however large the collection grows); `next_attempt_at` is None
once the work is finished. Every replica runs the same loop:
- it claims a batch of due documents with one `update_many` that moves their `next_attempt_at`
  one lease ahead and stamps a fresh claim token, on the condition that each is still due; each
  document's update is atomic, so of replicas polling together exactly one wins each document,
  and the winner reads back what carries its token;
- if the winner dies holding it, the document simply falls due again when the lease runs out and
  another replica takes it over: nothing is lost;
- the outcome is written on the condition that the token is still there, so a replica that
  outlived its lease cannot overwrite the outcome of the next holder.
The effect outside (an SMTP send, a POST) is at-least-once: a holder that dies after sending and
before writing the outcome is sent again after the lease. Receivers dedupe by event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from bejo_kit.logging import get_logger
from bejo_kit.mongo import Document, utcnow

log = get_logger(__name__)

DUE = "next_attempt_at"
CLAIM = "claim"
PENDING: Document = {"status": "pending"}
DUE_INDEX = IndexModel([("status", ASCENDING), (DUE, ASCENDING)], name="due")
CLAIM_INDEX = IndexModel([(CLAIM, ASCENDING)], name="claim", sparse=True)


class WorkQueue:
    def __init__(
        self,
        collection: AsyncCollection[Document],
        *,
        lease: timedelta,
        concurrency: int,
        poll_interval: float,
    ) -> None:
        self.collection = collection
        self._lease = lease
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """New work was written by this replica: look now rather than at the next poll."""
        self._wakeup.set()

    async def claim(self, now: datetime) -> Document | None:
        """The most overdue document, now held by the caller until the lease runs out."""
        return await self.collection.find_one_and_update(
            {**PENDING, DUE: {"$lte": now}},
            {"$set": {DUE: now + self._lease, CLAIM: uuid.uuid4().hex}},
            sort=[(DUE, ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )

    async def claim_many(self, now: datetime, limit: int) -> list[Document]:
        """Up to `limit` due documents, most overdue first, now held by the caller until the lease
        runs out (one round trip for the whole batch rather than one per item)."""
        due = (
            await self.collection.find({**PENDING, DUE: {"$lte": now}}, {"_id": 1})
            .sort(DUE, ASCENDING)
            .limit(limit)
            .to_list()
        )
        if not due:
            return []
        token = uuid.uuid4().hex
        await self.collection.update_many(
            {"_id": {"$in": [d["_id"] for d in due]}, **PENDING, DUE: {"$lte": now}},
            {"$set": {DUE: now + self._lease, CLAIM: token}},
        )
        return await self.collection.find({CLAIM: token}).sort(DUE, ASCENDING).to_list()

    async def settle(self, item: Document, update: Document, next_attempt_at: datetime | None) -> bool:
        """Write the outcome of a claimed item's attempt and release it (due again at
        `next_attempt_at`, or finished if None). False if the claim was lost to another replica."""
        fields = {**update.get("$set", {}), DUE: next_attempt_at}
        result = await self.collection.update_one(
            {"_id": item["_id"], CLAIM: item[CLAIM]}, {**update, "$set": fields, "$unset": {CLAIM: ""}}
        )
        if result.modified_count == 0:
            log.warning("claim lost before the outcome was written", item=item["_id"])
        return result.modified_count == 1

    async def run(self, handle: Callable[[Document], Awaitable[None]]) -> None:
        """Claim due items and handle up to `concurrency` of them at once, until cancelled."""
        free = asyncio.Semaphore(self._concurrency)
        async with asyncio.TaskGroup() as group:
            while True:
                await free.acquire()
                slots = 1
                while slots < self._concurrency and not free.locked():
                    await free.acquire()
                    slots += 1
                try:
                    if slots == 1:
                        claimed = await self.claim(utcnow())
                        items = [claimed] if claimed else []
                    else:
                        items = await self.claim_many(utcnow(), slots)
                except Exception as exc:  # noqa: BLE001 - a database blip must not stop the items in hand
                    items = []
                    log.warning("claiming due work failed", collection=self.collection.name, error=str(exc))
                for _ in range(slots - len(items)):
                    free.release()
                for item in items:
                    group.create_task(self._handle(handle, item, free))
                if len(items) < slots:
                    await self._sleep(self._poll_interval)

    async def _handle(
        self, handle: Callable[[Document], Awaitable[None]], item: Document, gate: asyncio.Semaphore
    ) -> None:
        try:
            await handle(item)
        except Exception as exc:  # noqa: BLE001 - the item falls due again when its lease runs out
            log.warning("handling due work failed", item=item["_id"], error=str(exc))
        finally:
            gate.release()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)
        self._wakeup.clear()
