"""A computation offer: what buyers may compute on a listing's data without seeing it.

JSON form (every field required; ``privacy`` may be ``null``)::

    {"version": 1,
     "table": "weather",
     "columns": [
       {"name": "district", "control": ["filter", "group_by"], "aggregates": []},
       {"name": "temperature_c", "control": ["aggregate"], "aggregates": ["avg", "count"]},
       {"name": "station_id", "control": ["never"], "aggregates": []}],
     "min_group_size": 10,
     "privacy": {"mechanism": "laplace", "epsilon_per_query": "0.5", "epsilon_budget": "5",
                 "bounds": {"temperature_c": ["-30", "50"]}},
     "price": {"unit": "query", "fen": 200}}

* ``table``: the name buyers write after ``FROM`` (the agent binds it to the data).
* ``columns``: the column control list. ``control`` is ``["never"]`` or a set of
  ``filter`` (usable in WHERE), ``group_by`` (usable as a group key, hence shown) and
  ``aggregate`` (usable inside the functions named in ``aggregates``: ``count``,
  ``count_distinct``, ``sum``, ``avg``, ``min``, ``max``). A dataset column the offer
  does not name is ``never``: the list is an allow-list.
* ``min_group_size`` (k): groups of fewer rows are suppressed (not reported).
* ``privacy``: optional differential privacy. Each query spends ``epsilon_per_query``
  out of ``epsilon_budget`` (per buyer per order); ``sum``/``avg`` columns declare
  clamping ``bounds`` ``[lower, upper]``; ``min``/``max`` are refused (no useful
  Laplace release). ε and bounds are decimal strings (records carry no floats).
* ``price``: integer fen per ``query``, or per ``budget`` (one ε budget; needs privacy).

Parsing is strict (unknown or missing fields, wrong types, duplicates refused with
:class:`OfferFormatError` naming the path) and normalises list order (``control``
and ``aggregates`` sorted), so :meth:`ComputationOffer.canonical_bytes` (RFC 8785) is
one encoding per offer, fit for a provider-signed listing version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal

from ledger.records import (
    MAX_SAFE_INTEGER,
    Fields,
    RecordFormatError,
    canonical_json,
    check_int,
    parse_json_object,
)

__all__ = [
    "AGGREGATES",
    "CONTROLS",
    "OFFER_VERSION",
    "BudgetExhaustedError",
    "ColumnControl",
    "ComputationOffer",
    "OfferFormatError",
    "Price",
    "Privacy",
]

OFFER_VERSION: Final = 1
CONTROLS: Final = ("aggregate", "filter", "group_by", "never")
AGGREGATES: Final = ("avg", "count", "count_distinct", "max", "min", "sum")
MECHANISMS: Final = ("laplace",)
PRICE_UNITS: Final = ("budget", "query")
MAX_COLUMNS: Final = 1024
MAX_MIN_GROUP_SIZE: Final = 1_000_000

Control = Literal["aggregate", "filter", "group_by", "never"]
Aggregate = Literal["avg", "count", "count_distinct", "max", "min", "sum"]

_TABLE_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_COLUMN_NAME: Final = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
# ε: positive, at most 6 integer digits and 6 decimals; bounds may be negative.
_EPSILON: Final = re.compile(r"(0|[1-9][0-9]{0,5})(\.[0-9]{1,6})?")
_BOUND: Final = re.compile(r"-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?")
_NEEDS_BOUNDS: Final = frozenset({"sum", "avg"})
_NO_PRIVATE_RELEASE: Final = frozenset({"min", "max"})


class OfferFormatError(RecordFormatError):
    """A computation offer is malformed or inconsistent; ``path`` names the value."""


class BudgetExhaustedError(Exception):
    """The buyer's ε budget for this order cannot pay for one more query."""

    reason = "budget_exhausted"


def _fail(message: str, path: str) -> OfferFormatError:
    return OfferFormatError(message, path=path)


def _reader(data: Any, path: str, keys: tuple[str, ...]) -> Fields:
    try:
        return Fields(data, path, keys)
    except OfferFormatError:
        raise
    except RecordFormatError as exc:
        raise _fail(exc.reason, exc.path) from None


