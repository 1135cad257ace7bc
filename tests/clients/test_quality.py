"""clients.quality.compute_report: each GB/T 36344 indicator on crafted files, with
its exact counts; determinism (same bytes, schema and as_of give the same report
bytes; a different row order the same indicators); and the files it refuses."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from clients.quality import QualityError, compute_report, load_table_schema
from ledger.protocol.quality import QualityReport, TableSchema, grade_of, score_of
from ledger.sm3 import sm3

DAY = 86_400_000
AS_OF = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def schema(*fields: dict[str, Any], **extra: Any) -> TableSchema:
    return TableSchema.from_dict({"fields": list(fields), **extra})


def write(tmp_path: Path, text: str | bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def report(path: Path, table: TableSchema, frequency: str = "once", **kw: Any) -> QualityReport:
    return compute_report(path, table, update_frequency=frequency, as_of=AS_OF, **kw)


def counts(result: QualityReport, name: str) -> tuple[int, int]:
    indicator = getattr(result, name)
    return indicator.passed, indicator.checked


def test_conformity_counts_rows_whose_every_present_cell_has_its_type(tmp_path: Path) -> None:
    data = write(
        tmp_path,
        "n,x,flag,day,at\n"
        "1,2.5,true,2025-01-02,2025-01-02T10:00:00Z\n"  # conforms
        "+3,-1e3,0,2025-02-28,2025-01-02T10:00:00.5+08:00\n"  # conforms
        ",,,,\n"  # missing cells conform
        "1.0,2.5,true,2025-01-02,2025-01-02T10:00:00Z\n"  # 1.0 is no integer
        "7,abc,true,2025-01-02,2025-01-02T10:00:00Z\n"  # abc is no number
        "7,1,yes,2025-01-02,2025-01-02T10:00:00Z\n"  # yes is no Table Schema boolean
        "7,1,true,2025-02-30,2025-01-02T10:00:00Z\n"  # no such date
        "7,1,true,2025-01-02,2025-01-02 10:00:00\n",  # a space is not ISO 8601's T
    )
    table = schema(
        {"name": "n", "type": "integer"},
        {"name": "x", "type": "number"},
        {"name": "flag", "type": "boolean"},
        {"name": "day", "type": "date"},
        {"name": "at", "type": "datetime"},
    )
    assert counts(report(data, table), "conformity") == (3, 8)


def test_completeness_counts_present_cells_of_required_fields(tmp_path: Path) -> None:
    data = write(tmp_path, 'id,name,note\n1,a,\n2,NA,x\n3,"",y\n,b,z\n')
    table = schema(
        {"name": "id", "type": "integer"},
        {"name": "name", "constraints": {"required": True}},
        {"name": "note"},
        primaryKey="id",
        missingValues=["", "NA"],
    )
    # required: name and the primary key id; 8 cells, missing: NA, "", and one id
    assert counts(report(data, table), "completeness") == (5, 8)
    # no field required: every cell counts
    plain = schema({"name": "id", "type": "integer"}, {"name": "name"}, {"name": "note"})
    assert counts(report(data, plain), "completeness") == (9, 12)


def test_accuracy_counts_each_constraint_on_present_conforming_cells(tmp_path: Path) -> None:
    data = write(
        tmp_path,
        "amount,city,code,day\n"
        "5,cq,AB12,2025-06-01\n"  # 6 checks pass
        "-1,bj,AB1,2024-12-31\n"  # minimum, minLength, date minimum fail
        "101,xx,ABCDEFGH9,2025-06-01\n"  # maximum, enum, maxLength fail (pattern passes)
        "x,,,\n",  # not conforming / missing: not checked
    )
    table = schema(
        {"name": "amount", "type": "integer", "constraints": {"minimum": 0, "maximum": 100}},
        {"name": "city", "constraints": {"enum": ["cq", "bj"]}},
        {
            "name": "code",
            "constraints": {"pattern": "[A-Z]+[0-9]+", "minLength": 4, "maxLength": 8},
        },
        {"name": "day", "type": "date", "constraints": {"minimum": "2025-01-01"}},
    )
    # checks per row: amount 2, city 1, code 3, day 1 = 7; three rows with values
    assert counts(report(data, table), "accuracy") == (7 + 4 + 4, 21)


def test_consistency_counts_distinct_keys_of_primary_and_unique_fields(tmp_path: Path) -> None:
    data = write(tmp_path, "stop,day,ticket\nA,1,t1\nA,2,t2\nA,1,t3\nB,1,t3\nB,01,t4\n")
    table = schema(
        {"name": "stop"},
        {"name": "day", "type": "integer"},
        {"name": "ticket", "constraints": {"unique": True}},
        primaryKey=["stop", "day"],
    )
    # keys: (A,1) twice, (A,2), (B,1) twice (01 is 1): 3 distinct of 5;
    # tickets: t3 twice: 4 distinct of 5
    assert counts(report(data, table), "consistency") == (3 + 4, 10)


@pytest.mark.parametrize(
    ("frequency", "newest", "expected"),
    [
        ("daily", "2025-12-31", 10_000),  # one day old: within the period
        ("daily", "2025-12-30", 6_667),  # two days: a third of the way to stale
        ("daily", "2025-12-28", 0),  # four periods old
        ("weekly", "2025-12-20", 7_620),  # 12 days: 5 days late of 21
        ("once", "2020-01-01", 10_000),  # no period promised
        ("daily", "2026-02-01", 10_000),  # from the future
    ],
)
def test_timeliness_from_the_newest_date_and_the_declared_period(
    tmp_path: Path, frequency: str, newest: str, expected: int
) -> None:
    data = write(tmp_path, f"day,at\n2019-01-01,\n{newest},2019-01-01T00:00:00Z\n")
    table = schema({"name": "day", "type": "date"}, {"name": "at", "type": "datetime"})
    result = report(data, table, frequency)
    assert result.timeliness.bps == expected
    assert result.timeliness.newest_ms is not None


def test_timeliness_without_any_date_is_zero_unless_once(tmp_path: Path) -> None:
    data = write(tmp_path, "n\n1\n")
    table = schema({"name": "n", "type": "integer"})
    assert report(data, table, "daily").timeliness.bps == 0
    assert report(data, table, "once").timeliness.bps == 10_000


def test_accessibility_counts_lines_that_do_not_parse(tmp_path: Path) -> None:
    data = write(tmp_path, b'id,name\n1,a\n2,b\xff\n3\n4,"unterminated\n5,e\n6,f,g\n')
    result = report(data, schema({"name": "id", "type": "integer"}, {"name": "name"}))
    passed, checked = counts(result, "accessibility")
    assert passed == result.rows
    assert checked > passed
    assert result.accessibility.bps < 10_000
    clean = write(tmp_path, "id,name\n1,a\n", "clean.csv")
    assert report(clean, schema({"name": "id"}, {"name": "name"})).accessibility.bps == 10_000


def test_score_and_grade_follow_the_weights_and_thresholds(tmp_path: Path) -> None:
    data = write(tmp_path, "n\n1\nx\n")
    result = report(data, schema({"name": "n", "type": "integer"}))
    assert result.conformity.bps == 5_000
    assert result.score_bps == score_of(result.bps()) == 9_000  # 20% of it lost: 10 points
    assert result.grade == grade_of(9_000) == "A"
    assert [grade_of(s) for s in (8_999, 7_500, 7_499, 6_000, 5_999, 0)] == list("BBCCDD")


def _big_rows(n: int) -> list[str]:
    rng = random.Random(7)
    return [f"{i},{rng.choice(['cq', 'bj', 'sh', ''])},{rng.randint(-50, 1000)}" for i in range(n)]


BIG_SCHEMA = {
    "fields": [
        {"name": "id", "type": "integer"},
        {"name": "city", "constraints": {"enum": ["cq", "bj"], "required": True}},
        {"name": "amount", "type": "integer", "constraints": {"minimum": 0}},
    ],
    "primaryKey": ["id"],
}


def test_same_bytes_and_schema_give_the_same_report_bytes(tmp_path: Path) -> None:
    rows = _big_rows(20_000)
    data = write(tmp_path, "id,city,amount\n" + "\n".join(rows) + "\n")
    table = TableSchema.from_dict(BIG_SCHEMA)
    first = report(data, table, threads=1).to_bytes()
    again = report(data, table, threads=4).to_bytes()
    assert first == again
    assert QualityReport.from_dict(report(data, table).to_dict()).to_bytes() == first
    # other rows in another order: other bytes (content_sm3), the same indicators
    random.Random(1).shuffle(rows)
    shuffled = report(write(tmp_path, "id,city,amount\n" + "\n".join(rows) + "\n", "s.csv"), table)
    assert shuffled.content_sm3 != QualityReport.from_dict(_json(first)).content_sm3
    assert shuffled.bps() == QualityReport.from_dict(_json(first)).bps()
    assert sm3(first).hex() == report(data, table).digest()


def _json(data: bytes) -> Any:
    import json

    return json.loads(data)


def test_tsv_and_a_schema_file(tmp_path: Path) -> None:
    data = write(tmp_path, "a\tb\n1\tx\n", "data.tsv")
    path = tmp_path / "schema.json"
    path.write_text('{"fields": [{"name": "a", "type": "integer"}, {"name": "b"}]}')
    result = report(data, load_table_schema(path))
    assert (result.rows, result.conformity.bps) == (1, 10_000)


@pytest.mark.parametrize(
    ("text", "fields", "kw", "message"),
    [
        ("a,c\n1,2\n", ["a", "b"], {}, "header"),
        ("a,b\n1,2\n", ["a", "b"], {"format": "jsonl"}, "csv or tsv"),
        (b"\xff\xfe,b\n", ["a", "b"], {}, "UTF-8"),
    ],
)
def test_files_it_cannot_report_on(
    tmp_path: Path, text: str | bytes, fields: list[str], kw: dict[str, Any], message: str
) -> None:
    data = write(tmp_path, text)
    table = schema(*({"name": name} for name in fields))
    with pytest.raises(QualityError, match=message):
        report(data, table, **kw)


def test_a_missing_file_and_a_bad_schema_file(tmp_path: Path) -> None:
    with pytest.raises(QualityError, match="cannot read"):
        report(tmp_path / "absent.csv", schema({"name": "a"}))
    bad = tmp_path / "schema.json"
    bad.write_text(
        '{"fields": [{"name": "a", "type": "integer", "constraints": {"minimum": 0.5}}]}'
    )
    with pytest.raises(QualityError, match="minimum"):
        load_table_schema(bad)
    with pytest.raises(QualityError, match="update frequency"):
        compute_report(tmp_path / "x.csv", schema({"name": "a"}), update_frequency="x", as_of=0)
