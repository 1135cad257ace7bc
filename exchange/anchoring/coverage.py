"""How far a log entry is on its way to the chain, and when its receipt will be ready.

An entry's receipt (``GET /receipts/{index}``) exists once an anchored (or final)
checkpoint covers it (:func:`exchange.anchoring.receipts.covering_anchor`).
:func:`anchor_states` says, for many indexes at once, which anchor covers each
and in what state (``pending``: none on chain yet; ``anchored``: mined, fewer
than the configured confirmations; ``final``). :func:`receipt_retry_after`
estimates, for a pending receipt, the seconds until it is worth asking again:
the anchoring worker anchors ``anchor_interval_s`` after its last anchor (or
sooner, past ``anchor_size_threshold`` leaves), and a transaction already sent
is mined within a few blocks. The estimate is advice (``Retry-After``), never a
promise: a chain that is down delays every anchor.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlmodel import Session, col

from exchange.anchoring.models import UNMINED_STATES, AnchorRow
from exchange.anchoring.receipts import covering_anchor

__all__ = [
    "SENT_RETRY_S",
    "EntryAnchor",
    "anchor_states",
    "receipt_retry_after",
]

SENT_RETRY_S = 2
"""Seconds to wait when the covering anchor's transaction is signed but not yet mined."""

_UNMINED = [s.value for s in UNMINED_STATES]


@dataclass(frozen=True, slots=True)
class EntryAnchor:
    """The anchor covering one entry: ``state`` ``anchored`` or ``final`` (``pending``
    with the rest ``None`` while no anchor on chain covers it)."""

    state: str
    tree_size: int | None = None
    chain_id: int | None = None
    tx_hash: str | None = None
    block_number: int | None = None


PENDING = EntryAnchor("pending")


def anchor_states(session: Session, indexes: Iterable[int]) -> Mapping[int, EntryAnchor]:
    """For each index, the anchor its receipt proves against
    (:func:`~exchange.anchoring.receipts.covering_anchor`: the earliest on chain that
    holds it), one indexed query each (an order has a handful of records)."""
    found: dict[int, EntryAnchor] = {}
    for index in sorted(set(indexes)):
        row = covering_anchor(session, index)
        found[index] = (
            PENDING
            if row is None
            else EntryAnchor(
                state=row.state,
                tree_size=row.tree_size,
                chain_id=row.chain_id,
                tx_hash=row.tx_hash,
                block_number=row.block_number,
            )
        )
    return found


def receipt_retry_after(session: Session, index: int, interval_s: float, now_ms: int) -> int:
    """Whole seconds (at least 1) after which the receipt of pending entry ``index``
    may be ready: a couple of blocks when an unmined anchor already covers it, else
    the time left until the next anchor is due (``interval_s`` after the last one),
    plus a block to mine it."""
    sent = session.execute(
        select(func.count())
        .select_from(AnchorRow)
        .where(col(AnchorRow.tree_size) > index, col(AnchorRow.state).in_(_UNMINED))
    ).scalar_one()
    if sent:
        return SENT_RETRY_S
    last = session.execute(select(func.max(col(AnchorRow.created_at)))).scalar_one()
    if last is None:
        wait_s = interval_s
    else:
        wait_s = max(0.0, (int(last) + interval_s * 1000 - now_ms) / 1000)
    return max(1, math.ceil(wait_s) + 1)
