"""Token buckets, one per client key (a token's subject, or an IP when anonymous). Pure: the clock is injected.

Each bucket holds at most `burst` tokens and refills at `rate` tokens a second; a request takes one.
State lives in this process only: with N gateway replicas and no sticky routing a client gets
about N x rate (see docs/gateway.md for the shared-store upgrade path).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int  # the burst: what a full bucket holds
    remaining: int  # whole tokens left after this request
    reset_seconds: int  # until the bucket is full again
    retry_after_seconds: int  # until the next request would be allowed (0 when allowed)

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_seconds)
        return headers


class RateLimiter:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float], max_clients: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_clients = max_clients
        # key -> (tokens, time of last update); insertion order approximates least recently seen.
        self._buckets: dict[str, tuple[float, float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> Verdict:
        now = self._clock()
        state = self._buckets.pop(key, None)
        if state is None:
            tokens = float(self.burst)
            if len(self._buckets) >= self._max_clients:
                self._evict(now)
        else:
            tokens = min(float(self.burst), state[0] + (now - state[1]) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        missing = self.burst - tokens
        return Verdict(
            allowed=allowed,
            limit=self.burst,
            remaining=int(tokens),
            reset_seconds=math.ceil(missing / self.rate),
            retry_after_seconds=0 if allowed else max(1, math.ceil((1.0 - tokens) / self.rate)),
        )

    def _evict(self, now: float) -> None:
        """Forget buckets that have refilled (forgetting them changes nothing); if too few have, the
        least recently seen, which at worst gives those clients a fresh bucket. Freeing a tenth at
        once keeps the scan rare."""
        full_after = self.burst / self.rate
        idle = [key for key, (_, seen) in self._buckets.items() if now - seen >= full_after]
        for key in idle:
            del self._buckets[key]
        target = self._max_clients - max(1, self._max_clients // 10)
        while len(self._buckets) > target:
            del self._buckets[next(iter(self._buckets))]
