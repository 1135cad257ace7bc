"""Describe a dataset file for a listing: format, SM3 digest, size, rows, schema, sample.

:func:`describe_file` reads the file ONCE, as a stream: the bytes go through
SM3 (the digest the listing commits, over the exact file bytes) and, for the
text formats, through the parser on their way. Memory stays bounded whatever
the file's size: the sample is the first ``sample_rows`` rows, the schema one
small state per column, and a single line (CSV record line or JSON Lines
object) may not exceed :data:`MAX_LINE_CHARS` (a file without newlines is not
read whole into memory to find out; a CSV field is at most :func:`csv.field_size_limit`
characters, 131,072 by default).

Formats (``format=None`` picks one from the file name's suffix):

* ``csv`` / ``tsv`` (``.csv``, ``.tsv``): :mod:`csv` with a header row, UTF-8
  (a BOM is dropped; ``encoding=`` for others, e.g. ``"gb18030"``). Blank lines
  are skipped. A record whose field count differs from the header's is an
  error naming its line (:class:`RaggedRowError`): a description that silently
  guessed would commit the exchange to a schema the data does not have.
* ``jsonl`` (``.jsonl``, ``.ndjson``): one JSON object per line; the columns are
  the union of the keys in order of first appearance. A line that is not a JSON
  object is an error naming its line.
* ``parquet`` (``.parquet``, ``.pq``): the schema and row count from the file's
  metadata (pyarrow), the sample from the first row group. Without pyarrow the
  format stays ``parquet`` with digest and size only.
* anything else is ``binary``: digest and size only.

Types: each column's type widens as values arrive, from the narrowest that fits
every non-empty value: ``integer`` → ``number`` → ``string``; ``boolean``
(``true``/``false``, any case); ``date`` (ISO ``YYYY-MM-DD``) → ``datetime``
(ISO with a time, optional fraction and offset) → ``string``. Mixing kinds
that do not widen into each other gives ``string`` (in JSON Lines, where values
carry their own types, ``json`` unless both sides are text). Integers with a
leading zero (``007``, postcodes, IDs) are text. Empty CSV cells and JSON
``null`` are missing values and do not change a type; a column with no value at
all is ``string``. JSON arrays and objects are ``json``; Parquet adds
``binary``.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import decimal
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Literal

from ledger.sm3 import SM3Hasher, sm3_file

__all__ = [
    "FORMATS",
    "MAX_LINE_CHARS",
    "DatasetDescription",
    "DatasetError",
    "DatasetFormatError",
    "RaggedRowError",
    "describe_file",
    "detect_format",
]

Format = Literal["csv", "tsv", "jsonl", "parquet", "binary"]
FORMATS: Final[tuple[str, ...]] = ("csv", "tsv", "jsonl", "parquet", "binary")

MAX_LINE_CHARS: Final = 16 << 20
"""Longest line (characters) a text format may have: bounds memory on files without
newlines. Also the largest CSV field."""

_CHUNK: Final = 1 << 20
_SAFE_INTEGER: Final = 2**53 - 1

_SUFFIXES: Final[dict[str, Format]] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}

_LISTING_FORMAT: Final[dict[str, str]] = {
    "csv": "csv",
    "tsv": "tsv",
    "jsonl": "jsonl",
    "parquet": "parquet",
    "binary": "other",
}
_LISTING_TYPE: Final[dict[str, str]] = {"number": "decimal"}
"""Description types that the listing API names differently (others are the same)."""


class DatasetError(Exception):
    """The file cannot be described (unreadable, or not what its format says)."""


class DatasetFormatError(DatasetError):
    """The content does not parse as the format (``line`` names where, when known)."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)


class RaggedRowError(DatasetFormatError):
    """A CSV record has more or fewer fields than the header."""


