"""Typed answers of the reads that follow a participant's work: a page of listings
(``GET /listings``: :class:`ledger.protocol.listing.ListingPage`), an order's
records with their anchor state (``GET /orders/{id}/records``) and the operators'
queue (``GET /operator/queue``: :class:`ledger.protocol.review_queue.ReviewQueue`).
Parsed strictly, like
:mod:`clients.sdk.market_models`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.protocol.listing import ListingPage
from ledger.protocol.reader import JSONObject
from ledger.protocol.review_queue import ReviewQueue
from ledger.records import RecordFormatError

__all__ = ["ANCHOR_STATES", "ListingPage", "OrderRecord", "OrderRecords", "ReviewQueue"]

ANCHOR_STATES = ("pending", "anchored", "final")
"""How far a record is on its way to the chain (``pending``: its receipt is not ready)."""


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One record of an order in the log, and the anchor covering it: ``anchor_state``
    is ``pending`` (no anchor on chain yet: ``receipt(index)`` answers
    ``receipt_pending``), ``anchored`` or ``final``; the anchor fields are ``None``
    while pending."""

    index: int
    type: str
    actor: str
    timestamp: int
    leaf_hash: str
    anchor_state: str
    anchor_tree_size: int | None
    chain_id: int | None
    tx_hash: str | None
    block_number: int | None

    @property
    def anchored(self) -> bool:
        return self.anchor_state != "pending"

    @classmethod
    def from_dict(cls, data: Any, where: str) -> OrderRecord:
        o = JSONObject(data, where)
        anchor = o.obj("anchor")
        state = anchor.text("state")
        if state not in ANCHOR_STATES:
            raise RecordFormatError(
                f"expected one of {', '.join(ANCHOR_STATES)}, got {state!r}",
                path=anchor.path("state"),
            )
        return cls(
            index=o.integer("index"),
            type=o.text("type"),
            actor=o.hex64("actor"),
            timestamp=o.integer("timestamp"),
            leaf_hash=o.hex64("leaf_hash"),
            anchor_state=state,
            anchor_tree_size=anchor.opt_integer("tree_size", minimum=1),
            chain_id=anchor.opt_integer("chain_id"),
            tx_hash=anchor.opt_text("tx_hash"),
            block_number=anchor.opt_integer("block_number"),
        )


@dataclass(frozen=True, slots=True)
class OrderRecords:
    """An order's records in log order."""

    order_id: str
    items: tuple[OrderRecord, ...]

    @classmethod
    def from_dict(cls, data: Any) -> OrderRecords:
        o = JSONObject(data, "")
        return cls(order_id=o.text("order_id"), items=o.items("items", OrderRecord.from_dict))
