"""Prometheus metrics shared by every service (one process = one service, default registry).

Failure counters get their label sets at start-up (`prepare_*`), so each has a series at 0 from
the first scrape: an alert on `increase(...) > 0` then has data before the first failure.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_LATENCY = Histogram(
    "bejo_http_request_duration_seconds",
    "HTTP request latency by route and status",
    ["method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
MESSAGES_PUBLISHED = Counter("bejo_messages_published_total", "Messages confirmed by the broker", ["type"])
MESSAGES_CONSUMED = Counter("bejo_messages_consumed_total", "Messages handled and acked", ["queue", "type"])
MESSAGES_DUPLICATE = Counter("bejo_messages_duplicate_total", "Redeliveries recognised as already handled", ["queue"])
MESSAGES_RETRIED = Counter("bejo_messages_retried_total", "Failed handlings sent to a retry queue", ["queue"])
MESSAGES_PARKED = Counter("bejo_messages_parked_total", "Messages parked in a dead-letter queue", ["queue"])
CONSUMER_LATENCY = Histogram(
    "bejo_consumer_handling_seconds",
    "Time a consumer took over one message, by queue and outcome (acked, retried, parked)",
    ["queue", "outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
QUEUE_DEPTH = Gauge("bejo_queue_depth", "Messages ready in a work queue or its dead-letter queue", ["queue"])
OUTBOX_BACKLOG = Gauge("bejo_outbox_backlog", "Documents with events not yet published", ["collection"])
OUTBOX_PUBLISHED = Counter("bejo_outbox_published_total", "Events published by the outbox relay", ["collection"])
OUTBOX_FAILED = Counter("bejo_outbox_publish_failures_total", "Outbox publish attempts that failed", ["collection"])


def prepare_queue(queue: str) -> None:
    """Zero series for a consumed queue's failure counters."""
    for counter in (MESSAGES_DUPLICATE, MESSAGES_RETRIED, MESSAGES_PARKED):
        counter.labels(queue)


def prepare_outbox(collection: str) -> None:
    """Zero series for an outbox collection's publish counters and backlog."""
    OUTBOX_FAILED.labels(collection)
    OUTBOX_PUBLISHED.labels(collection)
    OUTBOX_BACKLOG.labels(collection)
