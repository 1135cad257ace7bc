"""Per-key token buckets: how often one participant may do something.

Each key has a bucket of ``burst`` tokens that refills at ``rate`` tokens a
second; an action costing ``cost`` tokens goes ahead when the bucket holds
them (or, for a cost above ``burst``, when the bucket is full: it then runs
into debt, so the long-run rate still holds). Otherwise :meth:`TokenBuckets.take`
says how long to wait, and nothing is spent.

The buckets live in the memory of one process: with ``n`` API worker
processes a key may go ``n`` times as fast, one share per worker it happens to
reach. That bounds abuse, which is the point; an exact global limit would need
shared state (a database row per key and request) the hot path does without.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from fastapi.responses import JSONResponse

from exchange.errors import ExchangeError, error_body

__all__ = [
    "RateLimitedError",
    "TokenBuckets",
    "admit",
    "rate_limited_response",
    "retry_after_seconds",
]

_PRUNE_AT = 10_000
"""Buckets kept before the full ones (which are as good as absent) are dropped."""


class TokenBuckets:
    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, as of)

    def take(self, key: str, cost: int = 1) -> float:
        """Spend ``cost`` tokens of ``key``'s bucket and return 0.0, or return the
        seconds until it can (> 0; nothing is spent then)."""
        if cost < 1:
            raise ValueError(f"cost must be >= 1, got {cost}")
        with self._lock:
            now = self._clock()
            tokens, then = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            needed = min(cost, self.burst)
            if tokens < needed:
                self._buckets[key] = (tokens, now)
                return (needed - tokens) / self.rate
            self._buckets[key] = (tokens - cost, now)
            if len(self._buckets) > _PRUNE_AT:
                self._prune(now)
            return 0.0

    def _prune(self, now: float) -> None:
        full = [
            key
            for key, (tokens, then) in self._buckets.items()
            if tokens + (now - then) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]


def retry_after_seconds(wait: float) -> int:
    """A ``Retry-After`` value (whole seconds, at least 1) for a wait of ``wait`` s."""
    return max(1, math.ceil(wait))


class RateLimitedError(ExchangeError):
    """Too many requests from one key (429); ``retry_after`` whole seconds to wait,
    which the response carries as ``Retry-After``."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def admit(buckets: TokenBuckets, key: str, doing: str, cost: int = 1) -> None:
    """Spend ``cost`` of ``key``'s allowance, or raise :class:`RateLimitedError`
    ("key <key> <doing>; retry in <n> s") with nothing spent."""
    wait = buckets.take(key, cost)
    if wait > 0:
        seconds = retry_after_seconds(wait)
        raise RateLimitedError(f"key {key} {doing}; retry in {seconds} s", seconds)


def rate_limited_response(exc: RateLimitedError) -> JSONResponse:
    """The 429 answer of ``exc``, with its ``Retry-After``."""
    return JSONResponse(
        error_body(exc.code, exc.message),
        status_code=exc.status,
        headers={"Retry-After": str(exc.retry_after)},
    )