@dataclass(frozen=True, slots=True)
class DatasetDescription:
    """What :func:`describe_file` found. ``sm3`` is the lowercase hex digest of the
    exact file bytes; ``row_count``, ``schema`` (``[{"name", "type"}]``) and
    ``sample`` (the first rows, values typed by the column's type; numbers of CSV
    files keep their exact text) are ``None`` when the format has none (binary)."""

    format: Format
    sm3: str
    byte_size: int
    row_count: int | None
    schema: list[dict[str, str]] | None
    sample: list[dict[str, Any]] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "sm3": self.sm3,
            "byte_size": self.byte_size,
            "row_count": self.row_count,
            "schema": self.schema,
            "sample": self.sample,
        }

    def to_listing_fields(self) -> dict[str, Any]:
        """The listing fields this file determines (``content_digest``, ``byte_size``,
        ``row_count``, ``format``, ``columns``, ``sample_rows``), in the API's terms:
        ``number`` is ``decimal``, ``binary`` files are format ``other`` with one
        ``binary`` column ``content`` and no rows; sample values the API does not take
        (floats, integers beyond ±(2**53-1), arrays, objects) become text."""
        if self.schema is None:
            columns = [{"name": "content", "type": "binary"}]
        else:
            columns = [
                {"name": c["name"], "type": _LISTING_TYPE.get(c["type"], c["type"])}
                for c in self.schema
            ]
        sample = [
            {name: _listing_sample_value(value) for name, value in row.items()}
            for row in self.sample or []
        ]
        return {
            "content_digest": self.sm3,
            "byte_size": self.byte_size,
            "row_count": self.row_count or 0,
            "format": _LISTING_FORMAT[self.format],
            "columns": columns,
            "sample_rows": sample,
        }


def _listing_sample_value(value: Any) -> str | int | bool | None:
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return value if -_SAFE_INTEGER <= value <= _SAFE_INTEGER else str(value)
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def detect_format(path: str | Path) -> Format:
    """The format its suffix names (case-insensitive), else ``binary``."""
    return _SUFFIXES.get(Path(path).suffix.lower(), "binary")


def describe_file(
    path: str | Path,
    *,
    format: str | None = None,
    sample_rows: int = 5,
    encoding: str = "utf-8",
    progress: Callable[[int], None] | None = None,
) -> DatasetDescription:
    """Describe ``path`` in one streamed pass (see the module doc for the rules).

    ``format`` forces one of :data:`FORMATS`; ``encoding`` applies to CSV/TSV;
    ``progress`` is called with the number of bytes read after each chunk.
    Raises :class:`DatasetFormatError` (with the line) when the content does not
    parse as its format, :class:`DatasetError` for an unreadable file or a bad
    argument, ``FileNotFoundError``/``IsADirectoryError``/``PermissionError``
    (as :class:`OSError`) when it cannot be opened.
    """
    path = Path(path)
    chosen: Format
    if format is None:
        chosen = detect_format(path)
    elif format in FORMATS:
        chosen = format  # type: ignore[assignment]
    else:
        raise DatasetError(f"unknown format {format!r}; one of {', '.join(FORMATS)}")
    if sample_rows < 0:
        raise DatasetError("sample_rows is at least 0")
    if path.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(path))
    if chosen == "parquet":
        return _describe_parquet(path, sample_rows, progress)
    with open(path, "rb") as handle:
        reader = _HashingReader(handle, progress)
        if chosen in ("csv", "tsv"):
            columns, rows, sample = _scan_csv(
                reader, "\t" if chosen == "tsv" else ",", encoding, sample_rows
            )
        elif chosen == "jsonl":
            columns, rows, sample = _scan_jsonl(reader, sample_rows)
        else:
            reader.drain()
            return DatasetDescription(chosen, reader.hexdigest(), reader.size, None, None, None)
        reader.drain()
    return DatasetDescription(
        chosen,
        reader.hexdigest(),
        reader.size,
        rows,
        [{"name": c.name, "type": c.type} for c in columns],
        sample,
    )


# --------------------------------------------------------------------------- streaming


class _HashingReader(io.RawIOBase):
    """A raw stream over ``handle`` that feeds every byte it hands out to SM3, so the
    digest is of exactly the bytes read, whatever reads them (text decoder, csv)."""

    def __init__(self, handle: IO[bytes], progress: Callable[[int], None] | None) -> None:
        super().__init__()
        self._handle = handle
        self._hasher = SM3Hasher()
        self._progress = progress
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._handle.read(min(len(view), _CHUNK))
        n = len(data)
        view[:n] = data
        if n:
            self._hasher.update(data)
            self.size += n
            if self._progress is not None:
                self._progress(n)
        return n

    def drain(self) -> None:
        """Read (and hash) whatever the parser left: the digest covers the whole file."""
        while self.read(_CHUNK):
            pass

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()


