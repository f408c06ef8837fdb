"""Mongo adapter: where each catalog aggregate lives and how it is addressed.

Shaped by FerretDB (see docs/catalog.md): every hot look-up is by `_id`; products and
reservations are partitioned so a write scans one small partition; search never queries the store.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from bejo_kit.mongo import Document
from bejo_kit.outbox import EVENTS
from bejo_kit.store import PartitionedCollection

from .domain import JAKARTA

BOOKKEEPING = (EVENTS, "inbox")
# Internal product fields that never leave the service: order ids holding stock.
HOLDS = "holds"
RESERVATION_PARTITIONS = 16


class CatalogStore:
    def __init__(self, db: AsyncDatabase[Document], product_partitions: int = 32) -> None:
        self.db = db
        self.providers: AsyncCollection[Document] = db["providers"]
        self.products = PartitionedCollection(db, "products", product_partitions)
        self.promotions: AsyncCollection[Document] = db["promotions"]
        self.reservations = PartitionedCollection(db, "reservations", RESERVATION_PARTITIONS)
        self.feed_entries: AsyncCollection[Document] = db["feed_entries"]
        self.feed_pages: AsyncCollection[Document] = db["feed_pages"]
        self.feed_pending: AsyncCollection[Document] = db["feed_pending"]
        self.feed_state: AsyncCollection[Document] = db["feed_state"]

    @property
    def event_collections(self) -> list[str]:
        return [
            self.providers.name,
            self.promotions.name,
            *self.products.collection_names,
            *self.reservations.collection_names,
        ]

    async def provider(self, provider_id: str) -> Document | None:
        return await self.providers.find_one({"_id": provider_id})

    async def product(self, product_id: str) -> Document | None:
        return await self.products.find_one(product_id)

    async def promotions_of(self, provider_id: str) -> list[Document]:
        # Small collection (a few hundred promotions): the scan is cheap.
        return await self.promotions.find({"provider_id": provider_id}, {EVENTS: 0}).to_list()

    async def is_empty(self) -> bool:
        return await self.providers.find_one({}, {"_id": 1}) is None


def outbox_collections(product_partitions: int) -> list[str]:
    """Names of the collections whose documents carry outbox events (needed before the store exists)."""
    return [
        "providers",
        "promotions",
        *(f"products.p{i:02d}" for i in range(product_partitions)),
        *(f"reservations.p{i:02d}" for i in range(RESERVATION_PARTITIONS)),
    ]


def clean(doc: Document) -> Document:
    """A stored document without outbox and idempotency bookkeeping."""
    return {k: v for k, v in doc.items() if k not in BOOKKEEPING}


def public_provider(doc: Document) -> dict[str, Any]:
    """What anyone may read about a provider (the NPWP, a tax id, stays with its owner and admins)."""
    out = {k: v for k, v in clean(doc).items() if k not in ("_id", "npwp")}
    return {"id": doc["_id"], **out}


def jakarta(value: Any) -> Any:
    return value.astimezone(JAKARTA) if hasattr(value, "astimezone") else value
