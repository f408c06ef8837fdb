"""Mongo adapter. Every hot read is by `_id`; every collection but `payments` is insert-only, so
FerretDB never scans them on a write (see docs/payments.md, "Storage")."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bejo_contracts import Envelope
from bejo_kit.mongo import Document
from bejo_kit.outbox import Outbox, staged, with_events
from bejo_kit.store import KeyedLocks, PartitionedCollection

from .domain import POSTING_ORDER, Leg, PostingKind, invoice_number

PARTITIONS = 16  # ~1k payments per partition at 16k payments, keeping a write's scan small


class PaymentsRepository:
    def __init__(self, db: AsyncDatabase[Document], outbox: Outbox) -> None:
        self._outbox = outbox
        self.payments = PartitionedCollection(db, "payments", partitions=PARTITIONS)
        self.virtual_accounts = db["virtual_accounts"]  # _id: VA number
        self.invoice_numbers = db["invoice_numbers"]  # _id: invoice number
        self.journal = db["journal"]  # _id: "<payment id>:<posting kind>"
        self.callbacks = db["callback_responses"]  # _id: "<partner>:<WIB date>:<external id>"
        self._next_sequence: dict[tuple[str, int], int] = {}
        self._sequence_locks = KeyedLocks()

    # -- payments ---------------------------------------------------------------------------------

    async def get(self, payment_id: str) -> Document | None:
        return await self.payments.find_one(payment_id)

    async def insert(self, document: Document, events: Sequence[Envelope]) -> bool:
        """False if a payment with this `_id` exists already. The events go out only if the insert happened."""
        pending = await self._outbox.prepare(self.partition_name(document["_id"]), document["_id"], events)
        try:
            await self.payments.insert_one(staged(document, pending))
        except DuplicateKeyError:
            await self._outbox.settle(pending, applied=False)
            return False
        await self._outbox.settle(pending, applied=True)
        return True

    async def update(self, payment_id: str, update: Document, condition: Document, events: Sequence[Envelope]) -> bool:
        """Apply `update` only while `condition` holds; False if it no longer did (then no event goes out)."""
        pending = await self._outbox.prepare(self.partition_name(payment_id), payment_id, events)
        # If the write raises, its outcome is unknown: the hints stay and the relay's sweep checks the document.
        result = await self.payments.update_one(payment_id, with_events(update, pending), condition)
        applied = result.modified_count == 1
        await self._outbox.settle(pending, applied=applied)
        return applied

    @staticmethod
    def outbox_collections() -> list[str]:
        """The collections that carry events: the payment partitions (names as PartitionedCollection makes them)."""
        return [f"payments.p{i:02d}" for i in range(PARTITIONS)]

    def partition_name(self, payment_id: str) -> str:
        return self.payments.partition_of(payment_id).name

    async def open_payments(self) -> AsyncIterator[Document]:
        """Payments a background step may still act on (VA to expire, settlement to finish). A scan of
        every partition: only for the periodic rescan, never per request."""
        async for doc in self.payments.find(
            {"$or": [{"status": {"$in": ["awaiting_payment", "paid"]}}, {"ledger_due": True}]},
            {"_id": 1, "status": 1, "va_number": 1, "va_expires_at": 1, "ledger_due": 1},
        ):
            yield doc

    # -- invoice numbers --------------------------------------------------------------------------

    async def claim_invoice_number(self, pemda: str, year: int, order_id: str, at: datetime) -> str:
        """The next free `INV/<pemda>/<year>/<seq>`. Claims are inserts of a unique `_id`, which is atomic
        on FerretDB too: a number taken by another replica meets a duplicate key and we try the next."""
        key = (pemda, year)
        async with self._sequence_locks.hold(f"{pemda}/{year}"):
            if key not in self._next_sequence:
                self._next_sequence[key] = await self._highest_claimed(pemda, year) + 1
            while True:
                sequence = self._next_sequence[key]
                number = invoice_number(pemda, year, sequence)
                self._next_sequence[key] = sequence + 1
                try:
                    await self.invoice_numbers.insert_one({"_id": number, "order_id": order_id, "at": at})
                except DuplicateKeyError:
                    continue
                return number

    async def _highest_claimed(self, pemda: str, year: int) -> int:
        """Claims are contiguous from 1, so gallop then bisect with `_id` look-ups (O(log n), indexed)."""

        async def claimed(sequence: int) -> bool:
            found = await self.invoice_numbers.find_one({"_id": invoice_number(pemda, year, sequence)}, {"_id": 1})
            return found is not None

        if not await claimed(1):
            return 0
        low, high = 1, 2
        while await claimed(high):
            low, high = high, high * 2
        while high - low > 1:  # claimed(low) and not claimed(high)
            middle = (low + high) // 2
            if await claimed(middle):
                low = middle
            else:
                high = middle
        return low

    # -- virtual accounts -------------------------------------------------------------------------

    async def register_va(self, number: str, payment_id: str, amount: int, expires_at: datetime) -> bool:
        """False if the number is taken (the caller asks the bank for another)."""
        try:
            await self.virtual_accounts.insert_one(
                {"_id": number, "payment_id": payment_id, "amount": amount, "expires_at": expires_at}
            )
        except DuplicateKeyError:
            return False
        return True

    async def get_va(self, number: str) -> Document | None:
        return await self.virtual_accounts.find_one({"_id": number})

    # -- ledger -----------------------------------------------------------------------------------

    async def post(self, payment_id: str, kind: PostingKind, legs: list[Leg], at: datetime) -> None:
        """Append one balanced posting. Its `_id` is fixed per payment and kind, so a retry is a no-op."""
        document = {
            "_id": f"{payment_id}:{kind}",
            "payment_id": payment_id,
            "kind": kind,
            "at": at,
            "legs": [{"account": leg.account, "amount": leg.amount} for leg in legs],
        }
        with contextlib.suppress(DuplicateKeyError):
            await self.journal.insert_one(document)

    async def postings(self, payment_id: str) -> list[Document]:
        found = await asyncio.gather(
            *(self.journal.find_one({"_id": f"{payment_id}:{kind}"}) for kind in POSTING_ORDER)
        )
        return [doc for doc in found if doc is not None]

    # -- callback responses -----------------------------------------------------------------------

    async def stored_callback(self, key: str) -> Document | None:
        return await self.callbacks.find_one({"_id": key})

    async def store_callback(self, document: Document) -> Document:
        """Store the first response for an idempotency key; if another got there first, return theirs."""
        try:
            await self.callbacks.insert_one(document)
        except DuplicateKeyError:
            existing = await self.callbacks.find_one({"_id": document["_id"]})
            if existing is not None:
                return existing
        return document
