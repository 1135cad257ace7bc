"""Reading the log: checkpoints, integrated entries, inclusion and consistency proofs.

Only integrated data is served: entries below the latest checkpoint's tree
size, proofs for tree sizes up to it. Every function raises the log's
:mod:`exchange.log.errors` (400/404 with a code), never a bare exception, for
input a client can get wrong.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from exchange.log.errors import (
    CheckpointNotFoundError,
    CorruptCheckpointError,
    CorruptEntryError,
    CorruptTreeError,
    EntryNotFoundError,
    InvalidIndexError,
    InvalidRangeError,
    InvalidTreeSizeError,
    NoCheckpointError,
)
from exchange.log.models import (
    MAX_PROMISE_BATCH,
    CheckpointRow,
    LogEntry,
    PromiseBatchRow,
    checkpoint_table,
    log_entry_table,
)
from exchange.log.nodes import StoredTree
from ledger.checkpoint import Checkpoint, Promise
from ledger.merkle import NodeID, NodeNotFoundError, consistency_plan, inclusion_plan
from ledger.merkle import inclusion_proof as merkle_inclusion_proof
from ledger.records import MAX_SAFE_INTEGER, RecordFormatError

__all__ = [
    "ConsistencyProof",
    "InclusionProof",
    "checkpoint_at",
    "checkpoint_from_row",
    "consistency_proof",
    "entry_at",
    "entry_record",
    "find_entry",
    "inclusion_proof",
    "latest_checkpoint",
    "latest_tree_size",
    "promise_of",
    "require_latest_checkpoint",
]


@dataclass(frozen=True, slots=True)
class InclusionProof:
    index: int
    tree_size: int
    leaf_hash: bytes
    hashes: list[bytes]


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    first: int
    second: int
    hashes: list[bytes]


def checkpoint_from_row(row: CheckpointRow) -> Checkpoint:
    try:
        return Checkpoint(row.tree_size, row.root, row.timestamp, row.log_key_id, row.signature)
    except RecordFormatError as exc:
        raise CorruptCheckpointError(f"checkpoint {row.tree_size} is malformed: {exc}") from None


def latest_checkpoint(session: Session) -> Checkpoint | None:
    row = (
        session.execute(
            select(CheckpointRow).order_by(col(CheckpointRow.tree_size).desc()).limit(1)
        )
        .scalars()
        .first()
    )
    return None if row is None else checkpoint_from_row(row)


def latest_tree_size(session: Session) -> int:
    """Size of the latest checkpoint (0 before the first)."""
    sizes = checkpoint_table.c.tree_size
    size = session.connection().execute(select(sizes).order_by(sizes.desc()).limit(1)).scalar()
    return 0 if size is None else int(size)


def require_latest_checkpoint(session: Session) -> Checkpoint:
    checkpoint = latest_checkpoint(session)
    if checkpoint is None:
        raise NoCheckpointError("the log has no checkpoint yet")
    return checkpoint


def checkpoint_at(session: Session, tree_size: int) -> Checkpoint:
    row = session.get(CheckpointRow, tree_size) if _storable(tree_size) else None
    if row is None:
        raise CheckpointNotFoundError(f"no checkpoint with tree size {tree_size}")
    return checkpoint_from_row(row)


def promise_of(session: Session, entry: LogEntry) -> Promise:
    """The promise the log returned when it accepted ``entry``: its batch's signed
    statement plus the inclusion proof of its leaf in the batch, recomputed from
    the leaf hashes the database holds for the batch's indexes.

    What the database holds is served unverified (checking is the auditor's
    job): when it no longer holds the batch as signed — the entry moved out of
    its batch's range, entries of the batch are missing — the proof is left
    empty, and the promise fails verification instead of this request.
    Raises :class:`CorruptEntryError` (500) only when there is no promise to
    serve at all (the batch row is missing or malformed).
    """
    first = entry.batch_first_index
    batch = session.get(PromiseBatchRow, first) if _storable(first) else None
    if batch is None:
        raise CorruptEntryError(f"the promise batch {first} of entry {entry.index} is missing")
    proof: list[bytes] = []
    position = entry.index - first
    if 0 <= position < batch.size <= MAX_PROMISE_BATCH:
        entries = log_entry_table.c
        rows = (
            session.connection()
            .execute(
                select(entries.index, entries.leaf_hash)
                .where(entries.index >= first, entries.index < first + batch.size)
                .order_by(entries.index)
            )
            .all()
        )
        if [index for index, _ in rows] == list(range(first, first + batch.size)):
            proof = merkle_inclusion_proof(position, [bytes(digest) for _, digest in rows])
    try:
        return Promise(
            leaf_hash=entry.leaf_hash,
            index=entry.index,
            timestamp=batch.timestamp,
            log_key_id=batch.log_key_id,
            batch_first_index=first,
            batch_size=batch.size,
            batch_proof=tuple(proof),
            signature=batch.signature,
        )
    except RecordFormatError as exc:
        raise CorruptEntryError(f"the promise of entry {entry.index} is malformed: {exc}") from None


def entry_at(session: Session, index: int) -> LogEntry:
    """The integrated entry at ``index``; raises 400 (negative) or 404."""
    if index < 0:
        raise InvalidIndexError(f"index must be >= 0, got {index}")
    size = latest_tree_size(session)
    if index >= size:
        raise EntryNotFoundError(
            f"no integrated entry at index {index} (the latest checkpoint has {size} entries)"
        )
    entry = session.get(LogEntry, index)  # index < size: storable
    if entry is None:  # only if someone deleted it: an honest log always serves it
        raise EntryNotFoundError(f"entry {index} is integrated but missing from the database")
    return entry


def _storable(value: int) -> bool:
    """Whether ``value`` fits the 64-bit columns (larger ones cannot exist)."""
    return 0 <= value <= MAX_SAFE_INTEGER


def find_entry(session: Session, index: int) -> LogEntry | None:
    """The entry at ``index``, integrated or not (``None`` if there is none)."""
    return session.get(LogEntry, index) if _storable(index) else None


def entry_record(entry: LogEntry) -> dict[str, Any]:
    """The stored signed record, as JSON (exactly what was stored, unverified)."""
    try:
        value = json.loads(entry.leaf)
    except (ValueError, UnicodeDecodeError):
        raise CorruptEntryError(f"entry {entry.index} is not readable JSON") from None
    if not isinstance(value, dict):
        raise CorruptEntryError(f"entry {entry.index} is not a JSON object")
    return value


def _check_tree_size(tree_size: int, latest: int) -> None:
    if tree_size < 1:
        raise InvalidTreeSizeError(f"tree_size must be >= 1, got {tree_size}")
    if tree_size > latest:
        raise InvalidTreeSizeError(
            f"tree_size {tree_size} is beyond the latest checkpoint (tree size {latest})"
        )


def inclusion_proof(
    session: Session,
    tree_size: int,
    *,
    index: int | None = None,
    leaf_hash: bytes | None = None,
) -> InclusionProof:
    """Inclusion proof of the entry at ``index`` (or with ``leaf_hash``) in the tree
    of ``tree_size`` (1 <= tree_size <= latest checkpoint)."""
    if (index is None) == (leaf_hash is None):
        raise InvalidIndexError("give exactly one of index and leaf_hash")
    latest = latest_tree_size(session)
    _check_tree_size(tree_size, latest)
    if leaf_hash is not None:
        found = session.execute(
            select(col(LogEntry.index)).where(col(LogEntry.leaf_hash) == leaf_hash)
        ).scalar()
        if found is None or found >= latest:
            raise EntryNotFoundError(f"no integrated entry with leaf hash {leaf_hash.hex()}")
        index = int(found)
        stored_hash = leaf_hash
    else:
        assert index is not None
        if index < 0:
            raise InvalidIndexError(f"index must be >= 0, got {index}")
        stored_hash = None
    if index >= tree_size:
        raise InvalidIndexError(f"entry {index} is not in the tree of size {tree_size}")
    plan = inclusion_plan(index, tree_size)
    leaf = NodeID(0, index)  # the leaf as the tree holds it, read in the same query
    ids = list(dict.fromkeys([*plan.node_ids, leaf]))
    nodes = dict(zip(ids, _read_nodes(session, ids), strict=True))
    return InclusionProof(index, tree_size, stored_hash or nodes[leaf], plan.assemble(nodes))


def consistency_proof(session: Session, first: int, second: int) -> ConsistencyProof:
    """Consistency proof from tree size ``first`` to ``second`` (1 <= first <= second <=
    latest checkpoint)."""
    latest = latest_tree_size(session)
    if first < 1:
        raise InvalidTreeSizeError(f"first must be >= 1, got {first}")
    if first > second:
        raise InvalidRangeError(f"first ({first}) must not exceed second ({second})")
    _check_tree_size(second, latest)
    plan = consistency_plan(first, second)
    nodes = dict(zip(plan.node_ids, _read_nodes(session, plan.node_ids), strict=True))
    return ConsistencyProof(first, second, plan.assemble(nodes))


def _read_nodes(session: Session, ids: Sequence[NodeID]) -> list[bytes]:
    try:
        return StoredTree(session).get_nodes(ids)
    except NodeNotFoundError as exc:
        raise CorruptTreeError(f"the tree store is damaged: {exc}") from None