def _bounded_lines(text: IO[str]) -> Iterator[str]:
    """Lines of ``text``, refusing one longer than :data:`MAX_LINE_CHARS`."""
    number = 0
    while line := text.readline(MAX_LINE_CHARS + 1):
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise DatasetFormatError(
                f"longer than {MAX_LINE_CHARS} characters (is this really text?)", line=number
            )
        yield line


# --------------------------------------------------------------------------- types

_INTEGER = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
_NUMBER = re.compile(r"[+-]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?"
)
_BOOLEANS: Final = {"true": True, "false": False}

_NUMERIC: Final = ("integer", "number")
_TEMPORAL: Final = ("date", "datetime")
_TEXTUAL: Final = frozenset({"string", "date", "datetime"})


def _text_type(value: str) -> str:
    """The narrowest type of a non-empty CSV cell."""
    if _INTEGER.fullmatch(value):
        return "integer"
    if _NUMBER.fullmatch(value):
        return "number"
    if value.lower() in _BOOLEANS:
        return "boolean"
    return _temporal_type(value) or "string"


def _temporal_type(value: str) -> str | None:
    if len(value) == 10 and _DATE.fullmatch(value):
        try:
            _dt.date.fromisoformat(value)
        except ValueError:
            return None
        return "date"
    if _DATETIME.fullmatch(value):
        try:
            _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return "datetime"
    return None


def _widen(current: str | None, new: str, fallback: str) -> str:
    """The narrowest type holding both ``current`` and ``new`` values."""
    if current is None or current == new:
        return new
    for chain in (_NUMERIC, _TEMPORAL):
        if current in chain and new in chain:
            return chain[max(chain.index(current), chain.index(new))]
    if current in _TEXTUAL and new in _TEXTUAL:
        return "string"
    return fallback


@dataclass(slots=True)
class _Column:
    name: str
    kind: str | None = None  # None: no value seen yet
    fallback: str = "string"

    def see(self, kind: str) -> None:
        self.kind = _widen(self.kind, kind, self.fallback)

    @property
    def type(self) -> str:
        return self.kind or "string"


# --------------------------------------------------------------------------- CSV


def _scan_csv(
    raw: _HashingReader, delimiter: str, encoding: str, sample_rows: int
) -> tuple[list[_Column], int, list[dict[str, Any]]]:
    if encoding.replace("_", "-").lower() in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # drop a BOM
    try:
        text = io.TextIOWrapper(io.BufferedReader(raw, _CHUNK), encoding=encoding, newline="")
    except LookupError:
        raise DatasetError(f"unknown encoding {encoding!r}") from None
    reader = csv.reader(_bounded_lines(text), delimiter=delimiter, strict=True)
    columns: list[_Column] = []
    samples: list[list[str]] = []
    rows = 0
    try:
        header = _first_record(reader)
        if header is None:
            return [], 0, []
        columns = [_Column(name) for name in _column_names(header)]
        width = len(columns)
        for record in reader:
            if not record:
                continue  # a blank line
            if len(record) != width:
                raise RaggedRowError(
                    f"{len(record)} fields, the header has {width}", line=reader.line_num
                )
            rows += 1
            for column, cell in zip(columns, record, strict=True):
                if cell != "":
                    column.see(_text_type(cell))
            if len(samples) < sample_rows:
                samples.append(record)
    except csv.Error as exc:
        raise DatasetFormatError(f"not valid CSV: {exc}", line=reader.line_num) from None
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(
            f"not {encoding} text ({exc.reason}); pass the file's encoding, or format binary",
            line=reader.line_num + 1,
        ) from None
    finally:
        text.detach().detach()  # leave the raw reader open for drain()
    sample = [
        {
            column.name: _typed_cell(cell, column.type)
            for column, cell in zip(columns, r, strict=True)
        }
        for r in samples
    ]
    return columns, rows, sample


def _first_record(reader: Any) -> list[str] | None:
    for record in reader:
        if record:
            return list(record)
    return None


def _column_names(header: list[str]) -> list[str]:
    """Header names, stripped; blanks become ``column_N`` and repeats get ``_2``, ``_3``…
    (a sample row is a dict: two columns cannot share a name)."""
    names: list[str] = []
    seen: set[str] = set()
    for position, raw in enumerate(header, start=1):
        base = raw.strip() or f"column_{position}"
        name, suffix = base, 2
        while name in seen:
            name, suffix = f"{base}_{suffix}", suffix + 1
        seen.add(name)
        names.append(name)
    return names


