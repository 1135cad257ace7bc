"""A data quality report on GB/T 36344's six indicators, defined once for the
provider (who computes and signs it), the assessor (who recomputes and
countersigns it) and the exchange (which checks and shows it). docs/quality.md.

The report is about a dataset's exact bytes (``content_sm3``, ``byte_size``)
against a declared schema, a Frictionless Table Schema subset
(:class:`TableSchema`), at a report time ``as_of`` that is an *input* (never
the clock inside the computation), so the same bytes, schema, update frequency
and ``as_of`` give the same report bytes (:meth:`QualityReport.to_bytes`, RFC
8785) and the same :meth:`QualityReport.digest` (SM3), which is what the
provider signs and the assessor countersigns.

Every indicator is an exact ratio (``passed`` of ``checked``, integers) and its
value in basis points (``bps = passed * 10000 // checked``; 10,000 when nothing
is checked); timeliness is computed from the newest date/datetime value instead.
The score is the weighted mean of the six (:data:`WEIGHTS`, floor) and the
grade its band (:data:`GRADE_THRESHOLDS`). No floats anywhere: records refuse them.

Records (payloads here, checked by the exchange):

* ``quality.reported`` (:class:`QualityReported`): ``{listing_id, version,
  report, report_sm3}`` signed by a provider of the listing, or by an assessor
  whose own recomputation differs from the provider's;
* ``quality.countersigned`` (:class:`QualityCountersigned`): ``{listing_id,
  version, report_sm3}`` signed by an assessor: it recomputed the same bytes.

What a listing shows of its current version's report is :class:`QualitySummary`
(served by the exchange, parsed by the SDK).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

from ledger.protocol.reader import JSONObject
from ledger.records import RecordFormatError, canonical_json, check_json_value
from ledger.sm3 import sm3

__all__ = [
    "FIELD_TYPES",
    "GRADES",
    "GRADE_THRESHOLDS",
    "INDICATORS",
    "PERIOD_MS",
    "QUALITY_COUNTERSIGNED",
    "QUALITY_REPORTED",
    "REPORT_KIND",
    "STANDARD",
    "WEIGHTS",
    "Field",
    "Indicator",
    "QualityCountersigned",
    "QualityReport",
    "QualityReported",
    "QualitySummary",
    "TableSchema",
    "Timeliness",
    "current_report",
    "grade_of",
    "ratio_bps",
    "score_of",
    "timeliness_bps",
]

QUALITY_REPORTED: Final = "quality.reported"
QUALITY_COUNTERSIGNED: Final = "quality.countersigned"
REPORT_KIND: Final = "shancheng.quality-report.v1"
STANDARD: Final = "GB/T 36344-2018"
BPS: Final = 10_000

INDICATORS: Final = (
    "conformity",  # 规范性
    "completeness",  # 完整性
    "accuracy",  # 准确性
    "consistency",  # 一致性
    "timeliness",  # 时效性
    "accessibility",  # 可访问性
)
WEIGHTS: Final[dict[str, int]] = {
    "conformity": 20,
    "completeness": 20,
    "accuracy": 20,
    "consistency": 15,
    "timeliness": 10,
    "accessibility": 15,
}
"""Weights (percent, summing to 100) of the score."""
GRADES: Final = ("A", "B", "C", "D")
GRADE_THRESHOLDS: Final = ((9_000, "A"), (7_500, "B"), (6_000, "C"), (0, "D"))
"""The lowest score (bps) of each grade."""

FIELD_TYPES: Final = ("string", "integer", "number", "boolean", "date", "datetime", "any")
"""Table Schema field types this subset knows."""
_TEMPORAL: Final = ("date", "datetime")
_CONSTRAINTS: Final = frozenset(
    ("required", "unique", "minimum", "maximum", "pattern", "enum", "minLength", "maxLength")
)
_FIELD_KEYS: Final = frozenset(("name", "type", "title", "description", "constraints"))
_SCHEMA_KEYS: Final = frozenset(("fields", "primaryKey", "missingValues"))
MAX_FIELDS: Final = 500
MAX_ENUM: Final = 1_000
MAX_PATTERN: Final = 1_000
_NAME: Final = re.compile(r"[^\x00-\x1f\"]{1,128}")
_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


PERIOD_MS: Final[dict[str, int | None]] = {
    "once": None,
    "realtime": 3_600_000,
    "hourly": 3_600_000,
    "daily": 86_400_000,
    "weekly": 7 * 86_400_000,
    "monthly": 31 * 86_400_000,
    "quarterly": 92 * 86_400_000,
    "yearly": 366 * 86_400_000,
}
"""The update period each declared ``update_frequency`` promises (``once``: none)."""
STALE_PERIODS: Final = 4
"""Timeliness falls linearly from 10,000 at one period of age to 0 at this many."""


def timeliness_bps(newest_ms: int | None, period_ms: int | None, as_of: int) -> int:
    """Timeliness in bps: 10,000 for data updated ``once`` or whose newest
    date/datetime value is at most one period older than ``as_of``; falling
    linearly to 0 at :data:`STALE_PERIODS` periods; 0 without any such value."""
    if period_ms is None:
        return BPS
    if newest_ms is None:
        return 0
    age = as_of - newest_ms
    if age <= period_ms:
        return BPS
    late = age - period_ms
    span = (STALE_PERIODS - 1) * period_ms
    return 0 if late >= span else BPS - late * BPS // span


def ratio_bps(passed: int, checked: int) -> int:
    """``passed / checked`` in basis points, rounded down; 10,000 when nothing was checked."""
    return BPS if checked == 0 else passed * BPS // checked


def score_of(bps: dict[str, int]) -> int:
    """The weighted score (bps, floor) of the six indicators' values."""
    return sum(WEIGHTS[name] * bps[name] for name in INDICATORS) // 100


