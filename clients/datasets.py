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

Rows: the description also carries ``row_root``, the SM3 Merkle root (RFC 9162)
over the rows, one leaf per row in file order, the row bytes as
:mod:`ledger.row_leaves` defines them (CSV: each record's raw bytes without its
terminator; JSON Lines: each line's; Parquet: RFC 8785 JSON of the row). For
CSV and JSON Lines it is computed in the same pass, as the rows go by, in
O(log n) memory. Parquet is read twice: its bytes for SM3, then its rows
(columnar files are decoded by pyarrow from their own reads). ``row_index=``
writes the tree's index file (:mod:`ledger.row_tree`) in the same pass, so that
:mod:`clients.slices` can cut and prove a slice without rehashing the file. A
CSV file in an encoding whose bytes ``\n``/``\r`` can be part of another
character (UTF-16, UTF-32) has no row tree (``row_root`` is ``None``), as has
a binary file.

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
import codecs
import contextlib
import csv
import datetime as _dt
import decimal
import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Literal

from ledger.row_leaves import canonical_row, text_row_bytes
from ledger.row_tree import DEFAULT_BLOCK_LEVEL, RowTreeBuilder
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
    "parquet_batches",
    "read_parquet_rows",
    "read_text_rows",
]

Format = Literal["csv", "tsv", "jsonl", "parquet", "binary"]
FORMATS: Final[tuple[str, ...]] = ("csv", "tsv", "jsonl", "parquet", "binary")

MAX_LINE_CHARS: Final = 16 << 20
"""Longest line (characters) a text format may have: bounds memory on files without
newlines. Also the largest CSV field."""

