"""Configuration of the gateway (environment variables prefixed GATEWAY_, plus the shared JWT_*/LOG_* ones)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from bejo_kit.settings import KitSettings


class GatewaySettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", populate_by_name=True)

    service_name: str = "gateway"
    http_port: int = 8080

    # Upstream base URLs: localhost ports locally, Kubernetes service DNS names in deploy/k8s.
    catalog_url: str = "http://127.0.0.1:8081"
    orders_url: str = "http://127.0.0.1:8082"
    payments_url: str = "http://127.0.0.1:8083"
    notifications_url: str = "http://127.0.0.1:8084"

    # Connection pool shared by every upstream (one keep-alive ClientSession per replica).
    pool_size: int = Field(512, ge=1)
    pool_size_per_upstream: int = Field(256, ge=1)
    keepalive_seconds: float = Field(30.0, gt=0)
    # A refused or unreachable upstream must answer 503 quickly: keep the connect timeout short.
    connect_timeout_seconds: float = Field(1.0, gt=0)
    # Whole upstream exchange, headers and body.
    upstream_timeout_seconds: float = Field(30.0, gt=0)
    # Extra attempts after a connection error, for idempotent methods only.
    upstream_retries: int = Field(1, ge=0, le=5)
    max_body_bytes: int = Field(1024 * 1024, ge=1)

    # Token bucket per subject (or per client IP when anonymous): `rate` tokens a second, `burst` at most.
    rate_limit_per_second: float = Field(20.0, gt=0)
    rate_limit_burst: int = Field(60, ge=1)
    rate_limit_max_clients: int = Field(100_000, ge=1)
    # Peers whose X-Forwarded-For is believed (an ingress or load balancer); CIDRs or addresses.
    trusted_proxies: list[str] = Field(default_factory=list)

    cors_origins: list[str] = Field(default_factory=lambda: ["http://localhost:3000", "http://127.0.0.1:3000"])
    cors_max_age_seconds: int = 600

    # Responses smaller than this are not worth compressing.
    gzip_min_bytes: int = Field(1024, ge=0)

    openapi_cache_seconds: float = Field(30.0, ge=0)
    # /readyz and the merged OpenAPI document ask each upstream with this timeout.
    probe_timeout_seconds: float = Field(1.0, gt=0)
    # False: ready while at least one upstream answers (a down service gives fast 503s on its routes,
    # and taking every gateway replica out of rotation would turn one outage into a total one).
    ready_requires_all_upstreams: bool = False

    access_log: bool = True

    def upstream_urls(self) -> dict[str, str]:
        return {
            "catalog": self.catalog_url.rstrip("/"),
            "orders": self.orders_url.rstrip("/"),
            "payments": self.payments_url.rstrip("/"),
            "notifications": self.notifications_url.rstrip("/"),
        }
