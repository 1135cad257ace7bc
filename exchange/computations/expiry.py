"""A computation nobody answers is refused by the exchange, so a reservation is never
stuck: :func:`refuse_unanswered` finds computations pending for longer than their
listing's delivery window (``delivery_window_s``: the time a provider has to
deliver) and, for each, in ONE transaction, writes the exchange's
``computation.refused`` (signed by the log key, reason ``agent_timeout``), marks
the computation refused and gives its query and ε back to the order. The agent's
late answer then meets 409 ``computation_closed``; a provider answer that races
it loses on the computation's ``row_version``. :class:`UnansweredRefuser` runs it
periodically beside the overdue refunds.
"""

from __future__ import annotations

import logging
from typing import Final

from sqlalchemy import Connection, select
from sqlmodel import Session, col

from exchange.computations.allowance import give_back
from exchange.computations.models import Computation, ComputationState
from exchange.errors import ConflictError
from exchange.listings.models import Listing
from exchange.log.batch import run_at_commit
from exchange.periodic import DecisionPass, each_in_its_own_transaction
from exchange.records import commit_with_record, exchange_action
from ledger.protocol.computation import COMPUTATION_REFUSED, ComputationRefused
from ledger.sm2 import SM2PrivateKey

__all__ = ["AGENT_TIMEOUT", "UNANSWERED_BATCH", "UnansweredRefuser", "refuse_unanswered"]

logger = logging.getLogger(__name__)

AGENT_TIMEOUT: Final = "agent_timeout"
UNANSWERED_BATCH: Final = 500
"""Most computations one :func:`refuse_unanswered` pass refuses (the next takes the rest)."""


class NotUnansweredError(ConflictError):
    """Internal: the computation was answered meanwhile."""

    code = "not_unanswered"


def _refuse_one(session: Session, log_key: SM2PrivateKey, computation_id: str, now: int) -> None:
    row = session.get(Computation, computation_id, populate_existing=True)
    if row is None or row.state != ComputationState.PENDING:
        raise NotUnansweredError(f"computation {computation_id} is answered")
    refused = ComputationRefused(row.id, row.order_id, AGENT_TIMEOUT)
    action = exchange_action(log_key, COMPUTATION_REFUSED, refused.to_dict())
    order_id, cost = row.order_id, row.epsilon_reserved
    leaf_hash = action.submission.leaf_hash.hex()

    def stage() -> Computation:
        row.state = ComputationState.REFUSED.value
        row.reason = AGENT_TIMEOUT
        row.answered_at = now
        row.answer_leaf_hash = leaf_hash
        return row

    def in_transaction(connection: Connection) -> None:
        give_back(connection, order_id, cost)

    with run_at_commit(session, in_transaction):
        commit_with_record(session, action, log_key, stage)


def refuse_unanswered(session: Session, log_key: SM2PrivateKey, now_ms: int) -> int:
    """Refuse every pending computation older than its listing's delivery window,
    each in its own transaction; how many were refused. Safe to run in several
    processes at once (one answered or refused meanwhile is skipped)."""
    due = (
        session.execute(
            select(col(Computation.id))
            .join(Listing, col(Listing.id) == col(Computation.listing_id))
            .where(
                col(Computation.state) == ComputationState.PENDING.value,
                col(Computation.requested_at) + col(Listing.delivery_window_s) * 1000 < now_ms,
            )
            .order_by(col(Computation.requested_at), col(Computation.id))
            .limit(UNANSWERED_BATCH)
        )
        .scalars()
        .all()
    )
    session.rollback()  # end the read transaction before the writes
    return each_in_its_own_transaction(
        session,
        due,
        lambda computation_id: _refuse_one(session, log_key, computation_id, now_ms),
        "refusing unanswered computation",
    )


class UnansweredRefuser(DecisionPass):
    """Background thread: :func:`refuse_unanswered` every ``interval`` seconds."""

    name = "unanswered-computations"

    def decide(self, session: Session, now_ms: int) -> int:
        return refuse_unanswered(session, self.log_key, now_ms)