_CHUNK: Final = 1 << 20
_BOM: Final = b"\xef\xbb\xbf"
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
    files keep their exact text) are ``None`` when the format has none (binary).
    ``row_root`` is the lowercase hex SM3 Merkle root over the ``row_count`` rows
    (see the module doc), ``None`` when the file has no row tree."""

    format: Format
    sm3: str
    byte_size: int
    row_count: int | None
    schema: list[dict[str, str]] | None
    sample: list[dict[str, Any]] | None
    row_root: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "sm3": self.sm3,
            "byte_size": self.byte_size,
            "row_count": self.row_count,
            "schema": self.schema,
            "sample": self.sample,
            "row_root": self.row_root,
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
    row_index: str | Path | None = None,
    index_block_level: int = DEFAULT_BLOCK_LEVEL,
) -> DatasetDescription:
    """Describe ``path`` in one streamed pass (see the module doc for the rules).

    ``format`` forces one of :data:`FORMATS`; ``encoding`` applies to CSV/TSV;
    ``progress`` is called with the number of bytes read after each chunk.
    ``row_index`` names a file to write the row tree's index to (blocks of
    ``2**index_block_level`` rows), replaced only once the description succeeded;
    a file without a row tree writes none.
    Raises :class:`DatasetFormatError` (with the line) when the content does not
    parse as its format, :class:`DatasetError` for an unreadable file or a bad
    argument, ``FileNotFoundError``/``IsADirectoryError``/``PermissionError``
    (as :class:`OSError`) when it cannot be opened.
    """
    path = Path(path)
    chosen = _chosen_format(path, format)
    if sample_rows < 0:
        raise DatasetError("sample_rows is at least 0")
    if path.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(path))
    with _index_file(row_index) as index:
        tree = RowTreeBuilder(block_level=index_block_level, index=index.stream)
        if chosen == "parquet":
            described = _describe_parquet(path, sample_rows, progress, tree)
            index.discarded = described.row_root is None
            return described
        with open(path, "rb") as handle:
            reader = _HashingReader(handle, progress)
            if chosen in ("csv", "tsv"):
                scan = _scan_csv(reader, _DELIMITERS[chosen], encoding, sample_rows, tree)
            elif chosen == "jsonl":
                scan = _scan_jsonl(reader, sample_rows, tree)
            else:
                reader.drain()
                index.discarded = True
                return DatasetDescription(chosen, reader.hexdigest(), reader.size, None, None, None)
            reader.drain()
        root: str | None = None
        if scan.has_tree:
            root = tree.finish(
                data_size=reader.size,
                data_sm3=bytes.fromhex(reader.hexdigest()),
                header_end=scan.header_end,
            ).hex()
        else:
            index.discarded = True
    return DatasetDescription(
        chosen,
        reader.hexdigest(),
        reader.size,
        scan.rows,
        [{"name": c.name, "type": c.type} for c in scan.columns],
        scan.sample,
        root,
    )


_DELIMITERS: Final[dict[str, str]] = {"csv": ",", "tsv": "\t"}


def _chosen_format(path: Path, format: str | None) -> Format:
    if format is None:
        return detect_format(path)
    if format in FORMATS:
        return format  # type: ignore[return-value]
    raise DatasetError(f"unknown format {format!r}; one of {', '.join(FORMATS)}")


@dataclass(slots=True)
class _IndexOutput:
    """Where an index is being written; ``discarded`` when the file turned out to
    have no row tree."""

    stream: IO[bytes] | None
    discarded: bool = False


@contextlib.contextmanager
def _index_file(target: str | Path | None) -> Iterator[_IndexOutput]:
    """A temporary file beside ``target`` that replaces it when the block succeeds
    (and was not discarded); removed otherwise. No stream for no target."""
    if target is None:
        yield _IndexOutput(None)
        return
    target = Path(target)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with open(fd, "wb") as stream:
            output = _IndexOutput(stream)
            yield output
        if output.discarded:
            os.unlink(temporary)
        else:
            os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@dataclass(frozen=True, slots=True)
class _Scan:
    columns: list[_Column]
    rows: int
    sample: list[dict[str, Any]]
    header_end: int = 0
    has_tree: bool = True


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


_LONE_CR: Final = re.compile(rb"(?<=\r)(?!\n)")


def _ascii_compatible(encoding: str) -> bool:
    """Whether the bytes CR and LF in ``encoding`` only ever mean those characters
    (so that lines can be split, and rows cut, on the bytes)."""
    encoder = codecs.getincrementalencoder(encoding)()
    try:
        encoder.encode("a")  # past any byte order mark
        return encoder.encode('\r\n,\t"') == b'\r\n,\t"'
    except UnicodeError:
        return False


class _CsvRecords:
    """CSV records of a byte stream, each with the raw bytes it was read from.

    The stream is split into lines at LF, CRLF and lone CR (as ``newline=""``
    text does), each line decoded on its own, and :mod:`csv` reads the lines.
    The reader pulls lines one at a time and never reads past the record it
    returns, so the lines pulled since the previous record (:attr:`pieces`,
    which the consumer empties) are exactly this record's bytes. ``position``
    is the byte offset of the stream's start in the file. Without
    ``track_bytes`` (encodings that are not ASCII-compatible) the lines come
    from a text decoder and the pieces stay empty.
    """

    def __init__(
        self,
        stream: IO[bytes],
        *,
        delimiter: str,
        encoding: str,
        position: int = 0,
        track_bytes: bool = True,
    ) -> None:
        self.position = position
        self.encoding = encoding
        self.pieces: list[bytes] = []
        self._text: io.TextIOWrapper | None = None
        if track_bytes:
            lines = self._byte_lines(stream, at_start=position == 0)
        else:
            self._text = io.TextIOWrapper(stream, encoding=encoding, newline="")
            lines = _bounded_lines(self._text)
        self.reader = csv.reader(lines, delimiter=delimiter, strict=True)

    def _byte_lines(self, stream: IO[bytes], *, at_start: bool) -> Iterator[str]:
        name = codecs.lookup(self.encoding).name
        # UTF-8 lines decode on their own (a line never splits a character); other
        # encodings go through their incremental decoder (some carry state)
        decode = (
            bytes.decode
            if name in ("utf-8", "utf-8-sig")
            else codecs.getincrementaldecoder(self.encoding)().decode
        )
        strip_bom = at_start and name == "utf-8-sig"
        limit = 4 * MAX_LINE_CHARS + 4  # 4 bytes a character at most (UTF-8, GB 18030)
        readline, append = stream.readline, self.pieces.append
        number = 0
        while raw := readline(limit + 1):
            if b"\r" in raw and (raw.count(b"\r") > 1 or not raw.endswith(b"\r\n")):
                pieces: Iterable[bytes] = [p for p in _LONE_CR.split(raw) if p]  # lone CRs
            else:
                pieces = (raw,)
            for piece in pieces:
                number += 1
                if len(piece) > limit:
                    raise self._too_long(number)
                if strip_bom:
                    strip_bom = False
                    line = decode(piece[3:] if piece.startswith(_BOM) else piece)
                else:
                    line = decode(piece)
                if len(line) > MAX_LINE_CHARS:
                    raise self._too_long(number)
                append(piece)
                yield line

    @staticmethod
    def _too_long(number: int) -> DatasetFormatError:
        return DatasetFormatError(
            f"longer than {MAX_LINE_CHARS} characters (is this really text?)", line=number
        )

    @contextlib.contextmanager
    def parse_errors(self) -> Iterator[None]:
        """Turn the parser's errors into :class:`DatasetFormatError` naming the line."""
        try:
            yield
        except csv.Error as exc:
            raise DatasetFormatError(f"not valid CSV: {exc}", line=self.reader.line_num) from None
        except UnicodeDecodeError as exc:
            raise DatasetFormatError(
                f"not {self.encoding} text ({exc.reason}); pass the file's encoding, or "
                "format binary",
                line=self.reader.line_num + 1,
            ) from None

    def __iter__(self) -> Iterator[tuple[int, bytes, list[str]]]:
        """``(start, raw bytes, fields)`` per record; blank lines are records of no
        fields."""
        pieces = self.pieces
        with self.parse_errors():
            for record in self.reader:
                raw = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                pieces.clear()
                start = self.position
                self.position += len(raw)
                yield start, raw, record

    def detach(self) -> None:
        """Leave the underlying stream open (and unread past what was parsed)."""
        if self._text is not None:
            self._text.detach()


