"""Compute a dataset's quality report (GB/T 36344's six indicators) where the data
lives: the provider's machine, or an assessor's after an assessment order.

:func:`compute_report` is a pure function of (file bytes, declared Table Schema,
update frequency, ``as_of``): it reads no clock, and the same inputs give the same
report bytes (:class:`ledger.protocol.quality.QualityReport`). The rows are read
in ONE streamed scan by DuckDB (``read_csv`` with every column as text, strict
RFC 4180 parsing, rejected lines recorded rather than fatal), and one aggregate
query counts every indicator in that scan; memory is bounded by DuckDB's limit
and the distinct keys a ``unique``/``primaryKey`` check must remember, never by
the file. The file's SM3 (the listing version's ``content_digest``) is a second
read of the bytes, for ``content_sm3``. Results do not depend on the row order
or on DuckDB's threads: every figure is a count, a distinct count or a maximum.

A cell's type conformity follows Table Schema's default lexical forms (checked by
a regular expression, then DuckDB's cast): integer ``[+-]?[0-9]+``; number
decimal or exponent notation; boolean ``true``/``True``/``TRUE``/``1`` and
``false``/``False``/``FALSE``/``0``; date ``YYYY-MM-DD``; datetime
``YYYY-MM-DDThh:mm:ss[.f][Z|±hh:mm]``; string and any: everything. Formulas in
docs/quality.md.

CSV and TSV (UTF-8, a header row naming the schema's fields in order) are
supported; anything else raises :class:`QualityError`.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Final

import duckdb

from ledger.protocol.quality import (
    PERIOD_MS,
    Field,
    Indicator,
    QualityReport,
    TableSchema,
    Timeliness,
    timeliness_bps,
)
from ledger.sm3 import sm3_file

__all__ = ["QualityError", "compute_report", "load_table_schema"]

_DELIMITERS: Final = {"csv": ",", "tsv": "\t"}
_MAX_HEADER_BYTES: Final = 1 << 20

_LEXICAL: Final[dict[str, str]] = {
    "integer": "[+-]?[0-9]+",
    "number": r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?",
    "date": "[0-9]{4}-[0-9]{2}-[0-9]{2}",
    "datetime": r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    "(Z|[+-][0-9]{2}:[0-9]{2})?",
}
_CAST: Final = {
    "integer": "HUGEINT",
    "number": "DOUBLE",
    "date": "DATE",
    "datetime": "TIMESTAMPTZ",
}
_BOOLEAN: Final = ("true", "True", "TRUE", "1", "false", "False", "FALSE", "0")


class QualityError(Exception):
    """The report cannot be computed: unsupported format, unreadable file, or a
    header that is not the schema's fields."""


def load_table_schema(path: str | Path) -> TableSchema:
    """A Table Schema JSON file, parsed strictly (raises :class:`QualityError`)."""
    from ledger.records import RecordFormatError, parse_json_object

    try:
        return TableSchema.from_dict(parse_json_object(Path(path).read_bytes(), "table schema"))
    except (OSError, RecordFormatError) as exc:
        raise QualityError(f"{path}: {exc}") from None


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Query:
    """The one aggregate query: named counts, in a fixed order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, name: str, expression: str) -> str:
        self.items.append((name, expression))
        return name

    def sql(self, source: str) -> str:
        columns = ", ".join(f"{expr} AS {_ident(name)}" for name, expr in self.items)
        return f"SELECT {columns} FROM {source}"  # noqa: S608 - fixed fragments, quoted names


def _present(field: Field, column: str, schema: TableSchema) -> str:
    missing = ", ".join(_literal(v) for v in schema.missing_values)
    return f"({column} IS NOT NULL AND {column} NOT IN ({missing}))"


def _conforms(field: Field, column: str) -> str:
    """The cell (present) has the field's type in its lexical form."""
    if field.type in ("string", "any"):
        return "true"
    if field.type == "boolean":
        return f"{column} IN ({', '.join(_literal(v) for v in _BOOLEAN)})"
    return (
        f"(regexp_full_match({column}, {_literal(_LEXICAL[field.type])}) "
        f"AND TRY_CAST({column} AS {_CAST[field.type]}) IS NOT NULL)"
    )


