"""A dataset's row tree: its root in one streamed pass, and an index file for fast slice proofs.

The row tree is the RFC 9162 SM3 tree of :mod:`ledger.merkle` with one leaf per
row (``SM3(0x00 || row bytes)``, row bytes as :mod:`ledger.row_leaves` defines
them). :class:`RowTreeBuilder` takes the rows in order and returns the root,
holding one block of ``2**block_level`` leaf hashes plus an O(log n)
:class:`~ledger.merkle.CompactRange` of the blocks above it.

A provider proves a slice ``[begin, end)`` with the range proof of
:func:`ledger.merkle.range_plan`: the subtrees outside the slice. So that a
proof does not rehash the whole file, the builder can write a **row index**
during the same pass. It keeps only the nodes of ``2**block_level`` rows and
more (level ``>= block_level``; two 40-byte records a block, 78 KB
per million rows at the default 1,024-row blocks), each with the byte offset
of its first row, so that a slicer can also seek straight to a block. A proof
then reads O(log n) stored nodes and rehashes at most the rows of the block
holding ``begin`` before it and of the block holding ``end - 1`` after it
(:func:`edge_ranges`, fewer than ``2**(block_level + 1)`` rows), never the
slice itself. The index trades that size for not having to hash every row of
the file per order; an index of every leaf would be 32 bytes a row.

Index file (all integers unsigned big-endian)::

    records   2*B - popcount(B) records of 40 bytes: u64 byte offset of the
              node's first row || 32-byte node hash, for every perfect node of
              level >= block_level, B = tree_size >> block_level full blocks,
              in the order the nodes complete (a node after its children)
    tail      popcount(tree_size mod 2**block_level) hashes of 32 bytes: the
              nodes range_nodes(B << block_level, tree_size), left to right
    footer    112 bytes: magic b"SCROWIX1" || u8 block_level || 7 zero bytes ||
              u64 tree_size || u64 tail_offset (byte offset of row
              B << block_level, or data_size when there is no tail) ||
              u64 header_end (bytes before the first row that are not rows:
              a CSV header; 0 otherwise) || u64 data_size || 32-byte SM3 of
              the data file || 32-byte row root

Node ``(level, index)`` of level ``L >= block_level`` is record number
``2*(e-1) - popcount(e-1) + j`` with ``j = L - block_level`` and ``e = (index +
1) << j`` (the number of blocks up to its end). For formats without byte
offsets (Parquet) the offset of a row is its row number.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Protocol

from ledger.errors import LedgerError
from ledger.merkle import (
    CompactRange,
    NodeID,
    NodeNotFoundError,
    TreeHasher,
    range_nodes,
    range_proof_from,
    root_from_leaf_hashes,
)
from ledger.sm3 import DIGEST_SIZE, sm3

__all__ = [
    "DEFAULT_BLOCK_LEVEL",
    "FOOTER_SIZE",
    "MAX_BLOCK_LEVEL",
    "RECORD_SIZE",
    "ROW_HASHER",
    "RowIndex",
    "RowIndexError",
    "RowTreeBuilder",
    "edge_ranges",
    "row_leaf_hash",
    "row_range_proof",
]

DEFAULT_BLOCK_LEVEL: Final = 10
"""Rows per index block: ``2**10``."""

MAX_BLOCK_LEVEL: Final = 24

_MAGIC: Final = b"SCROWIX1"
_FOOTER: Final = struct.Struct(">8sB7xQQQQ32s32s")
_RECORD: Final = struct.Struct(">Q32s")
RECORD_SIZE: Final = _RECORD.size
FOOTER_SIZE: Final = _FOOTER.size


class _HashObject(Protocol):
    def copy(self) -> _HashObject: ...
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


class _Prefixed:  # pragma: no cover - an OpenSSL whose hashlib lacks SM3
    """SM3 from ``cryptography`` of what was fed, with the :mod:`hashlib` interface."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def copy(self) -> _Prefixed:
        return _Prefixed(self._data)

    def update(self, data: bytes, /) -> None:
        self._data += data

    def digest(self) -> bytes:
        return sm3(self._data)


