"""The strict JSON text reader (ledger.records.parse_json_text / check_text_depth):
nesting is measured before any parser runs, without recursion, and hostile text
cannot make the measurement itself slow (it used to rescan an unterminated string
from each of its quotes: quadratic, hours for 1 MB)."""

from __future__ import annotations

import json

import pytest

from ledger.records import MAX_TEXT_DEPTH, RecordFormatError, check_text_depth, parse_json_text


def test_depth_up_to_the_limit_parses_and_one_more_is_refused() -> None:
    assert parse_json_text("[" * MAX_TEXT_DEPTH + "]" * MAX_TEXT_DEPTH, "body")
    with pytest.raises(RecordFormatError, match="nested deeper"):
        parse_json_text("[" * (MAX_TEXT_DEPTH + 1) + "]" * (MAX_TEXT_DEPTH + 1), "body")


@pytest.mark.parametrize(
    "text",
    [
        '"' + '\\"' * 500_000,  # one unterminated string of escaped quotes
        '"' * 1_000_001,  # empty strings, then an unterminated one
        '"' + "\\\\" * 499_999 + "\\",  # ends inside an escape
        '["' + "[" * 1_000_000 + '"]',  # brackets inside a string are not nesting
        "[]" * 500_000,
    ],
)
def test_a_megabyte_of_hostile_text_is_measured_without_error(text: str) -> None:
    check_text_depth(text, "body")


def test_nesting_before_an_unterminated_string_still_counts() -> None:
    with pytest.raises(RecordFormatError, match="nested deeper"):
        check_text_depth("[" * 100_000 + '"' + "]" * 10, "body")


def test_duplicates_and_constants_are_refused_and_bad_syntax_is_a_decode_error() -> None:
    with pytest.raises(RecordFormatError, match="duplicate key 'amount'"):
        parse_json_text('{"amount": 999999, "amount": 3}', "body")
    for constant in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(RecordFormatError, match="not valid JSON"):
            parse_json_text(f'{{"x": {constant}}}', "body")
    with pytest.raises(json.JSONDecodeError):
        parse_json_text('{"x": ', "body")
    assert parse_json_text('[1, "a", {"b": null}]', "body") == [1, "a", {"b": None}]
