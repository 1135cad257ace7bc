"""Reading the anchor table for people: the rows by tree size (the API's
``GET /log/anchors``) and the newest first with their state counts (the explorer's
anchors page)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlmodel import Session, col

from exchange.anchoring.models import ON_CHAIN_STATES, AnchorRow

__all__ = ["anchors_from", "confirmations", "latest_anchors", "state_counts"]


def anchors_from(session: Session, *, start: int, limit: int) -> list[AnchorRow]:
    """Rows with tree size >= ``start``, smallest first, at most ``limit``."""
    query = (
        select(AnchorRow)
        .where(col(AnchorRow.tree_size) >= start)
        .order_by(col(AnchorRow.tree_size))
        .limit(limit)
    )
    return list(session.execute(query).scalars().all())


def latest_anchors(session: Session, *, before: int | None, limit: int) -> list[AnchorRow]:
    """Rows with tree size < ``before`` (default: all), largest first, at most ``limit``."""
    query = select(AnchorRow)
    if before is not None:
        query = query.where(col(AnchorRow.tree_size) < before)
    query = query.order_by(col(AnchorRow.tree_size).desc()).limit(limit)
    return list(session.execute(query).scalars().all())


def state_counts(session: Session) -> dict[str, int]:
    """How many rows are in each state (states without rows left out)."""
    rows = session.execute(
        select(col(AnchorRow.state), func.count()).group_by(col(AnchorRow.state))
    ).all()
    return {str(state): int(count) for state, count in rows}


def confirmations(row: AnchorRow, head_block: int | None) -> int | None:
    """Blocks on top of (and including) the row's block at chain head ``head_block``;
    ``None`` when it is not mined (as far as the worker knows) or the head is unknown."""
    if head_block is None or row.block_number is None or row.state not in ON_CHAIN_STATES:
        return None
    return max(head_block - row.block_number + 1, 0)
