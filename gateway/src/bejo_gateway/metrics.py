"""Prometheus metrics of the gateway (default registry, served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUEST_LATENCY = Histogram(
    "bejo_gateway_request_duration_seconds",
    "Latency of requests through the gateway, by upstream (or `gateway` for its own endpoints) and status",
    ["upstream", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RATE_LIMITED = Counter("bejo_gateway_rate_limited_total", "Requests refused with 429", ["client_kind"])
UPSTREAM_ERRORS = Counter(
    "bejo_gateway_upstream_errors_total", "Upstream failures by upstream and kind (connect/timeout/protocol)",
    ["upstream", "kind"],
)  # fmt: skip

# Children are looked up once per label pair: `.labels()` on every request is measurable at 10k req/s.
_latency_children: dict[tuple[str, int], Histogram] = {}


def observe(upstream: str, status: int, seconds: float) -> None:
    child = _latency_children.get((upstream, status))
    if child is None:
        child = _latency_children[(upstream, status)] = REQUEST_LATENCY.labels(upstream, str(status))
    child.observe(seconds)


def upstream_error(upstream: str, kind: str) -> None:
    UPSTREAM_ERRORS.labels(upstream, kind).inc()


def rate_limited(anonymous: bool) -> None:
    RATE_LIMITED.labels("anonymous" if anonymous else "subject").inc()
