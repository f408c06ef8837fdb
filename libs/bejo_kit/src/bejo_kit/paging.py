"""Opaque cursors for `{"items": [...], "next_cursor": ...}` lists."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from .errors import ValidationProblem


def encode_cursor(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def decode_cursor(cursor: str | None, field: str = "cursor") -> dict[str, Any] | None:
    """The position a cursor stands for; a malformed cursor is the client's error (422 naming the field)."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise ValidationProblem.field(field, "malformed cursor; pass back the next_cursor of a previous page") from None
    if not isinstance(position, dict):
        raise ValidationProblem.field(field, "malformed cursor; pass back the next_cursor of a previous page")
    return position