def _primed(prefix: bytes) -> _HashObject:
    """An SM3 object fed ``prefix``, to copy per hash: OpenSSL via :mod:`hashlib`
    when it has SM3 (no algorithm lookup per hash, unlike a new object)."""
    if "sm3" in hashlib.algorithms_available:
        return hashlib.new("sm3", prefix)
    return _Prefixed(prefix)  # pragma: no cover


def _hash_after(primed: _HashObject, data: bytes) -> bytes:
    """``SM3(prefix || data)`` for the prefix ``primed`` was fed."""
    h = primed.copy()
    h.update(data)
    return h.digest()


_PLAIN_PRIMED: Final = _primed(b"")
_LEAF_PRIMED: Final = _primed(b"\x00")
_NODE_PRIMED: Final = _primed(b"\x01")

ROW_HASHER: Final = TreeHasher("sm3", functools.partial(_hash_after, _PLAIN_PRIMED), DIGEST_SIZE)
"""The SM3 tree hasher of :mod:`ledger.merkle` (the same hashes), faster per call."""


def row_leaf_hash(row: bytes) -> bytes:
    """``SM3(0x00 || row)``: :func:`ledger.merkle.leaf_hash` of a row's bytes."""
    return _hash_after(_LEAF_PRIMED, row)


def _node(left: bytes, right: bytes) -> bytes:
    return _hash_after(_NODE_PRIMED, left + right)


def _fold_right(hashes: Sequence[bytes]) -> bytes:
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = _node(left, result)
    return result


def _perfect_root(hashes: list[bytes]) -> bytes:
    """Root of ``2**k`` leaf hashes, pairwise, level by level."""
    copy = _NODE_PRIMED.copy
    while len(hashes) > 1:
        parents = []
        for i in range(0, len(hashes), 2):
            h = copy()
            h.update(hashes[i])
            h.update(hashes[i + 1])
            parents.append(h.digest())
        hashes = parents
    return hashes[0]


def _record_number(level: int, index: int, block_level: int) -> int:
    j = level - block_level
    e = (index + 1) << j
    return 2 * (e - 1) - (e - 1).bit_count() + j


class RowIndexError(LedgerError):
    """A row index file is malformed, or does not belong to the data it is used with."""


# --------------------------------------------------------------------------- building


