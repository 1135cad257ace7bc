"""The RFC 9162 (RFC 6962) Merkle tree hashed with SM3: roots, proofs, verification.

Hashing (RFC 9162 §2.1.1, with SM3 in place of SHA-256)::

    empty root     = SM3(b"")
    leaf hash      = SM3(LEAF_PREFIX || leaf bytes)      LEAF_PREFIX = 0x00
    interior node  = SM3(NODE_PREFIX || left || right)   NODE_PREFIX = 0x01

The API comes in compute/verify pairs:

=================================  ==========================================
compute (the log)                  verify (anyone)
=================================  ==========================================
:func:`root_from_leaf_hashes`      —
:func:`inclusion_proof`            :func:`verify_inclusion`
                                   (:func:`root_from_inclusion_proof`)
:func:`consistency_proof`          :func:`verify_consistency`
:func:`range_proof`                :func:`verify_range`
                                   (:func:`root_from_range_proof`)
=================================  ==========================================

Verification never returns a bool: it returns ``None`` or raises a
:class:`ProofError` subclass naming the expected and actual values.

Scale. The list-based compute functions above hash every leaf (O(n)). A log
that keeps its tree in a database instead uses the node-store API:

* Nodes are addressed by :class:`NodeID` ``(level, index)``: the *perfect*
  subtree of ``2**level`` leaves covering ``[index * 2**level,
  (index + 1) * 2**level)``. Level 0 nodes are the leaf hashes. A node's hash
  never changes once its last leaf is appended (the log is append-only), so a
  store holding every completed node serves proofs for every past tree size.
* :class:`CompactRange` appends leaf hashes one at a time in O(log n) memory
  and returns, per append, exactly the nodes that became complete; persist
  those and the store is complete.
* :func:`inclusion_plan` / :func:`consistency_plan` / :func:`range_plan` /
  :func:`root_plan` say which O(log n) nodes a proof needs;
  :meth:`ProofPlan.assemble` turns their hashes into the proof.
  :func:`inclusion_proof_from`, :func:`consistency_proof_from`,
  :func:`range_proof_from` and :func:`root_from` do both against a
  :class:`NodeReader` with a single batched read.

The hash function is pluggable (:class:`TreeHasher`, default
:data:`SM3_HASHER`) so that the algorithms can be checked against the
published SHA-256 RFC 6962 test vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ledger.errors import VerificationError
from ledger.sm3 import DIGEST_SIZE, sm3

__all__ = [
    "EMPTY_ROOT",
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "SM3_HASHER",
    "CompactRange",
    "HashSizeError",
    "InMemoryTree",
    "IndexOutOfRangeError",
    "InvalidProofError",
    "LeafCountError",
    "Node",
    "NodeID",
    "NodeNotFoundError",
    "NodeReader",
    "ProofError",
    "ProofPlan",
    "RangeError",
    "RootMismatchError",
    "SizeError",
    "TreeHasher",
    "consistency_plan",
    "consistency_proof",
    "consistency_proof_from",
    "consistency_proof_size",
    "inclusion_plan",
    "inclusion_proof",
    "inclusion_proof_from",
    "inclusion_proof_size",
    "leaf_hash",
    "node_hash",
    "range_nodes",
    "range_plan",
    "range_proof",
    "range_proof_from",
    "range_proof_size",
    "root_from",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "root_from_range_proof",
    "root_plan",
    "verify_consistency",
    "verify_inclusion",
    "verify_range",
]

LEAF_PREFIX = b"\x00"
"""Domain-separation prefix of a leaf hash (RFC 9162 §2.1.1)."""

NODE_PREFIX = b"\x01"
"""Domain-separation prefix of an interior node hash (RFC 9162 §2.1.1)."""


# --------------------------------------------------------------------------- errors


class ProofError(VerificationError):
    """Base of every Merkle verification failure raised by this module."""


class RootMismatchError(ProofError):
    """The root calculated from a proof differs from the root it was checked against.

    ``expected`` is the root the caller supplied (from a checkpoint);
    ``calculated`` is what the proof yields. ``which`` names the root
    (``"root"``, ``"old root"`` or ``"new root"``).
    """

    def __init__(self, expected: bytes, calculated: bytes, *, which: str = "root") -> None:
        self.expected = expected
        self.calculated = calculated
        self.which = which
        super().__init__(
            f"calculated {which} {calculated.hex()} does not match expected {which} "
            f"{expected.hex()}"
        )


class InvalidProofError(ProofError):
    """A proof has the wrong number of nodes for the sizes it claims to relate."""

    def __init__(self, expected_length: int, actual_length: int, *, what: str = "proof") -> None:
        self.expected_length = expected_length
        self.actual_length = actual_length
        self.what = what
        super().__init__(f"{what} has {actual_length} nodes, expected {expected_length}")


class HashSizeError(ProofError):
    """A hash (leaf hash, root or proof node) does not have the digest size."""

    def __init__(self, what: str, expected: int, actual: int) -> None:
        self.what = what
        self.expected = expected
        self.actual = actual
        super().__init__(f"{what} is {actual} bytes, expected {expected}")


class IndexOutOfRangeError(ProofError, ValueError):
    """A leaf index outside ``[0, tree_size)``."""

    def __init__(self, index: int, tree_size: int) -> None:
        self.index = index
        self.tree_size = tree_size
        super().__init__(f"leaf index {index} is outside a tree of size {tree_size}")


class SizeError(ProofError, ValueError):
    """Tree sizes that violate ``0 <= old_size <= new_size``."""

    def __init__(self, old_size: int, new_size: int) -> None:
        self.old_size = old_size
        self.new_size = new_size
        super().__init__(
            f"tree sizes must satisfy 0 <= old_size <= new_size, got old_size={old_size} "
            f"new_size={new_size}"
        )


class RangeError(ProofError, ValueError):
    """A leaf range ``[begin, end)`` that is empty or not inside ``[0, tree_size)``.

    An empty range is refused rather than "proved": its proof would only show
    that the tree splits at ``begin``, which no caller means to check.
    """

    def __init__(self, begin: int, end: int, tree_size: int) -> None:
        self.begin = begin
        self.end = end
        self.tree_size = tree_size
        super().__init__(
            f"leaf range [{begin}, {end}) must be non-empty and inside a tree of size {tree_size}"
        )


class LeafCountError(ProofError):
    """The leaf hashes given for a range are not one per leaf of the range."""

    def __init__(self, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"{actual} leaf hashes given for a range of {expected} leaves")


class NodeNotFoundError(LookupError):
    """A :class:`NodeReader` does not hold a requested node (a storage fault, not a
    verification failure)."""

    def __init__(self, node_id: NodeID) -> None:
        self.node_id = node_id
        super().__init__(f"no stored node at level {node_id.level} index {node_id.index}")


# --------------------------------------------------------------------------- hashing


@dataclass(frozen=True, slots=True)
class TreeHasher:
    """The RFC 9162 tree hashing scheme over one hash function."""

    name: str
    digest: Callable[[bytes], bytes]
    digest_size: int

    def empty_root(self) -> bytes:
        """Root of the empty tree: ``HASH(b"")``."""
        return self.digest(b"")

    def hash_leaf(self, data: bytes) -> bytes:
        """``HASH(LEAF_PREFIX || data)``."""
        return self.digest(LEAF_PREFIX + data)

    def hash_children(self, left: bytes, right: bytes) -> bytes:
        """``HASH(NODE_PREFIX || left || right)``."""
        return self.digest(NODE_PREFIX + left + right)


SM3_HASHER = TreeHasher("sm3", sm3, DIGEST_SIZE)
"""The hasher of this log."""

EMPTY_ROOT = SM3_HASHER.empty_root()
"""SM3 root of the empty tree: ``SM3(b"")``."""


def leaf_hash(data: bytes) -> bytes:
    """SM3 leaf hash of ``data`` (the canonical record bytes)."""
    return SM3_HASHER.hash_leaf(data)


def node_hash(left: bytes, right: bytes) -> bytes:
    """SM3 interior node hash of two child hashes."""
    return SM3_HASHER.hash_children(left, right)


# --------------------------------------------------------------------------- node addressing


@dataclass(frozen=True, slots=True, order=True)
class NodeID:
    """A perfect subtree: ``2**level`` leaves starting at leaf ``index * 2**level``."""

    level: int
    index: int

    def coverage(self) -> tuple[int, int]:
        """The half-open leaf range ``[begin, end)`` under this node."""
        return self.index << self.level, (self.index + 1) << self.level


@dataclass(frozen=True, slots=True)
class Node:
    """A perfect-subtree node with its hash, as a sequencer persists it."""

    level: int
    index: int
    hash: bytes

    @property
    def id(self) -> NodeID:
        return NodeID(self.level, self.index)


def range_nodes(begin: int, end: int) -> list[NodeID]:
    """The fewest perfect subtrees covering leaves ``[begin, end)``, left to right.

    Requires ``0 <= begin <= end``. For ``begin == 0`` (and for every subtree
    that appears in an RFC 9162 tree) the levels strictly decrease, and the
    subtree hash is the right fold ``h1 ⊕ (h2 ⊕ (… ⊕ hk))`` of the nodes'
    hashes. ``range_nodes(0, size)`` is the node set of a :class:`CompactRange`
    of ``size`` leaves.
    """
    if not 0 <= begin <= end:
        raise ValueError(f"invalid leaf range [{begin}, {end})")
    ids: list[NodeID] = []
    while begin < end:
        level = (end - begin).bit_length() - 1
        if begin:
            level = min(level, (begin & -begin).bit_length() - 1)
        ids.append(NodeID(level, begin >> level))
        begin += 1 << level
    return ids


def _split(n: int) -> int:
    """RFC 9162 k: the largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _fold_right(hashes: Sequence[bytes], hasher: TreeHasher) -> bytes:
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = hasher.hash_children(left, result)
    return result


