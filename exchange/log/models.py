"""Tables of the verifiable log.

Hashes and signatures are stored as raw bytes; JSON views hex/base64 them.
Indexes, sizes and millisecond timestamps are 64-bit (``BIGINT`` on
PostgreSQL; on SQLite a single integer primary key stays ``INTEGER`` so that
it is the rowid).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer
from sqlmodel import Field, SQLModel

_ROWID = BigInteger().with_variant(Integer(), "sqlite")
_NO_AUTOINCREMENT = {"autoincrement": False}


MAX_PROMISE_BATCH = 1024
"""Most entries one promise batch covers: one append transaction signs one batch
per (up to) this many entries, so that serving a promise, which recomputes its
batch proof from the batch's stored leaf hashes, reads at most this many."""


MAX_ORDER_ID = 200
"""Longest ``payload.order_id`` kept in ``LogEntry.order_id`` (orders' ids are UUIDs)."""


class PromiseBatchRow(SQLModel, table=True):
    """The log's one signature over an append batch (``ledger.checkpoint.PromiseBatch``):
    the entries ``first_index … first_index + size - 1``, whose leaf hashes have the
    RFC 9162 root ``batch_root``, were accepted at ``timestamp``."""

    __tablename__ = "promise_batch"

    first_index: int = Field(sa_type=_ROWID, primary_key=True, sa_column_kwargs=_NO_AUTOINCREMENT)
    size: int
    batch_root: bytes
    timestamp: int = Field(sa_type=BigInteger)
    """Milliseconds since the epoch: when the batch was accepted (its promises' timestamp)."""
    log_key_id: str
    """Key id of the log key that signed."""
    signature: bytes


class LogEntry(SQLModel, table=True):
    """One accepted record: its position in the log is ``index`` (gap-free, from 0).

    Its promise is its batch's signature (``batch_first_index``) plus the
    inclusion proof of its leaf hash in the batch, recomputed on read from the
    batch's leaf hashes (see ``exchange.log.queries.promise_of``)."""

    __tablename__ = "log_entry"
    __table_args__ = (Index("ix_log_entry_order", "order_id", "index"),)

    index: int = Field(sa_type=_ROWID, primary_key=True, sa_column_kwargs=_NO_AUTOINCREMENT)
    leaf_hash: bytes = Field(index=True, unique=True)
    leaf: bytes
    """The canonical signed record (the Merkle leaf's data)."""
    record_type: str = Field(index=True)
    actor_key_id: str = Field(index=True)
    actor_public_key: str
    """PEM of the actor's SM2 public key, as it was when the record was accepted."""
    batch_first_index: int = Field(sa_type=BigInteger, foreign_key="promise_batch.first_index")
    """The promise batch that covers this entry (its ``first_index``)."""
    order_id: str | None = Field(default=None, max_length=MAX_ORDER_ID)
    """The order the record's payload names (a string ``payload.order_id``), if any:
    an order's records are read through this index instead of a scan of the log."""


class TreeNode(SQLModel, table=True):
    """A complete perfect subtree: leaves [index·2^level, (index+1)·2^level)."""

    __tablename__ = "tree_node"

    level: int = Field(primary_key=True, sa_column_kwargs=_NO_AUTOINCREMENT)
    index: int = Field(sa_type=BigInteger, primary_key=True, sa_column_kwargs=_NO_AUTOINCREMENT)
    hash: bytes


class CheckpointRow(SQLModel, table=True):
    """A signed tree head published by the sequencer."""

    __tablename__ = "checkpoint"

    tree_size: int = Field(sa_type=_ROWID, primary_key=True, sa_column_kwargs=_NO_AUTOINCREMENT)
    root: bytes
    timestamp: int = Field(sa_type=BigInteger)
    log_key_id: str
    signature: bytes


# Core views of the tables, for the hot paths (no ORM unit-of-work or entity loading).
promise_batch_table = SQLModel.metadata.tables["promise_batch"]
log_entry_table = SQLModel.metadata.tables["log_entry"]
tree_node_table = SQLModel.metadata.tables["tree_node"]
checkpoint_table = SQLModel.metadata.tables["checkpoint"]
