"""``clients.datasets.describe_file``: formats, type inference, errors, the row tree, one
streamed pass."""

from __future__ import annotations

import datetime
import decimal
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]
import pytest

from clients import datasets
from clients.datasets import (
    DatasetDescription,
    DatasetError,
    DatasetFormatError,
    RaggedRowError,
    describe_file,
    detect_format,
)
from exchange.listings.schemas import ListingContent
from ledger.merkle import leaf_hash, root_from_leaf_hashes
from ledger.row_tree import RowIndex
from ledger.sm3 import sm3_file


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def assert_digest(path: Path, described: DatasetDescription) -> None:
    assert described.sm3 == sm3_file(path).hex()
    assert described.byte_size == path.stat().st_size


# --------------------------------------------------------------------------- CSV


def test_csv_schema_rows_sample_and_digest(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bus.csv",
        "stop,boardings,share,peak,day\r\n"
        "解放碑,1200,0.25,true,2025-01-02\r\n"
        "观音桥,,0.50,FALSE,2025-01-03\r\n"
        "沙坪坝,800,1,false,2025-01-04\r\n",
    )
    d = describe_file(path, sample_rows=2)
    assert d.format == "csv"
    assert d.row_count == 3
    assert d.schema == [
        {"name": "stop", "type": "string"},
        {"name": "boardings", "type": "integer"},
        {"name": "share", "type": "number"},
        {"name": "peak", "type": "boolean"},
        {"name": "day", "type": "date"},
    ]
    # integers and booleans typed, numbers keep their exact text, empty cells are None
    assert d.sample == [
        {"stop": "解放碑", "boardings": 1200, "share": "0.25", "peak": True, "day": "2025-01-02"},
        {"stop": "观音桥", "boardings": None, "share": "0.50", "peak": False, "day": "2025-01-03"},
    ]
    assert_digest(path, d)


CSV_TYPE_CASES: list[tuple[str, list[str], str]] = [
    ("integers", ["1", "2", "-3", "+4", "0", "-0"], "integer"),
    ("integers widen to number", ["1", "2.5"], "number"),
    ("number forms", ["1.", ".5", "1e5", "-2.5E-3"], "number"),
    ("leading zero is text (codes, IDs)", ["007", "12"], "string"),
    ("double zero is text", ["00", "00.5"], "string"),
    ("number then text", ["1.5", "abc"], "string"),
    ("nan and inf are text", ["nan", "inf"], "string"),
    ("thousands separator is text", ["1,000"], "string"),
    ("padded number is text", [" 1"], "string"),
    ("booleans any case", ["true", "False", "TRUE"], "boolean"),
    ("boolean and integer do not mix", ["true", "1"], "string"),
    ("yes/no are not booleans", ["yes", "no"], "string"),
    ("ISO dates", ["2025-01-01", "2024-02-29"], "date"),
    ("impossible date is text", ["2025-02-30"], "string"),
    ("basic-format date is an integer", ["20250101"], "integer"),
    ("slashed date is text", ["2025/01/01"], "string"),
    ("date widens to datetime", ["2025-01-01", "2025-01-01T08:00:00"], "datetime"),
    ("datetime forms", ["2025-01-01 12:30", "2025-01-01T12:30:00.123+08:00"], "datetime"),
    ("datetime with Z", ["2025-01-01T00:00:00Z"], "datetime"),
    ("impossible time is text", ["2025-01-01T25:00:00"], "string"),
    ("date then text", ["2025-01-01", "soon"], "string"),
    ("date and integer", ["2025-01-01", "5"], "string"),
    ("empty cells are ignored", ["", "3", ""], "integer"),
    ("all empty is string", ["", ""], "string"),
]


@pytest.mark.parametrize(
    ("values", "expected"),
    [(v, e) for _, v, e in CSV_TYPE_CASES],
    ids=[desc for desc, _, _ in CSV_TYPE_CASES],
)
def test_csv_type_inference(tmp_path: Path, values: list[str], expected: str) -> None:
    # a lone empty field is written quoted (as csv.writer does): a bare empty line is blank
    lines = ["v"] + [f'"{v}"' if "," in v or not v else v for v in values]
    path = write(tmp_path, "t.csv", "\n".join(lines) + "\n")
    d = describe_file(path)
    assert d.schema == [{"name": "v", "type": expected}]
    assert d.row_count == len(values)


