"""Where the notifications service keeps its state: one collection per kind of document, and the
indexes for the queries it runs (created at start-up).

- `notifications`: in-app entries, `_id` derived from (event, recipient) so each is inserted once;
  per-reader read marks live in the entry (`reads.<member key>`). Listed by recipient, newest first.
- `contacts` (`_id = user:<sub>`) and `audiences` (`_id = provider:<id>` / `role:bendahara@pemda:<p>@satker:<s>`:
  an official address and the members who registered one): read by `_id` only.
- `emails`: every e-mail (content, outcome), `_id` derived from (event, address); it is its own
  work item while unsent (see `work_queue`).
- `webhooks`: subscriptions; an outbox collection (disabling one raises `WebhookDisabled` in the
  same write). Deleted ones are kept, marked `deleted`, so unpublished events are never dropped.
- `webhook_deliveries`: one per (event, subscription), with every attempt; its own work item while
  pending.
"""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from bejo_kit.mongo import Document, Indexes

from .work_queue import CLAIM_INDEX, DUE_INDEX

NOTIFICATIONS = "notifications"
CONTACTS = "contacts"
AUDIENCES = "audiences"
EMAILS = "emails"
WEBHOOKS = "webhooks"
DELIVERIES = "webhook_deliveries"

NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]

INDEXES = Indexes(
    {
        NOTIFICATIONS: [IndexModel([("recipient", ASCENDING), *NEWEST_FIRST], name="recipient_newest")],
        EMAILS: [DUE_INDEX, CLAIM_INDEX],
        WEBHOOKS: [
            IndexModel([("owner_sub", ASCENDING), ("created_at", ASCENDING)], name="owner"),
            IndexModel([("status", ASCENDING)], name="status"),
        ],
        DELIVERIES: [
            IndexModel([("webhook_id", ASCENDING), *NEWEST_FIRST], name="webhook_newest"),
            DUE_INDEX,
            CLAIM_INDEX,
        ],
    }
)


class Store:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.notifications: AsyncCollection[Document] = db[NOTIFICATIONS]
        self.contacts: AsyncCollection[Document] = db[CONTACTS]
        self.audiences: AsyncCollection[Document] = db[AUDIENCES]
        self.emails: AsyncCollection[Document] = db[EMAILS]
        self.webhooks: AsyncCollection[Document] = db[WEBHOOKS]
        self.deliveries: AsyncCollection[Document] = db[DELIVERIES]
