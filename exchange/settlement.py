"""Settlement arithmetic: revenue split and pro-rata refunds, in integer fen only.

Rules (also in ``docs/money.md``):

* **Platform fee** = ``floor(amount × platform_fee_bp / 10000)``: the fee is
  rounded *down*; the fraction of a fen goes to the providers.
* **Providers' portion** ``P = amount − fee`` is divided by the providers'
  shares (basis points, summing to exactly 10,000) with the *largest
  remainder* method (Hamilton): each provider first gets
  ``floor(P × share / 10000)``; the ``L`` fen left over (``L`` < number of
  providers) go one each to the ``L`` providers with the largest remainders
  ``P × share mod 10000``, ties broken by ascending key id. So the parts sum
  to ``amount`` exactly, none is negative, and each provider's part differs
  from its exact rational share ``P × share / 10000`` by less than 1 fen.
* **Refund on revocation** of a subscription =
  ``ceil(amount × unused_ms / (end_ms − start_ms))`` with
  ``unused_ms = end_ms − clamp(revoked_at_ms, start_ms, end_ms)``: rounded *up*,
  in the buyer's favour (the provider revoked; the buyer did not choose to
  stop). Revoked before the start → the whole amount; at or after the end → 0.
* A refund of an order that was already settled is clawed back from the
  recipients in proportion to what each was paid: :func:`apportion` with the
  settlement as the weights (same largest-remainder rule).

Functions raise :class:`SettlementError` (422 ``invalid_settlement``) for
inputs outside these rules; they never return floats.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from exchange.errors import ExchangeError
from exchange.pricing import MAX_AMOUNT_FEN
from ledger.protocol.accounts import PLATFORM_ACCOUNT

__all__ = [
    "BASIS_POINTS",
    "PLATFORM",
    "SettlementError",
    "apportion",
    "refund_unused",
    "split",
]

BASIS_POINTS: Final = 10_000
PLATFORM: Final = PLATFORM_ACCOUNT
"""The platform's key in :func:`split`'s result (cannot clash with a key id): the
account its fee is credited to."""
MAX_RECIPIENTS: Final = 100

_RECIPIENT: Final = re.compile(r"[0-9a-f]{64}")


class SettlementError(ExchangeError):
    """Settlement inputs out of range: shares not summing to 10,000, negative
    amounts, an inverted period, …"""

    status = 422
    code = "invalid_settlement"


def _check_int(value: object, name: str, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettlementError(f"{name} must be an integer, got {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise SettlementError(f"{name} must be in [{minimum}, {maximum}], got {value}")
    return value


def apportion(total: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Divide ``total`` fen in proportion to non-negative integer ``weights``.

    Largest-remainder method: floors first, then one fen each to the largest
    remainders, ties by ascending key. The parts sum to ``total`` exactly and
    each is within 1 fen (strictly) of ``total × weight / Σ weights``. At
    least one weight must be positive.
    """
    _check_int(total, "total", 0, MAX_AMOUNT_FEN)
    if not weights:
        raise SettlementError("nothing to apportion to")
    for key, weight in weights.items():
        if not isinstance(key, str) or not key:
            raise SettlementError("recipient keys must be non-empty strings")
        _check_int(weight, f"weight of {key}", 0, MAX_AMOUNT_FEN)
    denominator = sum(weights.values())
    if denominator == 0:
        raise SettlementError("the weights sum to zero")
    parts: dict[str, int] = {}
    remainders: list[tuple[int, str]] = []
    for key, weight in weights.items():
        quotient, remainder = divmod(total * weight, denominator)
        parts[key] = quotient
        remainders.append((remainder, key))
    left = total - sum(parts.values())
    # Largest remainder first; equal remainders by ascending key.
    remainders.sort(key=lambda item: (-item[0], item[1]))
    for _remainder, key in remainders[:left]:
        parts[key] += 1
    return parts


def split(amount_fen: int, shares_bp: Mapping[str, int], platform_fee_bp: int) -> dict[str, int]:
    """Split ``amount_fen`` between the platform fee and the providers' shares.

    ``shares_bp`` maps provider key ids (64 lowercase hex) to basis points,
    each ≥ 1, summing to exactly 10,000; ``platform_fee_bp`` is in
    ``[0, 10000]``. Returns every provider's part and the platform's under
    :data:`PLATFORM` (also when 0); the values sum to ``amount_fen`` exactly.
    """
    _check_int(amount_fen, "amount", 0, MAX_AMOUNT_FEN)
    _check_int(platform_fee_bp, "platform fee", 0, BASIS_POINTS)
    if not shares_bp:
        raise SettlementError("a listing needs at least one provider share")
    if len(shares_bp) > MAX_RECIPIENTS:
        raise SettlementError(f"at most {MAX_RECIPIENTS} providers share a listing")
    for key, share in shares_bp.items():
        if not isinstance(key, str) or not _RECIPIENT.fullmatch(key):
            raise SettlementError(f"provider {key!r} is not a key id (64 lowercase hex)")
        _check_int(share, f"share of {key}", 1, BASIS_POINTS)
    total_bp = sum(shares_bp.values())
    if total_bp != BASIS_POINTS:
        raise SettlementError(f"provider shares sum to {total_bp} bp, not {BASIS_POINTS}")
    fee = amount_fen * platform_fee_bp // BASIS_POINTS
    parts = apportion(amount_fen - fee, shares_bp)
    parts[PLATFORM] = fee
    return parts


def refund_unused(amount: int, start_ms: int, end_ms: int, revoked_at_ms: int) -> int:
    """The part of ``amount`` paid for ``[start_ms, end_ms)`` not used by
    ``revoked_at_ms``, rounded up (in the buyer's favour)."""
    _check_int(amount, "amount", 0, MAX_AMOUNT_FEN)
    _check_int(start_ms, "start_ms", 0, 2**53 - 1)
    _check_int(end_ms, "end_ms", 0, 2**53 - 1)
    _check_int(revoked_at_ms, "revoked_at_ms", 0, 2**53 - 1)
    if end_ms <= start_ms:
        raise SettlementError(f"the period is empty or inverted ({start_ms} → {end_ms})")
    revoked = min(max(revoked_at_ms, start_ms), end_ms)
    unused = end_ms - revoked
    return -(-amount * unused // (end_ms - start_ms))
