"""Configuration of the notifications service (environment variables prefixed NOTIFICATIONS_, plus the shared ones)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from bejo_kit.settings import KitSettings


class NotificationsSettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_", extra="ignore", populate_by_name=True)

    service_name: str = "notifications"
    http_port: int = 8084

    # Locale of recipients who chose none (audiences such as a provider's official address included).
    default_locale: Literal["id", "en"] = "id"

    # SMTP relay. The defaults point at the local sink (`python -m bejo_notifications.smtp_sink`).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_use_tls: bool = False  # implicit TLS (port 465 style)
    smtp_start_tls: bool = False  # STARTTLS upgrade (port 587 style)
    smtp_timeout_seconds: float = 10.0
    mail_from: str = "bejo <noreply@bejo.local>"
    # Fallback addresses for users who have not registered one with PUT /api/v1/notifications/contact:
    # JSON object `{"<sub>": "<email>"}` in NOTIFICATIONS_USER_EMAILS.
    user_emails: dict[str, str] = Field(default_factory=dict)
    email_max_attempts: int = Field(8, ge=1, le=100)

    # Webhooks.
    # Counts and intervals are bounded: 0 concurrency would leave every delivery pending for ever
    # without a word, and a lease shorter than one attempt lets two replicas send the same item.
    webhook_timeout_seconds: float = Field(5.0, gt=0, le=120)
    # per delivery; then it is marked failed (redeliver by hand)
    webhook_max_attempts: int = Field(8, ge=1, le=100)
    # A subscription is disabled after this many failed attempts in a row (any success resets it).
    webhook_disable_after_failures: int = Field(15, ge=1, le=10_000)
    webhook_concurrency: int = Field(16, ge=1, le=1000)  # deliveries attempted at once per replica

    # Retries of e-mails and webhook deliveries: exponential from the base, capped, with jitter.
    retry_backoff_base_seconds: float = Field(1.0, gt=0)
    retry_backoff_max_seconds: float = Field(600.0, gt=0, le=86_400)

    # Background work: how often the due work is polled when nothing local wakes the loops (work
    # queued by other replicas, retries falling due), and how long a claim holds before another
    # replica may take the item over (longer than one SMTP send or webhook POST).
    delivery_poll_interval: float = Field(1.0, gt=0, le=300)
    delivery_lease_seconds: float = Field(60.0, gt=0)
    email_concurrency: int = Field(4, ge=1, le=1000)  # e-mails sent at once per replica

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.retry_backoff_max_seconds < self.retry_backoff_base_seconds:
            raise ValueError("NOTIFICATIONS_RETRY_BACKOFF_MAX_SECONDS must be at least the base")
        slowest = max(self.webhook_timeout_seconds, self.smtp_timeout_seconds)
        if self.delivery_lease_seconds <= slowest:
            raise ValueError(
                f"NOTIFICATIONS_DELIVERY_LEASE_SECONDS must exceed the slowest attempt ({slowest:g}s): "
                "a claim that runs out mid-attempt lets another replica send the same item"
            )
        return self
