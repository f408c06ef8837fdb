"""Ids that follow a request or a message through every service, kept in contextvars.

structlog merges contextvars into every log line, so binding here is enough for logs; the bus
and the HTTP client read them back to pass them on.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

REQUEST_ID = "request_id"
CORRELATION_ID = "correlation_id"
CAUSATION_ID = "causation_id"
_KEYS = (REQUEST_ID, CORRELATION_ID, CAUSATION_ID)


def new_id() -> str:
    return uuid.uuid4().hex


def current() -> dict[str, str]:
    ctx = structlog.contextvars.get_contextvars()
    return {k: ctx[k] for k in _KEYS if ctx.get(k)}


def correlation_id() -> str | None:
    return current().get(CORRELATION_ID)


def causation_id() -> str | None:
    return current().get(CAUSATION_ID)


@contextmanager
def bound(**ids: str | None) -> Iterator[None]:
    """Bind ids (and other log fields) for the duration of a request or a message."""
    values = {k: v for k, v in ids.items() if v}
    with structlog.contextvars.bound_contextvars(**values):
        yield


def outgoing_headers() -> dict[str, str]:
    """Headers that pass the current ids on to an outgoing HTTP call."""
    ctx = current()
    headers = {}
    if REQUEST_ID in ctx:
        headers["X-Request-ID"] = ctx[REQUEST_ID]
    if CORRELATION_ID in ctx:
        headers["X-Correlation-ID"] = ctx[CORRELATION_ID]
    if CAUSATION_ID in ctx:
        headers["X-Causation-ID"] = ctx[CAUSATION_ID]
    return headers
