"""Configuration of the payments service (environment variables prefixed PAYMENTS_, plus the shared ones)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from bejo_kit.settings import KitSettings


class PaymentsSettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="PAYMENTS_", extra="ignore", populate_by_name=True)

    service_name: str = "payments"
    http_port: int = 8083
