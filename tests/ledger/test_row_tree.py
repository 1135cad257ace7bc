"""ledger.row_tree: the row tree's root, its index file, and proofs from the index."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.merkle import (
    SM3_HASHER,
    InMemoryTree,
    NodeID,
    NodeNotFoundError,
    leaf_hash,
    range_nodes,
    range_proof,
    verify_range,
)
from ledger.row_tree import (
    FOOTER_SIZE,
    RECORD_SIZE,
    ROW_HASHER,
    RowIndex,
    RowIndexError,
    RowTreeBuilder,
    edge_ranges,
    row_leaf_hash,
    row_range_proof,
)
from ledger.sm3 import sm3

DIGEST = sm3(b"the data file")


def rows(n: int) -> list[bytes]:
    return [b"row %d" % i for i in range(n)]


def offset_of(i: int) -> int:
    return 1000 + 7 * i  # any increasing byte offsets


def build(tmp_path: Path, n: int, block_level: int) -> tuple[Path, bytes]:
    path = tmp_path / f"rows-{n}-{block_level}.idx"
    with path.open("wb") as out:
        builder = RowTreeBuilder(block_level=block_level, index=out)
        for i, row in enumerate(rows(n)):
            builder.add(row, offset_of(i))
        root = builder.finish(data_size=5000, data_sm3=DIGEST, header_end=12)
    return path, root


def test_row_hasher_is_the_ledger_hasher() -> None:
    for data in (b"", b"abc", bytes(range(256)) * 3):
        assert ROW_HASHER.digest(data) == SM3_HASHER.digest(data)
        assert row_leaf_hash(data) == leaf_hash(data)
        assert ROW_HASHER.hash_children(data[:32].ljust(32), b"r" * 32) == (
            SM3_HASHER.hash_children(data[:32].ljust(32), b"r" * 32)
        )


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 150), st.integers(0, 5))
def test_builder_root_is_the_merkle_root(n: int, block_level: int) -> None:
    builder = RowTreeBuilder(block_level=block_level)
    for i, row in enumerate(rows(n)):
        builder.add(row, i)
        assert builder.size == i + 1
    expected = InMemoryTree(leaf_hash(r) for r in rows(n)).root()
    assert builder.root() == expected
    assert builder.finish(data_size=0, data_sm3=DIGEST) == expected


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 24, 37, 64, 100])
@pytest.mark.parametrize("block_level", [0, 2, 3])
def test_index_holds_the_nodes_of_block_level_and_above(
    tmp_path: Path, n: int, block_level: int
) -> None:
    path, root = build(tmp_path, n, block_level)
    tree = InMemoryTree(leaf_hash(r) for r in rows(n))
    blocks = n >> block_level
    tail = (n & ((1 << block_level) - 1)).bit_count()
    records = 2 * blocks - blocks.bit_count()
    assert path.stat().st_size == records * RECORD_SIZE + tail * 32 + FOOTER_SIZE
    with RowIndex(path) as index:
        assert (index.tree_size, index.block_level, index.root) == (n, block_level, root)
        assert (index.data_size, index.data_sm3, index.header_end) == (5000, DIGEST, 12)
        assert root == tree.root()
        for level in range(block_level, n.bit_length()):
            for i in range(n >> level):
                node = NodeID(level, i)
                assert index.get_nodes([node]) == tree.get_nodes([node])
        tail_nodes = range_nodes(blocks << block_level, n)
        assert index.get_nodes(tail_nodes) == tree.get_nodes(tail_nodes)
        for block in range(blocks + (1 if tail else 0)):
            assert index.block_offset(block) == offset_of(block << block_level)
        with pytest.raises(ValueError, match="no block"):
            index.block_offset(blocks + 1)
        if block_level and blocks:  # a node inside a full block is not stored
            with pytest.raises(NodeNotFoundError):
                index.get_nodes([NodeID(block_level - 1, 0)])
        with pytest.raises(NodeNotFoundError):
            index.get_nodes([NodeID(block_level, blocks)])


@pytest.mark.parametrize("n", [1, 5, 8, 13, 37])
@pytest.mark.parametrize("block_level", [0, 2, 3, 10])
def test_proofs_from_the_index_and_the_edge_rows(tmp_path: Path, n: int, block_level: int) -> None:
    path, root = build(tmp_path, n, block_level)
    hashes = [leaf_hash(r) for r in rows(n)]
    with RowIndex(path) as index:
        for begin in range(n):
            for end in range(begin + 1, n + 1):
                (a, b), (c, d) = edge_ranges(begin, end, n, block_level)
                assert a <= begin and b == begin and c == end <= d <= n
                assert begin - a < 1 << block_level and d - end < 1 << block_level
                edges = {i: hashes[i] for i in (*range(a, b), *range(c, d))}
                proof = row_range_proof(index, begin, end, edges)
                assert proof == range_proof(begin, end, hashes)
                verify_range(begin, end, n, hashes[begin:end], proof, root)


def test_a_missing_edge_row_is_reported(tmp_path: Path) -> None:
    path, _ = build(tmp_path, 40, 3)
    hashes = [leaf_hash(r) for r in rows(40)]
    with RowIndex(path) as index:
        (a, b), (c, d) = edge_ranges(10, 21, 40, 3)
        assert ((a, b), (c, d)) == ((8, 10), (21, 24))
        edges = {i: hashes[i] for i in (8, 21, 22, 23)}  # row 9 missing
        with pytest.raises(NodeNotFoundError):
            row_range_proof(index, 10, 21, edges)


def test_malformed_index_files_are_refused(tmp_path: Path) -> None:
    path, _ = build(tmp_path, 37, 2)
    data = path.read_bytes()
    short = tmp_path / "short.idx"
    short.write_bytes(data[RECORD_SIZE:])
    with pytest.raises(RowIndexError, match="a row index of 37 rows"):
        RowIndex(short)
    foreign = tmp_path / "foreign.idx"
    foreign.write_bytes(b"x" * 200)
    with pytest.raises(RowIndexError, match="not a row index"):
        RowIndex(foreign)
    tiny = tmp_path / "tiny.idx"
    tiny.write_bytes(b"SCROWIX1")
    with pytest.raises(RowIndexError, match="too short"):
        RowIndex(tiny)


def test_builder_arguments() -> None:
    with pytest.raises(ValueError, match="block_level"):
        RowTreeBuilder(block_level=-1)
    builder = RowTreeBuilder(index=io.BytesIO())
    with pytest.raises(ValueError, match="SM3 digest"):
        builder.finish(data_size=0, data_sm3=b"short")
