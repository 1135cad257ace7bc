"""The anchoring policy: a pure function of sizes and times."""

from __future__ import annotations

import pytest

from exchange.anchoring.policy import AnchorPolicy, decide

POLICY = AnchorPolicy(interval_s=60, size_threshold=100)
T = 1_700_000_000_000


@pytest.mark.parametrize(
    ("desc", "latest", "last_size", "last_at", "now", "due", "reason"),
    [
        ("no checkpoint", None, None, None, T, False, "no checkpoint yet"),
        ("first checkpoint goes at once", 1, None, None, T, True, "first anchor"),
        ("latest already anchored", 10, 10, T, T + 10**9, False, "already anchored"),
        ("older than the last anchor", 8, 10, T, T + 10**9, False, "already anchored"),
        ("below both", 99, 0, T, T + 59_999, False, "99 leaves waiting < 100"),
        ("threshold reached", 110, 10, T, T, True, "100 leaves waiting >= threshold 100"),
        ("interval reached", 11, 10, T, T + 60_000, True, "60.0s since the last anchor"),
        ("clock went backwards", 11, 10, T, T - 5_000, False, "-5.0s < 60s"),
    ],
)
def test_decide(
    desc: str,
    latest: int | None,
    last_size: int | None,
    last_at: int | None,
    now: int,
    due: bool,
    reason: str,
) -> None:
    decision = decide(
        POLICY,
        latest_size=latest,
        last_anchored_size=last_size,
        last_anchored_at_ms=last_at,
        now_ms=now,
    )
    assert decision.due is due, desc
    assert reason in decision.reason, (desc, decision.reason)


def test_interval_zero_anchors_every_new_checkpoint() -> None:
    policy = AnchorPolicy(interval_s=0, size_threshold=10**9)
    assert decide(policy, latest_size=2, last_anchored_size=1, last_anchored_at_ms=T, now_ms=T).due


@pytest.mark.parametrize(("interval", "threshold"), [(-1, 1), (0, 0), (1, -5)])
def test_invalid_policies_are_refused(interval: float, threshold: int) -> None:
    with pytest.raises(ValueError, match="must be >="):
        AnchorPolicy(interval_s=interval, size_threshold=threshold)
