"""Recording ``anchor.final`` events: each final anchor of a larger tree size than
the last recorded, in the feed slot after the log's current last entry.

The recording runs under the log's append lock (``LogLock.APPEND``: on SQLite the
database's write lock), so no log entry can be committed between reading the
last index and committing the anchor events: every entry a reader can see after
the slot was committed after them. Any number of processes may run it; the
second finds the work done. A final anchor smaller than one already recorded is
not recorded (the larger one covers its range: "final up to tree size T" only grows).
"""

from __future__ import annotations

import time

from sqlalchemy import func, select
from sqlmodel import Session, col

from exchange.anchoring.models import AnchorRow, AnchorState
from exchange.events.models import AnchorEvent
from exchange.log.locking import LogLock, exclusive_transaction
from exchange.log.models import LogEntry
from exchange.log.sequencer import SessionFactory

__all__ = ["record_final_anchors"]


def _last_recorded(session: Session) -> int:
    value = session.execute(select(func.max(col(AnchorEvent.tree_size)))).scalar_one()
    return int(value or 0)


def _finals_after(session: Session, tree_size: int) -> list[AnchorRow]:
    return list(
        session.execute(
            select(AnchorRow)
            .where(col(AnchorRow.state) == AnchorState.FINAL)
            .where(col(AnchorRow.tree_size) > tree_size)
            .order_by(col(AnchorRow.tree_size))
        )
        .scalars()
        .all()
    )


def record_final_anchors(session_factory: SessionFactory) -> int:
    """Record the anchors that became final since the last call; how many."""
    with session_factory() as session:
        if not _finals_after(session, _last_recorded(session)):
            return 0
    with session_factory() as session, exclusive_transaction(session, LogLock.APPEND):
        previous = _last_recorded(session)
        finals = _finals_after(session, previous)
        last = session.execute(select(func.max(col(LogEntry.index)))).scalar_one()
        now = time.time_ns() // 1_000_000
        for row in finals:
            session.add(
                AnchorEvent(
                    tree_size=row.tree_size,
                    slot=int(last if last is not None else -1),
                    from_size=previous,
                    root=bytes(row.root).hex(),
                    chain_id=row.chain_id,
                    registry_address=row.registry_address,
                    tx_hash=row.tx_hash,
                    block_number=row.block_number,
                    recorded_at=now,
                )
            )
            previous = row.tree_size
        return len(finals)
