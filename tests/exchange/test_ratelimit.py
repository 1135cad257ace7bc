"""Per-key token buckets (exchange.ratelimit) on a hand-driven clock."""

from __future__ import annotations

import pytest

from exchange.ratelimit import TokenBuckets, retry_after_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_spends_its_burst_then_waits_for_the_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # one token comes back in 0.5 s
    assert buckets.take("a", 2) == pytest.approx(1.0)  # refused: nothing was spent
    assert buckets.take("b", 3) == 0.0  # another key, its own bucket
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    clock.now += 100
    assert buckets.take("a", 3) == 0.0  # refilled to the burst, no more
    assert buckets.take("a") > 0


def test_a_cost_above_the_burst_goes_ahead_from_a_full_bucket_and_is_owed() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1.0, burst=2, clock=clock)
    assert buckets.take("a", 5) == 0.0
    assert buckets.take("a") == pytest.approx(4.0)  # 2 - 5 = -3 tokens: 4 s until one
    clock.now += 3
    assert buckets.take("a", 5) == pytest.approx(2.0)  # needs a full bucket again
    clock.now += 2
    assert buckets.take("a", 5) == 0.0


def test_arguments_and_retry_after() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBuckets(rate=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        TokenBuckets(rate=1, burst=0)
    with pytest.raises(ValueError, match="cost"):
        TokenBuckets(rate=1, burst=1).take("a", 0)
    assert [retry_after_seconds(w) for w in (0.001, 1.0, 1.2, 59.9)] == [1, 1, 2, 60]
