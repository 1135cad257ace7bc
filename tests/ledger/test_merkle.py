"""ledger.merkle against golden vectors, the RFC 6962 SHA-256 vectors, and by example."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ledger import merkle
from ledger.merkle import (
    EMPTY_ROOT,
    LEAF_PREFIX,
    NODE_PREFIX,
    CompactRange,
    HashSizeError,
    IndexOutOfRangeError,
    InMemoryTree,
    InvalidProofError,
    Node,
    NodeID,
    NodeNotFoundError,
    ProofError,
    ProofPlan,
    RootMismatchError,
    SizeError,
    TreeHasher,
    consistency_plan,
    consistency_proof,
    consistency_proof_from,
    consistency_proof_size,
    inclusion_plan,
    inclusion_proof,
    inclusion_proof_from,
    inclusion_proof_size,
    leaf_hash,
    node_hash,
    range_nodes,
    root_from,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from ledger.sm3 import sm3

HERE = Path(__file__).resolve().parent
TESTDATA = HERE / "testdata"
SHA256 = TreeHasher("sha256", lambda data: hashlib.sha256(data).digest(), 32)


def load(name: str) -> dict[str, Any]:
    content: dict[str, Any] = json.loads((TESTDATA / name).read_text())
    return content


def cases(name: str) -> list[Any]:
    return [pytest.param(case, id=case["desc"]) for case in load(name)["cases"]]


def unhex(values: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def error_class(name: str) -> type[ProofError]:
    cls: type[ProofError] = getattr(merkle, name)
    assert issubclass(cls, ProofError)
    return cls


INCLUSION = load("merkle_inclusion.json")
CONSISTENCY = load("merkle_consistency.json")
INCLUSION_LEAVES = [leaf_hash(d) for d in unhex(INCLUSION["leaves"])]
CONSISTENCY_LEAVES = [leaf_hash(d) for d in unhex(CONSISTENCY["leaves"])]
INCLUSION_TREE = InMemoryTree(INCLUSION_LEAVES)
CONSISTENCY_TREE = InMemoryTree(CONSISTENCY_LEAVES)


# --------------------------------------------------------------------------- golden vectors


@pytest.mark.parametrize("case", cases("merkle_roots.json"))
def test_root_vectors(case: dict[str, Any]) -> None:
    hashes = [leaf_hash(d) for d in unhex(case["leaves"])]
    expected = bytes.fromhex(case["expected_root"])
    assert root_from_leaf_hashes(hashes) == expected
    tree = InMemoryTree(hashes)
    assert tree.root() == expected
    assert root_from(tree, len(hashes)) == expected


@pytest.mark.parametrize("case", cases("merkle_inclusion.json"))
def test_inclusion_vectors(case: dict[str, Any]) -> None:
    index, size = case["leaf_index"], case["tree_size"]
    leaf, root = bytes.fromhex(case["leaf_hash"]), bytes.fromhex(case["root"])
    proof = unhex(case["proof"])
    if case["expected_error"] is None:
        verify_inclusion(leaf, index, size, proof, root)
        assert root_from_inclusion_proof(leaf, index, size, proof) == root
        assert inclusion_proof(index, INCLUSION_LEAVES[:size]) == proof
        assert INCLUSION_TREE.inclusion_proof(index, size) == proof
    else:
        with pytest.raises(error_class(case["expected_error"])) as info:
            verify_inclusion(leaf, index, size, proof, root)
        assert type(info.value).__name__ == case["expected_error"]


@pytest.mark.parametrize("case", cases("merkle_consistency.json"))
def test_consistency_vectors(case: dict[str, Any]) -> None:
    old, new = case["old_size"], case["new_size"]
    old_root, new_root = bytes.fromhex(case["old_root"]), bytes.fromhex(case["new_root"])
    proof = unhex(case["proof"])
    if case["expected_error"] is None:
        verify_consistency(old, new, old_root, new_root, proof)
        assert consistency_proof(old, new, CONSISTENCY_LEAVES) == proof
        assert CONSISTENCY_TREE.consistency_proof(old, new) == proof
    else:
        with pytest.raises(error_class(case["expected_error"])) as info:
            verify_consistency(old, new, old_root, new_root, proof)
        assert type(info.value).__name__ == case["expected_error"]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_merkle_vectors", HERE / "gen_merkle_vectors.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vectors_match_the_reference_generator() -> None:
    """The committed vectors are exactly what the naive RFC reference produces."""
    gen = _generator()
    for name, content in gen.build_vectors().items():
        assert load(name) == json.loads(gen.render(content)), name


# --------------------------------------------------------------------------- RFC 6962 (SHA-256)

CT = load("merkle_rfc6962_sha256.json")
CT_LEAVES = [SHA256.hash_leaf(d) for d in unhex(CT["leaves"])]
CT_ROOTS = unhex(CT["roots"])


def test_sha256_roots() -> None:
    assert SHA256.empty_root() == CT_ROOTS[0]
    for n in range(len(CT_ROOTS)):
        assert root_from_leaf_hashes(CT_LEAVES[:n], hasher=SHA256) == CT_ROOTS[n]
        assert InMemoryTree(CT_LEAVES, hasher=SHA256).root(n) == CT_ROOTS[n]
    assert CT_ROOTS[8].hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


@pytest.mark.parametrize("case", CT["inclusion"], ids=lambda c: c["desc"])
def test_sha256_inclusion(case: dict[str, Any]) -> None:
    index, size, proof = case["leaf_index"], case["tree_size"], unhex(case["proof"])
    assert inclusion_proof(index, CT_LEAVES[:size], hasher=SHA256) == proof
    tree = InMemoryTree(CT_LEAVES, hasher=SHA256)
    assert tree.inclusion_proof(index, size) == proof
    verify_inclusion(CT_LEAVES[index], index, size, proof, CT_ROOTS[size], hasher=SHA256)
    if proof:
        bad = [proof[0][:1] + bytes([proof[0][1] ^ 1]) + proof[0][2:], *proof[1:]]
        with pytest.raises(RootMismatchError):
            verify_inclusion(CT_LEAVES[index], index, size, bad, CT_ROOTS[size], hasher=SHA256)


@pytest.mark.parametrize("case", CT["consistency"], ids=lambda c: c["desc"])
def test_sha256_consistency(case: dict[str, Any]) -> None:
    old, new, proof = case["old_size"], case["new_size"], unhex(case["proof"])
    assert consistency_proof(old, new, CT_LEAVES, hasher=SHA256) == proof
    tree = InMemoryTree(CT_LEAVES, hasher=SHA256)
    assert tree.consistency_proof(old, new) == proof
    verify_consistency(old, new, CT_ROOTS[old], CT_ROOTS[new], proof, hasher=SHA256)
    if old != new:
        with pytest.raises(RootMismatchError):
            verify_consistency(old, new, CT_ROOTS[new], CT_ROOTS[old], proof, hasher=SHA256)


# --------------------------------------------------------------------------- hashing


def test_hash_constants() -> None:
    assert LEAF_PREFIX == b"\x00"
    assert NODE_PREFIX == b"\x01"
    assert sm3(b"") == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b"
    assert leaf_hash(b"abc") == sm3(b"\x00abc")
    assert node_hash(b"L" * 32, b"R" * 32) == sm3(b"\x01" + b"L" * 32 + b"R" * 32)
    assert root_from_leaf_hashes([]) == EMPTY_ROOT


# --------------------------------------------------------------------------- errors


LEAVES = [leaf_hash(b"record %d" % i) for i in range(20)]
TREE = InMemoryTree(LEAVES)


def test_root_mismatch_names_expected_and_calculated() -> None:
    proof = TREE.inclusion_proof(3, 7)
    wrong_root = TREE.root(8)
    with pytest.raises(RootMismatchError) as info:
        verify_inclusion(LEAVES[3], 3, 7, proof, wrong_root)
    err = info.value
    assert err.expected == wrong_root
    assert err.calculated == TREE.root(7)
    assert err.which == "root"
    assert wrong_root.hex() in str(err) and TREE.root(7).hex() in str(err)


def test_consistency_mismatch_names_which_root() -> None:
    proof = TREE.consistency_proof(5, 13)
    with pytest.raises(RootMismatchError) as info:
        verify_consistency(5, 13, TREE.root(5), TREE.root(12), proof)
    assert info.value.which == "new root"
    assert info.value.calculated == TREE.root(13)
    with pytest.raises(RootMismatchError) as info:
        verify_consistency(5, 13, TREE.root(4), TREE.root(13), proof)
    assert info.value.which == "old root"
    assert info.value.calculated == TREE.root(5)


def test_invalid_proof_names_lengths() -> None:
    proof = TREE.inclusion_proof(3, 7)
    with pytest.raises(InvalidProofError) as info:
        verify_inclusion(LEAVES[3], 3, 7, proof[:-1], TREE.root(7))
    assert (info.value.expected_length, info.value.actual_length) == (3, 2)
    with pytest.raises(InvalidProofError) as info:
        verify_consistency(3, 7, TREE.root(3), TREE.root(7), [])
    assert (info.value.expected_length, info.value.actual_length) == (4, 0)


def test_index_and_size_errors() -> None:
    with pytest.raises(IndexOutOfRangeError) as info:
        verify_inclusion(LEAVES[0], 7, 7, [], TREE.root(7))
    assert (info.value.index, info.value.tree_size) == (7, 7)
    with pytest.raises(IndexOutOfRangeError):
        verify_inclusion(LEAVES[0], 0, 0, [], EMPTY_ROOT)
    with pytest.raises(SizeError) as size_info:
        verify_consistency(8, 7, TREE.root(8), TREE.root(7), [])
    assert (size_info.value.old_size, size_info.value.new_size) == (8, 7)
    with pytest.raises(HashSizeError) as hash_info:
        verify_inclusion(b"short", 0, 1, [], LEAVES[0])
    assert (hash_info.value.what, hash_info.value.expected, hash_info.value.actual) == (
        "leaf hash",
        32,
        5,
    )


def test_error_hierarchy() -> None:
    for cls in (RootMismatchError, InvalidProofError, HashSizeError, IndexOutOfRangeError):
        assert issubclass(cls, ProofError)
    assert issubclass(SizeError, ProofError)
    # precondition errors are also ValueErrors: compute functions raise them too
    assert issubclass(IndexOutOfRangeError, ValueError)
    assert issubclass(SizeError, ValueError)
    assert not issubclass(NodeNotFoundError, ProofError)
    with pytest.raises(IndexOutOfRangeError):
        inclusion_proof(5, LEAVES[:5])
    with pytest.raises(SizeError):
        consistency_proof(6, 5, LEAVES)
    with pytest.raises(ValueError, match="exceeds"):
        consistency_proof(1, 21, LEAVES)


def test_consistency_from_the_empty_tree() -> None:
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 9, EMPTY_ROOT, TREE.root(9), [])
    assert consistency_proof(0, 9, LEAVES) == []
    with pytest.raises(RootMismatchError):
        verify_consistency(0, 9, TREE.root(1), TREE.root(9), [])
    with pytest.raises(InvalidProofError):
        verify_consistency(0, 9, EMPTY_ROOT, TREE.root(9), [TREE.root(9)])


# --------------------------------------------------------------------------- node addressing


def test_node_id_coverage() -> None:
    assert NodeID(0, 5).coverage() == (5, 6)
    assert NodeID(3, 2).coverage() == (16, 24)
    assert Node(2, 1, b"h").id == NodeID(2, 1)


def test_range_nodes() -> None:
    assert range_nodes(0, 0) == []
    assert range_nodes(0, 7) == [NodeID(2, 0), NodeID(1, 2), NodeID(0, 6)]
    assert range_nodes(0, 8) == [NodeID(3, 0)]
    assert range_nodes(3, 13) == [NodeID(0, 3), NodeID(2, 1), NodeID(2, 2), NodeID(0, 12)]
    for begin in range(0, 40):
        for end in range(begin, 40):
            ids = range_nodes(begin, end)
            covered = [leaf for node in ids for leaf in range(*node.coverage())]
            assert covered == list(range(begin, end))
    with pytest.raises(ValueError):
        range_nodes(5, 4)


def test_plans_read_only_completed_nodes_of_the_tree_size() -> None:
    for size in range(1, 70):
        for index in range(size):
            plan = inclusion_plan(index, size)
            assert all(node.coverage()[1] <= size for node in plan.node_ids)
            assert len(plan.ranges) == inclusion_proof_size(index, size)
        for old in range(0, size + 1):
            plan = consistency_plan(old, size)
            assert all(node.coverage()[1] <= size for node in plan.node_ids)
            assert len(plan.ranges) == consistency_proof_size(old, size)


def test_plan_assemble_reports_missing_nodes() -> None:
    plan = inclusion_plan(2, 7)
    with pytest.raises(NodeNotFoundError) as info:
        plan.assemble({})
    assert isinstance(info.value.node_id, NodeID)
    assert ProofPlan((), ()).assemble({}) == []


# --------------------------------------------------------------------------- compact range & store


def test_compact_range_reports_every_node_once() -> None:
    acc = CompactRange()
    reported: list[Node] = []
    for i, h in enumerate(LEAVES):
        completed = acc.append(h)
        assert completed[0] == Node(0, i, h)
        trailing_ones = (i ^ (i + 1)).bit_length() - 1
        assert len(completed) == 1 + trailing_ones
        reported += completed
        assert acc.size == i + 1
        assert acc.root() == root_from_leaf_hashes(LEAVES[: i + 1])
        assert len(acc.hashes) == (i + 1).bit_count()
    ids = [node.id for node in reported]
    assert len(ids) == len(set(ids)) == 2 * len(LEAVES) - len(LEAVES).bit_count()
    for node in reported:  # each node hash is the MTH of the leaves it covers
        begin, end = node.id.coverage()
        assert node.hash == root_from_leaf_hashes(LEAVES[begin:end])
    expected_ids = {
        NodeID(level, index) for level in range(6) for index in range(len(LEAVES) >> level)
    }
    assert set(ids) == expected_ids


def test_compact_range_resumes_from_stored_nodes() -> None:
    tree = InMemoryTree(LEAVES[:13])
    ids = range_nodes(0, 13)
    resumed = CompactRange.from_nodes(13, tree.get_nodes(ids))
    assert resumed.node_ids() == ids
    assert resumed.root() == tree.root()
    later = resumed.extend(LEAVES[13:])
    assert later == tree.extend(LEAVES[13:])
    assert resumed.root() == root_from_leaf_hashes(LEAVES)
    with pytest.raises(ValueError):
        CompactRange.from_nodes(13, [])
    with pytest.raises(HashSizeError):
        CompactRange().append(b"too short")


def test_in_memory_tree_historical_sizes() -> None:
    assert TREE.node_count == 2 * 20 - 2
    for size in range(0, 21):
        assert TREE.root(size) == root_from_leaf_hashes(LEAVES[:size])
        for index in range(size):
            assert TREE.inclusion_proof(index, size) == inclusion_proof(index, LEAVES[:size])
        for old in range(size + 1):
            assert TREE.consistency_proof(old, size) == consistency_proof(old, size, LEAVES)
    with pytest.raises(ValueError):
        TREE.root(21)


def test_reader_missing_nodes() -> None:
    small = InMemoryTree(LEAVES[:5])
    with pytest.raises(NodeNotFoundError):
        inclusion_proof_from(small, 0, 8)


class _UniformTree:
    """A virtual tree of any size whose every leaf hash is the same: node hashes
    are cheap to compute, so proofs at 10 million leaves can be checked. Counts
    reads and rejects nodes not complete at ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.levels = [leaf_hash(b"uniform")]
        for _ in range(64):
            self.levels.append(node_hash(self.levels[-1], self.levels[-1]))
        self.calls = 0
        self.reads = 0

    def get_nodes(self, ids: Sequence[NodeID]) -> list[bytes]:
        self.calls += 1
        self.reads += len(ids)
        assert all(node.coverage()[1] <= self.limit for node in ids)
        return [self.levels[node.level] for node in ids]


@pytest.mark.parametrize("size", [10_000_000, 2**24, 2**24 + 1, 12_345_677])
def test_proofs_at_ten_million_leaves_read_log_n_nodes(size: int) -> None:
    bound = 2 * size.bit_length()
    reader = _UniformTree(size)
    root = root_from(reader, size)
    assert reader.calls == 1 and reader.reads <= bound
    for index in (0, 1, size // 3, size - 2, size - 1):
        reader.reads = reader.calls = 0
        proof = inclusion_proof_from(reader, index, size)
        assert reader.calls == 1 and reader.reads <= bound
        verify_inclusion(reader.levels[0], index, size, proof, root)
    for old in (1, 2, size // 2, size - 1, size):
        old_reader = _UniformTree(old)
        old_root = root_from(old_reader, old)
        reader.reads = reader.calls = 0
        proof = consistency_proof_from(reader, old, size)
        assert reader.calls <= 1 and reader.reads <= bound
        verify_consistency(old, size, old_root, root, proof)