def test_csv_quoting_bom_blank_lines_and_multiline_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "q.csv",
        b'\xef\xbb\xbfname,note\n\n"a, b","line one\nline two"\n\nc,"say ""hi"""\n',
    )
    d = describe_file(path)
    assert d.row_count == 2
    assert d.schema is not None and [c["name"] for c in d.schema] == ["name", "note"]
    assert d.sample == [
        {"name": "a, b", "note": "line one\nline two"},
        {"name": "c", "note": 'say "hi"'},
    ]
    assert_digest(path, d)  # the BOM is in the digest: the exact bytes


def test_csv_without_trailing_newline(tmp_path: Path) -> None:
    d = describe_file(write(tmp_path, "n.csv", "a,b\n1,2"))
    assert d.row_count == 1 and d.sample == [{"a": 1, "b": 2}]


@pytest.mark.parametrize(
    ("body", "line", "fields"),
    [
        ("a,b,c\n1,2,3\n4,5\n", 3, 2),
        ("a,b\n1,2\n3,4,5\n", 3, 3),
        ('a,b\n"x\ny",2\n1\n', 4, 1),  # line numbers count physical lines
    ],
    ids=["too few", "too many", "after a multi-line field"],
)
def test_csv_ragged_row_is_an_error_naming_the_line(
    tmp_path: Path, body: str, line: int, fields: int
) -> None:
    with pytest.raises(RaggedRowError) as caught:
        describe_file(write(tmp_path, "r.csv", body))
    assert caught.value.line == line
    assert f"line {line}: {fields} fields, the header has" in str(caught.value)


def test_csv_bad_quoting_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="not valid CSV"):
        describe_file(write(tmp_path, "b.csv", 'a,b\n"x"y,2\n'))


def test_csv_unterminated_quote_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="not valid CSV"):
        describe_file(write(tmp_path, "u.csv", 'a,b\n"open,2\n'))


def test_csv_empty_file_and_header_only(tmp_path: Path) -> None:
    empty = describe_file(write(tmp_path, "e.csv", b""))
    assert (empty.row_count, empty.schema, empty.sample) == (0, [], [])
    assert_digest(tmp_path / "e.csv", empty)
    assert empty.byte_size == 0

    header = describe_file(write(tmp_path, "h.csv", "a,b\n"))
    assert header.row_count == 0
    assert header.schema == [{"name": "a", "type": "string"}, {"name": "b", "type": "string"}]
    assert header.sample == []


def test_csv_blank_and_repeated_header_names(tmp_path: Path) -> None:
    d = describe_file(write(tmp_path, "d.csv", " id ,,id,id\n1,2,3,4\n"))
    assert d.schema is not None
    assert [c["name"] for c in d.schema] == ["id", "column_2", "id_2", "id_3"]


def test_csv_other_encodings(tmp_path: Path) -> None:
    path = write(tmp_path, "g.csv", "站点,人数\n解放碑,5\n".encode("gb18030"))
    with pytest.raises(DatasetFormatError, match="not utf-8-sig text"):
        describe_file(path)
    d = describe_file(path, encoding="gb18030")
    assert d.sample == [{"站点": "解放碑", "人数": 5}]
    assert_digest(path, d)
    with pytest.raises(DatasetError, match="unknown encoding"):
        describe_file(path, encoding="no-such-codec")


def test_tsv(tmp_path: Path) -> None:
    d = describe_file(write(tmp_path, "t.tsv", "a\tb\nx,y\t2\n"))
    assert d.format == "tsv"
    assert d.sample == [{"a": "x,y", "b": 2}]
    assert d.to_listing_fields()["format"] == "tsv"


def test_overlong_line_is_refused_not_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datasets, "MAX_LINE_CHARS", 64)
    with pytest.raises(DatasetFormatError, match="line 2: longer than 64"):
        describe_file(write(tmp_path, "l.csv", "a\n" + "x" * 200 + "\n"))
    with pytest.raises(DatasetFormatError, match="line 1: longer than 64"):
        describe_file(write(tmp_path, "l.jsonl", '{"a": "' + "x" * 200 + '"}\n'))


