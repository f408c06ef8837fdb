"""Configuration of the catalog service (environment variables prefixed CATALOG_, plus the shared ones)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from bejo_kit.settings import KitSettings


class CatalogSettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="CATALOG_", extra="ignore", populate_by_name=True)

    service_name: str = "catalog"
    http_port: int = 8081
