"""Waiting on conditions instead of sleeping: eventual truth, and truth held for a bounded time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def _value(predicate: Callable[[], Any]) -> Any:
    result = predicate()
    if asyncio.iscoroutine(result):
        result = await result
    return result


async def wait_until(predicate: Callable[[], Any], within: float = 15.0, interval: float = 0.05) -> Any:
    """Poll a sync or async predicate until it returns something truthy (returned); fail after `within` s."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        if result := await _value(predicate):
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


async def holds_for(predicate: Callable[[], Any], seconds: float, interval: float = 0.05) -> None:
    """A bounded observation: the predicate stays true for `seconds`, checked every `interval`; fails
    at the first moment it is false (proof of absence over a window, e.g. "nothing was sent twice")."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        assert await _value(predicate), "condition stopped holding"
        if asyncio.get_running_loop().time() >= deadline:
            return
        await asyncio.sleep(interval)