def test_large_file_streams_in_chunks_with_progress(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8") as out:
        out.write("id,value,when\n")
        for i in range(60_000):
            out.write(f"{i},{i * 0.5},2025-01-{1 + i % 28:02d}\n")
    assert path.stat().st_size > (1 << 20)  # several read chunks
    seen: list[int] = []
    d = describe_file(path, progress=seen.append)
    assert d.row_count == 60_000
    assert d.schema == [
        {"name": "id", "type": "integer"},
        {"name": "value", "type": "number"},
        {"name": "when", "type": "date"},
    ]
    assert len(d.sample or []) == 5
    assert sum(seen) == path.stat().st_size and len(seen) > 1
    assert_digest(path, d)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_memory_stays_bounded_whatever_the_file_size(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"huge{suffix}"
    text = "重庆" * 500  # long rows: many bytes, few rows (tracing makes rows slow)
    if suffix == ".csv":
        header, line = "id,name,day\n", f"12345,{text},2025-01-01\n"
    else:
        header, line = "", json.dumps({"id": 12345, "name": text, "day": "2025-01-01"}) + "\n"
    block = line * 1_000
    with path.open("w", encoding="utf-8") as out:
        out.write(header)
        for _ in range(5):
            out.write(block)
    size = path.stat().st_size
    assert size > 15_000_000
    tracemalloc.start()
    try:
        d = describe_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert d.row_count == 5_000
    assert peak < 5_000_000  # a few read buffers, not the file


# --------------------------------------------------------------------------- JSON Lines


def test_jsonl_key_union_in_first_appearance_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "e.jsonl",
        '{"id": 1, "name": "a"}\n\n{"id": 2, "score": 0.5}\r\n{"tags": ["x"], "id": 3}\n',
    )
    d = describe_file(path, sample_rows=2)
    assert d.format == "jsonl" and d.row_count == 3
    assert d.schema == [
        {"name": "id", "type": "integer"},
        {"name": "name", "type": "string"},
        {"name": "score", "type": "number"},
        {"name": "tags", "type": "json"},
    ]
    # sample rows carry every column (missing keys as None)
    assert d.sample == [
        {"id": 1, "name": "a", "score": None, "tags": None},
        {"id": 2, "name": None, "score": 0.5, "tags": None},
    ]
    assert_digest(path, d)


JSONL_TYPE_CASES: list[tuple[str, list[Any], str]] = [
    ("integers", [1, -2, 0], "integer"),
    ("integers widen to number", [1, 2.5], "number"),
    ("booleans", [True, False], "boolean"),
    ("boolean and integer are json", [True, 1], "json"),
    ("text and integer are json", ["a", 1], "json"),
    ("numeric text stays text", ["1", "2"], "string"),
    ("dates in strings", ["2025-01-01"], "date"),
    ("date widens to datetime", ["2025-01-01", "2025-01-01T00:00:00Z"], "datetime"),
    ("date then text", ["2025-01-01", "x"], "string"),
    ("objects", [{"a": 1}], "json"),
    ("arrays", [[1, 2]], "json"),
    ("nulls are ignored", [None, 3, None], "integer"),
    ("all null is string", [None], "string"),
]


@pytest.mark.parametrize(
    ("values", "expected"),
    [(v, e) for _, v, e in JSONL_TYPE_CASES],
    ids=[desc for desc, _, _ in JSONL_TYPE_CASES],
)
def test_jsonl_type_inference(tmp_path: Path, values: list[Any], expected: str) -> None:
    body = "".join(json.dumps({"v": v}) + "\n" for v in values)
    d = describe_file(write(tmp_path, "t.jsonl", body))
    assert d.schema == [{"name": "v", "type": expected}]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"a": 1}\n[1, 2]\n', "line 2: expected a JSON object, got list"),
        ('{"a": 1}\n{"a": \n', "line 2: not JSON"),
        ('{"a": NaN}\n', "line 1: not JSON"),
        (b'{"a": "\xff"}\n', "line 1: not UTF-8"),
    ],
    ids=["not an object", "broken JSON", "NaN", "not UTF-8"],
)
def test_jsonl_errors_name_the_line(tmp_path: Path, body: str | bytes, message: str) -> None:
    with pytest.raises(DatasetFormatError, match=message):
        describe_file(write(tmp_path, "x.jsonl", body))


