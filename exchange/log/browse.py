"""Browsing the log: pages of integrated entries, newest first, each with what it is
(record type, actor, when the log accepted it). The explorer's log page reads
these; the records themselves are served by :mod:`exchange.log.queries`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlmodel import Session

from exchange.log.errors import InvalidIndexError
from exchange.log.models import log_entry_table, promise_batch_table
from exchange.log.queries import latest_tree_size
from ledger.records import MAX_SAFE_INTEGER

__all__ = ["MAX_PAGE", "EntriesPage", "EntrySummary", "entries_page"]

MAX_PAGE = 200
"""Most entries one page holds."""


@dataclass(frozen=True, slots=True)
class EntrySummary:
    index: int
    record_type: str
    actor_key_id: str
    leaf_hash: bytes
    accepted_at: int
    """Milliseconds since the epoch: its promise batch's timestamp."""


@dataclass(frozen=True, slots=True)
class EntriesPage:
    tree_size: int
    """Entries integrated (the latest checkpoint's tree size): the ones listed."""
    pending: int
    """Entries accepted (promised) but not integrated into a checkpoint yet."""
    entries: list[EntrySummary]
    """Newest first, all below ``before``."""
    before: int
    """The exclusive upper bound this page was read below."""

    @property
    def older(self) -> int | None:
        """``before`` of the next, older page (``None``: this page reaches index 0)."""
        if not self.entries or self.entries[-1].index == 0:
            return None
        return self.entries[-1].index

    def newer(self, limit: int) -> int | None:
        """``before`` of the previous, newer page; ``None`` when that is the first page
        (or this page is the first)."""
        if self.before >= self.tree_size:
            return None
        bound = self.before + limit
        return None if bound >= self.tree_size else bound

    @property
    def is_latest(self) -> bool:
        return self.before >= self.tree_size


def entries_page(session: Session, *, before: int | None, limit: int) -> EntriesPage:
    """Integrated entries with index < ``before`` (default: all), newest first, at most
    ``limit`` (1 … :data:`MAX_PAGE`). Raises :class:`InvalidIndexError` (400) for a
    negative or oversized ``before`` or a limit out of range."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidIndexError(f"limit must be 1 to {MAX_PAGE}, got {limit}")
    if before is not None and not 0 <= before <= MAX_SAFE_INTEGER:
        raise InvalidIndexError(f"before must be 0 to {MAX_SAFE_INTEGER}, got {before}")
    tree_size = latest_tree_size(session)
    bound = tree_size if before is None else min(before, tree_size)
    entries, batches = log_entry_table.c, promise_batch_table.c
    connection = session.connection()
    rows = connection.execute(
        select(
            entries.index,
            entries.record_type,
            entries.actor_key_id,
            entries.leaf_hash,
            batches.timestamp,
        )
        .join_from(
            log_entry_table,
            promise_batch_table,
            entries.batch_first_index == batches.first_index,
        )
        .where(entries.index < bound)
        .order_by(entries.index.desc())
        .limit(limit)
    ).all()
    last = connection.execute(select(func.max(entries.index))).scalar()
    accepted = 0 if last is None else int(last) + 1
    return EntriesPage(
        tree_size=tree_size,
        pending=max(accepted - tree_size, 0),
        entries=[
            EntrySummary(int(i), str(t), str(a), bytes(h), int(ts)) for i, t, a, h, ts in rows
        ],
        before=bound,
    )
