"""Range proofs of ledger.merkle: golden vectors, examples and properties.

A range proof shows that given leaf hashes are exactly leaves ``[begin, end)``
of a tree with a known root: the right leaves, in order, at those positions.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.merkle import (
    HashSizeError,
    InMemoryTree,
    InvalidProofError,
    LeafCountError,
    ProofError,
    RangeError,
    RootMismatchError,
    inclusion_proof,
    leaf_hash,
    range_plan,
    range_proof,
    range_proof_from,
    range_proof_size,
    root_from_leaf_hashes,
    root_from_range_proof,
    verify_inclusion,
    verify_range,
)
from ledger.sm3 import sm3

TESTDATA = Path(__file__).resolve().parent / "testdata"


def unhex(values: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def _generator() -> ModuleType:
    path = Path(__file__).resolve().parent / "gen_merkle_vectors.py"
    spec = importlib.util.spec_from_file_location("gen_merkle_vectors", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VECTORS: dict[str, Any] = json.loads((TESTDATA / "merkle_range.json").read_text())
VECTOR_LEAVES = [leaf_hash(d) for d in unhex(VECTORS["leaves"])]
VECTOR_TREE = InMemoryTree(VECTOR_LEAVES)
REFERENCE = _generator().Reference(sm3)


# --------------------------------------------------------------------------- golden vectors


@pytest.mark.parametrize("case", [pytest.param(c, id=c["desc"]) for c in VECTORS["cases"]])
def test_range_vectors(case: dict[str, Any]) -> None:
    begin, end, size = case["begin"], case["end"], case["tree_size"]
    hashes, proof = unhex(case["leaf_hashes"]), unhex(case["proof"])
    root = bytes.fromhex(case["root"])
    if case["expected_error"] is None:
        verify_range(begin, end, size, hashes, proof, root)
        assert root_from_range_proof(begin, end, size, hashes, proof) == root
        assert range_proof(begin, end, VECTOR_LEAVES[:size]) == proof
        assert VECTOR_TREE.range_proof(begin, end, size) == proof
        assert range_proof_size(begin, end, size) == len(proof)
    else:
        with pytest.raises(ProofError) as info:
            verify_range(begin, end, size, hashes, proof, root)
        assert type(info.value).__name__ == case["expected_error"]
        assert isinstance(info.value, getattr(merkle, case["expected_error"]))


def test_vectors_cover_the_tampering_the_slices_face() -> None:
    descs = [c["desc"] for c in VECTORS["cases"]]
    for wanted in (
        "one row changed",
        "a row dropped (range unchanged)",
        "a row added (range unchanged)",
        "rows [begin+1, end+1) presented as [begin, end)",
        "tree size + 1",
        "truncated proof (last node dropped)",
        "extended proof (zero node appended)",
        "first and last proof nodes swapped",
        "two rows swapped",
        "empty range [begin, begin)",
    ):
        assert any(d.endswith(wanted) for d in descs), wanted
    valid = [c for c in VECTORS["cases"] if c["expected_error"] is None]
    assert any(c["begin"] == 0 and c["end"] == c["tree_size"] == 129 for c in valid)
    assert any(c["end"] == c["tree_size"] and c["tree_size"] % 2 for c in valid)


# --------------------------------------------------------------------------- by example

LEAVES = [leaf_hash(b"row %d" % i) for i in range(20)]
TREE = InMemoryTree(LEAVES)


def test_proof_is_the_subtrees_outside_the_range_in_leaf_order() -> None:
    # 13 leaves: [0, 8) [8, 12) [12]; the range [5, 10) leaves outside it the
    # perfect [0, 4) and [4] on the left, [10, 12) and [12, 13) on the right.
    root13 = TREE.root(13)
    proof = range_proof(5, 10, LEAVES[:13])
    assert proof == [
        root_from_leaf_hashes(LEAVES[0:4]),
        LEAVES[4],
        root_from_leaf_hashes(LEAVES[10:12]),
        LEAVES[12],
    ]
    assert range_plan(5, 10, 13).ranges == ((0, 4), (4, 5), (10, 12), (12, 13))
    verify_range(5, 10, 13, LEAVES[5:10], proof, root13)
    # the full range needs no proof; one leaf's range proof is its inclusion proof's nodes
    assert range_proof(0, 13, LEAVES[:13]) == []
    verify_range(0, 13, 13, LEAVES[:13], [], root13)
    single = range_proof(6, 7, LEAVES[:13])
    assert sorted(single) == sorted(inclusion_proof(6, LEAVES[:13]))
    verify_inclusion(LEAVES[6], 6, 13, inclusion_proof(6, LEAVES[:13]), root13)


def test_right_edge_subtree_is_one_node() -> None:
    # 7 leaves: [0, 4) [4, 6) [6]; right of [0, 2) are [2, 4) and the ragged [4, 7)
    proof = range_proof(0, 2, LEAVES[:7])
    assert proof == [root_from_leaf_hashes(LEAVES[2:4]), root_from_leaf_hashes(LEAVES[4:7])]
    assert range_plan(0, 2, 7).ranges == ((2, 4), (4, 7))


def test_errors_name_what_failed() -> None:
    root = TREE.root(20)
    proof = TREE.range_proof(3, 9)
    with pytest.raises(RangeError) as range_info:
        verify_range(4, 4, 20, [], proof, root)
    assert (range_info.value.begin, range_info.value.end, range_info.value.tree_size) == (4, 4, 20)
    assert isinstance(range_info.value, ValueError)
    with pytest.raises(RangeError):
        verify_range(3, 21, 20, LEAVES[3:], proof, root)
    with pytest.raises(LeafCountError) as count_info:
        verify_range(3, 9, 20, LEAVES[3:8], proof, root)
    assert (count_info.value.expected, count_info.value.actual) == (6, 5)
    with pytest.raises(InvalidProofError) as proof_info:
        verify_range(3, 9, 20, LEAVES[3:9], proof[:-1], root)
    assert proof_info.value.what == "range proof"
    assert (proof_info.value.expected_length, proof_info.value.actual_length) == (
        len(proof),
        len(proof) - 1,
    )
    with pytest.raises(HashSizeError) as size_info:
        verify_range(3, 9, 20, [*LEAVES[3:8], b"short"], proof, root)
    assert size_info.value.what == "leaf hash 5"
    shifted = LEAVES[4:10]
    with pytest.raises(RootMismatchError) as root_info:
        verify_range(3, 9, 20, shifted, proof, root)
    assert root_info.value.expected == root
    assert root_info.value.calculated == root_from_range_proof(3, 9, 20, shifted, proof)
    with pytest.raises(RangeError):
        range_proof(0, 0, LEAVES)
    with pytest.raises(RangeError):
        range_proof_size(2, 1, 5)


def test_leaf_hashes_may_be_a_stream() -> None:
    proof = TREE.range_proof(2, 19)
    verify_range(2, 19, 20, iter(LEAVES[2:19]), proof, TREE.root(20))
    with pytest.raises(LeafCountError) as info:
        verify_range(2, 19, 20, iter(LEAVES[2:20]), proof, TREE.root(20))
    assert (info.value.expected, info.value.actual) == (17, 18)
    with pytest.raises(LeafCountError):
        verify_range(2, 19, 20, iter([]), proof, TREE.root(20))


def test_store_reads_only_nodes_outside_the_range() -> None:
    class Reader:
        def __init__(self) -> None:
            self.ids: list[merkle.NodeID] = []

        def get_nodes(self, ids: Sequence[merkle.NodeID]) -> list[bytes]:
            self.ids += ids
            return TREE.get_nodes(ids)

    reader = Reader()
    proof = range_proof_from(reader, 5, 17, 20)
    assert proof == range_proof(5, 17, LEAVES)
    for node in reader.ids:
        first, last = node.coverage()
        assert last <= 5 or first >= 17


# --------------------------------------------------------------------------- properties

MAX_SIZE = 300
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


@cache
def property_leaves() -> tuple[bytes, ...]:
    return tuple(leaf_hash(b"property row %d" % i) for i in range(MAX_SIZE))


@cache
def property_tree() -> InMemoryTree:
    return InMemoryTree(property_leaves())


@st.composite
def range_cases(draw: st.DrawFn) -> tuple[int, int, int]:
    size = draw(st.integers(1, MAX_SIZE))
    begin = draw(st.integers(0, size - 1))
    end = draw(st.integers(begin + 1, size))
    return begin, end, size


def flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[bit // 8 % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


@PROPERTY_SETTINGS
@given(range_cases())
def test_any_range_of_any_tree_verifies(case: tuple[int, int, int]) -> None:
    begin, end, size = case
    hashes = property_leaves()[:size]
    tree = property_tree()
    proof = tree.range_proof(begin, end, size)
    assert proof == range_proof(begin, end, hashes)
    assert len(proof) == range_proof_size(begin, end, size)
    verify_range(begin, end, size, hashes[begin:end], proof, tree.root(size))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 70))
def test_proofs_match_the_reference(size: int) -> None:
    data = [b"property row %d" % i for i in range(size)]
    hashes = property_leaves()[:size]
    for begin in range(size):
        for end in range(begin + 1, size + 1):
            assert range_proof(begin, end, hashes) == REFERENCE.range_proof(begin, end, data)


@PROPERTY_SETTINGS
@given(range_cases(), st.sampled_from(["leaf", "proof", "root"]), st.data())
def test_any_single_bit_flip_fails(
    case: tuple[int, int, int], where: str, draw: st.DataObject
) -> None:
    begin, end, size = case
    tree = property_tree()
    hashes = list(property_leaves()[begin:end])
    proof = tree.range_proof(begin, end, size)
    root = tree.root(size)
    bit = draw.draw(st.integers(0, 255))
    if where == "leaf":
        k = draw.draw(st.integers(0, len(hashes) - 1))
        hashes[k] = flip(hashes[k], bit)
    elif where == "proof" and proof:
        k = draw.draw(st.integers(0, len(proof) - 1))
        proof[k] = flip(proof[k], bit)
    else:
        root = flip(root, bit)
    with pytest.raises(RootMismatchError):
        verify_range(begin, end, size, hashes, proof, root)


@PROPERTY_SETTINGS
@given(range_cases(), st.data())
def test_rows_from_another_offset_fail(case: tuple[int, int, int], draw: st.DataObject) -> None:
    begin, end, size = case
    shifts = [d for d in range(-3, 4) if d and begin + d >= 0 and end + d <= size]
    if not shifts:  # the full range: there is no other offset
        return
    shift = draw.draw(st.sampled_from(shifts))
    tree = property_tree()
    other = property_leaves()[begin + shift : end + shift]
    with pytest.raises(RootMismatchError):
        verify_range(begin, end, size, other, tree.range_proof(begin, end, size), tree.root(size))