def grade_of(score_bps: int) -> str:
    """The grade of a score: the first band whose threshold it reaches."""
    for threshold, grade in GRADE_THRESHOLDS:
        if score_bps >= threshold:
            return grade
    raise ValueError(f"score {score_bps} below 0")  # pragma: no cover - scores are >= 0


def _check_fields(o: JSONObject, fields: frozenset[str]) -> None:
    extra = sorted(set(o.data) - fields)
    if extra:
        raise RecordFormatError("unknown field", path=o.path(extra[0]))


# --------------------------------------------------------------------------- Table Schema


@dataclass(frozen=True, slots=True)
class Field:
    """One Table Schema field: its name, type and constraints (``constraints`` is
    the validated JSON object, possibly empty)."""

    name: str
    type: str
    constraints: dict[str, Any]

    @property
    def required(self) -> bool:
        return bool(self.constraints.get("required", False))

    @property
    def unique(self) -> bool:
        return bool(self.constraints.get("unique", False))

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Field:
        o = JSONObject(data, where)
        _check_fields(o, _FIELD_KEYS)
        name = o.text("name")
        if not _NAME.fullmatch(name):
            raise RecordFormatError(
                "1 to 128 characters, no control characters or quotes", path=o.path("name")
            )
        type_ = o.text("type") if "type" in o.data else "string"
        if type_ not in FIELD_TYPES:
            raise RecordFormatError(f"one of {', '.join(FIELD_TYPES)}", path=o.path("type"))
        constraints = _constraints(o, type_) if "constraints" in o.data else {}
        return cls(name, type_, constraints)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.constraints:
            out["constraints"] = dict(self.constraints)
        return out


def _bound(value: Any, type_: str, where: str) -> Any:
    """A minimum/maximum: an integer for integer/number fields, an ISO date or
    UTC datetime (``YYYY-MM-DDThh:mm:ssZ``) string for date/datetime fields."""
    if type_ in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordFormatError("an integer bound (floats are not allowed)", path=where)
        check_json_value(value, where)
        return value
    pattern = _DATE if type_ == "date" else _DATETIME if type_ == "datetime" else None
    if pattern is None:
        raise RecordFormatError(f"a {type_} field has no minimum/maximum", path=where)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise RecordFormatError(f"an ISO {type_} string", path=where)
    return value


def _constraints(o: JSONObject, type_: str) -> dict[str, Any]:
    c = o.obj("constraints")
    _check_fields(c, _CONSTRAINTS)
    out: dict[str, Any] = {}
    for flag in ("required", "unique"):
        if flag in c.data:
            out[flag] = c.boolean(flag)
    for bound in ("minimum", "maximum"):
        if bound in c.data:
            out[bound] = _bound(c.raw(bound), type_, c.path(bound))
    for length in ("minLength", "maxLength"):
        if length in c.data:
            if type_ != "string":
                raise RecordFormatError("only on a string field", path=c.path(length))
            out[length] = c.integer(length)
    if "pattern" in c.data:
        pattern = c.text("pattern")
        if type_ != "string" or not 0 < len(pattern) <= MAX_PATTERN or "\x00" in pattern:
            raise RecordFormatError(
                f"a regular expression of 1 to {MAX_PATTERN} characters on a string field",
                path=c.path("pattern"),
            )
        out["pattern"] = pattern
    if "enum" in c.data:
        out["enum"] = list(_enum(c, type_))
    return out


