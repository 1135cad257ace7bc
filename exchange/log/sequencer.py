"""The sequencer: integrates accepted entries into the tree and signs checkpoints.

One run (:func:`integrate`):

1. read the latest checkpoint's size ``s``, the pending leaf hashes (indexes
   ``s, s+1, …``, at most ``max_batch``) and the stored right edge of the tree
   (``range_nodes(0, s)``); append the hashes to that :class:`CompactRange`,
   collecting every node they complete; sign the new checkpoint. No lock is
   held for this: entries and nodes never change once written.
2. in one serialised transaction (:func:`exclusive_transaction`): check that
   the latest checkpoint is still ``s`` (else another sequencer got there
   first and this run stops), insert the nodes and the checkpoint, commit.

So two sequencers (threads or processes) never both extend the tree, and a
crash anywhere leaves either nothing or a whole batch: re-running continues
from the last checkpoint. :class:`Sequencer` runs :func:`integrate_pending`
every ``interval`` seconds in a background thread of the API process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import select
from sqlmodel import Session

from exchange.log.locking import LogLock, exclusive_transaction
from exchange.log.models import CheckpointRow, log_entry_table
from exchange.log.nodes import load_compact_range, save_nodes
from exchange.log.queries import latest_checkpoint, latest_tree_size
from exchange.periodic import PeriodicThread
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.sm2 import SM2PrivateKey

__all__ = ["DEFAULT_MAX_BATCH", "Sequencer", "SessionFactory", "integrate", "integrate_pending"]

SessionFactory = Callable[[], Session]

DEFAULT_MAX_BATCH = 10_000

logger = logging.getLogger(__name__)


def integrate(
    session_factory: SessionFactory, log_key: SM2PrivateKey, max_batch: int = DEFAULT_MAX_BATCH
) -> Checkpoint | None:
    """Integrate up to ``max_batch`` pending entries and store a signed checkpoint.

    Returns the new checkpoint, or ``None`` when nothing is pending or another
    sequencer integrated first.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    with session_factory() as session:
        latest = latest_checkpoint(session)
        size = 0 if latest is None else latest.tree_size
        entries = log_entry_table.c
        indexed = (
            session.connection()
            .execute(
                select(entries.index, entries.leaf_hash)
                .where(entries.index >= size)
                .order_by(entries.index)
                .limit(max_batch)
            )
            .all()
        )
        hashes: list[bytes] = []
        for offset, (index, leaf_hash) in enumerate(indexed):
            if index != size + offset:  # cannot happen with locked appends; stop at a gap
                logger.error("log entry %d missing; integrating up to it", size + offset)
                break
            hashes.append(leaf_hash)
        if not hashes:
            return None
        tree = load_compact_range(session, size)
        session.rollback()  # end the read transaction before taking the lock

        nodes = tree.extend(hashes)
        now = time.time_ns() // 1_000_000
        timestamp = now if latest is None else max(now, latest.timestamp)
        checkpoint = sign_checkpoint(log_key, tree.size, tree.root(), timestamp)

        with exclusive_transaction(session, LogLock.SEQUENCE):
            if latest_tree_size(session) != size:
                return None  # another sequencer integrated meanwhile; nothing written
            save_nodes(session, nodes)
            session.add(
                CheckpointRow(
                    tree_size=checkpoint.tree_size,
                    root=checkpoint.root,
                    timestamp=checkpoint.timestamp,
                    log_key_id=checkpoint.log_key_id,
                    signature=checkpoint.signature,
                )
            )
    return checkpoint


def integrate_pending(
    session_factory: SessionFactory, log_key: SM2PrivateKey, max_batch: int = DEFAULT_MAX_BATCH
) -> list[Checkpoint]:
    """Run :func:`integrate` until nothing is left; return the checkpoints made."""
    made: list[Checkpoint] = []
    while (checkpoint := integrate(session_factory, log_key, max_batch)) is not None:
        made.append(checkpoint)
    return made


class Sequencer(PeriodicThread):
    """Background thread: :func:`integrate_pending` every ``interval`` seconds.

    With ``elected`` (several API processes on one database), a pass runs only
    while ``elected()`` says this process holds the sequencer's lock; the others
    stand by and ask again at each tick, so one takes over when the holder dies."""

    name = "log-sequencer"

    def __init__(
        self,
        session_factory: SessionFactory,
        log_key: SM2PrivateKey,
        *,
        interval: float = 1.0,
        max_batch: int = DEFAULT_MAX_BATCH,
        elected: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(interval)
        self._session_factory = session_factory
        self._log_key = log_key
        self.max_batch = max_batch
        self._elected = elected

    def run_once(self) -> list[Checkpoint]:
        return integrate_pending(self._session_factory, self._log_key, self.max_batch)

    def tick(self) -> None:
        if self._elected is not None and not self._elected():
            return  # another process sequences; this one stands by
        # one checkpoint at a time, so that stop() need not wait for a long backlog
        while not self.stopping:
            if integrate(self._session_factory, self._log_key, self.max_batch) is None:
                break