def test_jsonl_empty_and_bom(tmp_path: Path) -> None:
    empty = describe_file(write(tmp_path, "e.jsonl", b"\n\n"))
    assert (empty.row_count, empty.schema, empty.sample) == (0, [], [])
    bom = describe_file(write(tmp_path, "b.ndjson", b'\xef\xbb\xbf{"a": 1}\n'))
    assert bom.format == "jsonl" and bom.schema == [{"name": "a", "type": "integer"}]


# --------------------------------------------------------------------------- Parquet


def test_parquet_schema_from_metadata_sample_from_first_row_group(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    table = pa.table(
        {
            "i": pa.array([1, 2, 3, 4, 5], pa.int32()),
            "f": [0.5, 1.5, 2.5, 3.5, 4.5],
            "s": ["a", "b", None, "d", "e"],
            "b": [True, False, True, False, True],
            "d": [datetime.date(2025, 1, i) for i in range(1, 6)],
            "t": [datetime.datetime(2025, 1, 1, 8, i) for i in range(5)],
            "m": pa.array([decimal.Decimal("1.10")] * 5, pa.decimal128(5, 2)),
            "raw": [b"\x00\x01"] * 5,
            "l": [[1], [2], [], [4], [5]],
        }
    )
    pq.write_table(table, path, row_group_size=2)
    d = describe_file(path, sample_rows=10)
    assert d.format == "parquet"
    assert d.row_count == 5  # from the metadata, across row groups
    assert d.schema == [
        {"name": "i", "type": "integer"},
        {"name": "f", "type": "number"},
        {"name": "s", "type": "string"},
        {"name": "b", "type": "boolean"},
        {"name": "d", "type": "date"},
        {"name": "t", "type": "datetime"},
        {"name": "m", "type": "number"},
        {"name": "raw", "type": "binary"},
        {"name": "l", "type": "json"},
    ]
    assert d.sample is not None and len(d.sample) == 2  # the first row group only
    assert d.sample[0] == {
        "i": 1,
        "f": 0.5,
        "s": "a",
        "b": True,
        "d": "2025-01-01",
        "t": "2025-01-01T08:00:00",
        "m": "1.10",
        "raw": "AAE=",
        "l": [1],
    }
    json.dumps(d.to_dict())  # JSON-ready
    assert_digest(path, d)


def test_parquet_empty_table_and_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    pq.write_table(pa.table({"a": pa.array([], pa.int64())}), path)
    d = describe_file(path)
    assert d.row_count == 0 and d.schema == [{"name": "a", "type": "integer"}] and d.sample == []
    with pytest.raises(DatasetFormatError, match="not a Parquet file"):
        describe_file(write(tmp_path, "fake.parquet", b"PAR1 but not really"))


# --------------------------------------------------------------------------- binary, arguments


def test_binary_is_digest_and_size_only(tmp_path: Path) -> None:
    path = write(tmp_path, "blob.bin", bytes(range(256)) * 10)
    d = describe_file(path)
    assert (d.format, d.row_count, d.schema, d.sample) == ("binary", None, None, None)
    assert_digest(path, d)
    fields = d.to_listing_fields()
    assert fields["format"] == "other" and fields["row_count"] == 0
    assert fields["columns"] == [{"name": "content", "type": "binary"}]
    assert fields["sample_rows"] == []


def test_format_override_and_detection(tmp_path: Path) -> None:
    path = write(tmp_path, "data.txt", "a,b\n1,2\n")
    assert describe_file(path).format == "binary"
    assert describe_file(path, format="csv").row_count == 1
    assert describe_file(write(tmp_path, "x.CSV", "a\n1\n"), format="binary").schema is None
    assert [detect_format(n) for n in ("a.csv", "a.TSV", "a.jsonl", "a.ndjson", "a.pq")] == [
        "csv",
        "tsv",
        "jsonl",
        "jsonl",
        "parquet",
    ]
    with pytest.raises(DatasetError, match="unknown format 'xml'"):
        describe_file(path, format="xml")
    with pytest.raises(DatasetError, match="sample_rows"):
        describe_file(path, sample_rows=-1)


def test_sample_rows_zero_and_unopenable_paths(tmp_path: Path) -> None:
    path = write(tmp_path, "a.csv", "a\n1\n2\n")
    d = describe_file(path, sample_rows=0)
    assert d.sample == [] and d.row_count == 2
    with pytest.raises(FileNotFoundError):
        describe_file(tmp_path / "missing.csv")
    with pytest.raises(IsADirectoryError):
        describe_file(tmp_path)


def test_description_is_frozen(tmp_path: Path) -> None:
    d = describe_file(write(tmp_path, "a.csv", "a\n1\n"))
    with pytest.raises(AttributeError):
        d.row_count = 5  # type: ignore[misc]


# --------------------------------------------------------------------------- listing fields


def test_listing_fields_are_accepted_by_the_listing_schema(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "m.jsonl",
        json.dumps({"id": 2**60, "x": 0.1, "obj": {"k": [1]}, "ok": True, "day": "2025-01-01"})
        + "\n",
    )
    fields = describe_file(path).to_listing_fields()
    assert fields["columns"] == [
        {"name": "id", "type": "integer"},
        {"name": "x", "type": "decimal"},
        {"name": "obj", "type": "json"},
        {"name": "ok", "type": "boolean"},
        {"name": "day", "type": "date"},
    ]
    # values the API refuses (unsafe integers, floats, nested) become text
    assert fields["sample_rows"] == [
        {"id": str(2**60), "x": "0.1", "obj": '{"k":[1]}', "ok": True, "day": "2025-01-01"}
    ]
    content = {
        "title": "t",
        "category": "c",
        "providers": [{"key_id": "ab" * 32, "share_bps": 10_000}],
        "update_frequency": "once",
        "pricing": {"model": "free"},
        **fields,
    }
    ListingContent.model_validate(content)
    csv_fields = describe_file(write(tmp_path, "a.csv", "a,b\n1,2.5\n")).to_listing_fields()
    ListingContent.model_validate({**content, **csv_fields})


# --------------------------------------------------------------------------- row tree


def row_root(rows: list[bytes]) -> str:
    """The row root by its definition: RFC 9162 SM3 tree of SM3(00 || row bytes)."""
    return root_from_leaf_hashes([leaf_hash(r) for r in rows]).hex()


ROW_BYTES_CASES: list[tuple[str, bytes, list[bytes]]] = [
    ("lf", b"a,b\n1,2\n3,4\n", [b"1,2", b"3,4"]),
    ("crlf", b"a,b\r\n1,2\r\n3,4\r\n", [b"1,2", b"3,4"]),
    ("lone cr", b"a,b\r1,2\r3,4\r", [b"1,2", b"3,4"]),
    ("no final newline", b"a,b\n1,2\n3,4", [b"1,2", b"3,4"]),
    (
        "quoted line breaks stay in the record",
        b'a,b\r\n1,"x\r\ny"\r\n2,"p\nq\rr"\n3,""""\n',
        [b'1,"x\r\ny"', b'2,"p\nq\rr"', b'3,""""'],
    ),
    (
        "blank lines and a BOM are not rows",
        b"\xef\xbb\xbfa,b\n\n1,2\n\r\n3,4\n\n",
        [b"1,2", b"3,4"],
    ),
    ("header only", b"a,b\n", []),
    ("empty", b"", []),
    ("utf-8 text", "站,人\n解放碑,5\n".encode(), ["解放碑,5".encode()]),
]


@pytest.mark.parametrize(
    ("body", "rows"),
    [(b, r) for _, b, r in ROW_BYTES_CASES],
    ids=[d for d, _, _ in ROW_BYTES_CASES],
)
def test_csv_row_root_is_over_the_raw_records(
    tmp_path: Path, body: bytes, rows: list[bytes]
) -> None:
    d = describe_file(write(tmp_path, "r.csv", body))
    assert d.row_count == len(rows)
    assert d.row_root == row_root(rows)
    assert d.to_dict()["row_root"] == d.row_root


def test_csv_row_root_keeps_the_files_encoding(tmp_path: Path) -> None:
    path = write(tmp_path, "g.csv", "站点,人数\n解放碑,5\n".encode("gb18030"))
    d = describe_file(path, encoding="gb18030")
    assert d.row_root == row_root(["解放碑,5".encode("gb18030")])
    tsv = describe_file(write(tmp_path, "t.tsv", b"a\tb\nx,y\t2\n"))
    assert tsv.row_root == row_root([b"x,y\t2"])


def test_utf16_csv_is_described_without_a_row_tree(tmp_path: Path) -> None:
    index = tmp_path / "u.idx"
    path = write(tmp_path, "u.csv", "a,b\n1,2\n".encode("utf-16"))
    d = describe_file(path, encoding="utf-16", row_index=index)
    assert (d.row_count, d.sample, d.row_root) == (1, [{"a": 1, "b": 2}], None)
    assert not index.exists() and list(tmp_path.iterdir()) == [path]


def test_jsonl_row_root_is_over_the_raw_lines(tmp_path: Path) -> None:
    body = b'\xef\xbb\xbf{"a": 1}\r\n\n  \n{"a":2}  \n{"a": 3}'
    d = describe_file(write(tmp_path, "r.jsonl", body))
    assert d.row_count == 3
    assert d.row_root == row_root([b'{"a": 1}', b'{"a":2}  ', b'{"a": 3}'])


def test_parquet_row_root_is_over_canonical_rows(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    table = pa.table(
        {
            "i": pa.array([1, 2**60, None], pa.int64()),
            "f": [0.5, 1.0, float("nan")],
            "d": [datetime.date(2025, 1, 1)] * 3,
            "m": pa.array([decimal.Decimal("1.10")] * 3, pa.decimal128(5, 2)),
            "b": [b"\x00", b"", None],
        }
    )
    pq.write_table(table, path, row_group_size=2)
    d = describe_file(path)
    assert d.row_count == 3
    assert d.row_root == row_root(
        [
            b'{"b":"AA==","d":"2025-01-01","f":0.5,"i":1,"m":"1.10"}',
            b'{"b":"","d":"2025-01-01","f":1,"i":"1152921504606846976","m":"1.10"}',
            b'{"b":null,"d":"2025-01-01","f":"NaN","i":null,"m":"1.10"}',
        ]
    )


def test_binary_has_no_row_root(tmp_path: Path) -> None:
    index = tmp_path / "b.idx"
    d = describe_file(write(tmp_path, "b.bin", b"\x00\x01"), row_index=index)
    assert d.row_root is None and not index.exists()


def test_row_index_is_written_in_the_same_pass_and_changes_nothing_else(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("id,value\n")
        for i in range(3000):
            out.write(f'{i},"v\n{i}"\n' if i % 7 == 0 else f"{i},{i * 3}\n")
    plain = describe_file(path)
    reads: list[int] = []
    indexed = describe_file(path, row_index=tmp_path / "big.idx", progress=reads.append)
    assert indexed == plain
    assert sum(reads) == path.stat().st_size  # the file is read once
    with RowIndex(tmp_path / "big.idx") as index:
        assert index.root.hex() == plain.row_root
        assert index.tree_size == 3000 and index.header_end == len(b"id,value\n")
        assert index.data_sm3.hex() == plain.sm3
        assert index.block_offset(1) == path.read_bytes().index(b"\n1024,") + 1


def test_a_failed_description_leaves_no_index(tmp_path: Path) -> None:
    index = tmp_path / "r.idx"
    index.write_bytes(b"an older index")
    with pytest.raises(RaggedRowError):
        describe_file(write(tmp_path, "r.csv", "a,b\n1,2\n3\n"), row_index=index)
    assert index.read_bytes() == b"an older index"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.idx"]


def test_row_tree_memory_does_not_grow_with_rows(tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    with path.open("w", encoding="utf-8") as out:
        out.write("id\n")
        out.write("".join(f"{i}\n" for i in range(40_000)))
    tracemalloc.start()
    try:
        d = describe_file(path, row_index=tmp_path / "many.idx")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert d.row_count == 40_000
    assert peak < 4_000_000  # read buffers; holding the 40,000 leaf hashes would add 3 MB