def _enum(c: JSONObject, type_: str) -> tuple[Any, ...]:
    wanted = {"string": str, "integer": int}.get(type_)
    if wanted is None:
        raise RecordFormatError("only on a string or integer field", path=c.path("enum"))

    def one(item: Any, where: str) -> Any:
        if isinstance(item, bool) or not isinstance(item, wanted):
            raise RecordFormatError(f"expected a {type_}", path=where)
        check_json_value(item, where)
        return item

    values = c.items("enum", one)
    if not 0 < len(values) <= MAX_ENUM or len(set(values)) != len(values):
        raise RecordFormatError(f"1 to {MAX_ENUM} distinct values", path=c.path("enum"))
    return values


@dataclass(frozen=True, slots=True)
class TableSchema:
    """The declared schema: a Frictionless Table Schema (https://specs.frictionlessdata.io/
    table-schema/) subset: ``fields`` (name, type, constraints ``required``,
    ``unique``, ``minimum``, ``maximum``, ``pattern``, ``enum``, ``minLength``,
    ``maxLength``), ``primaryKey`` (field names) and ``missingValues`` (default
    ``[""]``). ``title``/``description`` of a field are accepted and dropped."""

    fields: tuple[Field, ...]
    primary_key: tuple[str, ...] = ()
    missing_values: tuple[str, ...] = ("",)

    @classmethod
    def from_dict(cls, data: Any, where: str = "table_schema") -> TableSchema:
        """Parse strictly; :class:`ledger.records.RecordFormatError` naming the field."""
        o = JSONObject(data, where)
        _check_fields(o, _SCHEMA_KEYS)
        fields = o.items("fields", Field.from_dict)
        if not 0 < len(fields) <= MAX_FIELDS:
            raise RecordFormatError(f"1 to {MAX_FIELDS} fields", path=o.path("fields"))
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise RecordFormatError("field names must be distinct", path=o.path("fields"))
        key: tuple[str, ...] = ()
        if "primaryKey" in o.data:
            raw = o.raw("primaryKey")
            key = (raw,) if isinstance(raw, str) else o.strings("primaryKey")
            if not key or len(set(key)) != len(key) or not set(key) <= set(names):
                raise RecordFormatError(
                    "distinct names of declared fields", path=o.path("primaryKey")
                )
        missing: tuple[str, ...] = ("",)
        if "missingValues" in o.data:
            missing = o.strings("missingValues")
            if len(missing) > 20 or len(set(missing)) != len(missing):
                raise RecordFormatError("at most 20 distinct strings", path=o.path("missingValues"))
        return cls(tuple(fields), key, missing)

    def to_dict(self) -> dict[str, Any]:
        """The normalised form (types explicit, ``primaryKey`` a list, dropped titles)."""
        out: dict[str, Any] = {"fields": [f.to_dict() for f in self.fields]}
        if self.primary_key:
            out["primaryKey"] = list(self.primary_key)
        out["missingValues"] = list(self.missing_values)
        return out

    def digest(self) -> str:
        return sm3(canonical_json(self.to_dict())).hex()

    @property
    def required_fields(self) -> tuple[Field, ...]:
        """Fields whose cells must be present: ``required`` ones and the primary key's."""
        return tuple(f for f in self.fields if f.required or f.name in self.primary_key)

    @property
    def temporal_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.type in _TEMPORAL)


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True, slots=True)
class Indicator:
    """A ratio indicator: ``passed`` of ``checked`` and its basis points."""

    passed: int
    checked: int

    @property
    def bps(self) -> int:
        return ratio_bps(self.passed, self.checked)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Indicator:
        o = JSONObject(data, where)
        _check_fields(o, frozenset(("passed", "checked", "bps")))
        passed, checked = o.integer("passed"), o.integer("checked")
        if passed > checked:
            raise RecordFormatError("passed exceeds checked", path=o.path("passed"))
        value = cls(passed, checked)
        if o.integer("bps") != value.bps:
            raise RecordFormatError(f"expected {value.bps} (passed / checked)", path=o.path("bps"))
        return value

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checked": self.checked, "bps": self.bps}


