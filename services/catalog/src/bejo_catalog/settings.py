"""Configuration of the catalog service (environment variables prefixed CATALOG_, plus the shared ones)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from bejo_kit.settings import KitSettings


class CatalogSettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="CATALOG_", extra="ignore", populate_by_name=True)

    service_name: str = "catalog"
    http_port: int = 8081
    # Products are spread over this many collections so a write scans ~1k documents on FerretDB.
    # Fixed for the life of a database: changing it needs a migration.
    product_partitions: int = 32
    # How often each replica reads the change feed for other replicas' writes (seconds).
    feed_tail_interval: float = 0.2
    # Changes per page document of the feed (a full sync reads one document per page).
    feed_page_size: int = 1000
    # A change whose feed entry is still missing after this long is re-appended from the store.
    feed_recovery_after: float = 30.0
    feed_recovery_interval: float = 10.0
    # Publish the feed to the `catalog.sync` exchange (one replica at a time, under a lease).
    sync_publish: bool = True