def _int(value: Any, path: str, minimum: int, maximum: int = MAX_SAFE_INTEGER) -> int:
    try:
        number = check_int(value, path, minimum=minimum)
    except RecordFormatError as exc:
        raise _fail(exc.reason, exc.path) from None
    if number > maximum:
        raise _fail(f"integer {number} above {maximum}", path)
    return number


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _fail(f"expected a string, got {type(value).__name__}", path)
    return value


def _choices(value: Any, path: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """A JSON list of distinct names from ``allowed``, returned sorted."""
    if not isinstance(value, list | tuple):
        raise _fail(f"expected a list, got {type(value).__name__}", path)
    seen: set[str] = set()
    for i, item in enumerate(value):
        name = _string(item, f"{path}[{i}]")
        if name not in allowed:
            raise _fail(f"{name!r} is not one of {', '.join(allowed)}", f"{path}[{i}]")
        if name in seen:
            raise _fail(f"{name!r} listed twice", f"{path}[{i}]")
        seen.add(name)
    return tuple(sorted(seen))


def _decimal(value: Any, path: str, pattern: re.Pattern[str], what: str) -> Decimal:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _fail(f'expected {what} as a decimal string, e.g. "0.5"', path)
    return Decimal(value)


def _decimal_text(value: Decimal) -> str:
    """The shortest plain decimal spelling (``Decimal("0.50")`` → ``"0.5"``)."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


@dataclass(frozen=True, slots=True)
class ColumnControl:
    """What a query may do with one column."""

    name: str
    control: tuple[Control, ...]
    aggregates: tuple[Aggregate, ...] = ()

    def __post_init__(self) -> None:
        path = f"column {self.name!r}"
        if not isinstance(self.name, str) or not _COLUMN_NAME.fullmatch(self.name):
            raise _fail("a column name is 1 to 128 characters, no control characters", path)
        if self.name != self.name.strip():
            raise _fail("a column name has no leading or trailing spaces", path)
        object.__setattr__(self, "control", _choices(self.control, f"{path}.control", CONTROLS))
        object.__setattr__(
            self, "aggregates", _choices(self.aggregates, f"{path}.aggregates", AGGREGATES)
        )
        if not self.control:
            raise _fail('control is ["never"] or a set of filter, group_by, aggregate', path)
        if "never" in self.control and len(self.control) > 1:
            raise _fail('"never" excludes every other control', f"{path}.control")
        if ("aggregate" in self.control) != bool(self.aggregates):
            raise _fail(
                'aggregates are listed exactly when control includes "aggregate"',
                f"{path}.aggregates",
            )

    @property
    def hidden(self) -> bool:
        return self.control == ("never",)

    def allows(self, role: Control) -> bool:
        return role in self.control

    def allows_aggregate(self, function: str) -> bool:
        return function in self.aggregates

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "control": list(self.control),
            "aggregates": list(self.aggregates),
        }

    @classmethod
    def from_dict(cls, data: Any, path: str) -> ColumnControl:
        f = _reader(data, path, ("name", "control", "aggregates"))
        name = _string(f.raw("name"), f.path("name"))
        control = _list(f.raw("control"), f.path("control"))
        aggregates = _list(f.raw("aggregates"), f.path("aggregates"))
        try:
            return cls(name=name, control=control, aggregates=aggregates)
        except OfferFormatError as exc:
            # Name the JSON path, not the column: ``columns[2].control``.
            where = exc.path.replace(f"column {name!r}", path, 1)
            raise _fail(exc.reason, where) from None


def _list(value: Any, path: str) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise _fail(f"expected a list, got {type(value).__name__}", path)
    return tuple(value)


@dataclass(frozen=True, slots=True)
class Privacy:
    """Differential privacy of an offer: ε per query, the ε budget per buyer per
    order, and the clamping bounds of every ``sum``/``avg`` column."""

    epsilon_per_query: Decimal
    epsilon_budget: Decimal
    bounds: Mapping[str, tuple[Decimal, Decimal]]
    mechanism: str = "laplace"

    def __post_init__(self) -> None:
        if self.mechanism not in MECHANISMS:
            raise _fail(f"mechanism must be one of {', '.join(MECHANISMS)}", "privacy.mechanism")
        if not isinstance(self.epsilon_per_query, Decimal) or self.epsilon_per_query <= 0:
            raise _fail("ε per query must be positive", "privacy.epsilon_per_query")
        if (
            not isinstance(self.epsilon_budget, Decimal)
            or self.epsilon_budget < self.epsilon_per_query
        ):
            raise _fail("the ε budget must pay for at least one query", "privacy.epsilon_budget")
        for name, (lower, upper) in self.bounds.items():
            if not lower < upper:
                raise _fail(
                    "bounds are [lower, upper] with lower < upper", f"privacy.bounds.{name}"
                )
        object.__setattr__(self, "bounds", dict(sorted(self.bounds.items())))

    def next_query_epsilon(self, spent: Decimal) -> Decimal:
        """The ε one more query spends, given what this buyer already spent on the
        order; raises :class:`BudgetExhaustedError` if that would exceed the budget."""
        if spent < 0 or spent + self.epsilon_per_query > self.epsilon_budget:
            raise BudgetExhaustedError(
                f"ε spent {_decimal_text(spent)} + {_decimal_text(self.epsilon_per_query)} "
                f"exceeds the budget {_decimal_text(self.epsilon_budget)}"
            )
        return self.epsilon_per_query

    def to_dict(self) -> dict[str, Any]:
        return {
            "mechanism": self.mechanism,
            "epsilon_per_query": _decimal_text(self.epsilon_per_query),
            "epsilon_budget": _decimal_text(self.epsilon_budget),
            "bounds": {
                name: [_decimal_text(lower), _decimal_text(upper)]
                for name, (lower, upper) in self.bounds.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Any, path: str = "privacy") -> Privacy:
        f = _reader(data, path, ("mechanism", "epsilon_per_query", "epsilon_budget", "bounds"))
        raw_bounds = f.raw("bounds")
        if not isinstance(raw_bounds, Mapping):
            raise _fail("expected an object of column: [lower, upper]", f.path("bounds"))
        bounds: dict[str, tuple[Decimal, Decimal]] = {}
        for name, pair in raw_bounds.items():
            where = f"{f.path('bounds')}.{name}"
            if not isinstance(pair, list) or len(pair) != 2:
                raise _fail("expected [lower, upper]", where)
            bounds[name] = (
                _decimal(pair[0], f"{where}[0]", _BOUND, "a bound"),
                _decimal(pair[1], f"{where}[1]", _BOUND, "a bound"),
            )
        return cls(
            mechanism=_string(f.raw("mechanism"), f.path("mechanism")),
            epsilon_per_query=_decimal(
                f.raw("epsilon_per_query"), f.path("epsilon_per_query"), _EPSILON, "ε"
            ),
            epsilon_budget=_decimal(
                f.raw("epsilon_budget"), f.path("epsilon_budget"), _EPSILON, "ε"
            ),
            bounds=bounds,
        )


@dataclass(frozen=True, slots=True)
class Price:
    """Integer fen per ``query`` or per ``budget`` (one ε budget of the offer)."""

    unit: Literal["budget", "query"]
    fen: int

    def __post_init__(self) -> None:
        if self.unit not in PRICE_UNITS:
            raise _fail(f"unit must be one of {', '.join(PRICE_UNITS)}", "price.unit")
        _int(self.fen, "price.fen", 0)

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "fen": self.fen}

    @classmethod
    def from_dict(cls, data: Any, path: str = "price") -> Price:
        f = _reader(data, path, ("unit", "fen"))
        unit = _string(f.raw("unit"), f.path("unit"))
        if unit not in PRICE_UNITS:
            raise _fail(f"unit must be one of {', '.join(PRICE_UNITS)}", f.path("unit"))
        return cls(unit=unit, fen=_int(f.raw("fen"), f.path("fen"), 0))  # type: ignore[arg-type]


_OFFER_FIELDS: Final = ("version", "table", "columns", "min_group_size", "privacy", "price")


@dataclass(frozen=True, slots=True)
class ComputationOffer:
    """A listing's computation offer. Immutable; see the module docstring."""

    table: str
    columns: tuple[ColumnControl, ...]
    min_group_size: int
    price: Price
    privacy: Privacy | None = None
    version: int = OFFER_VERSION

    def __post_init__(self) -> None:
        if self.version != OFFER_VERSION or type(self.version) is not int:
            raise _fail(f"unsupported offer version {self.version!r}", "version")
        if not isinstance(self.table, str) or not _TABLE_NAME.fullmatch(self.table):
            raise _fail("a table name is a letter or _ then letters, digits, _ (≤ 63)", "table")
        _int(self.min_group_size, "min_group_size", 1, MAX_MIN_GROUP_SIZE)
        object.__setattr__(self, "columns", tuple(self.columns))
        if not self.columns or len(self.columns) > MAX_COLUMNS:
            raise _fail(f"an offer names 1 to {MAX_COLUMNS} columns", "columns")
        seen: set[str] = set()
        for column in self.columns:
            # DuckDB resolves identifiers case-insensitively, quoted or not.
            key = column.name.lower()
            if key in seen:
                raise _fail(f"column {column.name!r} named twice (case-insensitively)", "columns")
            seen.add(key)
        if not any(not c.hidden for c in self.columns):
            raise _fail("an offer allows at least one column to be used", "columns")
        self._check_privacy()
        if self.price.unit == "budget" and self.privacy is None:
            raise _fail('a price per "budget" needs differential privacy', "price.unit")

    def _check_privacy(self) -> None:
        if self.privacy is None:
            return
        needs = {c.name for c in self.columns if _NEEDS_BOUNDS.intersection(c.aggregates)}
        for column in self.columns:
            forbidden = _NO_PRIVATE_RELEASE.intersection(column.aggregates)
            if forbidden:
                raise _fail(
                    f"{'/'.join(sorted(forbidden))} cannot be released with differential "
                    "privacy; remove them or the privacy section",
                    f"column {column.name!r}.aggregates",
                )
        missing = sorted(needs - set(self.privacy.bounds))
        if missing:
            raise _fail(
                f"sum/avg columns need clamping bounds: {', '.join(missing)}", "privacy.bounds"
            )
        extra = sorted(set(self.privacy.bounds) - needs)
        if extra:
            raise _fail(f"bounds for columns without sum/avg: {', '.join(extra)}", "privacy.bounds")

    # ------------------------------------------------------------------ lookups

    def column(self, name: str) -> ColumnControl | None:
        """The control of the column DuckDB would resolve ``name`` to (case-insensitive)."""
        key = name.lower()
        for column in self.columns:
            if column.name.lower() == key:
                return column
        return None

    def visible_columns(self) -> Iterable[ColumnControl]:
        return (c for c in self.columns if not c.hidden)

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "table": self.table,
            "columns": [c.to_dict() for c in self.columns],
            "min_group_size": self.min_group_size,
            "privacy": None if self.privacy is None else self.privacy.to_dict(),
            "price": self.price.to_dict(),
        }

    def canonical_bytes(self) -> bytes:
        """RFC 8785 bytes of :meth:`to_dict`."""
        return canonical_json(self.to_dict())

    def to_json(self) -> str:
        return self.canonical_bytes().decode("utf-8")

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> ComputationOffer:
        """Parse the JSON form; raises :class:`OfferFormatError` naming the path."""
        f = _reader(data, path, _OFFER_FIELDS)
        raw_columns = f.raw("columns")
        if not isinstance(raw_columns, list):
            raise _fail("expected a list of columns", f.path("columns"))
        if len(raw_columns) > MAX_COLUMNS:
            raise _fail(f"an offer names 1 to {MAX_COLUMNS} columns", f.path("columns"))
        columns = tuple(
            ColumnControl.from_dict(item, f"{f.path('columns')}[{i}]")
            for i, item in enumerate(raw_columns)
        )
        raw_privacy = f.raw("privacy")
        version = f.raw("version")
        if isinstance(version, bool) or version != OFFER_VERSION:
            raise _fail(f"unsupported offer version {version!r}", f.path("version"))
        return cls(
            version=OFFER_VERSION,
            table=_string(f.raw("table"), f.path("table")),
            columns=columns,
            min_group_size=_int(f.raw("min_group_size"), f.path("min_group_size"), 1),
            privacy=None
            if raw_privacy is None
            else Privacy.from_dict(raw_privacy, f.path("privacy")),
            price=Price.from_dict(f.raw("price"), f.path("price")),
        )

    @classmethod
    def from_json(cls, data: str | bytes) -> ComputationOffer:
        """Parse JSON text (duplicate keys, NaN, floats where strings belong refused)."""
        try:
            parsed = parse_json_object(data, "computation offer")
        except OfferFormatError:
            raise
        except RecordFormatError as exc:
            raise _fail(exc.reason, exc.path) from None
        return cls.from_dict(parsed)