@dataclass(frozen=True, slots=True)
class Timeliness:
    """Timeliness: the newest date/datetime value (ms, ``None``: none), the update
    period the listing declares (ms, ``None`` for ``once``) and its basis points."""

    newest_ms: int | None
    period_ms: int | None
    bps: int

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Timeliness:
        o = JSONObject(data, where)
        _check_fields(o, frozenset(("newest_ms", "period_ms", "bps")))
        for key in ("newest_ms", "period_ms"):
            if key not in o.data:
                raise RecordFormatError("missing field", path=o.path(key))
        newest = o.data["newest_ms"]
        newest_ms = None if newest is None else o.integer("newest_ms", minimum=-(2**53 - 1))
        period_ms = None if o.data["period_ms"] is None else o.integer("period_ms", minimum=1)
        bps = o.integer("bps")
        if bps > BPS:
            raise RecordFormatError("at most 10000", path=o.path("bps"))
        return cls(newest_ms, period_ms, bps)

    def to_dict(self) -> dict[str, Any]:
        return {"newest_ms": self.newest_ms, "period_ms": self.period_ms, "bps": self.bps}


_REPORT_FIELDS: Final = frozenset(
    (
        "kind",
        "standard",
        "content_sm3",
        "byte_size",
        "rows",
        "table_schema",
        "update_frequency",
        "as_of",
        "indicators",
        "weights",
        "score_bps",
        "grade",
    )
)


@dataclass(frozen=True, slots=True)
class QualityReport:
    """A quality report (see the module docstring). ``to_dict`` is its wire form;
    :meth:`from_dict` refuses a report whose bps, score or grade do not follow
    from its counts, so a report cannot claim a grade its numbers do not give."""

    content_sm3: str
    byte_size: int
    rows: int
    table_schema: TableSchema
    update_frequency: str
    as_of: int
    conformity: Indicator
    completeness: Indicator
    accuracy: Indicator
    consistency: Indicator
    timeliness: Timeliness
    accessibility: Indicator

    def bps(self) -> dict[str, int]:
        return {name: getattr(self, name).bps for name in INDICATORS}

    @property
    def score_bps(self) -> int:
        return score_of(self.bps())

    @property
    def grade(self) -> str:
        return grade_of(self.score_bps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": REPORT_KIND,
            "standard": STANDARD,
            "content_sm3": self.content_sm3,
            "byte_size": self.byte_size,
            "rows": self.rows,
            "table_schema": self.table_schema.to_dict(),
            "update_frequency": self.update_frequency,
            "as_of": self.as_of,
            "indicators": {name: getattr(self, name).to_dict() for name in INDICATORS},
            "weights": dict(WEIGHTS),
            "score_bps": self.score_bps,
            "grade": self.grade,
        }

    def to_bytes(self) -> bytes:
        """RFC 8785 canonical bytes: what :meth:`digest` hashes."""
        return canonical_json(self.to_dict())

    def digest(self) -> str:
        """Hex SM3 of :meth:`to_bytes`: the digest signed and countersigned."""
        return sm3(self.to_bytes()).hex()

    @classmethod
    def from_dict(cls, data: Any, where: str = "report") -> QualityReport:
        """Parse strictly; :class:`ledger.records.RecordFormatError` naming the field
        (floats, unknown fields, counts that do not give the stated bps, score or grade)."""
        check_json_value(data, where)
        o = JSONObject(data, where)
        _check_fields(o, _REPORT_FIELDS)
        if o.text("kind") != REPORT_KIND:
            raise RecordFormatError(f"expected {REPORT_KIND!r}", path=o.path("kind"))
        if o.text("standard") != STANDARD:
            raise RecordFormatError(f"expected {STANDARD!r}", path=o.path("standard"))
        frequency = o.text("update_frequency")
        if frequency not in PERIOD_MS:
            raise RecordFormatError(
                f"one of {', '.join(PERIOD_MS)}", path=o.path("update_frequency")
            )
        if o.mapping("weights") != WEIGHTS:
            raise RecordFormatError(f"expected {WEIGHTS}", path=o.path("weights"))
        ind = o.obj("indicators")
        _check_fields(ind, frozenset(INDICATORS))
        ratios = {
            name: Indicator.from_dict(ind.raw(name), ind.path(name))
            for name in INDICATORS
            if name != "timeliness"
        }
        report = cls(
            content_sm3=o.hex64("content_sm3"),
            byte_size=o.integer("byte_size"),
            rows=o.integer("rows"),
            table_schema=TableSchema.from_dict(o.raw("table_schema"), o.path("table_schema")),
            update_frequency=frequency,
            as_of=o.integer("as_of"),
            timeliness=Timeliness.from_dict(ind.raw("timeliness"), ind.path("timeliness")),
            **ratios,
        )
        timely = report.timeliness
        if timely.period_ms != PERIOD_MS[frequency]:
            raise RecordFormatError(
                f"expected {PERIOD_MS[frequency]} (the update frequency's period)",
                path=ind.path("timeliness") + ".period_ms",
            )
        expected = timeliness_bps(timely.newest_ms, timely.period_ms, report.as_of)
        if timely.bps != expected:
            raise RecordFormatError(
                f"expected {expected} (newest_ms, period_ms and as_of)",
                path=ind.path("timeliness") + ".bps",
            )
        if o.integer("score_bps") != report.score_bps:
            raise RecordFormatError(
                f"expected {report.score_bps} (the weighted indicators)", path=o.path("score_bps")
            )
        if o.text("grade") != report.grade:
            raise RecordFormatError(
                f"expected {report.grade} (the score's grade)", path=o.path("grade")
            )
        return report