class RowTreeBuilder:
    """The row tree of rows appended in order, and optionally its index file.

    ``add(row_bytes, offset)`` for each row (``offset``: the byte offset of the
    row's first byte in the data file, or its row number where the format has
    no byte offsets), then :meth:`finish`. With ``index`` (a binary stream
    positioned at its start), the index records are written as blocks
    complete and the tail and footer by :meth:`finish`.
    """

    def __init__(
        self, *, block_level: int = DEFAULT_BLOCK_LEVEL, index: IO[bytes] | None = None
    ) -> None:
        if not 0 <= block_level <= MAX_BLOCK_LEVEL:
            raise ValueError(f"block_level must be in [0, {MAX_BLOCK_LEVEL}]")
        self.block_level = block_level
        self._block_size = 1 << block_level
        self._block: list[bytes] = []
        self._block_offset = 0
        self._upper = CompactRange(hasher=ROW_HASHER)
        self._upper_offsets: list[int] = []  # first-row offset of each node of _upper
        self._index = index
        self._leaf_copy = _LEAF_PRIMED.copy
        self.size = 0

    def add(self, row: bytes, offset: int) -> None:
        """Append the row whose bytes are ``row`` (hashed here)."""
        # one call per row of a large file: add_leaf_hash and row_leaf_hash inlined
        h = self._leaf_copy()
        h.update(row)
        block = self._block
        if not block:
            self._block_offset = offset
        block.append(h.digest())
        self.size += 1
        if len(block) == self._block_size:
            self._complete_block()

    def add_leaf_hash(self, leaf_hash: bytes, offset: int) -> None:
        if not self._block:
            self._block_offset = offset
        self._block.append(leaf_hash)
        self.size += 1
        if len(self._block) == self._block_size:
            self._complete_block()

    def _complete_block(self) -> None:
        root = _perfect_root(self._block)
        self._block = []
        offset = self._block_offset
        offsets = self._upper_offsets
        completed = self._upper.append(root)
        merged = len(completed) - 1
        if self._index is not None:
            self._index.write(
                b"".join(
                    _RECORD.pack(offset if node.level == 0 else offsets[-node.level], node.hash)
                    for node in completed
                )
            )
        if merged:
            offset = offsets[-merged]
            del offsets[-merged:]
        offsets.append(offset)

    def _tail(self) -> list[bytes]:
        tail = CompactRange(hasher=ROW_HASHER)
        tail.extend(self._block)
        return list(tail.hashes)

    def root(self) -> bytes:
        """Root of the rows added so far."""
        hashes = [*self._upper.hashes, *self._tail()]
        return _fold_right(hashes) if hashes else ROW_HASHER.empty_root()

    def finish(
        self,
        *,
        data_size: int,
        data_sm3: bytes,
        header_end: int = 0,
        end_offset: int | None = None,
    ) -> bytes:
        """The root; with an index, write its tail and footer. ``end_offset`` is
        where a row after the last would start (default ``data_size``)."""
        root = self.root()
        if self._index is not None:
            if len(data_sm3) != DIGEST_SIZE:
                raise ValueError("data_sm3 is an SM3 digest")
            tail = self._tail()
            tail_offset = (
                self._block_offset
                if self._block
                else (data_size if end_offset is None else end_offset)
            )
            self._index.write(b"".join(tail))
            self._index.write(
                _FOOTER.pack(
                    _MAGIC,
                    self.block_level,
                    self.size,
                    tail_offset,
                    header_end,
                    data_size,
                    data_sm3,
                    root,
                )
            )
        return root


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class _Footer:
    block_level: int
    tree_size: int
    tail_offset: int
    header_end: int
    data_size: int
    data_sm3: bytes
    root: bytes


