"""clients.slices: a provider cuts rows [offset, offset + count) with their range proof; a
buyer's check passes for exactly those rows and names the check that fails otherwise."""

from __future__ import annotations

import csv
import json
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]
import pytest

from clients.datasets import DatasetDescription, DatasetError, describe_file
from clients.slices import (
    SLICE_CHECKS,
    SliceCheckError,
    SliceProof,
    SliceReader,
    open_text_slice,
    verify_slice,
    write_slice,
)
from ledger.merkle import RangeError
from ledger.row_tree import RowIndexError

ROWS = 100_000
HEADER = b"id,station,reading,note\r\n"


def record(i: int) -> bytes:
    """Row i's raw record, terminator included (some with quoted line breaks)."""
    note = f'"seen\r\nat {i % 97}"' if i % 13 == 0 else f"plain {i % 89}"
    return f"{i},解放碑-{i % 16},{i * 0.25:.2f},{note}\r\n".encode()


@dataclass(frozen=True)
class Dataset:
    path: Path
    index: Path
    description: DatasetDescription

    @property
    def root(self) -> bytes:
        assert self.description.row_root is not None
        return bytes.fromhex(self.description.row_root)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    directory = tmp_path_factory.mktemp("dataset")
    path = directory / "readings.csv"
    with path.open("wb") as out:
        out.write(b"\xef\xbb\xbf" + HEADER)
        for start in range(0, ROWS, 10_000):
            out.write(b"".join(record(i) for i in range(start, start + 10_000)))
            out.write(b"\r\n")  # blank lines are not rows
    index = directory / "readings.idx"
    description = describe_file(path, row_index=index)
    assert description.row_count == ROWS
    return Dataset(path, index, description)


def check_of(slice_path: Path, offset: int, count: int, root: bytes, proof: SliceProof) -> str:
    with pytest.raises(SliceCheckError) as info:
        verify_slice(slice_path, offset, count, ROWS, root, proof.proof)
    assert info.value.check in SLICE_CHECKS
    assert f"slice check {info.value.check!r} failed" in str(info.value)
    return info.value.check


def body_of(slice_path: Path) -> bytes:
    data = slice_path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf" + HEADER)
    return data[len(b"\xef\xbb\xbf" + HEADER) :]


# --------------------------------------------------------------------------- correct slices


@pytest.mark.parametrize(
    ("offset", "count"),
    [(20_000, 20_000), (0, 1), (0, ROWS), (ROWS - 1, 1), (1023, 2), (31_337, 4_242)],
    ids=["20k from 20k", "first row", "all rows", "last row", "across a block edge", "odd"],
)
def test_a_correct_slice_of_a_100000_row_csv_verifies(
    dataset: Dataset, tmp_path: Path, offset: int, count: int
) -> None:
    out = tmp_path / "slice.csv"
    proof = write_slice(dataset.path, out, offset, count, index=dataset.index)
    assert (proof.offset, proof.count, proof.tree_size) == (offset, count, ROWS)
    assert proof.row_root == dataset.root
    verify_slice(out, offset, count, ROWS, dataset.root, proof.proof)
    # the header, then those records byte-identical (the blank lines between them kept)
    body = body_of(out)
    assert body.replace(b"\r\n\r\n", b"\r\n") == b"".join(
        record(i) for i in range(offset, offset + count)
    )
    assert describe_file(out).row_count == count
    assert SliceProof.from_dict(json.loads(json.dumps(proof.to_dict()))) == proof


def test_without_an_index_the_same_slice_and_proof(dataset: Dataset, tmp_path: Path) -> None:
    with_index = write_slice(dataset.path, tmp_path / "a.csv", 4_000, 900, index=dataset.index)
    without = write_slice(dataset.path, tmp_path / "b.csv", 4_000, 900)
    assert with_index == without
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


# --------------------------------------------------------------------------- tampered slices


@pytest.fixture(scope="module")
def ordered(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SliceProof]:
    """The slice a buyer ordered: rows [20000, 20100)."""
    out = tmp_path_factory.mktemp("ordered") / "slice.csv"
    return out, write_slice(dataset.path, out, 20_000, 100, index=dataset.index)


