"""Configuration of the gateway (environment variables prefixed GATEWAY_, plus the shared JWT_*/LOG_* ones)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

import orjson
from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from bejo_kit.settings import KitSettings

# A list of upstream base URLs: from the environment either comma-separated
# (`http://10.0.0.5:8081,http://10.0.0.6:8081`) or a JSON list; `NoDecode` hands the raw string to
# `_url_list` instead of letting pydantic-settings insist on JSON.
UrlList = Annotated[list[str], NoDecode]


def base_url(value: str) -> str:
    """`scheme://host[:port]` of an upstream replica, normalised; ValueError saying what is wrong."""
    text = value.strip()
    if not text or any(c.isspace() for c in text):
        raise ValueError(f"{value!r} is empty or contains whitespace")
    if ";" in text:
        raise ValueError(f"{value!r} contains ';': separate URLs with commas")
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"{value!r} must start with http:// or https://")
    if not parts.hostname:
        raise ValueError(f"{value!r} has no host")
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError(f"{value!r} has an invalid port") from None
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{value!r} must not carry credentials")
    if parts.path not in ("", "/") or parts.query or parts.fragment or text.endswith(("?", "#")):
        raise ValueError(f"{value!r} must be a base URL (scheme, host and port only; the gateway adds the path)")
    return f"{parts.scheme.lower()}://{parts.netloc}"


class GatewaySettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", populate_by_name=True)

    service_name: str = "gateway"
    http_port: int = 8080
    # Worker processes sharing the port through SO_REUSEPORT (the kernel spreads connections over
    # them). Each keeps its own token cache, rate-limit buckets and metrics registry, so a client
    # gets up to `workers` x the rate limit, as with replicas. One per core is the useful maximum.
    workers: int = Field(1, ge=1, le=64)

    # Upstream base URLs, one per replica (GATEWAY_CATALOG_URLS=http://a:8081,http://b:8081 or a JSON
    # list): localhost ports locally (`REPLICAS=2 make run` passes two each), one Kubernetes service
    # DNS name each in deploy/k8s (the Service balances over its pods). Requests go round-robin.
    catalog_urls: UrlList = Field(default_factory=lambda: ["http://127.0.0.1:8081"])
    orders_urls: UrlList = Field(default_factory=lambda: ["http://127.0.0.1:8082"])
    payments_urls: UrlList = Field(default_factory=lambda: ["http://127.0.0.1:8083"])
    notifications_urls: UrlList = Field(default_factory=lambda: ["http://127.0.0.1:8084"])
    # Passive health: a replica that refuses connections (or does not accept one within the connect
    # timeout) is passed over for this long, unless every replica of its upstream is down.
    upstream_down_seconds: float = Field(5.0, ge=0)

    # Connection pool shared by every upstream (one keep-alive ClientSession per gateway process);
    # the per-upstream limit applies to each replica (host and port).
    pool_size: int = Field(512, ge=1)
    pool_size_per_upstream: int = Field(256, ge=1)
    keepalive_seconds: float = Field(30.0, gt=0)
    # A refused or unreachable upstream must answer 503 quickly: keep the connect timeout short.
    connect_timeout_seconds: float = Field(1.0, gt=0)
    # Whole upstream exchange, headers and body.
    upstream_timeout_seconds: float = Field(30.0, gt=0)
    # Extra attempts, on the next replica, after a connection error: for idempotent methods, or for
    # any method when the connection was never made (so the request was never sent).
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

    @field_validator("catalog_urls", "orders_urls", "payments_urls", "notifications_urls", mode="before")
    @classmethod
    def _url_list(cls, value: Any, info: ValidationInfo) -> list[str]:
        env = f"GATEWAY_{(info.field_name or '').upper()}"
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = orjson.loads(text)
                except orjson.JSONDecodeError as exc:
                    raise ValueError(f"{env}: not a valid JSON list ({exc})") from None
            else:
                # Comma-separated; blanks around commas and a trailing comma are forgiven.
                value = [item for item in (part.strip() for part in text.split(",")) if item]
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            raise ValueError(f"{env}: expected URLs, comma-separated or as a JSON list of strings")
        urls: list[str] = []
        for index, item in enumerate(value, start=1):
            try:
                url = base_url(item)
            except ValueError as exc:
                raise ValueError(f"{env}: URL {index}: {exc}") from None
            if url in urls:
                raise ValueError(f"{env}: {url} is listed twice")
            urls.append(url)
        if not urls:
            raise ValueError(f"{env}: at least one upstream URL is required")
        return urls

    def upstream_urls(self) -> dict[str, list[str]]:
        """Base URLs (no trailing slash) of each upstream's replicas, in the order configured."""
        return {
            "catalog": list(self.catalog_urls),
            "orders": list(self.orders_urls),
            "payments": list(self.payments_urls),
            "notifications": list(self.notifications_urls),
        }
