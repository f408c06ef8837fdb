"""The fault suite starts its own RabbitMQ node, Mongo-wire server, services and gateway on other
ports and takes minutes, so a plain `pytest` (and `make test`) skips it: `make test-faults` runs it
(BEJO_FAULTS=1)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from faults_harness import REPO
from faults_platform import FaultPlatform, start_fault_platform


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: the fault suite (make test-faults): its own servers, faults under load")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("BEJO_FAULTS") == "1":
        return
    skip = pytest.mark.skip(reason="the fault suite runs with `make test-faults` (BEJO_FAULTS=1)")
    for item in items:
        if "faults" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
async def faults() -> AsyncIterator[FaultPlatform]:
    # In the repository's git-ignored .state, not pytest's rotating temporary directories: the
    # logs of a failed run stay until the next run.
    async with start_fault_platform(REPO / ".state" / "faults") as platform:
        yield platform