def _csv_encoding(encoding: str) -> str:
    if encoding.replace("_", "-").lower() in ("utf-8", "utf8"):
        return "utf-8-sig"  # drop a BOM
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DatasetError(f"unknown encoding {encoding!r}") from None
    return encoding


def _scan_csv(
    raw: _HashingReader, delimiter: str, encoding: str, sample_rows: int, tree: RowTreeBuilder
) -> _Scan:
    encoding = _csv_encoding(encoding)
    tracked = _ascii_compatible(encoding)
    buffered = io.BufferedReader(raw, _CHUNK)
    records = _CsvRecords(buffered, delimiter=delimiter, encoding=encoding, track_bytes=tracked)
    columns: list[_Column] = []
    samples: list[list[str]] = []
    rows = 0
    header_end = position = 0
    pieces, add_row = records.pieces, tree.add
    record_bytes = b""
    try:
        width = -1
        with records.parse_errors():
            for record in records.reader:  # the hot loop: _CsvRecords.__iter__ inlined
                start = position
                if tracked:
                    record_bytes = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                    pieces.clear()
                    position += len(record_bytes)
                if not record:
                    continue  # a blank line
                if width < 0:  # the header
                    columns = [_Column(name) for name in _column_names(list(record))]
                    width = len(columns)
                    header_end = position
                    continue
                if len(record) != width:
                    raise RaggedRowError(
                        f"{len(record)} fields, the header has {width}",
                        line=records.reader.line_num,
                    )
                rows += 1
                if tracked:
                    add_row(text_row_bytes(record_bytes), start)
                for column, cell in zip(columns, record, strict=True):
                    if cell != "":
                        column.see(_text_type(cell))
                if len(samples) < sample_rows:
                    samples.append(record)
    finally:
        records.detach()
        buffered.detach()  # leave the raw reader open for drain()
    sample = [
        {
            column.name: _typed_cell(cell, column.type)
            for column, cell in zip(columns, r, strict=True)
        }
        for r in samples
    ]
    return _Scan(columns, rows, sample, header_end, has_tree=tracked)


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


def _jsonl_lines(
    stream: IO[bytes], *, position: int = 0, file_start: bool = True
) -> Iterator[tuple[int, bytes, int]]:
    """``(start, raw line, line number)`` of each JSON Lines row (a line that is not
    only whitespace), ``start`` its byte offset after ``position``; at the file's
    start a UTF-8 BOM is not part of the first line."""
    number = 0
    while line := stream.readline(MAX_LINE_CHARS + 1):
        start = position
        position += len(line)
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise DatasetFormatError(
                f"longer than {MAX_LINE_CHARS} bytes (is this really JSON Lines?)",
                line=number,
            )
        if number == 1 and file_start and line.startswith(_BOM):
            line = line[3:]
            start += 3
        if line.strip():
            yield start, line, number


