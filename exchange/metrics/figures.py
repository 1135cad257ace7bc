"""The figures that live in the database, read at once in one session.

Every worker process reads the same rows, so every worker answers the same:
these are never counted in memory. :class:`~exchange.metrics.collector.DatabaseCollector`
exposes them on ``/metrics``; the explorer's operator page shows them (through the
same collector, see :mod:`exchange.metrics.exposition`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlmodel import Session, col

from exchange.anchoring.models import ON_CHAIN_STATES, AnchorRow, AnchorState
from exchange.computations.models import Computation, ComputationState
from exchange.log.models import checkpoint_table, log_entry_table, promise_batch_table
from exchange.orders.models import Order, OrderState
from exchange.payouts.models import Withdrawal, WithdrawalState

__all__ = ["DatabaseFigures", "current_figures"]


@dataclass(frozen=True, slots=True)
class DatabaseFigures:
    """What the database says about the log, its anchors and the work waiting."""

    log_size: int
    """Entries in the log (indexes are gap-free from 0)."""
    checkpoint_size: int
    """Tree size of the latest signed checkpoint (0 before the first)."""
    anchor_states: dict[str, int]
    """Anchor rows per state, every state named (0 when none)."""
    anchored_size: int
    """Tree size of the largest anchor on chain (anchored or final; 0 before the first)."""
    oldest_unanchored_ms: int | None
    """When the oldest entry no on-chain anchor covers was accepted (ms since the
    epoch), ``None`` when every entry is covered."""
    pending_deliveries: int
    """Paid orders not delivered yet (state ``placed``)."""
    pending_computations: int
    """Queries no agent has answered yet (state ``pending``)."""
    pending_payouts: int
    """Withdrawals no operator has paid or rejected yet (their amounts held)."""

    @property
    def sequencer_lag(self) -> int:
        """Entries not yet in a checkpoint."""
        return self.log_size - self.checkpoint_size

    def oldest_unanchored_age_s(self, now_ms: int) -> float:
        """Seconds since the oldest unanchored entry was accepted (0 when none)."""
        if self.oldest_unanchored_ms is None:
            return 0.0
        return max(0, now_ms - self.oldest_unanchored_ms) / 1000


def current_figures(session: Session) -> DatabaseFigures:
    """Read the figures in ``session`` (a handful of indexed aggregate queries)."""
    run = session.connection().execute
    last_index = run(select(func.max(log_entry_table.c.index))).scalar()
    log_size = 0 if last_index is None else int(last_index) + 1
    checkpoint_size = int(run(select(func.max(checkpoint_table.c.tree_size))).scalar() or 0)
    states = {state.value: 0 for state in AnchorState}
    for state, count in run(
        select(col(AnchorRow.state), func.count()).group_by(col(AnchorRow.state))
    ):
        states[str(state)] = int(count)
    anchored_size = int(
        run(
            select(func.max(col(AnchorRow.tree_size))).where(
                col(AnchorRow.state).in_([s.value for s in ON_CHAIN_STATES])
            )
        ).scalar()
        or 0
    )
    oldest: int | None = None
    if anchored_size < log_size:
        oldest = run(
            select(promise_batch_table.c.timestamp)
            .select_from(log_entry_table)
            .join(
                promise_batch_table,
                promise_batch_table.c.first_index == log_entry_table.c.batch_first_index,
            )
            .where(log_entry_table.c.index == anchored_size)
        ).scalar()
    return DatabaseFigures(
        log_size=log_size,
        checkpoint_size=checkpoint_size,
        anchor_states=states,
        anchored_size=anchored_size,
        oldest_unanchored_ms=None if oldest is None else int(oldest),
        pending_deliveries=_count(session, Order, col(Order.state) == OrderState.PLACED.value),
        pending_computations=_count(
            session, Computation, col(Computation.state) == ComputationState.PENDING.value
        ),
        pending_payouts=_count(
            session, Withdrawal, col(Withdrawal.state) == WithdrawalState.PENDING.value
        ),
    )


def _count(session: Session, table: type, condition: object) -> int:
    statement = select(func.count()).select_from(table).where(condition)  # type: ignore[arg-type]
    return int(session.connection().execute(statement).scalar() or 0)
