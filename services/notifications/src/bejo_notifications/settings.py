"""Configuration of the notifications service (environment variables prefixed NOTIFICATIONS_, plus the shared ones)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
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
    email_max_attempts: int = 8

    # Webhooks.
    webhook_timeout_seconds: float = 5.0
    webhook_max_attempts: int = 8  # per delivery; then it is marked failed (redeliver by hand)
    # A subscription is disabled after this many failed attempts in a row (any success resets it).
    webhook_disable_after_failures: int = 15
    webhook_concurrency: int = 16  # deliveries attempted at once per replica

    # Retries of e-mails and webhook deliveries: exponential from the base, capped, with jitter.
    retry_backoff_base_seconds: float = 1.0
    retry_backoff_max_seconds: float = 600.0

    # Background work: how often the due work is polled when nothing local wakes the loops (work
    # queued by other replicas, retries falling due), and how long a claim holds before another
    # replica may take the item over (longer than one SMTP send or webhook POST).
    delivery_poll_interval: float = 1.0
    delivery_lease_seconds: float = 60.0
    email_concurrency: int = 4  # e-mails sent at once per replica
