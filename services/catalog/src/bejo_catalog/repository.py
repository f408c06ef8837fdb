"""Mongo adapter: the catalog's collections, their indexes, and the look-ups the use cases run."""

from __future__ import annotations

from typing import Any

from pymongo import IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from bejo_contracts.common import WIB
from bejo_kit.inbox import INBOX
from bejo_kit.mongo import Document, Indexes
from bejo_kit.outbox import WITHOUT_OUTBOX

from .domain import Product, Provider

PROVIDERS, PRODUCTS, PROMOTIONS, RESERVATIONS = "providers", "products", "promotions", "reservations"
FEED, FEED_STATE = "feed", "feed_state"
OUTBOX_COLLECTIONS = [PROVIDERS, PRODUCTS, PROMOTIONS, RESERVATIONS]
# Order ids holding a product's stock (internal, never leaves the service).
HOLDS = "holds"
# A provider, product or promotion changed since the feed last carried it (see feed.py).
FEED_PENDING, FEED_REV = "feed_pending", "feed_rev"
BOOKKEEPING = {*WITHOUT_OUTBOX, INBOX, HOLDS, FEED_PENDING, FEED_REV}
STATE_ONLY: Document = {name: 0 for name in BOOKKEEPING}

INDEXES = Indexes(
    {
        PROVIDERS: [IndexModel([(FEED_PENDING, 1)], name="feed_pending")],
        PRODUCTS: [
            IndexModel([("provider_id", 1)], name="provider_id"),
            IndexModel([(FEED_PENDING, 1)], name="feed_pending"),
        ],
        PROMOTIONS: [
            IndexModel([("provider_id", 1)], name="provider_id"),
            IndexModel([(FEED_PENDING, 1)], name="feed_pending"),
        ],
    }
)


def fed(update: Document) -> Document:
    """The update, also marking the document for the feed sequencer."""
    marked = {op: dict(fields) for op, fields in update.items()}
    marked.setdefault("$set", {})[FEED_PENDING] = True
    marked.setdefault("$inc", {})[FEED_REV] = 1
    return marked


def fed_document(doc: Document) -> Document:
    return {**doc, FEED_PENDING: True, FEED_REV: 1}


class CatalogStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        self.providers: AsyncCollection[Document] = db[PROVIDERS]
        self.products: AsyncCollection[Document] = db[PRODUCTS]
        self.promotions: AsyncCollection[Document] = db[PROMOTIONS]
        self.reservations: AsyncCollection[Document] = db[RESERVATIONS]
        self.feed: AsyncCollection[Document] = db[FEED]
        self.feed_state: AsyncCollection[Document] = db[FEED_STATE]

    async def provider(self, provider_id: str) -> Provider | None:
        found = await self.providers.find_one({"_id": provider_id}, STATE_ONLY)
        return Provider.model_validate(found) if found else None

    async def product(self, product_id: str) -> Product | None:
        """The product with the orders holding its stock."""
        found = await self.products.find_one({"_id": product_id}, {**WITHOUT_OUTBOX, FEED_PENDING: 0, FEED_REV: 0})
        return Product.model_validate(found) if found else None

    async def products_of(self, provider_id: str) -> list[Product]:
        found = await self.products.find({"provider_id": provider_id}, STATE_ONLY).sort("_id", 1).to_list()
        return [Product.model_validate(doc) for doc in found]

    async def products_by_id(self, product_ids: list[str]) -> dict[str, Product]:
        found = await self.products.find({"_id": {"$in": product_ids}}, STATE_ONLY).to_list()
        return {doc["_id"]: Product.model_validate(doc) for doc in found}

    async def promotions_of(self, provider_id: str) -> list[Document]:
        return await self.promotions.find({"provider_id": provider_id}, STATE_ONLY).to_list()

    async def list_providers(self, filter_: Document, after: str | None, limit: int) -> list[Document]:
        if after is not None:
            filter_ = {**filter_, "_id": {"$gt": after}}
        return await self.providers.find(filter_, STATE_ONLY).sort("_id", 1).limit(limit).to_list()

    async def is_empty(self) -> bool:
        return await self.providers.find_one({}, {"_id": 1}) is None


def clean(doc: Document) -> Document:
    """A stored document without outbox, idempotency and feed bookkeeping."""
    return {k: v for k, v in doc.items() if k not in BOOKKEEPING}


def public_provider(doc: Document) -> dict[str, Any]:
    """What anyone may read about a provider (the NPWP, a tax id, stays with its owner and admins)."""
    out = {k: v for k, v in clean(doc).items() if k not in ("_id", "npwp")}
    return {"id": doc["_id"], **out}


def jakarta(value: Any) -> Any:
    return value.astimezone(WIB) if hasattr(value, "astimezone") else value