def tampered(tmp_path: Path, rows: list[bytes]) -> Path:
    path = tmp_path / "tampered.csv"
    path.write_bytes(b"\xef\xbb\xbf" + HEADER + b"".join(rows))
    return path


ORDERED_ROWS = [record(i) for i in range(20_000, 20_100)]


def test_one_changed_row_fails_the_row_root_check(
    dataset: Dataset, ordered: tuple[Path, SliceProof], tmp_path: Path
) -> None:
    _, proof = ordered
    rows = list(ORDERED_ROWS)
    rows[37] = rows[37].replace(b"5009.25", b"5009.26")
    assert rows[37] != ORDERED_ROWS[37]
    assert check_of(tampered(tmp_path, rows), 20_000, 100, dataset.root, proof) == "row_root"


def test_a_slice_from_another_offset_fails_the_row_root_check(
    dataset: Dataset, ordered: tuple[Path, SliceProof], tmp_path: Path
) -> None:
    _, proof = ordered
    # rows [20001, 20101) presented as [20000, 20100), with the proof of [20000, 20100)
    shifted = [record(i) for i in range(20_001, 20_101)]
    assert check_of(tampered(tmp_path, shifted), 20_000, 100, dataset.root, proof) == "row_root"
    # a genuine slice of another offset with its own genuine proof, for this order's range:
    # a proof of another shape, or (offset + 4) of the same shape but other nodes
    for shift, check in ((1, "proof"), (4, "row_root")):
        other = tmp_path / f"other-{shift}.csv"
        other_proof = write_slice(dataset.path, other, 20_000 + shift, 100, index=dataset.index)
        assert check_of(other, 20_000, 100, dataset.root, other_proof) == check


def test_a_truncated_slice_fails_the_row_count_check(
    dataset: Dataset, ordered: tuple[Path, SliceProof], tmp_path: Path
) -> None:
    _, proof = ordered
    path = tampered(tmp_path, ORDERED_ROWS[:-1])
    assert check_of(path, 20_000, 100, dataset.root, proof) == "row_count"
    with pytest.raises(SliceCheckError, match="the slice has 99 rows"):
        verify_slice(path, 20_000, 100, ROWS, dataset.root, proof.proof)
    extra = tampered(tmp_path, [*ORDERED_ROWS, record(20_100)])
    assert check_of(extra, 20_000, 100, dataset.root, proof) == "row_count"
    cut = tmp_path / "cut.csv"
    cut.write_bytes(b"\xef\xbb\xbf" + HEADER + b"".join(ORDERED_ROWS)[:-9])  # mid-row
    assert check_of(cut, 20_000, 100, dataset.root, proof) == "row_root"


def test_a_reordered_slice_fails_the_row_root_check(
    dataset: Dataset, ordered: tuple[Path, SliceProof], tmp_path: Path
) -> None:
    _, proof = ordered
    rows = list(ORDERED_ROWS)
    rows[10], rows[11] = rows[11], rows[10]
    assert check_of(tampered(tmp_path, rows), 20_000, 100, dataset.root, proof) == "row_root"
    reversed_rows = tampered(tmp_path, ORDERED_ROWS[::-1])
    assert check_of(reversed_rows, 20_000, 100, dataset.root, proof) == "row_root"


