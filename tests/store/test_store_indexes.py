"""Indexes, duplicate keys and bulk writes: unique constraints hold under races and are reported
as MongoDB reports them (code 11000), start-up index creation is idempotent, and a bulk write of
many updates completes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo import ASCENDING, DESCENDING, IndexModel, InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError
from store_harness import HANG_BOUND_SECONDS, Document, race

from bejo_kit.inbox import duplicate_keys_only
from bejo_kit.mongo import Indexes

pytestmark = [pytest.mark.integration, pytest.mark.store]

DUPLICATE_KEY = 11000


async def users_with_unique_email(db: AsyncDatabase[Document]) -> AsyncCollection[Document]:
    users = db["users"]
    await users.create_index([("email", ASCENDING)], unique=True, name="email_unique")
    await users.insert_many(
        [{"_id": "u1", "email": "ani@example.id", "n": 1}, {"_id": "u2", "email": "budi@example.id", "n": 2}]
    )
    return users


def assert_bulk_duplicates(exc: BulkWriteError, indexes: list[int]) -> None:
    errors = exc.details["writeErrors"]
    assert sorted(e["index"] for e in errors) == indexes, errors
    assert all(e["code"] == DUPLICATE_KEY for e in errors), errors
    assert duplicate_keys_only(exc)


async def test_unique_index_admits_one_document(db: AsyncDatabase[Document]) -> None:
    users = await users_with_unique_email(db)
    with pytest.raises(DuplicateKeyError) as caught:
        await users.insert_one({"_id": "u3", "email": "ani@example.id"})
    assert caught.value.code == DUPLICATE_KEY
    assert await users.count_documents({"email": "ani@example.id"}) == 1
    assert await users.find_one({"_id": "u3"}) is None


async def test_unique_index_admits_one_of_racing_inserts(db: AsyncDatabase[Document], handles: Any) -> None:
    await db["users"].create_index([("email", ASCENDING)], unique=True)
    users = handles("users")

    async def register(i: int, coll: AsyncCollection[Document]) -> str:
        await coll.insert_one({"_id": f"u{i:03d}", "email": "sari@example.id"})
        return "inserted"

    results = await race(100, users, register)
    assert results.count("inserted") == 1
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 99
    assert all(isinstance(e, DuplicateKeyError) and e.code == DUPLICATE_KEY for e in errors), errors[:3]
    assert await users[0].count_documents({}) == 1


async def test_duplicate_id_on_insert_raises_duplicate_key(db: AsyncDatabase[Document]) -> None:
    things = db["things"]
    await things.insert_one({"_id": "k", "v": 1})
    with pytest.raises(DuplicateKeyError) as caught:
        await things.insert_one({"_id": "k", "v": 2})
    assert caught.value.code == DUPLICATE_KEY
    assert await things.find_one({"_id": "k"}) == {"_id": "k", "v": 1}


async def test_duplicate_key_by_update_one(db: AsyncDatabase[Document]) -> None:
    users = await users_with_unique_email(db)
    with pytest.raises(DuplicateKeyError) as caught:
        await users.update_one({"_id": "u2"}, {"$set": {"email": "ani@example.id", "n": 20}})
    assert caught.value.code == DUPLICATE_KEY
    assert await users.find_one({"_id": "u2"}) == {"_id": "u2", "email": "budi@example.id", "n": 2}


async def test_duplicate_key_by_upsert(db: AsyncDatabase[Document]) -> None:
    users = await users_with_unique_email(db)
    with pytest.raises(DuplicateKeyError) as caught:
        await users.update_one({"_id": "u3"}, {"$set": {"email": "ani@example.id"}}, upsert=True)
    assert caught.value.code == DUPLICATE_KEY
    assert await users.find_one({"_id": "u3"}) is None
    assert await users.count_documents({}) == 2


async def test_duplicate_key_by_unordered_insert_many(db: AsyncDatabase[Document]) -> None:
    """An unordered insert_many reports each duplicate and inserts every other document (the outbox
    relay's claims and done marks rely on both)."""
    users = await users_with_unique_email(db)
    batch = [
        {"_id": "u3", "email": "citra@example.id"},
        {"_id": "u1", "email": "dewi@example.id"},  # duplicate _id
        {"_id": "u4", "email": "eka@example.id"},
        {"_id": "u5", "email": "budi@example.id"},  # duplicate email
        {"_id": "u6", "email": "fajar@example.id"},
    ]
    with pytest.raises(BulkWriteError) as caught:
        await users.insert_many(batch, ordered=False)
    assert_bulk_duplicates(caught.value, [1, 3])
    assert caught.value.details["nInserted"] == 3
    assert sorted(d["_id"] for d in await users.find({}, {"_id": 1}).to_list()) == ["u1", "u2", "u3", "u4", "u6"]
    assert await users.find_one({"_id": "u1"}) == {"_id": "u1", "email": "ani@example.id", "n": 1}


async def test_duplicate_key_by_ordered_insert_many_stops_at_the_first(db: AsyncDatabase[Document]) -> None:
    users = await users_with_unique_email(db)
    batch = [{"_id": "u3", "email": "citra@example.id"}, {"_id": "u1"}, {"_id": "u4", "email": "eka@example.id"}]
    with pytest.raises(BulkWriteError) as caught:
        await users.insert_many(batch)
    assert_bulk_duplicates(caught.value, [1])
    assert caught.value.details["nInserted"] == 1
    assert sorted(d["_id"] for d in await users.find({}, {"_id": 1}).to_list()) == ["u1", "u2", "u3"]


async def test_duplicate_key_by_bulk_write(db: AsyncDatabase[Document]) -> None:
    users = await users_with_unique_email(db)
    requests: list[InsertOne[Document] | UpdateOne] = [
        InsertOne({"_id": "u3", "email": "citra@example.id"}),
        InsertOne({"_id": "u2", "email": "gita@example.id"}),  # duplicate _id
        UpdateOne({"_id": "u2"}, {"$set": {"email": "ani@example.id"}}),  # duplicate email
        UpdateOne({"_id": "u1"}, {"$inc": {"n": 10}}),
    ]
    with pytest.raises(BulkWriteError) as caught:
        await users.bulk_write(requests, ordered=False)
    assert_bulk_duplicates(caught.value, [1, 2])
    assert caught.value.details["nInserted"] == 1
    assert caught.value.details["nModified"] == 1
    assert await users.find_one({"_id": "u3"}) == {"_id": "u3", "email": "citra@example.id"}
    assert await users.find_one({"_id": "u2"}) == {"_id": "u2", "email": "budi@example.id", "n": 2}
    assert await users.find_one({"_id": "u1"}) == {"_id": "u1", "email": "ani@example.id", "n": 11}


async def test_bulk_write_of_150_updates_completes(db: AsyncDatabase[Document]) -> None:
    """The outbox relay clears published events with one unordered bulk_write of UpdateOnes."""
    things = db["things"]
    await things.insert_many([{"_id": f"t{i:03d}", "n": i, "tags": []} for i in range(150)])
    requests = [
        UpdateOne({"_id": f"t{i:03d}"}, {"$inc": {"n": 1000}, "$push": {"tags": "bulk"}, "$set": {"seen": True}})
        for i in range(150)
    ]
    async with asyncio.timeout(HANG_BOUND_SECONDS):
        result = await things.bulk_write(requests, ordered=False)
    assert result.matched_count == 150
    assert result.modified_count == 150
    docs = await things.find({}).sort("_id", ASCENDING).to_list()
    assert docs == [{"_id": f"t{i:03d}", "n": 1000 + i, "tags": ["bulk"], "seen": True} for i in range(150)]


async def test_create_index_is_idempotent(db: AsyncDatabase[Document]) -> None:
    inbox = db["inbox"]
    models = [
        IndexModel([("recipient", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([("outbox_pending", ASCENDING)], name="outbox_pending"),
        IndexModel([("email", ASCENDING)], unique=True, name="email_unique"),
    ]
    first = await inbox.create_indexes(models)
    second = await inbox.create_indexes(models)  # a second replica starting, or a restart
    assert first == second == ["recipient_1_created_at_-1", "outbox_pending", "email_unique"]
    assert await inbox.create_index([("next_attempt_at", ASCENDING)]) == "next_attempt_at_1"
    assert await inbox.create_index([("next_attempt_at", ASCENDING)]) == "next_attempt_at_1"
    info = await inbox.index_information()
    assert set(info) == {"_id_", "recipient_1_created_at_-1", "outbox_pending", "email_unique", "next_attempt_at_1"}
    assert info["email_unique"].get("unique") is True
    assert info["recipient_1_created_at_-1"]["key"] == [("recipient", 1), ("created_at", -1)]


async def test_start_up_index_creation_is_idempotent(db: AsyncDatabase[Document]) -> None:
    """The kit's start-up path (`Indexes.ensure`, with the outbox marker index merged in), run by two
    replicas one after the other and then concurrently."""
    indexes = Indexes({"webhooks": [IndexModel([("owner_sub", ASCENDING)])], "unused": []}).merged(
        {
            "orders": [
                IndexModel([("outbox_pending", ASCENDING)], name="outbox_pending"),
                IndexModel([("created_at", DESCENDING), ("_id", DESCENDING)]),
            ],
            "webhooks": [],
        }
    )
    await indexes.ensure(db)
    await indexes.ensure(db)
    await asyncio.gather(*(indexes.ensure(db) for _ in range(4)))
    assert set(await db["webhooks"].index_information()) == {"_id_", "owner_sub_1"}
    assert set(await db["orders"].index_information()) == {"_id_", "outbox_pending", "created_at_-1__id_-1"}
