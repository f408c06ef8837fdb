"""Prometheus metrics of the gateway (default registry, served at /metrics).

With several worker processes (`GATEWAY_WORKERS`), each has its own registry and a scrape reaches
one of them: scrape each pod's workers through their own port, or run one worker per pod.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from .routing import UPSTREAMS

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
REQUEST_LATENCY = Histogram(
    "bejo_gateway_request_duration_seconds",
    "Latency of requests through the gateway, by upstream (or `gateway` for its own endpoints) and status",
    ["upstream", "status"],
    buckets=_BUCKETS,
)
ROUTE_LATENCY = Histogram(
    "bejo_gateway_route_duration_seconds",
    "Latency of requests through the gateway by method, route template (ids replaced by {id}) and status class",
    ["method", "route", "status_class"],
    buckets=_BUCKETS,
)
RATE_LIMITED = Counter("bejo_gateway_rate_limited_total", "Requests refused with 429", ["client_kind"])
UPSTREAM_ERRORS = Counter(
    "bejo_gateway_upstream_errors_total", "Upstream failures by upstream and kind (connect/timeout/protocol)",
    ["upstream", "kind"],
)  # fmt: skip
# Failure series exist from the start at 0, so an alert on their rate sees data before the first failure.
for _upstream in UPSTREAMS:
    for _kind in ("connect", "timeout", "protocol"):
        UPSTREAM_ERRORS.labels(_upstream, _kind)
for _client_kind in ("anonymous", "subject"):
    RATE_LIMITED.labels(_client_kind)

# Every literal segment of the services' routes; any other segment is an id. A fixed vocabulary
# keeps the `route` label's values few whatever paths clients send.
_LITERALS = frozenset(
    [
        "api",
        "v1",
        "catalog",
        "feed",
        "stats",
        "categories",
        "notifications",
        "contact",
        "read",
        "ocds",
        "releases",
        "orders",
        "accept",
        "approve",
        "cancel",
        "history",
        "receive",
        "reject",
        "ship",
        "payments",
        "callbacks",
        "snap",
        "charge",
        "ledger",
        "refund",
        "va",
        "products",
        "promotions",
        "providers",
        "suspend",
        "verify",
        "sandbox",
        "pay",
        "webhooks",
        "deliveries",
        "redeliver",
        "gateway",
        "openapi.json",
        "asyncapi.json",
        "docs",
        "healthz",
        "readyz",
        "metrics",
    ]
)
_MAX_SEGMENTS = 8
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(path: str) -> str:
    """`/api/v1/orders/ORD-123/approve` → `/api/v1/orders/{id}/approve`; bounded whatever the path."""
    segments = [s for s in path.split("/") if s]
    if len(segments) > _MAX_SEGMENTS:
        return "/{too_deep}"
    return "/" + "/".join(s if s in _LITERALS else "{id}" for s in segments)


# Children are looked up once per label set: `.labels()` on every request is measurable at 10k req/s.
_latency_children: dict[tuple[str, int], Histogram] = {}
_route_children: dict[tuple[str, str, str], Histogram] = {}


def observe(upstream: str, status: int, seconds: float, method: str = "GET", path: str = "/") -> None:
    child = _latency_children.get((upstream, status))
    if child is None:
        child = _latency_children[(upstream, status)] = REQUEST_LATENCY.labels(upstream, str(status))
    child.observe(seconds)
    key = (method if method in _KNOWN_METHODS else "OTHER", route_template(path), f"{status // 100}xx")
    route_child = _route_children.get(key)
    if route_child is None:
        route_child = _route_children[key] = ROUTE_LATENCY.labels(*key)
    route_child.observe(seconds)


def upstream_error(upstream: str, kind: str) -> None:
    UPSTREAM_ERRORS.labels(upstream, kind).inc()


def rate_limited(anonymous: bool) -> None:
    RATE_LIMITED.labels("anonymous" if anonymous else "subject").inc()