def test_the_other_checks_name_themselves(
    dataset: Dataset, ordered: tuple[Path, SliceProof], tmp_path: Path
) -> None:
    path, proof = ordered
    verify_slice(path, 20_000, 100, ROWS, dataset.root, proof.proof)
    assert check_of(path, ROWS - 50, 100, dataset.root, proof) == "range"
    with pytest.raises(SliceCheckError) as info:
        verify_slice(path, 20_000, 0, ROWS, dataset.root, proof.proof)
    assert info.value.check == "range"
    # a proof node changed, dropped or added
    flipped = SliceProof(20_000, 100, ROWS, dataset.root, (b"\x00" * 32, *proof.proof[1:]))
    assert check_of(path, 20_000, 100, dataset.root, flipped) == "row_root"
    short = SliceProof(20_000, 100, ROWS, dataset.root, proof.proof[:-1])
    assert check_of(path, 20_000, 100, dataset.root, short) == "proof"
    # another dataset's root; a root of the wrong size
    assert check_of(path, 20_000, 100, bytes(32), proof) == "row_root"
    assert check_of(path, 20_000, 100, b"\x01", proof) == "row_root"
    # not CSV as described: an unterminated quote; a record of the wrong width
    broken = tampered(tmp_path, [*ORDERED_ROWS[:-1], b'20099,"open,1,x\r\n'])
    assert check_of(broken, 20_000, 100, dataset.root, proof) == "format"
    ragged = tampered(tmp_path, [*ORDERED_ROWS[:-1], b"20099,x\r\n"])
    with pytest.raises(SliceCheckError, match=r"line \d+: 2 fields, the header has 4") as info:
        verify_slice(ragged, 20_000, 100, ROWS, dataset.root, proof.proof)
    assert info.value.check == "format"


def test_verification_streams_the_slice(dataset: Dataset, tmp_path: Path) -> None:
    out = tmp_path / "big.csv"
    proof = write_slice(dataset.path, out, 10_000, 60_000, index=dataset.index)
    tracemalloc.start()
    try:
        verify_slice(out, 10_000, 60_000, ROWS, dataset.root, proof.proof)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000  # holding 60,000 leaf hashes would take 4.4 MB more


# --------------------------------------------------------------------------- the provider's side


def test_refusals_leave_nothing_at_the_output(dataset: Dataset, tmp_path: Path) -> None:
    out = tmp_path / "slice.csv"
    with pytest.raises(RangeError):
        write_slice(dataset.path, out, ROWS - 1, 2, index=dataset.index)
    other = tmp_path / "other.csv"
    other.write_bytes(b"a\n1\n")
    with pytest.raises(RowIndexError, match="the row index is of a"):
        write_slice(other, out, 0, 1, index=dataset.index)
    assert list(tmp_path.iterdir()) == [other]


def test_the_self_check_catches_a_dataset_changed_since_it_was_indexed(
    dataset: Dataset, tmp_path: Path
) -> None:
    changed = tmp_path / "changed.csv"
    before = record(500)
    after = before.replace(b"125.00", b"125.01")
    assert after != before and len(after) == len(before)
    changed.write_bytes(dataset.path.read_bytes().replace(before, after, 1))
    assert changed.stat().st_size == dataset.path.stat().st_size
    out = tmp_path / "slice.csv"
    with pytest.raises(SliceCheckError) as info:
        write_slice(changed, out, 400, 200, index=dataset.index)
    assert info.value.check == "row_root"
    assert not out.exists()
    unchecked = write_slice(changed, out, 400, 200, index=dataset.index, self_check=False)
    with pytest.raises(SliceCheckError):
        unchecked.verify(out)


