"""Shared fixtures. Integration and end-to-end tests talk to a real RabbitMQ and a real
MongoDB wire-protocol server:

1. `AMQP_URL` / `MONGODB_URL` from the environment (`make test` starts both with `make infra`);
2. otherwise testcontainers, when a Docker engine is reachable (a developer laptop);
3. otherwise the test fails and says to run `make infra`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from pymongo import AsyncMongoClient

from bejo_kit.settings import KitSettings


def _docker_reachable() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
    except Exception:  # noqa: BLE001 - any failure means: no engine
        return False
    return True


_NO_SERVERS = (
    "{name} is not set and no Docker engine is reachable for testcontainers. "
    "Run `make infra` (it starts RabbitMQ and a Mongo-wire server and prints the URLs), "
    "or export {name} to point at a running server."
)


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    if url := os.environ.get("AMQP_URL"):
        yield url
        return
    if not _docker_reachable():
        pytest.fail(_NO_SERVERS.format(name="AMQP_URL"), pytrace=False)
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:3.13-management") as rabbit:
        params = rabbit.get_connection_params()
        yield f"amqp://guest:guest@{params.host}:{params.port}/"


@pytest.fixture(scope="session")
def mongodb_url() -> Iterator[str]:
    if url := os.environ.get("MONGODB_URL"):
        yield url
        return
    if not _docker_reachable():
        pytest.fail(_NO_SERVERS.format(name="MONGODB_URL"), pytrace=False)
    from testcontainers.mongodb import MongoDbContainer

    with MongoDbContainer("mongo:7") as mongo:
        yield mongo.get_connection_url()


@pytest.fixture
def unique() -> str:
    """A short random suffix for databases and queues, so tests never see each other's data."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def kit_settings(amqp_url: str, mongodb_url: str, unique: str) -> KitSettings:
    return KitSettings(
        service_name="kit-test",
        amqp_url=amqp_url,
        mongodb_url=mongodb_url,
        mongodb_database=f"test_kit_{unique}",
        bus_namespace=f"t{unique}.",
        bus_queue_expires_ms=120_000,
        retry_delays_ms=[100, 200],
        outbox_poll_interval=0.05,
        log_json=True,
    )


@pytest.fixture
async def mongo_client(mongodb_url: str) -> AsyncIterator[AsyncMongoClient[dict[str, object]]]:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongodb_url, tz_aware=True)
    yield client
    await client.close()
