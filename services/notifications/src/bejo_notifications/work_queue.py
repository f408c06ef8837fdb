"""A small persistent queue of due work (e-mails to send, webhook deliveries to attempt).

Items are `{_id, next_attempt_at, lease_until, ...}`; only unfinished work lives here, so the poll
(a scan on FerretDB) stays cheap. One loop per replica claims a batch of due items at once: a
single conditional `update_many` stamps them with a fresh claim token and a lease, then the items
holding that token are the replica's. Every write costs a scan on FerretDB, so the batch is claimed
and finished in one write each, not one per item. On MongoDB the conditional update makes a claim
exclusive across replicas; on FerretDB (read-modify-write not atomic) two replicas may rarely both
hold an item, so the effect is at-least-once, which e-mail and webhook receivers tolerate anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from bejo_kit.inbox import is_duplicate_key
from bejo_kit.mongo import Document


class WorkQueue:
    def __init__(self, collection: AsyncCollection[Document], *, lease: timedelta, batch_size: int) -> None:
        self.collection = collection
        self._lease = lease
        self._batch_size = batch_size
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    async def sleep(self, seconds: float) -> None:
        """Until new local work is pushed, or `seconds` pass (work pushed by other replicas, retries)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)
        self._wakeup.clear()

    async def push(self, item_id: str, now: datetime, **fields: Any) -> bool:
        """Queue an item; False if it is queued already."""
        try:
            await self.collection.insert_one(
                {"_id": item_id, "next_attempt_at": now, "lease_until": None, "queued_at": now, **fields}
            )
        except Exception as exc:
            if is_duplicate_key(exc):
                return False
            raise
        self.wake()
        return True

    async def claim_due(self, now: datetime) -> list[Document]:
        """Due items not leased by anyone, now leased to this caller."""
        due = self.collection.find(
            {"next_attempt_at": {"$lte": now}, "$or": [{"lease_until": None}, {"lease_until": {"$lt": now}}]},
            {"_id": 1},
        ).limit(self._batch_size)
        ids = [doc["_id"] async for doc in due]
        if not ids:
            return []
        token = uuid.uuid4().hex
        await self.collection.update_many(
            {"_id": {"$in": ids}, "$or": [{"lease_until": None}, {"lease_until": {"$lt": now}}]},
            {"$set": {"lease_until": now + self._lease, "claim": token}},
        )
        return [doc async for doc in self.collection.find({"claim": token})]

    async def retry_at(self, item_id: str, at: datetime, **fields: Any) -> None:
        await self.collection.update_one(
            {"_id": item_id}, {"$set": {"next_attempt_at": at, "lease_until": None, **fields}}
        )

    async def done(self, item_ids: list[str]) -> None:
        if item_ids:
            await self.collection.delete_many({"_id": {"$in": item_ids}})
