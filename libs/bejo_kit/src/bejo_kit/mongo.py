"""MongoDB access through PyMongo's native asyncio client (AsyncMongoClient).

Motor, the former async driver, is deprecated in favour of AsyncMongoClient, which talks to
the server without a thread pool. Each service gets its own database and never opens another's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from .settings import KitSettings

Document = dict[str, Any]


def create_client(settings: KitSettings, **options: Any) -> AsyncMongoClient[Document]:
    return AsyncMongoClient(
        settings.mongodb_url,
        tz_aware=True,
        tzinfo=UTC,
        appname=settings.service_name,
        serverSelectionTimeoutMS=options.pop("serverSelectionTimeoutMS", 5000),
        **options,
    )


def database(client: AsyncMongoClient[Document], settings: KitSettings) -> AsyncDatabase[Document]:
    return client[settings.database_name]


@dataclass(frozen=True)
class Indexes:
    """Index models per collection, created at start-up (creating an existing index is a no-op)."""

    by_collection: dict[str, list[IndexModel]] = field(default_factory=dict)

    def merged(self, more: dict[str, list[IndexModel]]) -> Indexes:
        combined = {name: list(models) for name, models in self.by_collection.items()}
        for name, models in more.items():
            combined.setdefault(name, []).extend(models)
        return Indexes(combined)

    async def ensure(self, db: AsyncDatabase[Document]) -> None:
        for collection, models in self.by_collection.items():
            if models:
                await db[collection].create_indexes(models)


async def ping(db: AsyncDatabase[Document]) -> bool:
    try:
        await db.command("ping")
    except Exception:  # noqa: BLE001 - readiness only reports yes or no
        return False
    return True


def utcnow() -> datetime:
    """Millisecond precision, as BSON stores it, so values read back compare equal."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def chunked(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
