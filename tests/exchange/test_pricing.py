"""Pricing models: strict validation and integer prices (graduated tiers, ceiling on the total)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.pricing import (
    MAX_AMOUNT_FEN,
    MAX_ROWS,
    FixedPricing,
    FreePricing,
    PricingError,
    SubscriptionPricing,
    TermsError,
    TieredPricing,
    parse_pricing,
    price,
)

TIERS = {
    "model": "tiers",
    "tiers": [
        {"up_to_rows": 10_000, "price_per_1000_rows": 500},
        {"up_to_rows": 100_000, "price_per_1000_rows": 300},
        {"up_to_rows": None, "price_per_1000_rows": 101},
    ],
}
SUBSCRIPTION = {
    "model": "subscription",
    "price_per_period": 99_900,
    "period_days": 30,
    "max_periods": 12,
}


def test_each_model_parses() -> None:
    assert isinstance(parse_pricing({"model": "free"}), FreePricing)
    fixed = parse_pricing({"model": "fixed", "price": 19_900, "seats": 5})
    assert isinstance(fixed, FixedPricing)
    assert fixed.price == 19_900
    assert fixed.seat_limit == 5
    assert isinstance(parse_pricing(TIERS), TieredPricing)
    sub = parse_pricing(SUBSCRIPTION)
    assert isinstance(sub, SubscriptionPricing)
    assert sub.seat_limit is None
    exclusive = parse_pricing({"model": "fixed", "price": 1, "exclusive": True})
    assert exclusive.seat_limit == 1


def test_round_trips_through_json() -> None:
    for data in ({"model": "free"}, {"model": "fixed", "price": 0}, TIERS, SUBSCRIPTION):
        parsed = parse_pricing(data)
        assert parse_pricing(parsed.model_dump(mode="json")) == parsed


BAD: list[tuple[str, Any, str]] = [
    ("float price", {"model": "fixed", "price": 100.0}, "pricing.price"),
    ("bool price", {"model": "fixed", "price": True}, "pricing.price"),
    ("string price", {"model": "fixed", "price": "100"}, "pricing.price"),
    ("negative price", {"model": "fixed", "price": -1}, "pricing.price"),
    ("price too large", {"model": "fixed", "price": MAX_AMOUNT_FEN + 1}, "pricing.price"),
    ("missing price", {"model": "fixed"}, "pricing.price"),
    ("unknown field", {"model": "free", "discount": 5}, "pricing.discount"),
    ("unknown model", {"model": "auction"}, "pricing"),
    ("no model", {"price": 5}, "pricing"),
    ("not an object", [1, 2], "pricing"),
    ("no tiers", {"model": "tiers", "tiers": []}, "pricing.tiers"),
    (
        "last tier bounded",
        {"model": "tiers", "tiers": [{"up_to_rows": 10, "price_per_1000_rows": 1}]},
        "last tier must be unbounded",
    ),
    (
        "middle tier unbounded",
        {
            "model": "tiers",
            "tiers": [
                {"up_to_rows": None, "price_per_1000_rows": 1},
                {"up_to_rows": None, "price_per_1000_rows": 1},
            ],
        },
        "only the last tier",
    ),
    (
        "bounds not ascending",
        {
            "model": "tiers",
            "tiers": [
                {"up_to_rows": 100, "price_per_1000_rows": 1},
                {"up_to_rows": 100, "price_per_1000_rows": 1},
                {"up_to_rows": None, "price_per_1000_rows": 1},
            ],
        },
        "strictly ascend",
    ),
    (
        "zero bound",
        {
            "model": "tiers",
            "tiers": [
                {"up_to_rows": 0, "price_per_1000_rows": 1},
                {"up_to_rows": None, "price_per_1000_rows": 1},
            ],
        },
        "up_to_rows",
    ),
    (
        "float tier rate",
        {"model": "tiers", "tiers": [{"up_to_rows": None, "price_per_1000_rows": 1.5}]},
        "price_per_1000_rows",
    ),
    (
        "tier bound missing",
        {"model": "tiers", "tiers": [{"price_per_1000_rows": 1}]},
        "up_to_rows",
    ),
    (
        "too many tiers",
        {
            "model": "tiers",
            "tiers": [{"up_to_rows": i + 1, "price_per_1000_rows": 1} for i in range(40)]
            + [{"up_to_rows": None, "price_per_1000_rows": 1}],
        },
        "pricing.tiers",
    ),
    ("zero period", {**SUBSCRIPTION, "period_days": 0}, "period_days"),
    ("zero max periods", {**SUBSCRIPTION, "max_periods": 0}, "max_periods"),
    (
        "subscription total too large",
        {**SUBSCRIPTION, "price_per_period": MAX_AMOUNT_FEN, "max_periods": 2},
        "exceeds",
    ),
    ("bool seats", {"model": "free", "seats": True}, "seats"),
    ("zero seats", {"model": "free", "seats": 0}, "seats"),
    ("string exclusive", {"model": "free", "exclusive": "yes"}, "exclusive"),
    ("int exclusive", {"model": "free", "exclusive": 1}, "exclusive"),
    ("exclusive with seats", {"model": "free", "exclusive": True, "seats": 3}, "one seat"),
]


@pytest.mark.parametrize(("desc", "data", "expected"), BAD, ids=[case[0] for case in BAD])
def test_bad_pricing_is_refused(desc: str, data: Any, expected: str) -> None:
    with pytest.raises(PricingError) as caught:
        parse_pricing(data)
    assert expected in caught.value.message, desc
    assert caught.value.status == 422
    assert caught.value.code == "invalid_pricing"


def test_free_and_fixed() -> None:
    assert price(parse_pricing({"model": "free"}), rows=None, periods=None) == 0
    assert (
        price(parse_pricing({"model": "fixed", "price": 19_900}), rows=None, periods=None) == 19_900
    )


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (1, 1),  # 1 × 500 / 1000 = 0.5 → rounds up to 1 fen
        (2, 1),  # exactly 1 fen
        (3, 2),  # 1.5 → 2
        (1000, 500),
        (10_000, 5000),  # last row of tier 1
        (10_001, 5001),  # 5000 + 0.3 → 5001
        (10_010, 5003),  # 5000 + 3 exactly
        (100_000, 5000 + 27_000),  # last row of tier 2
        (100_001, 32_001),  # 32000 + 0.101 → 32001
        (1_100_000, 32_000 + 101_000),
    ],
)
def test_graduated_tiers_at_boundaries(rows: int, expected: int) -> None:
    assert price(parse_pricing(TIERS), rows=rows, periods=None) == expected


def test_tiers_round_once_on_the_total_not_per_tier() -> None:
    pricing = parse_pricing(
        {
            "model": "tiers",
            "tiers": [
                {"up_to_rows": 1, "price_per_1000_rows": 500},
                {"up_to_rows": None, "price_per_1000_rows": 500},
            ],
        }
    )
    # 0.5 fen + 0.5 fen = 1 fen (rounding per tier would give 2).
    assert price(pricing, rows=2, periods=None) == 1


def test_subscription_periods() -> None:
    pricing = parse_pricing(SUBSCRIPTION)
    assert price(pricing, rows=None, periods=1) == 99_900
    assert price(pricing, rows=None, periods=12) == 12 * 99_900


TERMS_BAD: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("rows for fixed", {"model": "fixed", "price": 1}, {"rows": 5, "periods": None}),
    ("periods for free", {"model": "free"}, {"rows": None, "periods": 1}),
    ("no rows for tiers", TIERS, {"rows": None, "periods": None}),
    ("zero rows", TIERS, {"rows": 0, "periods": None}),
    ("too many rows", TIERS, {"rows": MAX_ROWS + 1, "periods": None}),
    ("bool rows", TIERS, {"rows": True, "periods": None}),
    ("float rows", TIERS, {"rows": 5.0, "periods": None}),
    ("periods for tiers", TIERS, {"rows": 5, "periods": 1}),
    ("no periods", SUBSCRIPTION, {"rows": None, "periods": None}),
    ("zero periods", SUBSCRIPTION, {"rows": None, "periods": 0}),
    ("beyond max periods", SUBSCRIPTION, {"rows": None, "periods": 13}),
    ("rows for subscription", SUBSCRIPTION, {"rows": 5, "periods": 1}),
]


@pytest.mark.parametrize(("desc", "data", "terms"), TERMS_BAD, ids=[c[0] for c in TERMS_BAD])
def test_terms_the_model_cannot_price_are_refused(
    desc: str, data: dict[str, Any], terms: dict[str, Any]
) -> None:
    with pytest.raises(TermsError) as caught:
        price(parse_pricing(data), **terms)
    assert caught.value.status == 422, desc
    assert caught.value.code == "invalid_terms"


def test_computed_price_above_the_maximum_is_refused() -> None:
    pricing = parse_pricing(
        {"model": "tiers", "tiers": [{"up_to_rows": None, "price_per_1000_rows": MAX_AMOUNT_FEN}]}
    )
    assert price(pricing, rows=1000, periods=None) == MAX_AMOUNT_FEN
    with pytest.raises(PricingError, match="exceeds"):
        price(pricing, rows=1001, periods=None)


# --------------------------------------------------------------------------- properties

rates = st.integers(min_value=0, max_value=100_000)


@st.composite
def tiered(draw: st.DrawFn) -> dict[str, Any]:
    bounds = sorted(
        draw(st.sets(st.integers(min_value=1, max_value=10_000_000), min_size=0, max_size=6))
    )
    tiers: list[dict[str, int | None]] = [
        {"up_to_rows": b, "price_per_1000_rows": draw(rates)} for b in bounds
    ]
    tiers.append({"up_to_rows": None, "price_per_1000_rows": draw(rates)})
    return {"model": "tiers", "tiers": tiers}


def _exact(data: dict[str, Any], rows: int) -> Fraction:
    """Reference: the exact rational price, row by tier, without shortcuts."""
    total = Fraction(0)
    lower = 0
    for tier in data["tiers"]:
        upper = tier["up_to_rows"]
        top = rows if upper is None else min(rows, upper)
        total += Fraction(max(0, top - lower) * tier["price_per_1000_rows"], 1000)
        if upper is None:
            break
        lower = upper
    return total


row_counts = st.integers(min_value=1, max_value=50_000_000)


@given(tiered(), row_counts)
def test_tier_price_is_the_ceiling_of_the_exact_price(data: dict[str, Any], rows: int) -> None:
    amount = price(parse_pricing(data), rows=rows, periods=None)
    assert type(amount) is int
    exact = _exact(data, rows)
    assert exact <= amount < exact + 1


@given(tiered(), row_counts, row_counts)
def test_tier_price_is_monotonic_in_rows(data: dict[str, Any], a: int, b: int) -> None:
    pricing = parse_pricing(data)
    low, high = sorted((a, b))
    assert price(pricing, rows=low, periods=None) <= price(pricing, rows=high, periods=None)


@given(tiered())
def test_tier_boundaries_price_each_tier_at_its_own_rate(data: dict[str, Any]) -> None:
    # One row past a bound is priced at the next tier's rate, never the previous one's.
    pricing = parse_pricing(data)
    tiers = data["tiers"]
    for i, tier in enumerate(tiers[:-1]):
        bound = tier["up_to_rows"]
        at = _exact(data, bound)
        past = _exact(data, bound + 1)
        assert past - at == Fraction(tiers[i + 1]["price_per_1000_rows"], 1000)
        assert price(pricing, rows=bound + 1, periods=None) >= price(
            pricing, rows=bound, periods=None
        )


@given(
    st.integers(min_value=0, max_value=10**9),
    st.integers(min_value=1, max_value=1200),
    st.data(),
)
def test_subscription_is_periods_times_price(per_period: int, max_periods: int, data: Any) -> None:
    pricing = parse_pricing(
        {
            "model": "subscription",
            "price_per_period": per_period,
            "period_days": 7,
            "max_periods": max_periods,
        }
    )
    periods = data.draw(st.integers(min_value=1, max_value=max_periods))
    assert price(pricing, rows=None, periods=periods) == periods * per_period


@given(st.floats(allow_nan=True) | st.booleans() | st.text() | st.none())
def test_non_integer_prices_are_always_refused(value: Any) -> None:
    with pytest.raises(PricingError):
        parse_pricing({"model": "fixed", "price": value})
