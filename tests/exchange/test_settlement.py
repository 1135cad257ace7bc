"""Settlement arithmetic: the split always sums exactly; refunds round for the buyer."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.pricing import MAX_AMOUNT_FEN
from exchange.settlement import (
    BASIS_POINTS,
    PLATFORM,
    SettlementError,
    apportion,
    refund_unused,
    split,
)

A, B, C = "aa" * 32, "bb" * 32, "cc" * 32


def test_simple_split() -> None:
    assert split(10_000, {A: 7_000, B: 3_000}, 500) == {A: 6_650, B: 2_850, PLATFORM: 500}


def test_platform_fee_rounds_down() -> None:
    # fee = floor(999 × 250 / 10000) = floor(24.975) = 24
    parts = split(999, {A: 10_000}, 250)
    assert parts == {A: 975, PLATFORM: 24}


def test_largest_remainder_then_key_order() -> None:
    # 100 fen in thirds: 33.33 each; one fen left over, equal remainders → lowest key id.
    parts = split(100, {C: 3_334, B: 3_333, A: 3_333}, 0)
    # exact: C 33.34, B 33.33, A 33.33 → floors 33, 33, 33; remainders C .34 > A = B .33
    assert parts == {A: 33, B: 33, C: 34, PLATFORM: 0}
    tie = split(2, {C: 5_000, A: 2_500, B: 2_500}, 0)
    # exact: C 1, A 0.5, B 0.5 → one fen left, tie A/B → A (lower key id)
    assert tie == {A: 1, B: 0, C: 1, PLATFORM: 0}


def test_zero_amount_and_full_fee() -> None:
    assert split(0, {A: 5_000, B: 5_000}, 300) == {A: 0, B: 0, PLATFORM: 0}
    assert split(77, {A: 10_000}, 10_000) == {A: 0, PLATFORM: 77}


BAD_SPLITS: list[tuple[str, dict[str, Any]]] = [
    ("shares under 10000", {"amount_fen": 10, "shares_bp": {A: 9_999}, "platform_fee_bp": 0}),
    (
        "shares over 10000",
        {"amount_fen": 10, "shares_bp": {A: 9_999, B: 2}, "platform_fee_bp": 0},
    ),
    ("no providers", {"amount_fen": 10, "shares_bp": {}, "platform_fee_bp": 0}),
    ("zero share", {"amount_fen": 10, "shares_bp": {A: 10_000, B: 0}, "platform_fee_bp": 0}),
    (
        "negative share",
        {"amount_fen": 10, "shares_bp": {A: 10_001, B: -1}, "platform_fee_bp": 0},
    ),
    ("float share", {"amount_fen": 10, "shares_bp": {A: 10_000.0}, "platform_fee_bp": 0}),
    ("bool amount", {"amount_fen": True, "shares_bp": {A: 10_000}, "platform_fee_bp": 0}),
    ("float amount", {"amount_fen": 10.0, "shares_bp": {A: 10_000}, "platform_fee_bp": 0}),
    ("negative amount", {"amount_fen": -1, "shares_bp": {A: 10_000}, "platform_fee_bp": 0}),
    (
        "huge amount",
        {"amount_fen": MAX_AMOUNT_FEN + 1, "shares_bp": {A: 10_000}, "platform_fee_bp": 0},
    ),
    ("fee over 100%", {"amount_fen": 10, "shares_bp": {A: 10_000}, "platform_fee_bp": 10_001}),
    ("negative fee", {"amount_fen": 10, "shares_bp": {A: 10_000}, "platform_fee_bp": -1}),
    (
        "platform as provider",
        {"amount_fen": 10, "shares_bp": {PLATFORM: 10_000}, "platform_fee_bp": 0},
    ),
    ("not a key id", {"amount_fen": 10, "shares_bp": {"alice": 10_000}, "platform_fee_bp": 0}),
]


@pytest.mark.parametrize(("desc", "args"), BAD_SPLITS, ids=[c[0] for c in BAD_SPLITS])
def test_bad_split_inputs_are_refused(desc: str, args: dict[str, Any]) -> None:
    with pytest.raises(SettlementError) as caught:
        split(**args)
    assert caught.value.status == 422, desc
    assert caught.value.code == "invalid_settlement"


key_ids = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)


@st.composite
def shares(draw: st.DrawFn) -> dict[str, int]:
    keys = draw(st.lists(key_ids, min_size=1, max_size=12, unique=True))
    # Random cut points of [0, 10000] give positive shares summing to 10000.
    cuts = sorted(
        draw(
            st.sets(
                st.integers(min_value=1, max_value=BASIS_POINTS - 1),
                min_size=len(keys) - 1,
                max_size=len(keys) - 1,
            )
        )
    )
    bounds = [0, *cuts, BASIS_POINTS]
    return {key: bounds[i + 1] - bounds[i] for i, key in enumerate(keys)}


amounts = st.integers(min_value=0, max_value=MAX_AMOUNT_FEN)
fees = st.integers(min_value=0, max_value=BASIS_POINTS)


@given(amounts, shares(), fees)
def test_split_sums_exactly_and_respects_shares(
    amount: int, bp: dict[str, int], fee_bp: int
) -> None:
    parts = split(amount, bp, fee_bp)
    assert sum(parts.values()) == amount
    assert set(parts) == {*bp, PLATFORM}
    assert all(type(v) is int and v >= 0 for v in parts.values())
    fee = parts[PLATFORM]
    assert fee == amount * fee_bp // BASIS_POINTS
    providers = amount - fee
    for key, share in bp.items():
        exact = Fraction(providers * share, BASIS_POINTS)
        assert abs(parts[key] - exact) < 1


@given(amounts, shares(), fees)
def test_split_is_deterministic_whatever_the_key_order(
    amount: int, bp: dict[str, int], fee_bp: int
) -> None:
    reversed_bp = dict(reversed(list(bp.items())))
    assert split(amount, bp, fee_bp) == split(amount, reversed_bp, fee_bp)


@given(amounts, shares(), fees)
def test_a_larger_share_never_gets_less(amount: int, bp: dict[str, int], fee_bp: int) -> None:
    parts = split(amount, bp, fee_bp)
    for a, share_a in bp.items():
        for b, share_b in bp.items():
            if share_a > share_b:
                assert parts[a] >= parts[b]


@given(
    st.integers(min_value=0, max_value=MAX_AMOUNT_FEN),
    st.dictionaries(key_ids, st.integers(min_value=0, max_value=10**12), min_size=1, max_size=8),
)
def test_apportion_sums_and_stays_within_a_fen(total: int, weights: dict[str, int]) -> None:
    if sum(weights.values()) == 0:
        with pytest.raises(SettlementError):
            apportion(total, weights)
        return
    parts = apportion(total, weights)
    assert sum(parts.values()) == total
    denominator = sum(weights.values())
    for key, weight in weights.items():
        assert abs(parts[key] - Fraction(total * weight, denominator)) < 1
        if weight == 0:
            assert parts[key] == 0


def test_claw_back_of_a_refund_follows_what_was_paid() -> None:
    paid = split(10_000, {A: 7_000, B: 3_000}, 500)
    refund = refund_unused(10_000, 0, 30, 10)  # two thirds unused → 6667 (rounded up)
    assert refund == 6_667
    clawed = apportion(refund, paid)
    assert sum(clawed.values()) == refund
    assert all(clawed[k] <= paid[k] for k in paid)


# --------------------------------------------------------------------------- refunds

DAY = 86_400_000


@pytest.mark.parametrize(
    ("revoked_at", "expected"),
    [
        (-5, 3_000),  # (clamped) before the start: everything back
        (0, 3_000),
        (DAY, 2_900),  # 29 of 30 days unused
        (DAY // 3, 2_967),  # 29.666… days unused: 2966.67 → 2967 (buyer's favour)
        (30 * DAY - 1, 1),  # 1 ms unused still refunds a (rounded-up) fen
        (30 * DAY, 0),
        (31 * DAY, 0),
    ],
)
def test_refund_unused_rounds_up(revoked_at: int, expected: int) -> None:
    start = 10 * DAY
    assert refund_unused(3_000, start, start + 30 * DAY, max(0, start + revoked_at)) == expected


@given(
    st.integers(min_value=0, max_value=MAX_AMOUNT_FEN),
    st.integers(min_value=0, max_value=2**40),
    st.integers(min_value=1, max_value=2**40),
    st.integers(min_value=0, max_value=2**41),
)
def test_refund_properties(amount: int, start: int, length: int, revoked: int) -> None:
    end = start + length
    refund = refund_unused(amount, start, end, revoked)
    assert type(refund) is int
    assert 0 <= refund <= amount
    used = min(max(revoked, start), end) - start
    exact = Fraction(amount * (length - used), length)
    assert exact <= refund < exact + 1
    # Revoking later never refunds more.
    assert refund_unused(amount, start, end, revoked + 1) <= refund


def test_refund_refuses_bad_periods() -> None:
    with pytest.raises(SettlementError):
        refund_unused(100, 10, 10, 5)
    with pytest.raises(SettlementError):
        refund_unused(100, 10, 5, 5)
    with pytest.raises(SettlementError):
        refund_unused(100.0, 0, 10, 5)  # type: ignore[arg-type]
    with pytest.raises(SettlementError):
        refund_unused(-1, 0, 10, 5)