def _typed(field: Field, column: str) -> str:
    if field.type in _CAST:
        return f"TRY_CAST({column} AS {_CAST[field.type]})"
    if field.type == "boolean":
        return f"({column} IN ('true', 'True', 'TRUE', '1'))"
    return column


def _bound_literal(field: Field, value: Any) -> str:
    if field.type == "date":
        return f"DATE {_literal(value)}"
    if field.type == "datetime":
        return f"TIMESTAMPTZ {_literal(value)}"
    return str(int(value))


def _constraint_checks(field: Field, column: str) -> list[str]:
    """One SQL condition per constraint on the (present, conforming) cell."""
    c = field.constraints
    typed = _typed(field, column)
    checks: list[str] = []
    if "minimum" in c:
        checks.append(f"{typed} >= {_bound_literal(field, c['minimum'])}")
    if "maximum" in c:
        checks.append(f"{typed} <= {_bound_literal(field, c['maximum'])}")
    if "minLength" in c:
        checks.append(f"length({column}) >= {int(c['minLength'])}")
    if "maxLength" in c:
        checks.append(f"length({column}) <= {int(c['maxLength'])}")
    if "pattern" in c:
        checks.append(f"regexp_full_match({column}, {_literal(c['pattern'])})")
    if "enum" in c:
        values = ", ".join(
            _literal(v) if field.type == "string" else str(int(v)) for v in c["enum"]
        )
        checks.append(f"{typed} IN ({values})")
    return checks


def _header(path: Path, delimiter: str) -> list[str]:
    with path.open("rb") as handle:
        first = handle.readline(_MAX_HEADER_BYTES)
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise QualityError("the header row is not UTF-8") from None
    return next(csv.reader(io.StringIO(text), delimiter=delimiter), [])


def compute_report(
    path: str | Path,
    schema: TableSchema,
    *,
    update_frequency: str,
    as_of: int,
    format: str | None = None,
    memory_limit: str = "1GB",
    threads: int = 2,
) -> QualityReport:
    """The quality report of the file at ``path`` against ``schema``, at ``as_of``
    (ms since the epoch; the caller's report time, never read here).

    ``format`` is ``csv`` or ``tsv`` (default: from the suffix, ``.tsv`` is TSV).
    Raises :class:`QualityError` when the report cannot be computed.
    """
    path = Path(path)
    if update_frequency not in PERIOD_MS:
        raise QualityError(f"unknown update frequency {update_frequency!r}")
    chosen = format or ("tsv" if path.suffix.lower() == ".tsv" else "csv")
    if chosen not in _DELIMITERS:
        raise QualityError(f"quality reports read csv or tsv, not {chosen}")
    delimiter = _DELIMITERS[chosen]
    try:
        content_sm3 = sm3_file(path).hex()
        byte_size = path.stat().st_size
        header = _header(path, delimiter)
    except OSError as exc:
        raise QualityError(f"cannot read {path}: {exc}") from None
    names = [f.name for f in schema.fields]
    if header != names:
        raise QualityError(f"the file's header {header} is not the schema's fields {names}")

    counts = _scan(path, schema, delimiter, memory_limit=memory_limit, threads=threads)
    rows = counts["rows"]
    required = schema.required_fields or schema.fields
    accuracy_checked = sum(v for k, v in counts.items() if k.startswith("acc_checked_"))
    accuracy_passed = sum(v for k, v in counts.items() if k.startswith("acc_passed_"))
    unique_present = sum(v for k, v in counts.items() if k.startswith("uniq_present_"))
    unique_distinct = sum(v for k, v in counts.items() if k.startswith("uniq_distinct_"))
    newest = [v for k, v in counts.items() if k.startswith("newest_") and v is not None]
    period = PERIOD_MS[update_frequency]
    newest_ms = max(newest) if newest else None
    return QualityReport(
        content_sm3=content_sm3,
        byte_size=byte_size,
        rows=rows,
        table_schema=schema,
        update_frequency=update_frequency,
        as_of=as_of,
        conformity=Indicator(counts["conforming_rows"], rows),
        completeness=Indicator(
            sum(counts[f"present_{i}"] for i, f in enumerate(schema.fields) if f in required),
            rows * len(required),
        ),
        accuracy=Indicator(accuracy_passed, accuracy_checked),
        consistency=Indicator(unique_distinct, unique_present),
        timeliness=Timeliness(newest_ms, period, timeliness_bps(newest_ms, period, as_of)),
        accessibility=Indicator(rows, rows + counts["rejected"]),
    )


