"""Optimistic concurrency: load, decide, write on the condition that nothing moved, else retry.

Every aggregate write is conditional (`{"_id": id, "version": v}` or a state guard), and MongoDB
applies it atomically across replicas. A write that matched nothing lost a race with another
writer; the use case raises `WriteConflict` and `retry_on_conflict` runs it again on fresh state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

T = TypeVar("T")


class WriteConflict(Exception):
    """A conditional write matched nothing: the document changed since it was read."""


async def retry_on_conflict(operation: Callable[[], Awaitable[T]], *, attempts: int = 8) -> T:
    """Run `operation`; on `WriteConflict` run it again (jittered back-off), at most `attempts` times."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(WriteConflict),
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.002, max=0.1),
        reraise=True,
    ):
        with attempt:
            return await operation()
    raise AssertionError("unreachable: tenacity re-raises the last WriteConflict")  # pragma: no cover
