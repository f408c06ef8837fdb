"""Configuration of the notifications service (environment variables prefixed NOTIFICATIONS_, plus the shared ones)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from bejo_kit.settings import KitSettings


class NotificationsSettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_", extra="ignore", populate_by_name=True)

    service_name: str = "notifications"
    http_port: int = 8084
