"""The one validator of a buyer's computation query (allow-list, never deny-list).

:func:`validate` parses the SQL with sqlglot (DuckDB dialect) and accepts only this
subset (``docs/computations.md``)::

    SELECT output [, output ...]
    FROM <the offer's table> [[AS] alias]
    [WHERE condition]
    [GROUP BY key [, key ...]]
    [HAVING condition]
    [ORDER BY output [ASC|DESC] [NULLS FIRST|LAST] [, ...]]
    [LIMIT n]

* an **output** is an aggregate ``COUNT(*)``, ``COUNT(col)``, ``COUNT(DISTINCT col)``,
  ``SUM(col)``, ``AVG(col)``, ``MIN(col)``, ``MAX(col)`` of a bare column the offer
  lets that function aggregate, or a group key (optionally ``AS name``);
* a **key** is a scalar expression over ``group_by`` columns (also written as an output
  alias or a 1-based output position);
* a WHERE **condition** uses ``filter`` columns, literals, ``+ - * / %``, comparisons,
  ``AND OR NOT``, ``BETWEEN``, ``IN (literals)``, ``IS [NOT] NULL``, ``[NOT] LIKE`` /
  ``ILIKE 'literal'``, typed literals (``DATE '2025-01-01'``) and the date parts
  ``year month day hour quarter dayofweek date_trunc('unit', col)``;
* a HAVING condition is the same over aggregates and group keys (refused with
  differential privacy: it would filter on exact values);
* ORDER BY names outputs (alias, position or the same expression).

Anything else is refused with :class:`QueryRefusedError` carrying a stable ``reason``
(see :data:`REASONS`). On success the result is a :class:`ValidatedQuery` whose SQL is
*generated* by sqlglot from the checked tree, with every column bound to the real
table; the agent executes only that, never the buyer's text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from ledger.computation.offer import ColumnControl, ComputationOffer, Privacy
from ledger.errors import LedgerError

__all__ = [
    "GROUP_ROWS",
    "MAX_LIMIT",
    "MAX_SQL_LENGTH",
    "REASONS",
    "Measure",
    "OrderKey",
    "Output",
    "PrivatePlan",
    "QueryRefusedError",
    "Release",
    "ValidatedQuery",
    "validate",
]

MAX_SQL_LENGTH: Final = 4000
"""Longest query text accepted (characters)."""
MAX_NODES: Final = 600
"""Largest parsed tree accepted (sqlglot nodes)."""
MAX_LIMIT: Final = 1_000_000
GROUP_ROWS: Final = "__group_rows"
"""Name of the row count per group the agent adds to every query (for k)."""

REASONS: Final[Mapping[str, str]] = {
    "parse_error": "the text is not SQL the validator can parse",
    "too_long": f"the query is longer than {MAX_SQL_LENGTH} characters",
    "too_complex": "the query is nested too deeply or has too many parts",
    "multiple_statements": "more than one statement",
    "statement_not_allowed": "only SELECT is allowed (no COPY, ATTACH, PRAGMA, SET, CREATE, …)",
    "cte": "WITH (common table expressions) is not allowed",
    "union": "UNION / INTERSECT / EXCEPT are not allowed",
    "subquery": "subqueries are not allowed",
    "join": "the query reads one table, without joins",
    "table_function": "table functions and file readers are not allowed",
    "unknown_table": "the query reads a table the offer does not name",
    "window_function": "window functions (OVER, QUALIFY, WINDOW) are not allowed",
    "string_aggregate": "string and list aggregates would return raw values",
    "returns_rows": "the query would return rows (SELECT *, DISTINCT, no aggregation)",
    "raw_value": "an output or condition would reveal a raw value",
    "hidden_column": "the offer does not let queries use this column",
    "column_not_allowed_in_filter": "the offer does not let this column be filtered on",
    "column_not_allowed_in_group_by": "the offer does not let this column be a group key",
    "column_not_allowed_in_aggregate": "the offer does not let this column be aggregated",
    "minmax_forbidden": "the offer does not allow MIN/MAX of this column",
    "function_not_allowed": "a function outside the allowed subset",
    "aggregate_argument": "aggregates take one bare column (or * for COUNT)",
    "misplaced_aggregate": "an aggregate where only row values are allowed (WHERE, GROUP BY)",
    "expression_not_allowed": "an expression outside the allowed subset",
    "clause_not_allowed": "a clause outside the allowed subset (OFFSET, SAMPLE, ROLLUP, …)",
    "order_by_not_output": "ORDER BY must name an output of the query",
    "having_with_privacy": "HAVING is not allowed when the offer adds noise",
}

# Function names (sqlglot keys, or the lowercased name of an unknown function) that
# get a more telling reason than function_not_allowed. They only label a refusal:
# what is allowed is decided by the allow-list below.
_STRING_AGGREGATES: Final = frozenset(
    {"groupconcat", "arrayagg", "arrayuniqueagg", "arrayconcatagg", "string_agg", "listagg",
     "list", "array_agg", "histogram", "map_agg", "list_agg", "json_group_array",
     "json_group_object", "bitstring_agg", "string_split"}
)  # fmt: skip
_TABLE_FUNCTIONS: Final = frozenset(
    {"readcsv", "readparquet", "readjson", "generateseries", "explode", "unnest", "glob",
     "range", "query", "query_table", "sniff_csv", "parquet_scan", "parquet_metadata",
     "parquet_schema", "getenv", "current_setting", "which_secret"}
)  # fmt: skip
_TABLE_FUNCTION_PREFIXES: Final = ("read_", "duckdb_", "pragma_", "parquet_", "sqlite_", "iceberg_")
_RAW_VALUE_FUNCTIONS: Final = frozenset(
    {"anyvalue", "first", "last", "argmax", "argmin", "mode", "median", "percentilecont",
     "percentiledisc", "quantile", "approxquantile", "arbitrary", "any_value", "arg_max",
     "arg_min", "max_by", "min_by", "first_value", "last_value", "nth_value", "quantile_cont",
     "quantile_disc", "reservoir_quantile", "approx_quantile"}
)  # fmt: skip

_AGGREGATE_TYPES: Final[Mapping[type[exp.Expr], str]] = {
    exp.Count: "count",
    exp.Sum: "sum",
    exp.Avg: "avg",
    exp.Min: "min",
    exp.Max: "max",
}
_AGGREGATE_CLASSES: Final[tuple[type[exp.Expr], ...]] = tuple(_AGGREGATE_TYPES)
_BINARY_OPERATORS: Final = (
    exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT,
    exp.LTE, exp.And, exp.Or,
)  # fmt: skip
_DATE_PARTS: Final = (exp.Year, exp.Month, exp.Day, exp.Hour, exp.Quarter, exp.DayOfWeek)
_TRUNC_UNITS: Final = frozenset({"YEAR", "QUARTER", "MONTH", "WEEK", "DAY", "HOUR"})
_LITERAL_TYPES: Final = frozenset(
    {
        exp.DataType.Type.DATE,
        exp.DataType.Type.TIMESTAMP,
        exp.DataType.Type.TIMESTAMPNTZ,
        exp.DataType.Type.TIMESTAMPTZ,
    }
)
_SELECT_CLAUSES: Final = frozenset(
    {"expressions", "from_", "where", "group", "having", "order", "limit"}
)
_CLAUSE_REASONS: Final[Mapping[str, str]] = {
    "with_": "cte",
    "distinct": "returns_rows",
    "joins": "join",
    "laterals": "join",
    "qualify": "window_function",
    "windows": "window_function",
    "into": "statement_not_allowed",
}

Role = Literal["filter", "group_by"]


class QueryRefusedError(LedgerError):
    """The validator (or the agent) refuses a query: ``reason`` is a stable code from
    :data:`REASONS` (or the agent's ``timeout``, …), ``message`` says why in words."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


def _refuse(reason: str, message: str) -> QueryRefusedError:
    return QueryRefusedError(reason, message)


# --------------------------------------------------------------------------- result


@dataclass(frozen=True, slots=True)
class Output:
    """One column of the answer."""

    name: str
    """What the buyer called it (its alias), else a name derived from the expression."""
    kind: Literal["group_key", "aggregate"]
    function: str | None = None
    """For an aggregate: ``count``, ``count_distinct``, ``sum``, ``avg``, ``min``, ``max``."""
    column: str | None = None
    """For an aggregate: the offer's name of its column (``None`` for ``COUNT(*)``)."""


@dataclass(frozen=True, slots=True)
class OrderKey:
    output: int
    """0-based index into :attr:`ValidatedQuery.outputs`."""
    descending: bool = False
    nulls_first: bool = False


@dataclass(frozen=True, slots=True)
class Measure:
    """One exact per-group value the private plan computes before noise."""

    alias: str
    kind: Literal["count", "sum"]
    sensitivity: Decimal
    """How much adding or removing one row can change it (L1)."""


@dataclass(frozen=True, slots=True)
class Release:
    """How one output is released under differential privacy: a group key as is, a
    ``count``/``sum`` as its noisy measure, an ``avg`` as noisy sum / noisy count
    clamped into the bounds."""

    kind: Literal["key", "count", "sum", "avg"]
    source: str
    """Alias of the key or of the measure (the sum's, for ``avg``)."""
    count_source: str | None = None
    bounds: tuple[Decimal, Decimal] | None = None


@dataclass(frozen=True, slots=True)
class PrivatePlan:
    """SQL of the exact per-group measures (k applied, no ORDER BY/LIMIT: those act on
    the noisy values), and how to release each output from them."""

    sql: str
    measures: tuple[Measure, ...]
    releases: tuple[Release, ...]


@dataclass(frozen=True, slots=True)
class ValidatedQuery:
    """A query that passed :func:`validate`, as checked, bound trees."""

    sql: str
    """The normalised query: sqlglot's SQL of the checked tree, table and columns bound."""
    table: str
    outputs: tuple[Output, ...]
    order_by: tuple[OrderKey, ...]
    limit: int | None
    _items: tuple[exp.Expr, ...] = field(repr=False, compare=False)
    _where: exp.Expr | None = field(repr=False, compare=False)
    _keys: tuple[exp.Expr, ...] = field(repr=False, compare=False)
    _having: exp.Expr | None = field(repr=False, compare=False)

    def exact_sql(self, min_group_size: int) -> str:
        """The query as the agent runs it without noise: outputs ``c0, c1, …``, plus
        :data:`GROUP_ROWS` (the group's row count, whether asked for or not), and
        groups of fewer than ``min_group_size`` rows dropped in the same query."""
        items = [exp.alias_(e.copy(), f"c{i}", quoted=True) for i, e in enumerate(self._items)]
        items.append(_group_rows())
        having = _count_at_least(min_group_size)
        if self._having is not None:
            having = exp.and_(exp.paren(self._having.copy()), having)
        return _assemble(
            self.table, items, self._where, self._keys, having, self.order_by, self.limit
        )

    def private_plan(self, min_group_size: int, privacy: Privacy) -> PrivatePlan:
        """The measures to compute exactly, then release with noise (see :class:`Release`)."""
        if self._having is not None:  # validate() refuses this; keep the invariant local
            raise _refuse("having_with_privacy", REASONS["having_with_privacy"])
        items: list[exp.Expr] = [_group_rows()]
        measures: dict[str, Measure] = {}
        releases: list[Release] = []

        def measure(key: str, node: exp.Expr, kind: Literal["count", "sum"], sens: Decimal) -> str:
            if key not in measures:
                alias = f"m{len(measures)}"
                measures[key] = Measure(alias, kind, sens)
                items.append(exp.alias_(node, alias, quoted=True))
            return measures[key].alias

        key_index = 0
        for output, item in zip(self.outputs, self._items, strict=True):
            if output.kind == "group_key":
                alias = f"k{key_index}"
                key_index += 1
                items.append(exp.alias_(item.copy(), alias, quoted=True))
                releases.append(Release("key", alias))
                continue
            function, column = output.function, output.column
            one = Decimal(1)
            if column is None:
                releases.append(Release("count", measure("count(*)", _count_star(), "count", one)))
                continue
            ref = self._column(column)
            if function == "count":
                source = measure(f"count:{column}", exp.Count(this=ref), "count", one)
                releases.append(Release("count", source))
            elif function == "count_distinct":
                node = exp.Count(this=exp.Distinct(expressions=[ref]))
                source = measure(f"count_distinct:{column}", node, "count", one)
                releases.append(Release("count", source))
            else:
                lower, upper = privacy.bounds[column]
                sens = max(abs(lower), abs(upper))
                total = measure(
                    f"sum:{column}", exp.Sum(this=_clamped(ref, lower, upper)), "sum", sens
                )
                if function == "sum":
                    releases.append(Release("sum", total, bounds=(lower, upper)))
                else:
                    count = measure(f"count:{column}", exp.Count(this=ref.copy()), "count", one)
                    releases.append(
                        Release("avg", total, count_source=count, bounds=(lower, upper))
                    )
        sql = _assemble(
            self.table, items, self._where, self._keys, _count_at_least(min_group_size), (), None
        )
        return PrivatePlan(sql, tuple(measures.values()), tuple(releases))

    def _column(self, name: str) -> exp.Column:
        return exp.column(name, table=self.table, quoted=True)


def _group_rows() -> exp.Expr:
    return exp.alias_(_count_star(), GROUP_ROWS, quoted=True)


def _count_star() -> exp.Expr:
    return exp.Count(this=exp.Star())


def _count_at_least(k: int) -> exp.Expr:
    return exp.GTE(this=_count_star(), expression=exp.Literal.number(k))


def _clamped(ref: exp.Column, lower: Decimal, upper: Decimal) -> exp.Expr:
    """``col`` clamped into ``[lower, upper]`` as DOUBLE; NULL stays NULL (both tests
    are unknown, so the ELSE branch returns it)."""
    value = exp.Cast(this=ref, to=exp.DataType.build("DOUBLE"))
    low, high = exp.Literal.number(str(lower)), exp.Literal.number(str(upper))
    return exp.Case(
        ifs=[
            exp.If(this=exp.LT(this=value.copy(), expression=low), true=low.copy()),
            exp.If(this=exp.GT(this=value.copy(), expression=high), true=high.copy()),
        ],
        default=value,
    )


def _assemble(
    table: str,
    items: list[exp.Expr],
    where: exp.Expr | None,
    keys: tuple[exp.Expr, ...],
    having: exp.Expr | None,
    order_by: tuple[OrderKey, ...],
    limit: int | None,
) -> str:
    query = exp.Select(expressions=items).from_(exp.table_(table, quoted=True))
    if where is not None:
        query = query.where(where.copy())
    if keys:
        query = query.group_by(*(k.copy() for k in keys))
    if having is not None:
        query = query.having(having)
    if order_by:
        query = query.order_by(
            *(
                exp.Ordered(
                    this=exp.Literal.number(o.output + 1),
                    desc=o.descending,
                    nulls_first=o.nulls_first,
                )
                for o in order_by
            )
        )
    if limit is not None:
        query = query.limit(limit)
    return query.sql(dialect="duckdb", comments=False)


# --------------------------------------------------------------------------- parsing


def _parse(sql: str) -> exp.Select:
    if not isinstance(sql, str):
        raise _refuse("parse_error", "the query must be text")
    if len(sql) > MAX_SQL_LENGTH:
        raise _refuse("too_long", REASONS["too_long"])
    if "\x00" in sql:
        raise _refuse("parse_error", "the query contains a NUL character")
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "falling back to Command" is a refusal here, not news
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except RecursionError:
        raise _refuse("too_complex", REASONS["too_complex"]) from None
    except SqlglotError as exc:
        raise _refuse("parse_error", str(exc).splitlines()[0][:200]) from None
    finally:
        logger.setLevel(level)
    if not statements:
        raise _refuse("parse_error", "the query is empty")
    if len(statements) > 1:
        raise _refuse("multiple_statements", REASONS["multiple_statements"])
    tree = statements[0]
    if isinstance(tree, exp.SetOperation):
        raise _refuse("union", REASONS["union"])
    if isinstance(tree, exp.Subquery):
        raise _refuse("subquery", REASONS["subquery"])
    if not isinstance(tree, exp.Select):
        raise _refuse("statement_not_allowed", f"{tree.key.upper()} is not allowed; only SELECT")
    return tree


def _function_name(node: exp.Expr) -> str:
    return node.name.lower() if isinstance(node, exp.Anonymous) else node.key


def _function_reason(node: exp.Expr) -> str:
    name = _function_name(node)
    if isinstance(node, exp.Window):
        return "window_function"
    if name in _STRING_AGGREGATES:
        return "string_aggregate"
    if name in _TABLE_FUNCTIONS or name.startswith(_TABLE_FUNCTION_PREFIXES):
        return "table_function"
    if name in _RAW_VALUE_FUNCTIONS:
        return "raw_value"
    return "function_not_allowed"


def _walk(node: exp.Expr) -> Iterator[exp.Expr]:
    """Every node below ``node``, breadth first (a stable order for reasons)."""
    yield from node.walk(bfs=True)


def _check_structure(tree: exp.Select) -> None:
    """Refusals that hold wherever they appear, by priority: CTEs, set operations,
    subqueries, windows, string aggregates, table functions, stars."""
    nodes = list(_walk(tree))
    if len(nodes) > MAX_NODES:
        raise _refuse("too_complex", REASONS["too_complex"])
    checks: tuple[tuple[str, Callable[[exp.Expr], bool]], ...] = (
        ("cte", lambda n: isinstance(n, exp.With | exp.CTE)),
        ("union", lambda n: isinstance(n, exp.SetOperation)),
        (
            "subquery",
            lambda n: (
                (isinstance(n, exp.Select) and n is not tree)
                or isinstance(n, exp.Subquery | exp.Exists | exp.Any | exp.All)
            ),
        ),
        ("window_function", lambda n: isinstance(n, exp.Window)),
        (
            "string_aggregate",
            lambda n: isinstance(n, exp.Func) and _function_reason(n) == "string_aggregate",
        ),
        (
            "table_function",
            lambda n: (
                (isinstance(n, exp.Func) and _function_reason(n) == "table_function")
                or (isinstance(n, exp.Table) and not isinstance(n.this, exp.Identifier))
            ),
        ),
        (
            "returns_rows",
            lambda n: (
                (isinstance(n, exp.Star) and not isinstance(n.parent, exp.Count))
                or isinstance(n, exp.Columns)
            ),
        ),
    )
    for reason, matches in checks:
        if any(matches(n) for n in nodes):
            raise _refuse(reason, REASONS[reason])


# --------------------------------------------------------------------------- the checker


class _Checker:
    """Checks one parsed SELECT against an offer and builds the bound trees."""

    def __init__(self, tree: exp.Select, offer: ComputationOffer, table: str) -> None:
        self.tree = tree
        self.offer = offer
        self.table = table
        self.qualifiers = {offer.table.lower()}
        self.items: list[exp.Expr] = []
        self.items_raw: list[exp.Expr] = []
        self.aliases: dict[str, int] = {}
        self.keys: list[exp.Expr] = []
        self.key_sql: list[str] = []

    # ---------------------------------------------------------------- clauses

    def check_clauses(self) -> None:
        for name, value in self.tree.args.items():
            if name in _SELECT_CLAUSES or value is None or value is False or value == []:
                continue
            reason = _CLAUSE_REASONS.get(name, "clause_not_allowed")
            raise _refuse(reason, f"{name.rstrip('_').upper()}: {REASONS[reason]}")

    def check_from(self) -> None:
        source = self.tree.args.get("from_")
        if source is None:
            raise _refuse("unknown_table", f"the query must read FROM {self.offer.table}")
        table = source.this
        if not isinstance(table, exp.Table):
            raise _refuse("table_function", REASONS["table_function"])
        for name, value in table.args.items():
            if name in ("this", "alias") or value is None or value is False or value == []:
                continue
            if name in ("db", "catalog"):
                raise _refuse("unknown_table", f"the query must read FROM {self.offer.table}")
            reason = "join" if name in ("joins", "laterals") else "clause_not_allowed"
            raise _refuse(reason, f"{name.upper()}: {REASONS[reason]}")
        if table.name.lower() != self.offer.table.lower():
            raise _refuse("unknown_table", f"the query must read FROM {self.offer.table}")
        alias = table.args.get("alias")
        if alias is not None:
            if alias.args.get("columns"):
                raise _refuse("clause_not_allowed", "a table alias cannot rename columns")
            self.qualifiers.add(alias.name.lower())

    # ---------------------------------------------------------------- columns

    def bind(self, column: exp.Column) -> ColumnControl:
        """The offer's control of a column reference; refuses hidden and foreign ones."""
        if isinstance(column.this, exp.Star):
            raise _refuse("returns_rows", REASONS["returns_rows"])
        if column.args.get("db") is not None or column.args.get("catalog") is not None:
            raise _refuse("unknown_table", f"columns belong to {self.offer.table}")
        if column.table and column.table.lower() not in self.qualifiers:
            raise _refuse("unknown_table", f"columns belong to {self.offer.table}")
        control = self.offer.column(column.name)
        if control is None or control.hidden:
            # The same words whether the column exists and is hidden or does not exist.
            raise _refuse("hidden_column", f"no column {column.name!r} may be used")
        return control

    def bound(self, node: exp.Expr) -> exp.Expr:
        """A copy of ``node`` with every column bound to the real table, quoted."""

        def rebind(n: exp.Expr) -> exp.Expr:
            if isinstance(n, exp.Column):
                return exp.column(self.bind(n).name, table=self.table, quoted=True)
            return n

        return node.copy().transform(rebind, copy=False)

    def alias_target(self, node: exp.Expr, *, prefer_alias: bool) -> int | None:
        """The output an unqualified name or a position refers to, if it does."""
        if isinstance(node, exp.Literal) and not node.is_string:
            text = node.this
            if not text.isdigit() or not 1 <= int(text) <= len(self.items_raw):
                raise _refuse("expression_not_allowed", f"no output at position {text}")
            return int(text) - 1
        if (
            isinstance(node, exp.Column)
            and not node.table
            and isinstance(node.this, exp.Identifier)
        ):
            index = self.aliases.get(node.name.lower())
            if index is not None and (prefer_alias or self.offer.column(node.name) is None):
                return index
        return None

    # ---------------------------------------------------------------- scalar expressions

    def scalar(self, node: exp.Expr, role: Role) -> None:
        """A row-level expression whose columns all allow ``role``."""
        if isinstance(node, exp.Column):
            control = self.bind(node)
            if not control.allows(role):
                raise _refuse(
                    f"column_not_allowed_in_{role}",
                    f"the offer does not let {control.name!r} be used in "
                    f"{'WHERE' if role == 'filter' else 'GROUP BY'}",
                )
            return
        if isinstance(node, _AGGREGATE_CLASSES):
            raise _refuse("misplaced_aggregate", REASONS["misplaced_aggregate"])
        self.operators(node, lambda child: self.scalar(child, role))

    def operators(self, node: exp.Expr, child: Callable[[exp.Expr], None]) -> None:
        """The operators and literals both WHERE and HAVING allow; ``child`` checks operands."""
        if isinstance(node, exp.Literal | exp.Boolean | exp.Null):
            return
        if isinstance(node, exp.Paren | exp.Neg | exp.Not):
            _only_args(node, "this")
            child(node.this)
            return
        if isinstance(node, _BINARY_OPERATORS):
            _only_args(node, "this", "expression")
            child(node.this)
            child(node.expression)
            return
        if isinstance(node, exp.Is):
            _only_args(node, "this", "expression")
            if not isinstance(node.expression, exp.Null):
                raise _refuse("expression_not_allowed", "IS is allowed with NULL only")
            child(node.this)
            return
        if isinstance(node, exp.Between):
            _only_args(node, "this", "low", "high")
            for part in (node.this, node.args["low"], node.args["high"]):
                child(part)
            return
        if isinstance(node, exp.In):
            _only_args(node, "this", "expressions")
            child(node.this)
            for item in node.expressions:
                if not _is_constant(item):
                    raise _refuse("expression_not_allowed", "IN takes a list of literals")
            return
        if isinstance(node, exp.Like | exp.ILike):
            _only_args(node, "this", "expression", "negate")
            if not (isinstance(node.expression, exp.Literal) and node.expression.is_string):
                raise _refuse("expression_not_allowed", "LIKE takes a literal pattern")
            child(node.this)
            return
        if isinstance(node, exp.Cast) and _is_constant(node):
            return
        if isinstance(node, _DATE_PARTS):
            _only_args(node, "this")
            child(node.this)
            return
        if isinstance(node, exp.TimestampTrunc | exp.DateTrunc):
            _only_args(node, "this", "unit", "input_type_preserved")
            unit = node.args.get("unit")
            if not isinstance(unit, exp.Var | exp.Literal) or unit.name.upper() not in _TRUNC_UNITS:
                raise _refuse("expression_not_allowed", "date_trunc takes a literal unit")
            child(node.this)
            return
        if isinstance(node, exp.Func):
            raise _refuse(_function_reason(node), f"{_function_name(node)}: not allowed")
        raise _refuse("expression_not_allowed", f"{node.key}: {REASONS['expression_not_allowed']}")

    # ---------------------------------------------------------------- aggregates

    def aggregate(self, node: exp.Expr) -> tuple[str, str | None]:
        """``(function, column)`` of an allowed aggregate call, else refuse."""
        function = _AGGREGATE_TYPES[type(node)]
        extra = [k for k, v in node.args.items() if k not in ("this", "big_int") and v]
        if extra:
            raise _refuse("aggregate_argument", REASONS["aggregate_argument"])
        argument = node.this
        if function == "count" and isinstance(argument, exp.Star):
            return "count", None
        if function == "count" and isinstance(argument, exp.Distinct):
            if len(argument.expressions) != 1 or argument.args.get("on") is not None:
                raise _refuse("aggregate_argument", REASONS["aggregate_argument"])
            function, argument = "count_distinct", argument.expressions[0]
        if not isinstance(argument, exp.Column):
            if isinstance(argument, exp.Expr):
                for part in _walk(argument):
                    if isinstance(part, exp.Column):
                        self.bind(part)  # a hidden column inside says so first
            raise _refuse("aggregate_argument", REASONS["aggregate_argument"])
        control = self.bind(argument)
        if not control.allows("aggregate"):
            raise _refuse(
                "column_not_allowed_in_aggregate",
                f"the offer does not let {control.name!r} be aggregated",
            )
        if not control.allows_aggregate(function):
            reason = "minmax_forbidden" if function in ("min", "max") else "function_not_allowed"
            raise _refuse(reason, f"the offer does not allow {function} of {control.name!r}")
        return function, control.name

    # ---------------------------------------------------------------- the query

    def run(self, privacy: Privacy | None) -> ValidatedQuery:
        self.check_clauses()
        self.check_from()
        tree = self.tree
        self.items_raw = [
            (item.this if isinstance(item, exp.Alias) else item) for item in tree.expressions
        ]
        for i, item in enumerate(tree.expressions):
            if isinstance(item, exp.Alias):
                self.aliases.setdefault(item.alias.lower(), i)
        # Every column anywhere must be visible before anything else is judged.
        for node in _walk(tree):
            if isinstance(node, exp.Column) and self.alias_target(node, prefer_alias=False) is None:
                self.bind(node)
        # Then every function: one outside the subset is refused for what it is
        # (a file reader, a raw value, …) wherever it appears.
        for node in _walk(tree):
            if isinstance(node, exp.Func) and not _allowed_function(node):
                raise _refuse(_function_reason(node), f"{_function_name(node)}: not allowed")
        self.group_by()
        outputs = self.select()
        where = self.tree.args.get("where")
        if where is not None:
            self.scalar(where.this, "filter")
        having = self.having(privacy)
        order_by = self.order_by(outputs)
        limit = self.limit()
        query = ValidatedQuery(
            sql="",
            table=self.table,
            outputs=tuple(outputs),
            order_by=order_by,
            limit=limit,
            _items=tuple(self.items),
            _where=None if where is None else self.bound(where.this),
            _keys=tuple(self.keys),
            _having=having,
        )
        named = [
            exp.alias_(e.copy(), o.name, quoted=True)
            for e, o in zip(self.items, outputs, strict=True)
        ]
        sql = _assemble(self.table, named, query._where, query._keys, having, order_by, limit)
        object.__setattr__(query, "sql", sql)
        return query

    def group_by(self) -> None:
        group = self.tree.args.get("group")
        if group is None:
            return
        for name, value in group.args.items():
            if name != "expressions" and value:
                raise _refuse("clause_not_allowed", f"GROUP BY {name.upper()} is not allowed")
        for item in group.expressions:
            index = self.alias_target(item, prefer_alias=False)
            key = self.items_raw[index] if index is not None else item
            if isinstance(key, exp.Rollup | exp.Cube | exp.GroupingSets):
                raise _refuse(
                    "clause_not_allowed", "ROLLUP, CUBE and GROUPING SETS are not allowed"
                )
            if isinstance(key, _AGGREGATE_CLASSES):
                raise _refuse("misplaced_aggregate", REASONS["misplaced_aggregate"])
            self.scalar(key, "group_by")
            bound = self.bound(key)
            text = bound.sql(dialect="duckdb", comments=False)
            if text not in self.key_sql:
                self.keys.append(bound)
                self.key_sql.append(text)

    def select(self) -> list[Output]:
        outputs: list[Output] = []
        has_aggregate = any(isinstance(i, _AGGREGATE_CLASSES) for i in self.items_raw)
        for item, inner in zip(self.tree.expressions, self.items_raw, strict=True):
            alias = item.alias if isinstance(item, exp.Alias) else None
            if isinstance(inner, _AGGREGATE_CLASSES):
                function, column = self.aggregate(inner)
                name = alias or (f"{function}({column or '*'})")
                outputs.append(Output(name, "aggregate", function, column))
                self.items.append(self.bound(inner))
                continue
            if any(isinstance(n, _AGGREGATE_CLASSES) for n in _walk(inner)):
                raise _refuse(
                    "expression_not_allowed",
                    "an output is a bare aggregate or a group key (no arithmetic on aggregates)",
                )
            bound = self.bound(inner)
            if bound.sql(dialect="duckdb", comments=False) not in self.key_sql:
                reason = "raw_value" if (self.keys or has_aggregate) else "returns_rows"
                raise _refuse(reason, "every output must be an aggregate or a GROUP BY key")
            if isinstance(inner, exp.Column):
                name = alias or self.bind(inner).name
            else:
                name = alias or self.unqualified(bound)
            outputs.append(Output(name, "group_key"))
            self.items.append(bound)
        return outputs

    def unqualified(self, bound: exp.Expr) -> str:
        def strip(n: exp.Expr) -> exp.Expr:
            if isinstance(n, exp.Column):
                return exp.column(n.name)
            return n

        return bound.copy().transform(strip, copy=False).sql(dialect="duckdb", comments=False)

    def having(self, privacy: Privacy | None) -> exp.Expr | None:
        clause = self.tree.args.get("having")
        if clause is None:
            return None
        if privacy is not None:
            raise _refuse("having_with_privacy", REASONS["having_with_privacy"])

        def expand(node: exp.Expr) -> exp.Expr:
            if isinstance(node, exp.Column):
                index = self.alias_target(node, prefer_alias=False)
                if index is not None:
                    return self.items_raw[index].copy()
            return node

        expanded = clause.this.copy().transform(expand, copy=False)
        self.having_condition(expanded)
        return self.bound(expanded)

    def having_condition(self, node: exp.Expr) -> None:
        """Aggregates, group keys and literals combined by the WHERE operators."""
        if isinstance(node, _AGGREGATE_CLASSES):
            self.aggregate(node)
            return
        parts = list(_walk(node))
        if not any(isinstance(n, _AGGREGATE_CLASSES) for n in parts) and any(
            isinstance(n, exp.Column) for n in parts
        ):
            if self.bound(node).sql(dialect="duckdb", comments=False) in self.key_sql:
                return
            if isinstance(node, exp.Column):
                raise _refuse("raw_value", "HAVING may use aggregates and group keys only")
        self.operators(node, self.having_condition)

    def order_by(self, outputs: list[Output]) -> tuple[OrderKey, ...]:
        order = self.tree.args.get("order")
        if order is None:
            return ()
        output_sql = [e.sql(dialect="duckdb", comments=False) for e in self.items]
        keys: list[OrderKey] = []
        for ordered in order.expressions:
            if not isinstance(ordered, exp.Ordered) or ordered.args.get("with_fill"):
                raise _refuse("expression_not_allowed", "ORDER BY names outputs")
            target = ordered.this
            index = self.alias_target(target, prefer_alias=True)
            if index is None:
                if isinstance(target, _AGGREGATE_CLASSES):
                    self.aggregate(target)
                text = self.bound(target).sql(dialect="duckdb", comments=False)
                if text not in output_sql:
                    raise _refuse("order_by_not_output", REASONS["order_by_not_output"])
                index = output_sql.index(text)
            keys.append(
                OrderKey(
                    index, bool(ordered.args.get("desc")), bool(ordered.args.get("nulls_first"))
                )
            )
        return tuple(keys)

    def limit(self) -> int | None:
        clause = self.tree.args.get("limit")
        if clause is None:
            return None
        extra = [k for k, v in clause.args.items() if k != "expression" and v]
        value = clause.expression
        if (
            extra
            or not isinstance(value, exp.Literal)
            or value.is_string
            or not value.this.isdigit()
        ):
            raise _refuse("clause_not_allowed", "LIMIT takes a whole number (no OFFSET, no %)")
        number = int(value.this)
        if number > MAX_LIMIT:
            raise _refuse("clause_not_allowed", f"LIMIT is at most {MAX_LIMIT}")
        return number


def _allowed_function(node: exp.Func) -> bool:
    """Functions of the subset: the aggregates, date parts, AND/OR (sqlglot calls them
    functions too) and typed literals."""
    if isinstance(node, _AGGREGATE_CLASSES + _DATE_PARTS):
        return True
    if isinstance(node, exp.TimestampTrunc | exp.DateTrunc | exp.And | exp.Or):
        return True
    return isinstance(node, exp.Cast) and _is_constant(node)


def _only_args(node: exp.Expr, *allowed: str) -> None:
    for name, value in node.args.items():
        if name not in allowed and value:
            raise _refuse("expression_not_allowed", f"{node.key} with {name} is not allowed")


def _is_constant(node: exp.Expr) -> bool:
    """A literal, a negated number, NULL, or a typed literal like ``DATE '2025-01-01'``."""
    if isinstance(node, exp.Literal | exp.Boolean | exp.Null):
        return True
    if isinstance(node, exp.Neg):
        return isinstance(node.this, exp.Literal) and not node.this.is_string
    if isinstance(node, exp.Cast):
        to = node.args.get("to")
        extra = [k for k, v in node.args.items() if k not in ("this", "to", "_type") and v]
        return (
            not extra
            and isinstance(node.this, exp.Literal)
            and node.this.is_string
            and isinstance(to, exp.DataType)
            and to.this in _LITERAL_TYPES
            and not to.expressions
        )
    return False


def validate(sql: str, offer: ComputationOffer, *, table: str | None = None) -> ValidatedQuery:
    """Check ``sql`` against ``offer``; return the normalised, bound query or raise
    :class:`QueryRefusedError`. ``table`` is the real table the agent queries
    (default: the offer's own table name)."""
    tree = _parse(sql)
    _check_structure(tree)
    checker = _Checker(tree, offer, table or offer.table)
    return checker.run(offer.privacy)
