"""The anchoring worker's reads and writes: short transactions, each committed at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from exchange.anchoring.models import OPEN_STATES, AnchorRow, AnchorState
from exchange.log.models import CheckpointRow


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class AnchorStore:
    def __init__(self, engine: Engine, clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.engine = engine
        self.clock_ms = clock_ms

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # -- reads -------------------------------------------------------------------------

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        with self._session() as session:
            row = session.exec(
                select(CheckpointRow).order_by(col(CheckpointRow.tree_size).desc()).limit(1)
            ).first()
            return None if row is None else (row.tree_size, bytes(row.root))

    def checkpoint_root(self, tree_size: int) -> bytes | None:
        with self._session() as session:
            row = session.get(CheckpointRow, tree_size)
            return None if row is None else bytes(row.root)

    def get(self, tree_size: int) -> AnchorRow | None:
        with self._session() as session:
            return session.get(AnchorRow, tree_size)

    def last(self) -> AnchorRow | None:
        """The row of the largest tree size, whatever its state."""
        with self._session() as session:
            return session.exec(
                select(AnchorRow).order_by(col(AnchorRow.tree_size).desc()).limit(1)
            ).first()

    def open_rows(self) -> list[AnchorRow]:
        """Rows still to reconcile with the chain (pending, sent, anchored), oldest first."""
        with self._session() as session:
            return list(
                session.exec(
                    select(AnchorRow)
                    .where(col(AnchorRow.state).in_([s.value for s in OPEN_STATES]))
                    .order_by(col(AnchorRow.tree_size))
                )
            )

    def in_state(self, state: AnchorState) -> list[AnchorRow]:
        with self._session() as session:
            return list(
                session.exec(
                    select(AnchorRow)
                    .where(AnchorRow.state == state.value)
                    .order_by(col(AnchorRow.tree_size))
                )
            )

    def foreign_rows(self, chain_id: int, registry_address: str) -> int:
        """How many rows belong to another chain or registry than the configured one."""
        with self._session() as session:
            count = session.exec(
                select(func.count())
                .select_from(AnchorRow)
                .where(
                    (AnchorRow.chain_id != chain_id)
                    | (AnchorRow.registry_address != registry_address)
                )
            ).one()
            return int(count)

    # -- writes ------------------------------------------------------------------------

    def insert_pending(
        self, tree_size: int, root: bytes, chain_id: int, registry_address: str
    ) -> AnchorRow:
        now = self.clock_ms()
        row = AnchorRow(
            tree_size=tree_size,
            root=root,
            state=AnchorState.PENDING,
            chain_id=chain_id,
            registry_address=registry_address,
            created_at=now,
            updated_at=now,
        )
        with self._session() as session:
            session.add(row)
            session.commit()
        return row

    def retarget(self, row: AnchorRow, tree_size: int, root: bytes) -> AnchorRow:
        """Replace a pending row (nothing signed yet) by one for a newer checkpoint."""
        assert row.state == AnchorState.PENDING and row.tx_hash is None
        now = self.clock_ms()
        with self._session() as session:
            old = session.get(AnchorRow, row.tree_size)
            if old is not None:
                session.delete(old)
                session.flush()
            new = AnchorRow(
                tree_size=tree_size,
                root=root,
                state=AnchorState.PENDING,
                chain_id=row.chain_id,
                registry_address=row.registry_address,
                created_at=now,
                updated_at=now,
            )
            session.add(new)
            session.commit()
        return new

    def update(self, tree_size: int, **fields: Any) -> AnchorRow:
        """Set ``fields`` on the row of ``tree_size`` and commit; return the new row."""
        with self._session() as session:
            row = session.get(AnchorRow, tree_size)
            if row is None:
                raise LookupError(f"no anchor row for tree size {tree_size}")
            for name, value in fields.items():
                if not hasattr(row, name):
                    raise AttributeError(f"AnchorRow has no field {name!r}")
                setattr(row, name, value)
            row.updated_at = self.clock_ms()
            session.add(row)
            session.commit()
            return row
