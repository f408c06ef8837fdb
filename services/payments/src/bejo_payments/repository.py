"""Mongo adapter of the payments service (see docs/payments.md, "Storage")."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pymongo import IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bejo_contracts import Envelope
from bejo_kit.mongo import Document, Indexes
from bejo_kit.outbox import WITHOUT_OUTBOX, Outbox

from .domain import Payment, invoice_number

PAYMENTS = "payments"
OUTBOX_COLLECTIONS = [PAYMENTS]
APPEND_ONLY = ("history", "ledger", "virtual_accounts")
INDEXES = Indexes(
    {
        # The sweeps: open VAs by expiry, and payments stalled in `paid` (status prefix).
        PAYMENTS: [IndexModel([("status", 1), ("va_expires_at", 1)], name="status_va_expires_at")],
    }
)


class PaymentsRepository:
    def __init__(self, db: AsyncDatabase[Document], outbox: Outbox) -> None:
        self._outbox = outbox
        self.payments = db[PAYMENTS]  # _id: "pay-<order id>"; carries its ledger and its outbox
        self.virtual_accounts = db["virtual_accounts"]  # _id: VA number
        self.counters = db["counters"]  # _id: "invoice:<pemda>:<year>"
        self.callbacks = db["callback_responses"]  # _id: "<partner>:<WIB date>:<external id>"
        self.access_tokens = db["access_tokens"]  # _id: sha256 of a SNAP B2B access token

    # -- payments ---------------------------------------------------------------------------------

    async def get(self, payment_id: str) -> Payment | None:
        doc = await self.payments.find_one({"_id": payment_id}, WITHOUT_OUTBOX)
        return None if doc is None else Payment.model_validate(doc)

    async def insert(self, payment: Payment, events: Sequence[Envelope]) -> bool:
        """False if a payment with this `_id` exists already (then no event goes out)."""
        try:
            await self._outbox.insert_one(self.payments, payment.document(), events)
        except DuplicateKeyError:
            return False
        return True

    async def save(self, before: Payment, after: Payment, events: Sequence[Envelope]) -> Payment | None:
        """Write `after` and its events if the payment is still at the version `before` was read at;
        the payment afterwards, or None if another writer got there first. The lists only grow, by
        `$push`: the ledger and the history are append-only in storage too."""
        old, new = before.document(), after.document()
        sets: Document = {}
        pushes: Document = {}
        for name, value in new.items():
            if name in APPEND_ONLY:
                added = value[len(old[name]) :]
                if value[: len(old[name])] != old[name]:
                    raise ValueError(f"{name} of payment {before.id} may only grow")
                if added:
                    pushes[name] = {"$each": added}
            elif name != "_id" and old.get(name) != value:
                sets[name] = value
        sets.pop("version", None)
        update: Document = {"$inc": {"version": after.version - before.version}}
        if sets:
            update["$set"] = sets
        if pushes:
            update["$push"] = pushes
        doc = await self._outbox.find_one_and_update(
            self.payments, {"_id": before.id, "version": before.version}, update, events
        )
        return None if doc is None else Payment.model_validate(doc)

    async def due_expiries(self, now: datetime, limit: int) -> list[Payment]:
        query = {"status": "awaiting_payment", "va_expires_at": {"$lte": now}}
        docs = await self.payments.find(query, WITHOUT_OUTBOX).sort("va_expires_at", 1).limit(limit).to_list()
        return [Payment.model_validate(doc) for doc in docs]

    async def stalled_paid(self, before: datetime, limit: int) -> list[Payment]:
        query = {"status": "paid", "updated_at": {"$lte": before}}
        docs = await self.payments.find(query, WITHOUT_OUTBOX).limit(limit).to_list()
        return [Payment.model_validate(doc) for doc in docs]

    # -- invoice numbers --------------------------------------------------------------------------

    async def next_invoice_number(self, pemda: str, year: int) -> str:
        """`INV/<pemda>/<year>/<seq>` from one counter per pemda and year."""
        key = f"invoice:{pemda}:{year}"

        async def increment() -> Document:
            counter = await self.counters.find_one_and_update(
                {"_id": key}, {"$inc": {"seq": 1}}, upsert=True, return_document=ReturnDocument.AFTER
            )
            assert counter is not None, "an upsert returning AFTER always has a document"
            return counter

        try:
            counter = await increment()
        except DuplicateKeyError:  # two first upserts raced; the counter exists now
            counter = await increment()
        return invoice_number(pemda, year, counter["seq"])

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

    async def payment_of_va(self, number: str) -> str | None:
        va = await self.virtual_accounts.find_one({"_id": number}, {"payment_id": 1})
        return None if va is None else str(va["payment_id"])

    # -- SNAP B2B access tokens -------------------------------------------------------------------

    async def store_access_token(self, digest: str, client_id: str, issued_at: datetime, expires_at: datetime) -> None:
        """Keep a token (by digest) until it expires; tokens that expired an hour ago are deleted, so
        the collection holds about an hour of tokens per partner."""
        await self.access_tokens.insert_one(
            {"_id": digest, "client_id": client_id, "issued_at": issued_at, "expires_at": expires_at}
        )
        await self.access_tokens.delete_many({"expires_at": {"$lt": issued_at - timedelta(hours=1)}})

    async def access_token(self, digest: str) -> Document | None:
        return await self.access_tokens.find_one({"_id": digest})

    # -- callback responses -----------------------------------------------------------------------

    async def callback_record(self, key: str, body_sha256: str, at: datetime) -> Document:
        """The record of an idempotency key: created by the first notification (its body digest and
        receipt time), returned as it stands to every later one."""

        async def upsert() -> Document:
            record = await self.callbacks.find_one_and_update(
                {"_id": key},
                {"$setOnInsert": {"body_sha256": body_sha256, "at": at}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
            assert record is not None, "an upsert returning AFTER always has a document"
            return record

        try:
            return await upsert()
        except DuplicateKeyError:  # a concurrent first notification created it
            return await upsert()

    async def answer_callback(self, key: str, http_status: int, response: Document) -> Document:
        """Store the answer to `key` unless one is stored already; the stored record."""
        record = await self.callbacks.find_one_and_update(
            {"_id": key, "response": {"$exists": False}},
            {"$set": {"http_status": http_status, "response": response}},
            return_document=ReturnDocument.AFTER,
        )
        if record is None:
            record = await self.callbacks.find_one({"_id": key})
        assert record is not None, "a callback record is never deleted"
        return record