def _scan(
    path: Path, schema: TableSchema, delimiter: str, *, memory_limit: str, threads: int
) -> dict[str, Any]:
    columns = [f"c{i}" for i in range(len(schema.fields))]
    types = ", ".join(f"{_literal(c)}: 'VARCHAR'" for c in columns)
    source = (
        f"read_csv({_literal(str(path))}, header = true, auto_detect = false, "
        f"columns = {{{types}}}, delim = {_literal(delimiter)}, quote = '\"', escape = '\"', "
        "strict_mode = true, store_rejects = true, encoding = 'utf-8')"
    )
    query = _Query()
    query.add("rows", "count(*)")
    conforming: list[str] = []
    for i, (field, column) in enumerate(zip(schema.fields, columns, strict=True)):
        present = _present(field, column, schema)
        conforms = _conforms(field, column)
        ok = f"({present} AND {conforms})"
        query.add(f"present_{i}", f"count(*) FILTER (WHERE {present})")
        conforming.append(f"(NOT {present} OR {conforms})")
        for j, check in enumerate(_constraint_checks(field, column)):
            query.add(f"acc_checked_{i}_{j}", f"count(*) FILTER (WHERE {ok})")
            query.add(f"acc_passed_{i}_{j}", f"count(*) FILTER (WHERE {ok} AND {check})")
        if field.unique and (field.name,) != schema.primary_key:
            query.add(f"uniq_present_{i}", f"count(*) FILTER (WHERE {ok})")
            query.add(
                f"uniq_distinct_{i}",
                f"count(DISTINCT {_typed(field, column)}) FILTER (WHERE {ok})",
            )
        if field.type in ("date", "datetime"):
            stamp = f"epoch_ms(CAST({_typed(field, column)} AS TIMESTAMP))"
            if field.type == "datetime":
                stamp = f"epoch_ms({_typed(field, column)})"
            query.add(f"newest_{i}", f"max({stamp}) FILTER (WHERE {ok})")
    query.add("conforming_rows", f"count(*) FILTER (WHERE {' AND '.join(conforming)})")
    if schema.primary_key:
        index = {f.name: i for i, f in enumerate(schema.fields)}
        parts = [(schema.fields[index[n]], columns[index[n]]) for n in schema.primary_key]
        all_ok = " AND ".join(f"{_present(f, c, schema)} AND {_conforms(f, c)}" for f, c in parts)
        key = ", ".join(_typed(f, c) for f, c in parts)
        query.add("uniq_present_pk", f"count(*) FILTER (WHERE {all_ok})")
        query.add("uniq_distinct_pk", f"count(DISTINCT ({key})) FILTER (WHERE {all_ok})")

    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET memory_limit = ?", [memory_limit])
        con.execute("SET threads = ?", [threads])
        con.execute("SET enable_progress_bar = false")
        con.execute("SET autoinstall_known_extensions = false")
        try:
            [row] = con.execute(query.sql(source)).fetchall()
            rejected = _rejected_lines(con)
        except duckdb.Error as exc:
            raise QualityError(f"cannot scan {path}: {exc}") from None
    finally:
        con.close()
    counts = {name: value for (name, _), value in zip(query.items, row, strict=True)}
    counts["rejected"] = rejected
    return {k: (int(v) if isinstance(v, int) else v) for k, v in counts.items()}


def _rejected_lines(con: duckdb.DuckDBPyConnection) -> int:
    """Lines the scan rejected (bad UTF-8, wrong field count, broken quoting): DuckDB
    creates its ``reject_errors`` table only when there was one."""
    try:
        found = con.execute("SELECT count(DISTINCT (scan_id, line)) FROM reject_errors").fetchone()
    except duckdb.CatalogException:
        return 0
    return 0 if found is None else int(found[0])
