"""Idempotent consumers: the same event id handled twice has one effect.

Two ways, both atomic with the effect itself:
- `guarded(...)`: when the effect is an update of one document, the handled event id is recorded in
  that document (`inbox` array) by the same update, whose filter excludes documents that already
  hold it. A redelivery then matches nothing.
- `derived_id(...)`: when the effect creates documents, derive their `_id` from the event id so a
  redelivery's insert meets a duplicate key and is skipped.
"""

from __future__ import annotations

from typing import Any

from pymongo.errors import BulkWriteError

from .mongo import Document

INBOX = "inbox"


def guarded(filter_: Document, update: Document, event_id: str) -> tuple[Document, Document]:
    """Filter and update that apply the update only if `event_id` was not applied before."""
    guarded_filter = {**filter_, INBOX: {"$ne": event_id}}
    merged = {op: dict(fields) for op, fields in update.items()}
    push = merged.setdefault("$push", {})
    if INBOX in push:
        raise ValueError("update already pushes to the inbox")
    push[INBOX] = event_id
    return guarded_filter, merged


def derived_id(event_id: str, *parts: str) -> str:
    return ":".join((event_id, *parts))


def duplicate_keys_only(exc: BulkWriteError) -> bool:
    """Whether every document a bulk insert refused was refused for a duplicate key (E11000), i.e.
    exists already. A single write raises `DuplicateKeyError`: catch that class instead."""
    errors: list[dict[str, Any]] = exc.details.get("writeErrors", [])
    return bool(errors) and all(e.get("code") == 11000 for e in errors)
