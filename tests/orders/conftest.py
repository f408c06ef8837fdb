"""Fixtures of the orders tests: the orders app on the real bus and store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from orders_harness import Harness, start_harness


@pytest.fixture
async def harness(
    amqp_url: str, mongodb_url: str, unique: str, request: pytest.FixtureRequest
) -> AsyncIterator[Harness]:
    """Settings overrides come from indirect parametrisation: `@pytest.mark.parametrize("harness", [{...}])`."""
    async with start_harness(amqp_url, mongodb_url, unique, **getattr(request, "param", {})) as h:
        yield h