class RowIndex:
    """An open row index file: a :class:`~ledger.merkle.NodeReader` of the stored
    nodes (level ``>= block_level`` and the tail's), and block offsets.

    Use as a context manager (it holds the file open), or :meth:`close`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._handle = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        try:
            self._load()
        except BaseException:
            self._handle.close()
            raise

    def _load(self) -> None:
        length = os.fstat(self._handle.fileno()).st_size
        if length < FOOTER_SIZE:
            raise RowIndexError(f"{self.path} is not a row index (too short)")
        self._handle.seek(length - FOOTER_SIZE)
        fields = _FOOTER.unpack(self._handle.read(FOOTER_SIZE))
        if fields[0] != _MAGIC:
            raise RowIndexError(f"{self.path} is not a row index (no {_MAGIC!r} footer)")
        footer = _Footer(*fields[1:])
        if footer.block_level > MAX_BLOCK_LEVEL:
            raise RowIndexError(f"{self.path}: block level {footer.block_level} out of range")
        blocks = footer.tree_size >> footer.block_level
        self._records = 2 * blocks - blocks.bit_count()
        tail_count = (footer.tree_size & ((1 << footer.block_level) - 1)).bit_count()
        expected = self._records * RECORD_SIZE + tail_count * DIGEST_SIZE + FOOTER_SIZE
        if length != expected:
            raise RowIndexError(
                f"{self.path} is {length} bytes; a row index of {footer.tree_size} rows in "
                f"blocks of {1 << footer.block_level} is {expected}"
            )
        self._handle.seek(self._records * RECORD_SIZE)
        tail = self._handle.read(tail_count * DIGEST_SIZE)
        tail_start = blocks << footer.block_level
        self._tail = {
            node: tail[i * DIGEST_SIZE : (i + 1) * DIGEST_SIZE]
            for i, node in enumerate(range_nodes(tail_start, footer.tree_size))
        }
        self._footer = footer

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> RowIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def block_level(self) -> int:
        return self._footer.block_level

    @property
    def tree_size(self) -> int:
        return self._footer.tree_size

    @property
    def root(self) -> bytes:
        return self._footer.root

    @property
    def data_size(self) -> int:
        return self._footer.data_size

    @property
    def data_sm3(self) -> bytes:
        return self._footer.data_sm3

    @property
    def header_end(self) -> int:
        return self._footer.header_end

    def _record(self, level: int, index: int) -> tuple[int, bytes]:
        number = _record_number(level, index, self._footer.block_level)
        if not 0 <= number < self._records or (index + 1) << level > self.tree_size:
            raise NodeNotFoundError(NodeID(level, index))
        self._handle.seek(number * RECORD_SIZE)
        offset, digest = _RECORD.unpack(self._handle.read(RECORD_SIZE))
        return offset, digest

    def block_offset(self, block: int) -> int:
        """Byte offset (row number for Parquet) of the first row of block ``block``
        (rows ``[block << block_level, …)``)."""
        if 0 <= block < self.tree_size >> self.block_level:
            return self._record(self.block_level, block)[0]
        if block == self.tree_size >> self.block_level and self._tail:
            return self._footer.tail_offset
        raise ValueError(f"no block {block} in a row tree of {self.tree_size} rows")

    def get_nodes(self, ids: Sequence[NodeID]) -> list[bytes]:
        hashes: list[bytes] = []
        for node in ids:
            if node in self._tail:
                hashes.append(self._tail[node])
            elif node.level >= self.block_level:
                hashes.append(self._record(node.level, node.index)[1])
            else:
                raise NodeNotFoundError(node)
        return hashes


# --------------------------------------------------------------------------- proofs


def edge_ranges(
    begin: int, end: int, tree_size: int, block_level: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """The rows a proof of ``[begin, end)`` from an index needs hashed: the rows of
    ``begin``'s block before it, and the rows of ``end - 1``'s block after it
    (up to ``tree_size``). Requires ``0 <= begin < end <= tree_size``."""
    mask = (1 << block_level) - 1
    block_end = min(((end - 1) | mask) + 1, tree_size)
    return (begin & ~mask, begin), (end, block_end)


class _EdgeReader:
    """Stored nodes, and the nodes below block level from the edge rows' hashes."""

    def __init__(self, index: RowIndex, edge_leaves: Mapping[int, bytes]) -> None:
        self._index = index
        self._leaves = edge_leaves

    def get_nodes(self, ids: Sequence[NodeID]) -> list[bytes]:
        hashes: list[bytes] = []
        for node in ids:
            first, last = node.coverage()
            if node.level < self._index.block_level and all(
                i in self._leaves for i in range(first, last)
            ):
                leaves = [self._leaves[i] for i in range(first, last)]
                hashes.append(root_from_leaf_hashes(leaves, hasher=ROW_HASHER))
            else:
                hashes.extend(self._index.get_nodes([node]))
        return hashes


def row_range_proof(
    index: RowIndex, begin: int, end: int, edge_leaves: Mapping[int, bytes]
) -> list[bytes]:
    """Range proof of rows ``[begin, end)`` from ``index`` and the leaf hashes of the
    rows :func:`edge_ranges` names (row number -> leaf hash).

    Raises :class:`~ledger.merkle.RangeError` for a range outside the tree and
    :class:`~ledger.merkle.NodeNotFoundError` when an edge row is missing.
    """
    return range_proof_from(
        _EdgeReader(index, edge_leaves), begin, end, index.tree_size, hasher=ROW_HASHER
    )