def _typed_cell(cell: str, kind: str) -> Any:
    if cell == "":
        return None
    if kind == "integer":
        return int(cell)
    if kind == "boolean":
        return _BOOLEANS[cell.lower()]
    return cell  # numbers keep their exact text; dates stay ISO text


# --------------------------------------------------------------------------- JSON Lines


def _json_type(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return _temporal_type(value) or "string"
    return "json"


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _scan_jsonl(
    raw: _HashingReader, sample_rows: int
) -> tuple[list[_Column], int, list[dict[str, Any]]]:
    buffered = io.BufferedReader(raw, _CHUNK)
    columns: dict[str, _Column] = {}
    sample: list[dict[str, Any]] = []
    rows = 0
    number = 0
    try:
        while line := buffered.readline(MAX_LINE_CHARS + 1):
            number += 1
            if len(line) > MAX_LINE_CHARS:
                raise DatasetFormatError(
                    f"longer than {MAX_LINE_CHARS} bytes (is this really JSON Lines?)",
                    line=number,
                )
            if number == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if not line.strip():
                continue
            try:
                obj = json.loads(line.decode("utf-8"), parse_constant=_no_constants)
            except UnicodeDecodeError as exc:
                raise DatasetFormatError(f"not UTF-8 ({exc.reason})", line=number) from None
            except ValueError as exc:
                raise DatasetFormatError(f"not JSON: {exc}", line=number) from None
            if not isinstance(obj, dict):
                raise DatasetFormatError(
                    f"expected a JSON object, got {type(obj).__name__}", line=number
                )
            rows += 1
            for key, value in obj.items():
                column = columns.get(key)
                if column is None:
                    column = columns[key] = _Column(key, fallback="json")
                kind = _json_type(value)
                if kind is not None:
                    column.see(kind)
            if len(sample) < sample_rows:
                sample.append(obj)
    finally:
        buffered.detach()
    ordered = list(columns.values())
    filled = [{c.name: row.get(c.name) for c in ordered} for row in sample]
    return ordered, rows, filled


# --------------------------------------------------------------------------- Parquet


def _describe_parquet(
    path: Path, sample_rows: int, progress: Callable[[int], None] | None
) -> DatasetDescription:
    digest = sm3_file(path, progress=progress).hex()
    size = path.stat().st_size
    try:
        import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        return DatasetDescription("parquet", digest, size, None, None, None)
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError subclasses
        raise DatasetFormatError(f"not a Parquet file: {exc}") from None
    try:
        schema = parquet.schema_arrow
        columns = [{"name": f.name, "type": _arrow_type(f.type)} for f in schema]
        sample: list[dict[str, Any]] = []
        if sample_rows and parquet.metadata.num_row_groups:
            batches = parquet.iter_batches(batch_size=sample_rows, row_groups=[0])
            batch = next(iter(batches), None)
            if batch is not None:
                sample = [
                    {k: _plain(v) for k, v in row.items()}
                    for row in batch.to_pylist()[:sample_rows]
                ]
        rows = int(parquet.metadata.num_rows)
    except Exception as exc:
        raise DatasetFormatError(f"unreadable Parquet file: {exc}") from None
    finally:
        parquet.close()
    return DatasetDescription("parquet", digest, size, rows, columns, sample)


def _arrow_type(arrow: Any) -> str:
    import pyarrow.types as t  # type: ignore[import-untyped, unused-ignore]

    checks: tuple[tuple[Callable[[Any], bool], str], ...] = (
        (t.is_boolean, "boolean"),
        (t.is_integer, "integer"),
        (t.is_floating, "number"),
        (t.is_decimal, "number"),
        (t.is_date, "date"),
        (t.is_timestamp, "datetime"),
        (t.is_string, "string"),
        (t.is_large_string, "string"),
        (t.is_binary, "binary"),
        (t.is_large_binary, "binary"),
        (t.is_fixed_size_binary, "binary"),
        (t.is_nested, "json"),
        (t.is_dictionary, "string"),
    )
    for check, name in checks:
        if check(arrow):
            return name
    return "string"


def _plain(value: Any) -> Any:
    """A JSON-ready sample value (dates as ISO text, decimals as their text, bytes base64)."""
    if isinstance(value, (_dt.date, _dt.datetime, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