# --------------------------------------------------------------------------- record payloads


def _listing_id(o: JSONObject) -> str:
    value = o.text("listing_id")
    try:
        canonical = str(uuid.UUID(value))
    except ValueError:
        canonical = ""
    if canonical != value:
        raise RecordFormatError("expected a lowercase UUID", path=o.path("listing_id"))
    return value


@dataclass(frozen=True, slots=True)
class QualityReported:
    """The payload of a ``quality.reported`` record."""

    listing_id: str
    version: int
    report: QualityReport
    report_sm3: str

    @classmethod
    def from_dict(cls, data: Any, where: str = "payload") -> QualityReported:
        """Parse strictly. The stated ``report_sm3`` is returned as stated: the
        exchange compares it with ``report.digest()``."""
        o = JSONObject(data, where)
        _check_fields(o, frozenset(("listing_id", "version", "report", "report_sm3")))
        return cls(
            listing_id=_listing_id(o),
            version=o.integer("version", minimum=1),
            report=QualityReport.from_dict(o.raw("report"), o.path("report")),
            report_sm3=o.hex64("report_sm3"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "listing_id": self.listing_id,
            "version": self.version,
            "report": self.report.to_dict(),
            "report_sm3": self.report_sm3,
        }


@dataclass(frozen=True, slots=True)
class QualityCountersigned:
    """The payload of a ``quality.countersigned`` record."""

    listing_id: str
    version: int
    report_sm3: str

    @classmethod
    def from_dict(cls, data: Any, where: str = "payload") -> QualityCountersigned:
        o = JSONObject(data, where)
        _check_fields(o, frozenset(("listing_id", "version", "report_sm3")))
        return cls(_listing_id(o), o.integer("version", minimum=1), o.hex64("report_sm3"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "listing_id": self.listing_id,
            "version": self.version,
            "report_sm3": self.report_sm3,
        }


class _Signed(Protocol):
    @property
    def reported_at(self) -> int: ...
    @property
    def leaf_hash(self) -> str: ...


_R = TypeVar("_R", bound=_Signed)


def current_report(provider_reports: Iterable[_R]) -> _R | None:
    """The version's current report among its providers' ``quality.reported``
    records (``reported_at``: the record's timestamp, ``leaf_hash``: its hex leaf
    hash): the newest, equal timestamps by the smallest leaf hash; ``None`` without
    one. Its grade is the version's grade, for the listing view and the reference
    price alike (docs/quality.md, docs/pricing.md); countersignatures and assessors'
    differing reports do not change it."""
    return min(provider_reports, key=lambda r: (-r.reported_at, r.leaf_hash), default=None)


@dataclass(frozen=True, slots=True)
class QualitySummary:
    """What a listing shows of its current version's quality."""

    grade: str = field(
        metadata={"examples": ["A"], "description": "A, B, C or D (docs/quality.md)."}
    )
    score_bps: int = field(metadata={"description": "The weighted score, basis points."})
    report_digest: str = field(metadata={"description": "Hex SM3 of the report's canonical bytes."})
    signed_by: str = field(metadata={"description": "Key id of the provider that signed it."})
    countersigned_by: tuple[str, ...] = field(
        metadata={"description": "Assessors that recomputed it and countersigned the same digest."}
    )
    disputed_by: tuple[str, ...] = field(
        metadata={"description": "Assessors that signed a different report on the same version."}
    )

    @classmethod
    def from_dict(cls, data: Any, where: str = "quality") -> QualitySummary:
        o = JSONObject(data, where)
        return cls(
            grade=o.text("grade"),
            score_bps=o.integer("score_bps"),
            report_digest=o.hex64("report_digest"),
            signed_by=o.hex64("signed_by"),
            countersigned_by=o.strings("countersigned_by"),
            disputed_by=o.strings("disputed_by"),
        )
