"""Configuration of the catalog service (environment variables prefixed CATALOG_, plus the shared ones)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from bejo_kit.settings import KitSettings


class CatalogSettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="CATALOG_", extra="ignore", populate_by_name=True)

    service_name: str = "catalog"
    http_port: int = 8081
    # How often each replica reads the change feed into its search model (seconds).
    feed_tail_interval: float = 0.2
    # How often the replica holding the sequencer lease looks for changes written by others
    # (its own writes wake it at once), and how long the lease outlives a silent holder.
    feed_sequence_interval: float = 0.2
    feed_lease_seconds: float = 10.0
    # Publish the feed to the `catalog.sync` exchange (one replica at a time, under a lease).
    sync_publish: bool = True
