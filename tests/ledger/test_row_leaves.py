"""ledger.row_leaves: the bytes of one row, per format."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pytest

from ledger.row_leaves import SAFE_INTEGER, canonical_row, canonical_value, text_row_bytes


@pytest.mark.parametrize(
    ("raw", "row"),
    [
        (b"a,b\n", b"a,b"),
        (b"a,b\r\n", b"a,b"),
        (b"a,b\r", b"a,b"),
        (b"a,b", b"a,b"),
        (b'1,"two\r\nlines"\r\n', b'1,"two\r\nlines"'),  # only the record's own terminator
        (b"a\n\n", b"a\n"),  # one terminator, not all trailing newlines
        (b"\n", b""),
    ],
)
def test_text_row_bytes_drop_one_terminator(raw: bytes, row: bytes) -> None:
    assert text_row_bytes(raw) == row


CANONICAL_VALUES: list[tuple[str, Any, Any]] = [
    ("null", None, None),
    ("booleans", True, True),
    ("text", "重庆", "重庆"),
    ("safe integer", SAFE_INTEGER, SAFE_INTEGER),
    ("negative safe integer", -SAFE_INTEGER, -SAFE_INTEGER),
    ("integer beyond 2**53 is text", 2**60, str(2**60)),
    ("float", 0.5, 0.5),
    ("NaN", float("nan"), "NaN"),
    ("infinity", float("inf"), "Infinity"),
    ("negative infinity", float("-inf"), "-Infinity"),
    ("decimal keeps its scale", decimal.Decimal("1.10"), "1.10"),
    ("date", dt.date(2025, 1, 2), "2025-01-02"),
    ("datetime", dt.datetime(2025, 1, 2, 3, 4, 5), "2025-01-02T03:04:05"),
    (
        "aware datetime",
        dt.datetime(2025, 1, 2, 3, 4, tzinfo=dt.timezone(dt.timedelta(hours=8))),
        "2025-01-02T03:04:00+08:00",
    ),
    ("time", dt.time(8, 30), "08:30:00"),
    ("duration", dt.timedelta(hours=25), "1 day, 1:00:00"),
    ("bytes are base64", b"\x00\x01", "AAE="),
    ("nested", {"k": [1, (2, b"\xff")]}, {"k": [1, [2, "/w=="]]}),
]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(v, e) for _, v, e in CANONICAL_VALUES],
    ids=[d for d, _, _ in CANONICAL_VALUES],
)
def test_canonical_values(value: Any, expected: Any) -> None:
    assert canonical_value(value) == expected


def test_canonical_row_is_rfc8785() -> None:
    row = {"z": 1.0, "a": "x", "m": None, "big": 2**63 - 1, "f": 1e21}
    assert canonical_row(row) == (b'{"a":"x","big":"9223372036854775807","f":1e+21,"m":null,"z":1}')
    assert canonical_row({"b": 1, "a": 2}) == canonical_row({"a": 2, "b": 1})


def test_values_without_a_canonical_form_are_refused() -> None:
    with pytest.raises(TypeError, match="no canonical JSON form for a set"):
        canonical_row({"s": {1, 2}})