# --------------------------------------------------------------------------- proof shapes


def inclusion_proof_size(index: int, tree_size: int) -> int:
    """Number of nodes in the inclusion proof of leaf ``index`` in a tree of ``tree_size``.

    Requires ``0 <= index < tree_size``.
    """
    if not 0 <= index < tree_size:
        raise IndexOutOfRangeError(index, tree_size)
    inner = (index ^ (tree_size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner + border


def consistency_proof_size(old_size: int, new_size: int) -> int:
    """Number of nodes in the consistency proof from ``old_size`` to ``new_size``.

    Requires ``0 <= old_size <= new_size``. The proof is empty when
    ``old_size`` is 0 or equals ``new_size``.
    """
    if not 0 <= old_size <= new_size:
        raise SizeError(old_size, new_size)
    if old_size in (0, new_size):
        return 0
    # The proof is the suffix of PATH(old_size - 1, D[new_size]) above the
    # largest perfect subtree ending at old_size, plus that subtree's hash
    # unless it is the whole old tree (RFC 9162 §2.1.4.2 step 2).
    inner = ((old_size - 1) ^ (new_size - 1)).bit_length()
    border = ((old_size - 1) >> inner).bit_count()
    shift = (old_size & -old_size).bit_length() - 1
    seed = 0 if old_size == 1 << shift else 1
    return seed + inner - shift + border


def range_proof_size(begin: int, end: int, tree_size: int) -> int:
    """Number of nodes in the range proof of leaves ``[begin, end)`` in a tree of ``tree_size``.

    Requires ``0 <= begin < end <= tree_size`` (else :class:`RangeError`):
    ``popcount(begin)`` subtrees left of the range plus the right siblings on
    the path of leaf ``end - 1``.
    """
    if not 0 <= begin < end <= tree_size:
        raise RangeError(begin, end, tree_size)
    last = end - 1
    return begin.bit_count() + inclusion_proof_size(last, tree_size) - last.bit_count()


@dataclass(frozen=True, slots=True)
class ProofPlan:
    """Which subtree hashes a proof consists of, and which stored nodes yield them.

    ``ranges[i]`` is the leaf range whose RFC 9162 subtree hash is proof element
    ``i``. ``node_ids`` lists (once each) the perfect nodes whose hashes make up
    those ranges: O(log n) of them. Fetch their hashes however suits the store
    (one query, async, …) and call :meth:`assemble`.
    """

    ranges: tuple[tuple[int, int], ...]
    node_ids: tuple[NodeID, ...]

    @classmethod
    def _of(cls, ranges: Iterable[tuple[int, int]]) -> ProofPlan:
        ranges = tuple(ranges)
        ids = dict.fromkeys(node for begin, end in ranges for node in range_nodes(begin, end))
        return cls(ranges, tuple(ids))

    def assemble(
        self, hashes: Mapping[NodeID, bytes], *, hasher: TreeHasher = SM3_HASHER
    ) -> list[bytes]:
        """The proof, from the hashes of :attr:`node_ids` (a mapping holding at least those)."""
        proof: list[bytes] = []
        for begin, end in self.ranges:
            try:
                parts = [hashes[node] for node in range_nodes(begin, end)]
            except KeyError as exc:
                raise NodeNotFoundError(exc.args[0]) from None
            proof.append(_fold_right(parts, hasher))
        return proof


def inclusion_plan(index: int, tree_size: int) -> ProofPlan:
    """Plan of RFC 9162 ``PATH(index, D[tree_size])``. Requires ``0 <= index < tree_size``."""
    if not 0 <= index < tree_size:
        raise IndexOutOfRangeError(index, tree_size)
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, tree_size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()  # PATH lists siblings from the leaf upwards
    return ProofPlan._of(ranges)


def consistency_plan(old_size: int, new_size: int) -> ProofPlan:
    """Plan of RFC 9162 ``PROOF(old_size, D[new_size])``.

    Requires ``0 <= old_size <= new_size``; the plan is empty when ``old_size``
    is 0 or equals ``new_size``.
    """
    if not 0 <= old_size <= new_size:
        raise SizeError(old_size, new_size)
    if old_size in (0, new_size):
        return ProofPlan((), ())
    ranges: list[tuple[int, int]] = []
    lo, hi, m, whole = 0, new_size, old_size, True  # SUBPROOF(m, D[lo:hi], whole)
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        ranges.append((lo, hi))
    ranges.reverse()  # SUBPROOF emits the deepest subtree first
    return ProofPlan._of(ranges)


def root_plan(tree_size: int) -> ProofPlan:
    """Plan whose single element is the root of a tree of ``tree_size >= 1`` leaves."""
    if tree_size < 1:
        raise ValueError(f"a tree of size {tree_size} has no root node")
    return ProofPlan._of([(0, tree_size)])


def range_plan(begin: int, end: int, tree_size: int) -> ProofPlan:
    """Plan of the range proof of leaves ``[begin, end)`` in a tree of ``tree_size``.

    Requires ``0 <= begin < end <= tree_size`` (else :class:`RangeError`). The
    proof is the hashes of the maximal subtrees of the RFC 9162 tree that lie
    wholly outside the range, in leaf order:

    1. left of the range, ``range_nodes(0, begin)``: the ``popcount(begin)``
       perfect subtrees covering ``[0, begin)``, largest (leftmost) first — the
       compact range of ``[0, begin)``, and the left siblings of leaf
       ``begin``'s path;
    2. right of the range, the right siblings on the path of leaf ``end - 1``,
       covering ``[end, tree_size)`` left to right (bottom-up); the last may be
       a non-perfect subtree of the tree's right edge.

    With the range's own leaf hashes these are exactly what rebuilds the root:
    no node is sent that the verifier could compute.
    """
    if not 0 <= begin < end <= tree_size:
        raise RangeError(begin, end, tree_size)
    left = [node.coverage() for node in range_nodes(0, begin)]
    right = [span for span in inclusion_plan(end - 1, tree_size).ranges if span[0] >= end]
    return ProofPlan._of([*left, *right])


# --------------------------------------------------------------------------- compact range


class CompactRange:
    """The right edge of a growing tree: O(log n) perfect-subtree hashes.

    Appending a leaf hash returns the :class:`Node` list that became complete,
    always beginning with the leaf itself at level 0 and ending with the node
    that now covers it (so ``1 + trailing ones of the old size`` nodes). A
    sequencer persists exactly those nodes; together they are every node of
    the tree. To resume after a restart, read ``range_nodes(0, size)`` from
    the store and call :meth:`from_nodes`.
    """

    __slots__ = ("_hasher", "_hashes", "_size")

    def __init__(self, *, hasher: TreeHasher = SM3_HASHER) -> None:
        self._hasher = hasher
        self._hashes: list[bytes] = []
        self._size = 0

    @classmethod
    def from_nodes(
        cls, size: int, hashes: Sequence[bytes], *, hasher: TreeHasher = SM3_HASHER
    ) -> CompactRange:
        """Resume at ``size`` from the hashes of ``range_nodes(0, size)``, in that order."""
        if size < 0:
            raise ValueError(f"negative tree size {size}")
        if len(hashes) != size.bit_count():
            raise ValueError(
                f"a compact range of size {size} has {size.bit_count()} nodes, got {len(hashes)}"
            )
        for i, h in enumerate(hashes):
            _check_size(h, f"node {i}", hasher)
        new = cls(hasher=hasher)
        new._hashes = list(hashes)
        new._size = size
        return new

    @property
    def size(self) -> int:
        """Number of leaves appended."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """Hashes of :meth:`node_ids`, left (largest) to right."""
        return tuple(self._hashes)

    def node_ids(self) -> list[NodeID]:
        """``range_nodes(0, size)``."""
        return range_nodes(0, self._size)

    def append(self, leaf_hash: bytes) -> list[Node]:
        """Append one leaf hash; return the nodes completed by it, bottom-up."""
        _check_size(leaf_hash, "leaf hash", self._hasher)
        index, current = self._size, leaf_hash
        completed = [Node(0, index, current)]
        level = 0
        while (index >> level) & 1:  # a complete left sibling is waiting on this level
            current = self._hasher.hash_children(self._hashes.pop(), current)
            level += 1
            completed.append(Node(level, index >> level, current))
        self._hashes.append(current)
        self._size += 1
        return completed

    def extend(self, leaf_hashes: Iterable[bytes]) -> list[Node]:
        """Append several leaf hashes; return every node they completed, in order."""
        completed: list[Node] = []
        for h in leaf_hashes:
            completed.extend(self.append(h))
        return completed

    def root(self) -> bytes:
        """RFC 9162 ``MTH`` of the leaves appended so far."""
        if not self._hashes:
            return self._hasher.empty_root()
        return _fold_right(self._hashes, self._hasher)


def root_from_leaf_hashes(hashes: Sequence[bytes], *, hasher: TreeHasher = SM3_HASHER) -> bytes:
    """RFC 9162 ``MTH`` of a list of leaf hashes (O(n) hashing, O(log n) memory)."""
    acc = CompactRange(hasher=hasher)
    acc.extend(hashes)
    return acc.root()


# --------------------------------------------------------------------------- proofs from a list


def _list_proof(plan: ProofPlan, hashes: Sequence[bytes], hasher: TreeHasher) -> list[bytes]:
    return [root_from_leaf_hashes(hashes[begin:end], hasher=hasher) for begin, end in plan.ranges]


def inclusion_proof(
    index: int, leaf_hashes: Sequence[bytes], *, hasher: TreeHasher = SM3_HASHER
) -> list[bytes]:
    """Inclusion proof (audit path) of leaf ``index`` in the tree of ``leaf_hashes``.

    Requires ``0 <= index < len(leaf_hashes)``. Hashes every leaf; use
    :func:`inclusion_proof_from` for a stored tree.
    """
    return _list_proof(inclusion_plan(index, len(leaf_hashes)), leaf_hashes, hasher)


def consistency_proof(
    old_size: int,
    new_size: int,
    leaf_hashes: Sequence[bytes],
    *,
    hasher: TreeHasher = SM3_HASHER,
) -> list[bytes]:
    """Consistency proof that the first ``old_size`` leaves are a prefix of ``new_size``.

    Requires ``0 <= old_size <= new_size <= len(leaf_hashes)``; only the first
    ``new_size`` leaf hashes are used. Empty when ``old_size`` is 0 or equals
    ``new_size``.
    """
    if new_size > len(leaf_hashes):
        raise ValueError(f"new_size {new_size} exceeds the {len(leaf_hashes)} leaf hashes given")
    plan = consistency_plan(old_size, new_size)
    return _list_proof(plan, leaf_hashes[:new_size], hasher)


def range_proof(
    begin: int, end: int, leaf_hashes: Sequence[bytes], *, hasher: TreeHasher = SM3_HASHER
) -> list[bytes]:
    """Range proof (see :func:`range_plan`) of leaves ``[begin, end)`` in the tree of
    ``leaf_hashes``.

    Requires ``0 <= begin < end <= len(leaf_hashes)``. Hashes every leaf; use
    :func:`range_proof_from` for a stored tree.
    """
    return _list_proof(range_plan(begin, end, len(leaf_hashes)), leaf_hashes, hasher)


# --------------------------------------------------------------------------- proofs from a store


class NodeReader(Protocol):
    """Read access to stored perfect-subtree nodes (see :class:`NodeID`).

    ``get_nodes`` returns the hashes of ``ids`` in the same order, or raises
    :class:`NodeNotFoundError`. The functions below call it once per proof
    with O(log n) ids, all of nodes completed by the requested tree size.
    """

    def get_nodes(self, ids: Sequence[NodeID]) -> Sequence[bytes]: ...


def _fetch(reader: NodeReader, plan: ProofPlan) -> dict[NodeID, bytes]:
    if not plan.node_ids:
        return {}
    hashes = reader.get_nodes(plan.node_ids)
    if len(hashes) != len(plan.node_ids):
        raise ValueError(f"asked for {len(plan.node_ids)} nodes, got {len(hashes)}")
    return dict(zip(plan.node_ids, hashes, strict=True))


def inclusion_proof_from(
    reader: NodeReader, index: int, tree_size: int, *, hasher: TreeHasher = SM3_HASHER
) -> list[bytes]:
    """Inclusion proof of leaf ``index`` at ``tree_size`` from stored nodes.

    Requires ``0 <= index < tree_size`` and that ``reader`` holds the nodes of
    a tree of at least ``tree_size`` leaves. One batched read of O(log n) nodes.
    """
    plan = inclusion_plan(index, tree_size)
    return plan.assemble(_fetch(reader, plan), hasher=hasher)


def consistency_proof_from(
    reader: NodeReader, old_size: int, new_size: int, *, hasher: TreeHasher = SM3_HASHER
) -> list[bytes]:
    """Consistency proof from ``old_size`` to ``new_size`` from stored nodes.

    Requires ``0 <= old_size <= new_size`` and that ``reader`` holds the nodes
    of a tree of at least ``new_size`` leaves. One batched read of O(log n) nodes.
    """
    plan = consistency_plan(old_size, new_size)
    return plan.assemble(_fetch(reader, plan), hasher=hasher)


def range_proof_from(
    reader: NodeReader, begin: int, end: int, tree_size: int, *, hasher: TreeHasher = SM3_HASHER
) -> list[bytes]:
    """Range proof of leaves ``[begin, end)`` at ``tree_size`` from stored nodes.

    Requires ``0 <= begin < end <= tree_size`` and that ``reader`` holds the
    nodes of a tree of at least ``tree_size`` leaves outside the range (nodes
    inside it are never read). One batched read of O(log n) nodes.
    """
    plan = range_plan(begin, end, tree_size)
    return plan.assemble(_fetch(reader, plan), hasher=hasher)


def root_from(reader: NodeReader, tree_size: int, *, hasher: TreeHasher = SM3_HASHER) -> bytes:
    """Root of the first ``tree_size`` leaves from stored nodes (O(log n) reads).

    Requires ``tree_size >= 0``.
    """
    if tree_size < 0:
        raise SizeError(0, tree_size)
    if tree_size == 0:
        return hasher.empty_root()
    plan = root_plan(tree_size)
    return plan.assemble(_fetch(reader, plan), hasher=hasher)[0]


class InMemoryTree:
    """An append-only tree keeping every completed node in a dict: the reference
    :class:`NodeReader`, and the pattern a database-backed log follows."""

    def __init__(
        self, leaf_hashes: Iterable[bytes] = (), *, hasher: TreeHasher = SM3_HASHER
    ) -> None:
        self._hasher = hasher
        self._range = CompactRange(hasher=hasher)
        self._nodes: dict[NodeID, bytes] = {}
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        return self._range.size

    @property
    def node_count(self) -> int:
        """Number of stored nodes (``2 * size - popcount(size)``)."""
        return len(self._nodes)

    def append(self, leaf_hash: bytes) -> list[Node]:
        """Append a leaf hash, store and return the nodes it completed."""
        completed = self._range.append(leaf_hash)
        for node in completed:
            self._nodes[node.id] = node.hash
        return completed

    def extend(self, leaf_hashes: Iterable[bytes]) -> list[Node]:
        completed: list[Node] = []
        for h in leaf_hashes:
            completed.extend(self.append(h))
        return completed

    def get_nodes(self, ids: Sequence[NodeID]) -> list[bytes]:
        try:
            return [self._nodes[node] for node in ids]
        except KeyError as exc:
            raise NodeNotFoundError(exc.args[0]) from None

    def _size_or_current(self, tree_size: int | None) -> int:
        if tree_size is None:
            return self.size
        if not 0 <= tree_size <= self.size:
            raise ValueError(f"tree size {tree_size} outside [0, {self.size}]")
        return tree_size

    def root(self, tree_size: int | None = None) -> bytes:
        """Root at ``tree_size`` (default: the current size)."""
        size = self._size_or_current(tree_size)
        if size == self.size:
            return self._range.root()
        return root_from(self, size, hasher=self._hasher)

    def inclusion_proof(self, index: int, tree_size: int | None = None) -> list[bytes]:
        """Inclusion proof of leaf ``index`` at ``tree_size`` (default: current size)."""
        size = self._size_or_current(tree_size)
        return inclusion_proof_from(self, index, size, hasher=self._hasher)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """Consistency proof from ``old_size`` to ``new_size`` (default: current size)."""
        size = self._size_or_current(new_size)
        return consistency_proof_from(self, old_size, size, hasher=self._hasher)

    def range_proof(self, begin: int, end: int, tree_size: int | None = None) -> list[bytes]:
        """Range proof of leaves ``[begin, end)`` at ``tree_size`` (default: current size)."""
        size = self._size_or_current(tree_size)
        return range_proof_from(self, begin, end, size, hasher=self._hasher)


# --------------------------------------------------------------------------- verification


def _check_size(value: bytes, what: str, hasher: TreeHasher) -> None:
    if len(value) != hasher.digest_size:
        raise HashSizeError(what, hasher.digest_size, len(value))


def _check_proof(
    proof: Sequence[bytes], expected_length: int, hasher: TreeHasher, what: str
) -> None:
    if len(proof) != expected_length:
        raise InvalidProofError(expected_length, len(proof), what=what)
    for i, node in enumerate(proof):
        _check_size(node, f"{what} node {i}", hasher)


def root_from_inclusion_proof(
    leaf_hash: bytes,
    index: int,
    tree_size: int,
    proof: Sequence[bytes],
    *,
    hasher: TreeHasher = SM3_HASHER,
) -> bytes:
    """The root implied by an inclusion proof (RFC 9162 §2.1.3.2 steps 1-4).

    Requires ``0 <= index < tree_size`` (else :class:`IndexOutOfRangeError`),
    hashes of the digest size (else :class:`HashSizeError`) and exactly
    :func:`inclusion_proof_size` proof nodes (else :class:`InvalidProofError`).
    """
    if not 0 <= index < tree_size:
        raise IndexOutOfRangeError(index, tree_size)
    _check_size(leaf_hash, "leaf hash", hasher)
    _check_proof(proof, inclusion_proof_size(index, tree_size), hasher, "inclusion proof")
    fn, sn, r = index, tree_size - 1, leaf_hash
    for p in proof:
        if sn == 0:  # unreachable after the length check; kept from the RFC
            raise InvalidProofError(inclusion_proof_size(index, tree_size), len(proof))
        if fn & 1 or fn == sn:
            r = hasher.hash_children(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = hasher.hash_children(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # unreachable after the length check; kept from the RFC
        raise InvalidProofError(inclusion_proof_size(index, tree_size), len(proof))
    return r


def verify_inclusion(
    leaf_hash: bytes,
    index: int,
    tree_size: int,
    proof: Sequence[bytes],
    root: bytes,
    *,
    hasher: TreeHasher = SM3_HASHER,
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``tree_size`` with ``root``.

    Requires ``0 <= index < tree_size``. Checks in order, raising the first
    failure: the index (:class:`IndexOutOfRangeError`), the sizes of ``root``
    and ``leaf_hash`` (:class:`HashSizeError`), the proof length against
    :func:`inclusion_proof_size` (:class:`InvalidProofError`), the proof node
    sizes (:class:`HashSizeError`), then the root (:class:`RootMismatchError`,
    ``expected=root``, ``calculated`` = the root the proof yields). Returns
    ``None`` when the proof holds.

    The proof binds the leaf to ``root``; ``tree_size`` only shapes the path,
    and for some (index, size) pairs a neighbouring size has the same shape.
    Take ``tree_size`` and ``root`` from the same signed checkpoint.
    """
    if not 0 <= index < tree_size:
        raise IndexOutOfRangeError(index, tree_size)
    _check_size(root, "root", hasher)
    calculated = root_from_inclusion_proof(leaf_hash, index, tree_size, proof, hasher=hasher)
    if calculated != root:
        raise RootMismatchError(root, calculated)


def verify_consistency(
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
    *,
    hasher: TreeHasher = SM3_HASHER,
) -> None:
    """Check that the tree (``old_size``, ``old_root``) is a prefix of (``new_size``, ``new_root``).

    Requires ``0 <= old_size <= new_size`` (else :class:`SizeError`). Checks in
    order: root sizes (:class:`HashSizeError`), proof length against
    :func:`consistency_proof_size` (:class:`InvalidProofError`), proof node
    sizes, then the roots (:class:`RootMismatchError` with ``which`` = ``"old
    root"`` or ``"new root"``).

    * ``0 < old_size < new_size``: RFC 9162 §2.1.4.2.
    * ``old_size == new_size``: the proof is empty and the roots are equal.
    * ``old_size == 0``: the proof is empty and ``old_root`` is the empty root;
      this proves nothing about ``new_root``, which must come from a trusted
      checkpoint.

    As with inclusion, sizes only shape the computation: take each size with
    its root from the same signed checkpoint.
    """
    if not 0 <= old_size <= new_size:
        raise SizeError(old_size, new_size)
    _check_size(old_root, "old root", hasher)
    _check_size(new_root, "new root", hasher)
    _check_proof(proof, consistency_proof_size(old_size, new_size), hasher, "consistency proof")
    if old_size == 0:
        empty = hasher.empty_root()
        if old_root != empty:
            raise RootMismatchError(old_root, empty, which="old root")
        if new_size == 0 and new_root != empty:
            raise RootMismatchError(new_root, empty, which="new root")
        return
    if old_size == new_size:
        if new_root != old_root:
            raise RootMismatchError(new_root, old_root, which="new root")
        return

    path = list(proof)
    if old_size & (old_size - 1) == 0:  # step 2: old tree is a perfect subtree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:  # unreachable after the length check; kept from the RFC
            raise InvalidProofError(consistency_proof_size(old_size, new_size), len(proof))
        if fn & 1 or fn == sn:
            fr = hasher.hash_children(c, fr)
            sr = hasher.hash_children(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = hasher.hash_children(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # unreachable after the length check; kept from the RFC
        raise InvalidProofError(consistency_proof_size(old_size, new_size), len(proof))
    if fr != old_root:
        raise RootMismatchError(old_root, fr, which="old root")
    if sr != new_root:
        raise RootMismatchError(new_root, sr, which="new root")


def root_from_range_proof(
    begin: int,
    end: int,
    tree_size: int,
    leaf_hashes: Iterable[bytes],
    proof: Sequence[bytes],
    *,
    hasher: TreeHasher = SM3_HASHER,
) -> bytes:
    """The root implied by the leaf hashes of ``[begin, end)`` and their range proof.

    ``leaf_hashes`` is consumed once, as a stream (O(log n) memory whatever the
    range's length). Requires ``0 <= begin < end <= tree_size`` (else
    :class:`RangeError`), exactly :func:`range_proof_size` proof nodes (else
    :class:`InvalidProofError`) of the digest size (else
    :class:`HashSizeError`), leaf hashes of the digest size (checked as they
    arrive, :class:`HashSizeError`) and one per leaf of the range (checked
    when they run out, :class:`LeafCountError`).

    The proof's first ``popcount(begin)`` nodes are the compact range of
    ``[0, begin)``; the range's leaves extend it to ``[0, end - 1)``, whose
    nodes are the left siblings on leaf ``end - 1``'s path; the RFC 9162
    §2.1.3.2 walk up that path takes each left sibling from there and each
    right sibling from the rest of the proof, in order.
    """
    if not 0 <= begin < end <= tree_size:
        raise RangeError(begin, end, tree_size)
    _check_proof(proof, range_proof_size(begin, end, tree_size), hasher, "range proof")
    expected = end - begin
    split = begin.bit_count()
    left = list(proof[:split])  # the compact range of [0, size), largest first
    size = begin
    last: bytes | None = None  # the latest leaf, folded in when the next one arrives
    count = 0
    for leaf in leaf_hashes:
        if count < expected:
            _check_size(leaf, f"leaf hash {count}", hasher)
            if last is not None:
                current, level = last, 0
                while (size >> level) & 1:  # as CompactRange.append, without the Node list
                    current = hasher.hash_children(left.pop(), current)
                    level += 1
                left.append(current)
                size += 1
            last = leaf
        count += 1
    if count != expected or last is None:
        raise LeafCountError(expected, count)
    right = iter(proof[split:])
    fn, sn, r = end - 1, tree_size - 1, last
    while sn:
        if fn & 1 or fn == sn:
            while not fn & 1:  # the right edge: no sibling until fn is a right child
                fn >>= 1
                sn >>= 1
            r = hasher.hash_children(left.pop(), r)
        else:
            r = hasher.hash_children(r, next(right))
        fn >>= 1
        sn >>= 1
    return r


def verify_range(
    begin: int,
    end: int,
    tree_size: int,
    leaf_hashes: Iterable[bytes],
    proof: Sequence[bytes],
    root: bytes,
    *,
    hasher: TreeHasher = SM3_HASHER,
) -> None:
    """Check that ``leaf_hashes`` are exactly leaves ``[begin, end)`` of the tree
    (``tree_size``, ``root``): the right leaves, in order, at those positions.

    Checks in order, raising the first failure: the range
    (:class:`RangeError`), the size of ``root`` (:class:`HashSizeError`), the
    proof length against :func:`range_proof_size` (:class:`InvalidProofError`),
    the proof node sizes, the leaf hash sizes (:class:`HashSizeError`) and
    count (:class:`LeafCountError`; ``leaf_hashes`` may be any iterable, read
    once), then the root (:class:`RootMismatchError`, ``expected=root``).
    Returns ``None`` when the proof holds.

    As with inclusion, ``tree_size`` shapes the computation; take it with
    ``root`` from the same signed record.
    """
    if not 0 <= begin < end <= tree_size:
        raise RangeError(begin, end, tree_size)
    _check_size(root, "root", hasher)
    calculated = root_from_range_proof(begin, end, tree_size, leaf_hashes, proof, hasher=hasher)
    if calculated != root:
        raise RootMismatchError(root, calculated)
