"""Property tests: proofs of random trees verify, agree with the naive RFC
reference, and any single mutation makes verification raise."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ledger.merkle import (
    CompactRange,
    InMemoryTree,
    NodeID,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    range_nodes,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from ledger.sm3 import sm3

MAX_SIZE = 200
EXTRA = 40  # leaves beyond MAX_SIZE, for checkpoints of larger sizes
SALTS = range(3)

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)


def _generator() -> ModuleType:
    path = Path(__file__).resolve().parent / "gen_merkle_vectors.py"
    spec = importlib.util.spec_from_file_location("gen_merkle_vectors", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REFERENCE = _generator().Reference(sm3)


@cache
def data(salt: int) -> tuple[bytes, ...]:
    return tuple(b"salt %d record %d" % (salt, i) for i in range(MAX_SIZE + EXTRA))


@cache
def leaves(salt: int) -> tuple[bytes, ...]:
    return tuple(leaf_hash(d) for d in data(salt))


@cache
def tree(salt: int) -> InMemoryTree:
    return InMemoryTree(leaves(salt))


def flip(value: bytes, bit: int) -> bytes:
    bit %= len(value) * 8
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@st.composite
def inclusion_cases(draw: st.DrawFn) -> tuple[int, int, int]:
    salt = draw(st.sampled_from(SALTS))
    size = draw(st.integers(1, MAX_SIZE))
    index = draw(st.integers(0, size - 1))
    return salt, index, size


@st.composite
def consistency_cases(draw: st.DrawFn) -> tuple[int, int, int]:
    salt = draw(st.sampled_from(SALTS))
    new = draw(st.integers(0, MAX_SIZE))
    old = draw(st.integers(0, new))
    return salt, old, new


# --------------------------------------------------------------------------- round trips


@PROPERTY_SETTINGS
@given(inclusion_cases())
def test_inclusion_proofs_verify_and_match_the_reference(case: tuple[int, int, int]) -> None:
    salt, index, size = case
    t = tree(salt)
    proof = t.inclusion_proof(index, size)
    assert proof == inclusion_proof(index, leaves(salt)[:size])
    assert proof == REFERENCE.path(index, data(salt)[:size])
    verify_inclusion(leaves(salt)[index], index, size, proof, t.root(size))


@PROPERTY_SETTINGS
@given(consistency_cases())
def test_consistency_proofs_verify_and_match_the_reference(case: tuple[int, int, int]) -> None:
    salt, old, new = case
    t = tree(salt)
    proof = t.consistency_proof(old, new)
    assert proof == consistency_proof(old, new, leaves(salt))
    assert proof == ([] if old == 0 else REFERENCE.proof(old, data(salt)[:new]))
    assert t.root(new) == REFERENCE.mth(data(salt)[:new])
    verify_consistency(old, new, t.root(old), t.root(new), proof)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300))
def test_compact_range_completes_exactly_the_perfect_nodes(size: int) -> None:
    hashes = leaves(0)[: min(size, MAX_SIZE + EXTRA)]
    acc = CompactRange()
    reported = acc.extend(hashes)
    n = len(hashes)
    expected = {
        NodeID(level, index) for level in range(n.bit_length()) for index in range(n >> level)
    }
    assert [node.id for node in reported] == sorted(
        expected, key=lambda node: (node.coverage()[1], node.level)
    )
    assert acc.node_ids() == range_nodes(0, n)
    assert acc.root() == root_from_leaf_hashes(hashes)


# --------------------------------------------------------------------------- mutations

INCLUSION_MUTATIONS = ["flip node", "drop node", "add node", "index", "size", "root", "leaf"]


@PROPERTY_SETTINGS
@given(inclusion_cases(), st.sampled_from(INCLUSION_MUTATIONS), st.data())
def test_any_inclusion_mutation_is_rejected(
    case: tuple[int, int, int], mutation: str, draw: st.DataObject
) -> None:
    salt, index, size = case
    t = tree(salt)
    leaf, root = leaves(salt)[index], t.root(size)
    proof = t.inclusion_proof(index, size)
    if mutation in ("flip node", "drop node"):
        assume(proof)
        k = draw.draw(st.integers(0, len(proof) - 1))
        if mutation == "flip node":
            proof[k] = flip(proof[k], draw.draw(st.integers(0, 255)))
        else:
            del proof[k]
    elif mutation == "add node":
        k = draw.draw(st.integers(0, len(proof)))
        proof.insert(k, draw.draw(st.binary(min_size=32, max_size=32)))
    elif mutation == "index":
        index = draw.draw(st.integers(-size, 2 * size).filter(lambda i: i != index))
    elif mutation == "size":
        # A proof for one checkpoint presented against another checkpoint.
        other = draw.draw(st.integers(0, MAX_SIZE + EXTRA).filter(lambda s: s != size))
        if index < other:
            assume(t.inclusion_proof(index, other) != proof)
        size, root = other, t.root(other)
    elif mutation == "root":
        root = flip(root, draw.draw(st.integers(0, 255)))
    else:
        leaf = flip(leaf, draw.draw(st.integers(0, 255)))
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, proof, root)


CONSISTENCY_MUTATIONS = [
    "flip node",
    "drop node",
    "add node",
    "old size",
    "new size",
    "old root",
    "new root",
    "swap roots",
]


@PROPERTY_SETTINGS
@given(consistency_cases(), st.sampled_from(CONSISTENCY_MUTATIONS), st.data())
def test_any_consistency_mutation_is_rejected(
    case: tuple[int, int, int], mutation: str, draw: st.DataObject
) -> None:
    salt, old, new = case
    t = tree(salt)
    old_root, new_root = t.root(old), t.root(new)
    proof = t.consistency_proof(old, new)
    if mutation in ("flip node", "drop node"):
        assume(proof)
        k = draw.draw(st.integers(0, len(proof) - 1))
        if mutation == "flip node":
            proof[k] = flip(proof[k], draw.draw(st.integers(0, 255)))
        else:
            del proof[k]
    elif mutation == "add node":
        k = draw.draw(st.integers(0, len(proof)))
        proof.insert(k, draw.draw(st.binary(min_size=32, max_size=32)))
    elif mutation in ("old size", "new size"):
        # The proof presented for another pair of checkpoints (sizes with their roots).
        other = draw.draw(st.integers(0, MAX_SIZE + EXTRA))
        if mutation == "old size":
            assume(other != old)
            old, old_root = other, t.root(other)
        else:
            assume(other != new)
            new, new_root = other, t.root(other)
        if 0 <= old <= new:
            assume(t.consistency_proof(old, new) != proof)
    elif mutation == "old root":
        old_root = flip(old_root, draw.draw(st.integers(0, 255)))
    elif mutation == "new root":
        # From the empty tree nothing constrains new_root (documented).
        assume(old > 0 or new == 0)
        new_root = flip(new_root, draw.draw(st.integers(0, 255)))
    else:
        assume(old_root != new_root)
        old_root, new_root = new_root, old_root
    with pytest.raises(ProofError):
        verify_consistency(old, new, old_root, new_root, proof)
