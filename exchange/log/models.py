"""Tables of the verifiable log.

Hashes and signatures are stored as raw bytes; JSON views hex/base64 them.
Indexes, sizes and millisecond timestamps are 64-bit (``BIGINT`` on
PostgreSQL; on SQLite a single integer primary key stays ``INTEGER`` so that
it is the rowid).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Engine, Integer
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlmodel import Field, SQLModel

_ROWID = BigInteger().with_variant(Integer(), "sqlite")
_NO_AUTOINCREMENT = {"autoincrement": False}


class LogEntry(SQLModel, table=True):
    """One accepted record: its position in the log is ``index`` (gap-free, from 0)."""

    __tablename__ = "log_entry"

    index: int = Field(sa_type=_ROWID, primary_key=True, sa_column_kwargs=_NO_AUTOINCREMENT)
    leaf_hash: bytes = Field(index=True, unique=True)
    leaf: bytes
    """The canonical signed record (the Merkle leaf's data)."""
    record_type: str = Field(index=True)
    actor_key_id: str = Field(index=True)
    actor_public_key: str
    """PEM of the actor's SM2 public key, as it was when the record was accepted."""
    accepted_at: int = Field(sa_type=BigInteger)
    """Milliseconds since the epoch; the promise's timestamp."""
    log_key_id: str
    """Key id of the log key that signed the promise."""
    promise_signature: bytes


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


def create_log_tables(engine: Engine) -> None:
    """Create the log's tables (and the anchoring table receipts read) if missing.

    Safe when several workers start at once: a worker that loses the race to
    create a table retries and then finds it.
    """
    import exchange.anchoring.models  # noqa: F401  (registers the "anchor" table)

    names = ("log_entry", "tree_node", "checkpoint", "anchor")
    tables = [SQLModel.metadata.tables[name] for name in names]
    for attempt in range(3):
        try:
            SQLModel.metadata.create_all(engine, tables=tables)
            return
        except (OperationalError, ProgrammingError, IntegrityError):
            if attempt == 2:
                raise


# Core views of the tables, for the hot paths (no ORM unit-of-work or entity loading).
log_entry_table = SQLModel.metadata.tables["log_entry"]
tree_node_table = SQLModel.metadata.tables["tree_node"]
checkpoint_table = SQLModel.metadata.tables["checkpoint"]
