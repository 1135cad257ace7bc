"""How long a failed delivery waits before its next attempt."""

from __future__ import annotations

import secrets

__all__ = ["retry_delay"]

_RANDOM = secrets.SystemRandom()


def retry_delay(attempts: int, *, base: float, cap: float, jitter: float | None = None) -> float:
    """Seconds to wait after the ``attempts``-th failure in a row (>= 1): ``base``
    doubled per earlier failure, at most ``cap``, times a jitter in [0.5, 1] (drawn
    unless given) so that receivers coming back are not hit by every sender at once."""
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    factor = _RANDOM.uniform(0.5, 1.0) if jitter is None else jitter
    exponent = min(attempts - 1, 64)  # 2**64 * base is past any cap
    return float(min(cap, base * 2.0**exponent) * factor)