def test_jsonl_slices(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    lines = [json.dumps({"id": i, "v": "重庆" * (i % 3)}, ensure_ascii=False) for i in range(300)]
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    index = tmp_path / "rows.idx"
    d = describe_file(path, row_index=index, index_block_level=4)
    assert d.row_root is not None
    root = bytes.fromhex(d.row_root)
    out = tmp_path / "slice.jsonl"
    proof = write_slice(path, out, 35, 70, index=index)
    assert out.read_bytes() == "".join(line + "\n" for line in lines[35:105]).encode()
    verify_slice(out, 35, 70, 300, root, proof.proof)
    out.write_bytes(out.read_bytes().replace(b'"id": 40,', b'"id": 41,'))
    with pytest.raises(SliceCheckError) as info:
        verify_slice(out, 35, 70, 300, root, proof.proof)
    assert info.value.check == "row_root"


def test_parquet_slices_are_parquet(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    table = pa.table(
        {
            "id": pa.array(range(500), pa.int64()),
            "name": [f"站 {i}" for i in range(500)],
            "score": [i / 7 for i in range(500)],
        }
    )
    pq.write_table(table, path, row_group_size=64)
    index = tmp_path / "rows.idx"
    d = describe_file(path, row_index=index, index_block_level=3)
    assert d.row_root is not None
    root = bytes.fromhex(d.row_root)
    out = tmp_path / "slice.parquet"
    proof = write_slice(path, out, 61, 130, index=index)
    assert pq.read_table(out).equals(table.slice(61, 130))
    verify_slice(out, 61, 130, 500, root, proof.proof)
    verify_slice(out, 61, 130, 500, root, write_slice(path, tmp_path / "b.parquet", 61, 130).proof)
    pq.write_table(table.slice(62, 130), out)
    with pytest.raises(SliceCheckError) as info:
        verify_slice(out, 61, 130, 500, root, proof.proof)
    assert info.value.check == "row_root"
    out.write_bytes(b"not parquet")
    with pytest.raises(SliceCheckError) as info:
        verify_slice(out, 61, 130, 500, root, proof.proof)
    assert info.value.check == "format"


def test_csv_rows_written_by_the_csv_module_slice_as_records(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["k", "v"])
        for i in range(50):
            writer.writerow([i, "two\nlines" if i % 2 else 'a "quote"'])
    index = tmp_path / "w.idx"
    d = describe_file(path, row_index=index, index_block_level=2)
    out = tmp_path / "s.csv"
    proof = write_slice(path, out, 7, 9, index=index)
    with out.open(newline="", encoding="utf-8") as handle:
        got = list(csv.reader(handle))
    assert got[0] == ["k", "v"] and [int(r[0]) for r in got[1:]] == list(range(7, 16))
    assert d.row_root is not None
    verify_slice(out, 7, 9, 50, bytes.fromhex(d.row_root), proof.proof)


# --------------------------------------------------------------------------- streamed slices


def _read_all(reader: SliceReader, size: int) -> bytes:
    parts = []
    while chunk := reader.read(size):
        parts.append(chunk)
    return b"".join(parts)


@pytest.mark.parametrize(("offset", "count"), [(20_000, 20_000), (0, 1), (0, ROWS), (1023, 2)])
@pytest.mark.parametrize("read_size", [7, 1 << 16, -1])
def test_a_streamed_slice_is_the_written_slice_with_the_same_proof(
    dataset: Dataset, tmp_path: Path, offset: int, count: int, read_size: int
) -> None:
    out = tmp_path / "slice.csv"
    written = write_slice(dataset.path, out, offset, count, index=dataset.index)
    with open_text_slice(dataset.path, offset, count, index=dataset.index) as (reader, proof):
        streamed = _read_all(reader, read_size) if read_size > 0 else reader.read()
        assert reader.read(10) == b""
    assert proof == written
    assert streamed == out.read_bytes()


def test_a_streamed_jsonl_slice_has_no_header(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    lines = [json.dumps({"id": i}) for i in range(300)]
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    index = tmp_path / "rows.idx"
    describe_file(path, row_index=index, index_block_level=4)
    with open_text_slice(path, 35, 70, index=index) as (reader, proof):
        assert _read_all(reader, 100) == "".join(line + "\n" for line in lines[35:105]).encode()
    assert (proof.offset, proof.count, proof.tree_size) == (35, 70, 300)


def test_streaming_refuses_parquet_a_bad_range_and_another_file(
    dataset: Dataset, tmp_path: Path
) -> None:
    parquet = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"id": list(range(10))}), parquet)
    with (
        pytest.raises(DatasetError, match="write_slice"),
        open_text_slice(parquet, 0, 1, index=dataset.index),
    ):
        pass
    with (
        pytest.raises(RangeError),
        open_text_slice(dataset.path, ROWS - 1, 2, index=dataset.index),
    ):
        pass
    shorter = tmp_path / "shorter.csv"
    shorter.write_bytes(dataset.path.read_bytes()[:-10])
    with pytest.raises(RowIndexError), open_text_slice(shorter, 0, 1, index=dataset.index):
        pass
