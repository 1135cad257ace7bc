"""The anchoring worker's own table: one row per checkpoint it anchors.

A row moves ``pending → sent → anchored → final``; a reorg can move an anchored
row back to ``sent`` (or ``pending``), and two terminal states record what the
worker will not do silently: ``conflict`` (the chain holds another root for this
tree size) and ``superseded`` (a larger anchor of ours already covers it).
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import BigInteger, Integer
from sqlmodel import Field, SQLModel

_KEY = BigInteger().with_variant(Integer(), "sqlite")
"""64-bit on PostgreSQL; SQLite's INTEGER is 64-bit already."""


class AnchorState(StrEnum):
    PENDING = "pending"
    """Chosen for anchoring; no transaction signed yet."""
    SENT = "sent"
    """Transaction signed and recorded (hash, raw bytes) before broadcast; not yet mined."""
    ANCHORED = "anchored"
    """Mined in ``block_number``; fewer than the configured confirmations."""
    FINAL = "final"
    """Mined with at least the configured confirmations."""
    CONFLICT = "conflict"
    """The registry holds a different root for this tree size: history conflict, halts anchoring."""
    SUPERSEDED = "superseded"
    """Never mined, and the registry already holds a larger anchor of ours that covers it."""


UNMINED_STATES = (AnchorState.PENDING, AnchorState.SENT)
"""States whose transaction is not (known to be) mined: at most one row is in them."""
OPEN_STATES = (AnchorState.PENDING, AnchorState.SENT, AnchorState.ANCHORED)
"""States the worker still reconciles with the chain on every run."""
ON_CHAIN_STATES = (AnchorState.ANCHORED, AnchorState.FINAL)
"""States whose root is (as far as the worker knows) stored in the registry."""


class AnchorRow(SQLModel, table=True):
    __tablename__ = "anchor"

    tree_size: int = Field(
        sa_type=_KEY, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    root: bytes
    state: str = Field(default=AnchorState.PENDING, index=True)
    chain_id: int = Field(sa_type=BigInteger)
    registry_address: str
    tx_hash: str | None = None
    raw_tx: bytes | None = None
    """The signed transaction, committed before it is broadcast (re-sent after a crash)."""
    nonce: int | None = Field(default=None, sa_type=BigInteger)
    sender: str | None = None
    sent_block: int | None = Field(default=None, sa_type=BigInteger)
    """The chain's block number just before signing: where to look for our event."""
    block_number: int | None = Field(default=None, sa_type=BigInteger)
    block_hash: str | None = None
    gas_used: int | None = Field(default=None, sa_type=BigInteger)
    detail: str | None = None
    """Why the row is where it is, when that is not the happy path (revert, conflict, reorg)."""
    created_at: int = Field(sa_type=BigInteger)
    """Milliseconds since the epoch."""
    updated_at: int = Field(sa_type=BigInteger)
