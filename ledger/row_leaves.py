"""What one row of a dataset is, as bytes: the leaves of the dataset's row tree.

A listing version commits to the SM3 Merkle root (RFC 9162, :mod:`ledger.merkle`)
over its dataset's rows, one leaf per row in file order, so that a buyer can
check that the rows delivered are exactly rows ``[a, a + N)``. A row's leaf is
``SM3(0x00 || row bytes)``; the row bytes are, per format:

* **CSV / TSV**: the record's raw bytes as they are in the file, in the
  file's encoding, without the record's line terminator (``\\r\\n``, ``\\n``
  or ``\\r``). A quoted field's line breaks are inside the record and stay.
  The header record is not a row; blank lines are not rows. Records are what
  Python's :mod:`csv` reads (``strict=True``, the format's delimiter) from
  the file split into lines at ``\\n``, ``\\r\\n`` and ``\\r`` — which needs an
  encoding in which the bytes ``\\n`` and ``\\r`` only ever mean those
  characters (UTF-8, GB 18030, GBK, Big5, …; not UTF-16 or UTF-32, whose
  files have no row tree).
* **JSON Lines**: the line's raw bytes without its line terminator
  (``\\r\\n`` or ``\\n``; a last line without one loses a final ``\\r``), and
  without the UTF-8 byte order mark on the first line. Lines of only
  whitespace are not rows.
* **Parquet** (and any row given as decoded values): :func:`canonical_row`,
  the RFC 8785 JSON of the object ``{column: value}`` with each value in its
  canonical JSON form (see there).
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import math
from collections.abc import Mapping
from typing import Any, Final

import rfc8785

__all__ = ["SAFE_INTEGER", "canonical_row", "canonical_value", "text_row_bytes"]

SAFE_INTEGER: Final = 2**53 - 1
"""Largest integer RFC 8785 writes as a number; larger ones are written as text."""


def text_row_bytes(raw: bytes) -> bytes:
    """A CSV record's or JSON Lines line's row bytes: ``raw`` (the record as read,
    terminator included) without its one line terminator."""
    if raw.endswith(b"\r\n"):
        return raw[:-2]
    if raw.endswith((b"\n", b"\r")):
        return raw[:-1]
    return raw


def canonical_value(value: Any) -> Any:
    """The JSON value a decoded cell stands for in :func:`canonical_row`.

    ``None``, booleans, strings and integers within ±(2**53 - 1) are
    themselves; larger integers are their decimal text. Finite floats are
    numbers (RFC 8785 writes the shortest round-trip form: ``1.0`` is ``1``);
    NaN and the infinities are the text ``"NaN"``, ``"Infinity"``,
    ``"-Infinity"``. Decimals are their text (``str``, so ``1.10`` keeps its
    scale); dates, times and datetimes their ISO 8601 text (``isoformat``,
    with the offset when they carry one); durations ``str(timedelta)``; bytes
    standard base64 with padding. Lists and tuples are arrays, mappings
    objects (keys as text). The column's type is fixed by the schema, so text
    standing for a number cannot be confused with text that is text.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if -SAFE_INTEGER <= value <= SAFE_INTEGER else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (_dt.date, _dt.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): canonical_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical_value(v) for v in value]
    raise TypeError(f"no canonical JSON form for a {type(value).__name__} value")


def canonical_row(row: Mapping[str, Any]) -> bytes:
    """Row bytes of a decoded row: RFC 8785 JSON of ``{column: canonical_value}``."""
    return bytes(rfc8785.dumps({str(k): canonical_value(v) for k, v in row.items()}))
