"""The store conformance suite's fixtures and helpers: many independent clients, a fresh database per test.

The concurrency tests spread their tasks over `CLIENTS` separate `AsyncMongoClient` instances (each
with its own connection pool), as replicas of a service would, so that races between connections
are real rather than serialised by one pool.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC
from typing import Any, TypeVar

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]
Client = AsyncMongoClient[Document]
T = TypeVar("T")

CLIENTS = 20
# A bound on how long one test's database work may take, so a hang fails the test instead of
# blocking the run. A correctness bound only: it is orders of magnitude above the expected time.
HANG_BOUND_SECONDS = 60


def make_client(url: str) -> Client:
    # The options bejo's services use (bejo_kit.mongo.create_client).
    return AsyncMongoClient(url, tz_aware=True, tzinfo=UTC, serverSelectionTimeoutMS=5000)


@pytest.fixture(scope="session")
async def clients(mongodb_url: str) -> AsyncIterator[list[Client]]:
    made = [make_client(mongodb_url) for _ in range(CLIENTS)]
    # Connect every client up front, so the races start with warm connections.
    await asyncio.gather(*(c.admin.command("ping") for c in made))
    yield made
    await asyncio.gather(*(c.close() for c in made))


@pytest.fixture
async def db(clients: list[Client], unique: str) -> AsyncIterator[AsyncDatabase[Document]]:
    """A database of this test's own (through the first client); dropped afterwards."""
    name = f"store_{unique}"
    yield clients[0][name]
    await clients[0].drop_database(name)


@pytest.fixture(scope="module")
async def module_db(clients: list[Client]) -> AsyncIterator[AsyncDatabase[Document]]:
    """A database shared by one module's tests, each of which uses collections of its own
    (or, in the read-only query tests, only reads); dropped after the module."""
    name = f"store_{uuid.uuid4().hex[:10]}"
    yield clients[0][name]
    await clients[0].drop_database(name)


@pytest.fixture
async def collection(module_db: AsyncDatabase[Document], unique: str) -> AsyncIterator[AsyncCollection[Document]]:
    """A collection of this test's own in the module's database; dropped afterwards."""
    name = f"c_{unique}"
    yield module_db[name]
    await module_db.drop_collection(name)


@pytest.fixture
def handles(clients: list[Client], db: AsyncDatabase[Document]) -> Callable[[str], list[AsyncCollection[Document]]]:
    """`handles("things")`: the collection `things` of the test's database, once per client."""

    def of(collection: str) -> list[AsyncCollection[Document]]:
        return [client[db.name][collection] for client in clients]

    return of


async def race(
    n: int,
    collections: list[AsyncCollection[Document]],
    attempt: Callable[[int, AsyncCollection[Document]], Awaitable[T]],
) -> list[T]:
    """Run `attempt(i, collection)` for i in 0..n-1 all at once, task i on client i % len(collections).

    Each attempt may return a value or raise; exceptions are returned in place of the value.
    """
    start = asyncio.Event()

    async def one(i: int) -> T:
        await start.wait()  # every task is created and waiting before the first one runs
        return await attempt(i, collections[i % len(collections)])

    async with asyncio.timeout(HANG_BOUND_SECONDS):
        tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
        await asyncio.sleep(0)
        start.set()
        return await asyncio.gather(*tasks, return_exceptions=True)  # type: ignore[return-value]
