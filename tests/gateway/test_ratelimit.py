"""Token bucket with an injected clock (pure)."""

from __future__ import annotations

import pytest

from bejo_gateway.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_refusal_with_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    remaining = [limiter.take("sub:a") for _ in range(3)]
    assert [v.allowed for v in remaining] == [True, True, True]
    assert [v.remaining for v in remaining] == [2, 1, 0]
    refused = limiter.take("sub:a")
    assert not refused.allowed
    assert refused.retry_after_seconds == 1
    assert refused.headers() == {
        "RateLimit-Limit": "3",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "2",
        "Retry-After": "1",
    }


def test_tokens_refill_at_the_rate_and_never_above_the_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    for _ in range(3):
        limiter.take("k")
    clock.now += 0.5  # one token back
    assert limiter.take("k").allowed
    assert not limiter.take("k").allowed
    clock.now += 3600
    verdicts = [limiter.take("k") for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]


def test_slow_rates_give_long_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=0.1, burst=1, clock=clock)
    assert limiter.take("k").allowed
    refused = limiter.take("k")
    assert refused.retry_after_seconds == 10
    assert "Retry-After" not in limiter.take("other").headers()


def test_clients_have_their_own_buckets() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=Clock())
    assert limiter.take("sub:a").allowed
    assert not limiter.take("sub:a").allowed
    assert limiter.take("sub:b").allowed
    assert limiter.take("ip:127.0.0.1").allowed


def test_memory_is_bounded_and_idle_buckets_go_first() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=2, clock=clock, max_clients=10)
    for i in range(10):
        limiter.take(f"old{i}")
    clock.now += 5  # every old bucket has refilled: forgetting them changes nothing
    limiter.take("busy")
    limiter.take("busy")
    limiter.take("new")
    assert len(limiter) == 2
    assert not limiter.take("busy").allowed  # the busy client kept its (empty) bucket
    for i in range(50):
        limiter.take(f"flood{i}")
    assert len(limiter) <= 10


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1, clock=Clock())
    with pytest.raises(ValueError):
        RateLimiter(rate=1, burst=0, clock=Clock())
