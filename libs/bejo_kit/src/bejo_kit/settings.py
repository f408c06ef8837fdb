"""12-factor configuration: everything comes from the environment, with local defaults.

Shared names (AMQP_URL, MONGODB_URL, JWT_*, LOG_*) are read without a prefix so one `.env`
serves every service; a service's own knobs use its prefix, e.g. `ORDERS_APPROVAL_TIMEOUT`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_JWT_SECRET = "bejo-local-development-secret-change-me"
# An HS256 key shorter than the hash gives less security than the algorithm promises (RFC 7518 3.2).
MIN_JWT_SECRET_BYTES = 32


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

    jwt_secret: str = Field(DEFAULT_JWT_SECRET, validation_alias=_env("JWT_SECRET"))
    jwt_jwks_url: str | None = Field(None, validation_alias=_env("JWT_JWKS_URL"))
    jwt_issuer: str = Field("bejo-local", validation_alias=_env("JWT_ISSUER"))
    jwt_audience: str = Field("bejo", validation_alias=_env("JWT_AUDIENCE"))

    # Consumers: how many unacked messages one replica holds, and the retry ladder before parking.
    # Bounded, like the other counts and intervals below: an out-of-range value must stop the start,
    # not quietly change behaviour (a prefetch of 0 is unlimited to the broker; a batch of 0 is
    # "no limit" to Mongo but "take nothing" to the relay, whose events would then wait for ever).
    prefetch: int = Field(64, ge=1, le=10_000, validation_alias=_env("BUS_PREFETCH"))
    retry_delays_ms: list[Annotated[int, Field(ge=1, le=86_400_000)]] = Field(
        [200, 1000, 5000], max_length=20, validation_alias=_env("BUS_RETRY_DELAYS_MS")
    )

    # Prefix for every exchange and queue name: lets tests (or tenants on a shared broker) run
    # side by side without seeing each other's messages.
    bus_namespace: str = Field("", validation_alias=_env("BUS_NAMESPACE"))
    # Delete queues unused for this long (x-expires); for throwaway test namespaces only.
    bus_queue_expires_ms: int | None = Field(None, ge=1, validation_alias=_env("BUS_QUEUE_EXPIRES_MS"))

    # Full sweep of every outbox collection; local writes wake the relay at once regardless.
    outbox_poll_interval: float = Field(2.0, gt=0, le=300, validation_alias=_env("OUTBOX_POLL_INTERVAL"))
    outbox_batch_size: int = Field(500, ge=1, le=10_000, validation_alias=_env("OUTBOX_BATCH_SIZE"))

    # How often each replica reads its queues' depths for the `bejo_queue_depth` gauge.
    queue_depth_interval: float = Field(15.0, gt=0, le=300, validation_alias=_env("QUEUE_DEPTH_INTERVAL"))

    shutdown_grace_seconds: float = Field(20.0, ge=0, le=600, validation_alias=_env("SHUTDOWN_GRACE_SECONDS"))

    @model_validator(mode="after")
    def _safe_in_production(self) -> Self:
        if self.environment == "production" and (problems := self.production_problems()):
            raise ValueError("refusing to start with BEJO_ENV=production: " + "; ".join(problems))
        return self

    def production_problems(self) -> list[str]:
        """What makes these settings unsafe in production: development defaults anyone can read in
        the source. Services with secrets of their own check those alongside."""
        if self.jwt_jwks_url is not None:  # tokens are verified by the identity provider's keys
            return []
        if self.jwt_secret == DEFAULT_JWT_SECRET:
            return ["JWT_SECRET is the development default; set a secret of your own or JWT_JWKS_URL"]
        if len(self.jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
            return [f"JWT_SECRET is shorter than {MIN_JWT_SECRET_BYTES} bytes"]
        return []

    @property
    def database_name(self) -> str:
        return self.mongodb_database or f"bejo_{self.service_name}"

    @property
    def max_attempts(self) -> int:
        """A message is handled once plus once per retry delay, then parked."""
        return len(self.retry_delays_ms) + 1
