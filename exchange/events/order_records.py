"""An order's records in the log, each with its index and how far it is anchored.

The records of an order are the log's event records (:data:`exchange.events.kinds.RECORD_EVENTS`:
``order.placed``, ``delivery.issued``, ``order.accepted``, ``settlement.paid``,
``order.disputed``, ``dispute.resolved``, ``access.revoked``, ``delivery.overdue``,
``computation.*``) whose payload names the order (``order_id``), as the event feed
reads them: the log stores that name with each entry (``LogEntry.order_id``,
indexed with the entry's index), so they are read without a scan of the log.
Each record comes with the anchor that covers it
(:func:`exchange.anchoring.coverage.anchor_states`): ``pending`` until an anchor
on chain holds it (its receipt is not ready yet), then ``anchored`` and ``final``.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlmodel import Session, col

from exchange.anchoring.coverage import EntryAnchor, anchor_states
from exchange.events.kinds import RECORD_EVENTS
from exchange.log.models import LogEntry
from exchange.orders.models import Order

__all__ = ["OrderRecord", "OrderRecords", "RecordAnchor", "order_records"]


class RecordAnchor(BaseModel):
    state: str = Field(
        description="pending (no anchor on chain covers the record yet: its receipt is "
        "pending), anchored (mined, fewer than the exchange's confirmations) or final.",
        examples=["final"],
    )
    tree_size: int | None = Field(description="The covering anchored checkpoint's tree size.")
    chain_id: int | None
    tx_hash: str | None
    block_number: int | None


class OrderRecord(BaseModel):
    index: int = Field(description="The record's log index (GET /receipts/{index}).")
    type: str = Field(examples=["order.placed"])
    actor: str = Field(description="Key id of the signer (the log key for the exchange's).")
    timestamp: int = Field(description="The record's own timestamp (ms).")
    leaf_hash: str = Field(description="SM3 leaf hash (hex).")
    anchor: RecordAnchor


class OrderRecords(BaseModel):
    order_id: str
    items: list[OrderRecord] = Field(description="In log order.")


def _anchor(found: EntryAnchor) -> RecordAnchor:
    return RecordAnchor(
        state=found.state,
        tree_size=found.tree_size,
        chain_id=found.chain_id,
        tx_hash=found.tx_hash,
        block_number=found.block_number,
    )


def order_records(session: Session, order: Order) -> OrderRecords:
    """The records of ``order`` (visibility is the caller's concern), in log order."""
    rows = session.execute(
        select(col(LogEntry.index), col(LogEntry.leaf_hash), col(LogEntry.leaf))
        .where(
            col(LogEntry.order_id) == order.id,
            col(LogEntry.record_type).in_(list(RECORD_EVENTS)),
        )
        .order_by(col(LogEntry.index))
    ).all()
    found = [
        (int(index), bytes(leaf_hash), json.loads(bytes(leaf))["record"])
        for index, leaf_hash, leaf in rows
    ]
    anchors = anchor_states(session, [index for index, _, _ in found])
    items = [
        OrderRecord(
            index=index,
            type=record["type"],
            actor=record["actor"],
            timestamp=record["timestamp"],
            leaf_hash=leaf_hash.hex(),
            anchor=_anchor(anchors[index]),
        )
        for index, leaf_hash, record in found
    ]
    return OrderRecords(order_id=order.id, items=items)