def _scan_jsonl(raw: _HashingReader, sample_rows: int, tree: RowTreeBuilder) -> _Scan:
    buffered = io.BufferedReader(raw, _CHUNK)
    columns: dict[str, _Column] = {}
    sample: list[dict[str, Any]] = []
    rows = 0
    try:
        for start, line, number in _jsonl_lines(buffered):
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
            tree.add(text_row_bytes(line), start)
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
    return _Scan(ordered, rows, filled)


# --------------------------------------------------------------------------- rows for slices


def read_text_rows(
    stream: IO[bytes],
    format: str,
    *,
    encoding: str = "utf-8",
    position: int = 0,
    header: bool = True,
) -> Iterator[tuple[int, int, bytes]]:
    """``(start, end, row bytes)`` of each row of a CSV/TSV/JSON Lines byte stream:
    the row's byte offsets ``[start, end)`` in the file (terminator included)
    and its row bytes (:mod:`ledger.row_leaves`).

    With ``header`` the stream is at the file's start: a CSV header is read (and
    every record must have its number of fields), a BOM is not part of a row.
    Without, the stream is at byte ``position`` of the file, where a row starts
    (a row index's block offset), and CSV records are not counted against a
    header. Raises :class:`DatasetFormatError` naming the line, and
    :class:`DatasetError` for a format without text rows or an encoding that
    has none.
    """
    if format == "jsonl":
        for start, line, _ in _jsonl_lines(stream, position=position, file_start=header):
            yield start, start + len(line), text_row_bytes(line)
        return
    if format not in _DELIMITERS:
        raise DatasetError(f"format {format!r} has no text rows")
    encoding = _csv_encoding(encoding) if header else encoding
    if not _ascii_compatible(encoding):
        raise DatasetError(f"CSV in {encoding} has no row tree: the rows are not cut on bytes")
    records = _CsvRecords(
        stream, delimiter=_DELIMITERS[format], encoding=encoding, position=position
    )
    width = -1 if header else None
    for start, raw, record in records:
        if not record:
            continue
        if width is not None:
            if width < 0:
                width = len(record)
                continue
            if len(record) != width:
                raise RaggedRowError(
                    f"{len(record)} fields, the header has {width}", line=records.reader.line_num
                )
        yield start, start + len(raw), text_row_bytes(raw)


# --------------------------------------------------------------------------- Parquet


def _describe_parquet(
    path: Path, sample_rows: int, progress: Callable[[int], None] | None, tree: RowTreeBuilder
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
        for number, row in enumerate(_parquet_rows(parquet, 0, rows)):
            tree.add(canonical_row(row), number)
    except Exception as exc:
        raise DatasetFormatError(f"unreadable Parquet file: {exc}") from None
    finally:
        parquet.close()
    root = tree.finish(data_size=size, data_sm3=bytes.fromhex(digest), end_offset=rows)
    return DatasetDescription("parquet", digest, size, rows, columns, sample, root.hex())


_PARQUET_BATCH: Final = 8192


def parquet_batches(parquet: Any, begin: int, end: int) -> Iterator[Any]:
    """Rows ``[begin, end)`` of an open ``pyarrow.parquet.ParquetFile`` as record
    batches, reading only the row groups that hold them, a batch at a time."""
    metadata = parquet.metadata
    first = 0
    for group in range(metadata.num_row_groups):
        count = metadata.row_group(group).num_rows
        if first + count > begin and first < end:
            number = first
            for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH, row_groups=[group]):
                low, high = max(begin - number, 0), min(end - number, batch.num_rows)
                if low < high:
                    yield batch.slice(low, high - low)
                number += batch.num_rows
        first += count
        if first >= end:
            break


def _parquet_rows(parquet: Any, begin: int, end: int) -> Iterator[dict[str, Any]]:
    for batch in parquet_batches(parquet, begin, end):
        yield from batch.to_pylist()


def read_parquet_rows(parquet: Any, begin: int, end: int) -> Iterator[tuple[dict[str, Any], bytes]]:
    """Rows ``[begin, end)`` of an open ``pyarrow.parquet.ParquetFile``: each as a
    dict and as its row bytes (:func:`ledger.row_leaves.canonical_row`)."""
    for row in _parquet_rows(parquet, begin, end):
        yield row, canonical_row(row)


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
