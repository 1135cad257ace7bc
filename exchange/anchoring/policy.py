"""When to anchor: a pure function of the latest checkpoint, the last anchor and the clock."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AnchorPolicy:
    """Anchor the latest checkpoint once ``interval_s`` passed since the last anchor, or
    as soon as ``size_threshold`` leaves are waiting beyond the last anchored size.

    The very first checkpoint is anchored at once (there is no last anchor to wait from).
    """

    interval_s: float
    size_threshold: int

    def __post_init__(self) -> None:
        if self.interval_s < 0:
            raise ValueError("anchor interval must be >= 0 seconds")
        if self.size_threshold < 1:
            raise ValueError("anchor size threshold must be >= 1 leaf")


@dataclass(frozen=True)
class Decision:
    due: bool
    reason: str


def decide(
    policy: AnchorPolicy,
    *,
    latest_size: int | None,
    last_anchored_size: int | None,
    last_anchored_at_ms: int | None,
    now_ms: int,
) -> Decision:
    """Whether to anchor the checkpoint of ``latest_size`` now, and why (for the report).

    ``last_anchored_size`` / ``last_anchored_at_ms`` describe the largest tree size the
    worker already chose to anchor (``None`` before the first).
    """
    if latest_size is None:
        return Decision(False, "no checkpoint yet")
    waiting = latest_size - (last_anchored_size or 0)
    if waiting <= 0:
        return Decision(False, f"checkpoint {latest_size} is already anchored")
    if last_anchored_at_ms is None:
        return Decision(True, f"first anchor: checkpoint {latest_size}")
    if waiting >= policy.size_threshold:
        return Decision(True, f"{waiting} leaves waiting >= threshold {policy.size_threshold}")
    elapsed_s = (now_ms - last_anchored_at_ms) / 1000
    if elapsed_s >= policy.interval_s:
        return Decision(True, f"{elapsed_s:.1f}s since the last anchor >= {policy.interval_s:g}s")
    return Decision(
        False,
        f"{waiting} leaves waiting < {policy.size_threshold} and "
        f"{elapsed_s:.1f}s < {policy.interval_s:g}s since the last anchor",
    )
