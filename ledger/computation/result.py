"""The answer to a computation, as the buyer receives it: a deterministic encoding.

JSON, RFC 8785 canonical (so its SM3 is one value per answer)::

    {"version": 1, "columns": ["district", "avg_t"], "rows": [["北碚区", "18.53"], ...]}

Cell values: ``null``, booleans, integers within ±(2**53 − 1), strings. Everything
else is written as a string: floats as Python's shortest round-trip ``repr``
(``"18.53"``; ``float(s)`` gives the exact value back), larger integers and decimals
in plain digits, dates and timestamps in ISO 8601. Records carry no floats.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from ledger.records import (
    MAX_SAFE_INTEGER,
    Fields,
    RecordFormatError,
    canonical_json,
    parse_json_object,
)
from ledger.sm3 import sm3

__all__ = ["RESULT_VERSION", "Cell", "ResultTable", "encode_cell"]

RESULT_VERSION: Final = 1

Cell = None | bool | int | str

_PLAIN_CELL_TYPES: Final = frozenset({type(None), bool, int, str})


def encode_cell(value: object) -> Cell:
    """One value of an answer in its JSON form (see the module docstring)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if abs(value) <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"an answer holds no {value!r}")
        return repr(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    raise ValueError(f"an answer holds no {type(value).__name__} values")


@dataclass(frozen=True, slots=True)
class ResultTable:
    """Column names and rows of JSON cells. Immutable."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]

    @classmethod
    def of(cls, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> ResultTable:
        """Encode raw values (floats, dates, …) with :func:`encode_cell`."""
        return cls(tuple(columns), tuple(tuple(encode_cell(v) for v in row) for row in rows))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": RESULT_VERSION,
            "columns": list(self.columns),
            "rows": [list(row) for row in self.rows],
        }

    def to_bytes(self) -> bytes:
        """The canonical (RFC 8785) encoding: what is encrypted to the buyer and hashed.

        A table of plain cells (what :meth:`of` and :meth:`from_bytes` make) is written
        by the standard library's JSON encoder in one pass: for null, booleans, safe
        integers and strings, with sorted keys and no spaces, its output is RFC 8785's
        (the same string escapes, UTF-8). Anything else goes through
        :func:`ledger.records.canonical_json`, which refuses what JSON records cannot
        hold, naming where."""
        if self._plain():
            try:
                text = json.dumps(
                    self.to_dict(), ensure_ascii=False, separators=(",", ":"), sort_keys=True
                )
                return text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: refused below
                pass
        return canonical_json(self.to_dict())

    def _plain(self) -> bool:
        if any(type(name) is not str for name in self.columns):
            return False
        for row in self.rows:
            for cell in row:
                if type(cell) is int:
                    if not -MAX_SAFE_INTEGER <= cell <= MAX_SAFE_INTEGER:
                        return False
                elif type(cell) not in _PLAIN_CELL_TYPES:
                    return False
        return True

    def sm3_hex(self) -> str:
        return sm3(self.to_bytes()).hex()

    @classmethod
    def from_bytes(cls, data: bytes) -> ResultTable:
        """Parse :meth:`to_bytes`; raises :class:`RecordFormatError`."""
        f = Fields(
            parse_json_object(data, "computation result"), "", ("version", "columns", "rows")
        )
        if f.integer("version") != RESULT_VERSION:
            raise RecordFormatError("unsupported result version", path="version")
        columns = f.raw("columns")
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise RecordFormatError("expected a list of column names", path="columns")
        rows = f.raw("rows")
        if not isinstance(rows, list):
            raise RecordFormatError("expected a list of rows", path="rows")
        parsed: list[tuple[Cell, ...]] = []
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(columns):
                raise RecordFormatError(f"expected {len(columns)} cells", path=f"rows[{i}]")
            for j, cell in enumerate(row):
                if cell is not None and not isinstance(cell, bool | int | str):
                    raise RecordFormatError(
                        "expected null, a boolean, an integer or a string", path=f"rows[{i}][{j}]"
                    )
            parsed.append(tuple(row))
        table = cls(tuple(columns), tuple(parsed))
        if table.to_bytes() != bytes(data):
            raise RecordFormatError("a computation result must be in its canonical encoding")
        return table
