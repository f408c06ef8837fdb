"""Where the notifications service keeps its state, shaped for FerretDB (see docs/notifications.md).

- Growing collections are partitioned, and by the key they are read by: the inbox by recipient,
  read marks by user, the delivery log by webhook, e-mails by id. A listing scans one small partition.
- Inbox entries and read marks are insert-only (inserts are cheap; every update scans).
- The work still to do (e-mails to send, webhook deliveries due) sits in two small queue
  collections that the delivery loops poll; finished items leave them.
"""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from bejo_kit.mongo import Document
from bejo_kit.store import PartitionedCollection

from .settings import NotificationsSettings

WEBHOOKS = "webhooks"


class Store:
    def __init__(self, db: AsyncDatabase[Document], settings: NotificationsSettings) -> None:
        self.db = db
        self._secondary_indexes = settings.secondary_indexes
        # In-app notifications, partitioned by recipient key (`user:<sub>`, `provider:<id>`, ...).
        self.inbox = PartitionedCollection(db, "notifications", settings.inbox_partitions)
        # Read marks `{_id, sub, notification_id, read_at}`, partitioned by the reader's sub.
        self.reads = PartitionedCollection(db, "notification_reads", settings.inbox_partitions)
        # A user's own e-mail and locale, `_id = user:<sub>`.
        self.contacts = PartitionedCollection(db, "contacts", 8)
        # Audience directory, `_id = provider:<id>` / `role:bendahara@satker:<satker>`: an official
        # address (providers, from catalog events) and the members who registered an address.
        self.audiences: AsyncCollection[Document] = db["audiences"]
        # Every e-mail ever queued (content and outcome), partitioned by `_id`.
        self.emails = PartitionedCollection(db, "emails", settings.email_partitions)
        self.email_queue: AsyncCollection[Document] = db["email_queue"]
        # Webhook subscriptions (few); an outbox collection: disabling one emits an event in the same write.
        self.webhooks: AsyncCollection[Document] = db[WEBHOOKS]
        # Delivery log, partitioned by webhook id; one document per (event, subscription).
        self.deliveries = PartitionedCollection(db, "webhook_deliveries", settings.delivery_log_partitions)
        self.delivery_queue: AsyncCollection[Document] = db["webhook_queue"]

    async def ensure_indexes(self) -> None:
        """Indexes a MongoDB server uses for the listings (FerretDB answers them by scanning the partition)."""
        if not self._secondary_indexes:
            return
        await self.inbox.create_indexes([IndexModel([("recipient", ASCENDING), ("created_at", DESCENDING)])])
        await self.reads.create_indexes([IndexModel([("sub", ASCENDING)])])
        await self.deliveries.create_indexes([IndexModel([("webhook_id", ASCENDING), ("created_at", DESCENDING)])])
        await self.webhooks.create_indexes([IndexModel([("owner_sub", ASCENDING)])])
        for queue in (self.email_queue, self.delivery_queue):
            await queue.create_indexes([IndexModel([("next_attempt_at", ASCENDING)])])
