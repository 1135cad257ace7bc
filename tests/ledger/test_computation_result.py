"""The answer's encoding: deterministic bytes, strict parsing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from ledger.computation.result import ResultTable
from ledger.records import MAX_SAFE_INTEGER, RecordFormatError, canonical_json


def test_values_encode_deterministically_and_round_trip() -> None:
    when = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    table = ResultTable.of(
        ["district", "month", "avg_t", "n", "big", "exact", "at", "none"],
        [["北碚区", 3, 18.53, 12, 2**60, Decimal("1.50"), when, None]],
    )
    assert table.rows == (
        (
            "北碚区",
            3,
            "18.53",
            12,
            "1152921504606846976",
            "1.50",
            "2025-03-01T00:00:00+00:00",
            None,
        ),
    )
    encoded = table.to_bytes()
    assert encoded == ResultTable.of(table.columns, [list(r) for r in table.rows]).to_bytes()
    assert ResultTable.from_bytes(encoded) == table
    assert float(str(table.rows[0][2])) == 18.53
    assert len(table.sm3_hex()) == 64


@pytest.mark.parametrize(
    "data",
    [
        b'{"columns":["a"],"rows":[[1.5]],"version":1}',
        b'{"columns":["a"],"rows":[[1,2]],"version":1}',
        b'{"columns":["a"],"rows":[[1]],"version":2}',
        b'{"version":1,"columns":["a"],"rows":[[1]]}',  # not canonical (key order)
        b'{"columns":["a"],"rows":[[[1]]],"version":1}',
    ],
)
def test_malformed_or_non_canonical_answers_are_refused(data: bytes) -> None:
    with pytest.raises(RecordFormatError):
        ResultTable.from_bytes(data)


def test_non_finite_or_unknown_values_are_not_encoded() -> None:
    with pytest.raises(ValueError, match="nan"):
        ResultTable.of(["a"], [[float("nan")]])
    with pytest.raises(ValueError, match="bytes"):
        ResultTable.of(["a"], [[b"raw"]])


def test_the_encoding_is_rfc_8785_for_every_kind_of_plain_cell() -> None:
    texts = [
        "",
        'quote " and backslash \\',
        "\b\f\n\r\t\x00\x01\x1f",
        "\x7f DEL, \u2028 and \u2029, é, 北碚区, 🌧",
        "</script>",
    ]
    integers = [0, -1, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER]
    rows = tuple(
        (text, n, flag, None) for text in texts for n in integers for flag in (True, False)
    )
    table = ResultTable(("text", "n", "flag", "é\n"), rows)
    assert table.to_bytes() == canonical_json(table.to_dict())
    assert ResultTable.from_bytes(table.to_bytes()) == table
    assert ResultTable(("a",), ()).to_bytes() == b'{"columns":["a"],"rows":[],"version":1}'


@pytest.mark.parametrize(
    "cell",
    [1.5, MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, "lone \ud800 surrogate", b"raw"],
)
def test_a_table_built_by_hand_with_what_json_records_cannot_hold_is_not_encoded(
    cell: object,
) -> None:
    table = ResultTable(("a", "b"), (("fine", cell),))  # type: ignore[arg-type]
    with pytest.raises(RecordFormatError) as caught:
        table.to_bytes()
    assert caught.value.path == "rows[0][1]"
