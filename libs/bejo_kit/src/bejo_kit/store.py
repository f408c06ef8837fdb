"""Storage helpers shaped by what the Mongo-wire servers we run on really do.

Measured on FerretDB v1.24.2 with its SQLite backend (see docs/storage.md):
- only a filter that is exactly `{"_id": <string>}` uses an index; every other filter, and every
  update or delete (even by `_id`), scans the whole collection: a write costs ~5 µs per document
  in the collection, so ~150 ms at 30,000 documents;
- read-modify-write is not atomic across connections: 200 concurrent `$inc` on one document
  applied 12 times, and 200 conditional decrements of a stock of 10 succeeded 165 times;
- inserting a duplicate `_id`, and deleting by `_id`, are atomic (exactly one caller wins).

Hence:
- `PartitionedCollection` spreads a large logical collection over N physical collections by a
  hash of `_id`, so a write scans only one small partition;
- `KeyedLocks` serialises writes to one document inside a replica, so the conditional updates
  (which are atomic on MongoDB) are also safe on FerretDB within one process.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager

from pymongo import IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.results import InsertOneResult, UpdateResult

from .mongo import Document


class KeyedLocks:
    """One asyncio lock per key, created on demand and dropped when nobody holds or waits on it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    @asynccontextmanager
    async def hold_many(self, keys: list[str]) -> AsyncIterator[None]:
        """Several keys, always taken in sorted order so two callers cannot deadlock."""
        async with AsyncExitStack() as stack:
            for key in sorted(set(keys)):
                await stack.enter_async_context(self.hold(key))
            yield

    def __len__(self) -> int:
        return len(self._locks)


class PartitionedCollection:
    """A logical collection stored as `<name>.p00` … `<name>.pNN`, partitioned by a hash of `_id`.

    Look-ups and writes by id touch one partition. Queries by anything else visit every partition,
    so keep those off hot paths (serve them from an in-memory read model instead).
    """

    def __init__(self, db: AsyncDatabase[Document], name: str, partitions: int = 16) -> None:
        if not 1 <= partitions <= 256:
            raise ValueError("partitions must be between 1 and 256")
        self.name = name
        self.partitions = partitions
        self._collections = [db[f"{name}.p{i:02d}"] for i in range(partitions)]

    def partition_of(self, doc_id: str) -> AsyncCollection[Document]:
        digest = hashlib.blake2b(doc_id.encode(), digest_size=2).digest()
        return self._collections[int.from_bytes(digest, "big") % self.partitions]

    @property
    def collection_names(self) -> list[str]:
        return [c.name for c in self._collections]

    def __iter__(self) -> Iterator[AsyncCollection[Document]]:
        return iter(self._collections)

    async def create_indexes(self, models: list[IndexModel]) -> None:
        for collection in self._collections:
            await collection.create_indexes(models)

    async def insert_one(self, document: Document) -> InsertOneResult:
        return await self.partition_of(document["_id"]).insert_one(document)

    async def insert_many(self, documents: list[Document]) -> None:
        by_partition: dict[int, list[Document]] = {}
        for doc in documents:
            index = self._collections.index(self.partition_of(doc["_id"]))
            by_partition.setdefault(index, []).append(doc)
        for index, docs in by_partition.items():
            await self._collections[index].insert_many(docs, ordered=False)

    async def find_one(self, doc_id: str, projection: Document | None = None) -> Document | None:
        # Exactly {"_id": id}: the only filter FerretDB answers from an index.
        return await self.partition_of(doc_id).find_one({"_id": doc_id}, projection)

    async def update_one(self, doc_id: str, update: Document, condition: Document | None = None) -> UpdateResult:
        return await self.partition_of(doc_id).update_one({"_id": doc_id, **(condition or {})}, update)

    async def replace_one(self, doc_id: str, document: Document, condition: Document | None = None) -> UpdateResult:
        return await self.partition_of(doc_id).replace_one({"_id": doc_id, **(condition or {})}, document)

    async def find(
        self, filter_: Document | None = None, projection: Document | None = None
    ) -> AsyncIterator[Document]:
        """Every matching document, partition by partition (no global order)."""
        for collection in self._collections:
            async for doc in collection.find(filter_ or {}, projection):
                yield doc

    async def count(self, filter_: Document | None = None) -> int:
        total = 0
        for collection in self._collections:
            total += await collection.count_documents(filter_ or {})
        return total
