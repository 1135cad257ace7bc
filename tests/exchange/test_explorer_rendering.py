"""The explorer's formatting of money, times, sizes, durations and prices: integer fen
shown as yuan exactly (never through a float), every pricing model with its unit."""

from __future__ import annotations

from typing import Any

import pytest

from exchange.api.explorer.rendering import (
    PageParamError,
    describe_price,
    duration,
    fen,
    int_param,
    size,
    text_param,
    when,
)
from exchange.pricing import MAX_AMOUNT_FEN


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (0, "¥0.00"),
        (1, "¥0.01"),
        (60_000, "¥600.00"),
        (123_456_789, "¥1,234,567.89"),
        (MAX_AMOUNT_FEN, "¥10,000,000,000,000.00"),
        (-5, "-¥0.05"),
        (None, "—"),
    ],
)
def test_fen_is_shown_as_exact_yuan(amount: int | None, shown: str) -> None:
    assert fen(amount) == shown


@pytest.mark.parametrize(
    ("pricing", "shown"),
    [
        ({"model": "free"}, "免费 Free"),
        ({"model": "fixed", "price": 19_900}, "¥199.00 / 每单 per order"),
        (
            {"model": "fixed", "price": 100, "exclusive": True},
            "¥1.00 / 每单 per order · 独家 exclusive",
        ),
        ({"model": "fixed", "price": 100, "seats": 3}, "¥1.00 / 每单 per order · 3 席 seats"),
        (
            {"model": "tiers", "tiers": [{"up_to_rows": None, "price_per_1000_rows": 500}]},
            "¥5.00 / 千行 per 1,000 rows",
        ),
        (
            {
                "model": "tiers",
                "tiers": [
                    {"up_to_rows": 20, "price_per_1000_rows": 5_000_000},
                    {"up_to_rows": None, "price_per_1000_rows": 2_000_000},
                ],
            },
            "¥50,000.00 / 千行 per 1,000 rows (分档 tiered)",
        ),
        (
            {"model": "subscription", "price_per_period": 99_900, "period_days": 30,
             "max_periods": 12},
            "¥999.00 / 30 天 days (订阅 subscription, ≤ 12 期 periods)",
        ),
    ],
)  # fmt: skip
def test_every_pricing_model_reads_with_its_unit(pricing: dict[str, Any], shown: str) -> None:
    assert describe_price(pricing) == shown


def test_times_sizes_and_durations() -> None:
    assert when(0) == "1970-01-01 00:00:00 UTC"
    assert when(1_767_225_600_999) == "2026-01-01 00:00:00 UTC"
    assert size(1023) == "1,023 B" and size(1024) == "1.0 KiB" and size(5 << 30) == "5.0 GiB"
    assert duration(86_400) == "1 天 d" and duration(7_200) == "2 小时 h"
    assert duration(90) == "90 秒 s" and duration(120) == "2 分钟 min"


@pytest.mark.parametrize("value", ["-1", "1.5", "1e3", "0x10", "٣", "²", "1" * 17, " 1", "abc"])
def test_integer_parameters_are_plain_ascii_digits(value: str) -> None:
    with pytest.raises(PageParamError):
        int_param(value, "before", low=0, high=10**16)


def test_parameters_in_and_out_of_range() -> None:
    assert int_param(None, "n", low=0, high=5) is None and int_param("", "n", low=0, high=5) is None
    assert int_param("5", "n", low=0, high=5) == 5
    with pytest.raises(PageParamError):
        int_param("6", "n", low=0, high=5)
    assert (
        text_param("  ", "q", max_length=3) is None
        and text_param(" ab ", "q", max_length=4) == "ab"
    )
    for bad in ("abcd", "a\x00"):
        with pytest.raises(PageParamError):
            text_param(bad, "q", max_length=3)
