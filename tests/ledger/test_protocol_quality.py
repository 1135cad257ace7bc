"""ledger.protocol.quality: the Table Schema subset and the report parse strictly, and a
report whose numbers do not give its bps, score or grade is refused, naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ledger.protocol.quality import (
    Indicator,
    QualityCountersigned,
    QualityReport,
    QualityReported,
    TableSchema,
    Timeliness,
    timeliness_bps,
)
from ledger.records import RecordFormatError, canonical_json
from ledger.sm3 import sm3

SCHEMA = {
    "fields": [
        {"name": "id", "type": "integer", "constraints": {"required": True, "minimum": 1}},
        {"name": "city", "constraints": {"enum": ["cq"], "pattern": "[a-z]+"}},
        {"name": "day", "type": "date", "constraints": {"maximum": "2030-01-01"}},
    ],
    "primaryKey": "id",
}


def make_report() -> QualityReport:
    return QualityReport(
        content_sm3="ab" * 32,
        byte_size=100,
        rows=10,
        table_schema=TableSchema.from_dict(SCHEMA),
        update_frequency="daily",
        as_of=1_000_000_000_000,
        conformity=Indicator(9, 10),
        completeness=Indicator(10, 10),
        accuracy=Indicator(17, 20),
        consistency=Indicator(10, 10),
        timeliness=Timeliness(999_950_000_000, 86_400_000, 10_000),
        accessibility=Indicator(10, 11),
    )


def test_the_report_round_trips_and_its_digest_is_the_sm3_of_its_canonical_bytes() -> None:
    report = make_report()
    data = report.to_dict()
    assert data["indicators"]["accuracy"] == {"passed": 17, "checked": 20, "bps": 8500}
    assert data["table_schema"]["primaryKey"] == ["id"]  # normalised
    assert data["table_schema"]["fields"][1]["type"] == "string"
    assert QualityReport.from_dict(data) == report
    assert report.digest() == sm3(canonical_json(data)).hex()
    assert (
        report.score_bps
        == (20 * 9000 + 20 * 10000 + 20 * 8500 + 15 * 10000 + 10 * 10000 + 15 * 9090) // 100
    )
    assert report.grade == "A"


def _changed(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(make_report().to_dict())
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("desc", "path", "value", "where"),
    [
        ("a float", ("indicators", "accuracy", "bps"), 8500.0, "indicators.accuracy.bps"),
        (
            "bps not from the counts",
            ("indicators", "accuracy", "bps"),
            9000,
            "indicators.accuracy.bps",
        ),
        (
            "passed above checked",
            ("indicators", "accuracy", "passed"),
            21,
            "indicators.accuracy.passed",
        ),
        ("a score not from the indicators", ("score_bps",), 10_000, "score_bps"),
        ("a grade not from the score", ("grade",), "B", "grade"),
        ("other weights", ("weights", "timeliness"), 50, "weights"),
        ("an unknown field", ("extra",), 1, "extra"),
        ("a missing field", ("rows",), KeyError, "rows"),
        ("another kind", ("kind",), "x", "kind"),
        ("an unknown indicator", ("indicators", "beauty"), {}, "indicators.beauty"),
        (
            "timeliness not from newest and as_of",
            ("indicators", "timeliness", "bps"),
            5000,
            "indicators.timeliness.bps",
        ),
        (
            "a period that is not the frequency's",
            ("indicators", "timeliness", "period_ms"),
            1,
            "indicators.timeliness.period_ms",
        ),
        ("an unknown frequency", ("update_frequency",), "sometimes", "update_frequency"),
        (
            "a float bound",
            ("table_schema", "fields", 0, "constraints", "minimum"),
            0.5,
            "table_schema.fields[0].constraints.minimum",
        ),
        (
            "a bound on a string",
            ("table_schema", "fields", 1, "constraints", "minimum"),
            1,
            "table_schema.fields[1].constraints.minimum",
        ),
        (
            "an unknown constraint",
            ("table_schema", "fields", 0, "constraints", "format"),
            "x",
            "table_schema.fields[0].constraints.format",
        ),
        (
            "an unknown type",
            ("table_schema", "fields", 0, "type"),
            "geopoint",
            "table_schema.fields[0].type",
        ),
        (
            "a date bound that is no date",
            ("table_schema", "fields", 2, "constraints", "maximum"),
            "2030-1-1",
            "table_schema.fields[2].constraints.maximum",
        ),
        (
            "a key naming no field",
            ("table_schema", "primaryKey"),
            ["nope"],
            "table_schema.primaryKey",
        ),
        (
            "an empty enum",
            ("table_schema", "fields", 1, "constraints", "enum"),
            [],
            "table_schema.fields[1].constraints.enum",
        ),
        (
            "a name with a quote",
            ("table_schema", "fields", 0, "name"),
            'a"b',
            "table_schema.fields[0].name",
        ),
    ],
)
def test_malformed_reports_are_refused_naming_the_field(
    desc: str, path: tuple[str | int, ...], value: Any, where: str
) -> None:
    with pytest.raises(RecordFormatError) as caught:
        QualityReport.from_dict(_changed(path, value), "report")
    assert caught.value.path.startswith(f"report.{where}") or caught.value.path == "report", desc


def test_duplicate_field_names_are_refused() -> None:
    with pytest.raises(RecordFormatError, match="distinct"):
        TableSchema.from_dict({"fields": [{"name": "a"}, {"name": "a"}]})


def test_timeliness_bps_boundaries() -> None:
    day = 86_400_000
    assert timeliness_bps(None, None, 0) == 10_000
    assert timeliness_bps(None, day, 0) == 0
    assert timeliness_bps(0, day, day) == 10_000
    assert timeliness_bps(0, day, day + 1) == 10_000  # the deduction is rounded down
    assert timeliness_bps(0, day, 2 * day) == 6_667
    assert timeliness_bps(0, day, 4 * day - 1) == 1
    assert timeliness_bps(0, day, 4 * day) == 0


def test_record_payloads_parse_strictly() -> None:
    report = make_report()
    payload = {
        "listing_id": "0b8e7c1a-1f2d-4c3b-9a8e-7d6c5b4a3f21",
        "version": 1,
        "report": report.to_dict(),
        "report_sm3": report.digest(),
    }
    assert QualityReported.from_dict(payload).to_dict() == payload
    for bad in ({**payload, "listing_id": "X"}, {**payload, "version": 0}, {**payload, "x": 1}):
        with pytest.raises(RecordFormatError):
            QualityReported.from_dict(bad)
    signed = {"listing_id": payload["listing_id"], "version": 1, "report_sm3": report.digest()}
    assert QualityCountersigned.from_dict(signed).to_dict() == signed
    with pytest.raises(RecordFormatError, match="report_sm3"):
        QualityCountersigned.from_dict({**signed, "report_sm3": "AB" * 32})


def test_assessment_terms_of_a_quote() -> None:
    from ledger.protocol.quote import QuoteTerms

    terms = QuoteTerms(None, None, "standard", purpose="assessment")
    data = terms.to_dict()
    assert data == {"rows": None, "periods": None, "licence": "standard", "purpose": "assessment"}
    assert QuoteTerms.from_dict(data) == terms
    assert "purpose" not in QuoteTerms(None, None, "standard").to_dict()  # old bytes kept
    for bad in (
        {**data, "purpose": "resale"},
        {**data, "purpose": 1},
        {**data, "rows": 10},
        {**data, "periods": 1},
    ):
        with pytest.raises(RecordFormatError, match="purpose"):
            QuoteTerms.from_dict(bad)
