"""12-factor configuration: everything comes from the environment, with local defaults.

Shared names (AMQP_URL, MONGODB_URL, JWT_*, LOG_*) are read without a prefix so one `.env`
serves every service; a service's own knobs use its prefix, e.g. `ORDERS_APPROVAL_TIMEOUT`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class KitSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    service_name: str = "bejo"
    environment: Literal["local", "test", "production"] = Field("local", validation_alias=_env("BEJO_ENV"))

    amqp_url: str = Field("amqp://guest:guest@127.0.0.1:5672/", validation_alias=_env("AMQP_URL"))
    mongodb_url: str = Field("mongodb://127.0.0.1:27017/", validation_alias=_env("MONGODB_URL"))
    # Database name; defaults to `bejo_<service>` so each service owns its own database.
    mongodb_database: str | None = None

    http_host: str = "127.0.0.1"
    http_port: int = 8080

    log_level: str = Field("INFO", validation_alias=_env("LOG_LEVEL"))
    # None: JSON when stderr is not a terminal, readable when it is.
    log_json: bool | None = Field(None, validation_alias=_env("LOG_JSON"))

    jwt_secret: str = Field("bejo-local-development-secret-change-me", validation_alias=_env("JWT_SECRET"))
    jwt_jwks_url: str | None = Field(None, validation_alias=_env("JWT_JWKS_URL"))
    jwt_issuer: str = Field("bejo-local", validation_alias=_env("JWT_ISSUER"))
    jwt_audience: str = Field("bejo", validation_alias=_env("JWT_AUDIENCE"))

    # Consumers: how many unacked messages one replica holds, and the retry ladder before parking.
    prefetch: int = Field(64, validation_alias=_env("BUS_PREFETCH"))
    retry_delays_ms: list[int] = Field([200, 1000, 5000], validation_alias=_env("BUS_RETRY_DELAYS_MS"))

    # Full sweep of every outbox collection; local writes wake the relay at once regardless.
    # Prefix for every exchange and queue name: lets tests (or tenants on a shared broker) run
    # side by side without seeing each other's messages.
    bus_namespace: str = Field("", validation_alias=_env("BUS_NAMESPACE"))
    # Delete queues unused for this long (x-expires); for throwaway test namespaces only.
    bus_queue_expires_ms: int | None = Field(None, validation_alias=_env("BUS_QUEUE_EXPIRES_MS"))

    outbox_poll_interval: float = Field(2.0, validation_alias=_env("OUTBOX_POLL_INTERVAL"))
    outbox_batch_size: int = Field(500, validation_alias=_env("OUTBOX_BATCH_SIZE"))

    shutdown_grace_seconds: float = Field(20.0, validation_alias=_env("SHUTDOWN_GRACE_SECONDS"))

    @property
    def database_name(self) -> str:
        return self.mongodb_database or f"bejo_{self.service_name}"

    @property
    def max_attempts(self) -> int:
        """A message is handled once plus once per retry delay, then parked."""
        return len(self.retry_delays_ms) + 1
