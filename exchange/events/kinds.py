"""Which log records are events, and the event type each one is.

One row per record type: the event type is a function of the record (a dispute
resolved with a refund is ``order.refunded``, with a release ``dispute.resolved``).
Placing an order moves its price into escrow in the same record, so there is no
separate "paid" record: ``order.placed`` is the paid order. Withdrawal and
certificate records are events of their own name. ``anchor.final`` comes from the
anchors, not from a record (:mod:`exchange.events.anchors`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from exchange.certificates.lifecycle import ISSUED, TRANSITIONS

__all__ = [
    "ANCHOR_FINAL",
    "CERTIFICATE_RECORDS",
    "EVENT_TYPES",
    "RECORD_EVENTS",
    "WITHDRAWAL_RECORDS",
    "event_type_of",
    "record_types_for",
]

ANCHOR_FINAL: Final = "anchor.final"

WITHDRAWAL_RECORDS: Final = ("withdrawal.requested", "withdrawal.paid", "withdrawal.rejected")
"""Records about a withdrawal (``payload.withdrawal_id``), each the event of its name."""

CERTIFICATE_RECORDS: Final = (ISSUED, *TRANSITIONS)
"""Records about a certificate (``payload.number``), each the event of its name."""

_OWN_NAME: Final = (*WITHDRAWAL_RECORDS, *CERTIFICATE_RECORDS)

_Namer = Callable[[Mapping[str, Any]], str]


def _fixed(name: str) -> _Namer:
    return lambda _payload: name


def _resolution(payload: Mapping[str, Any]) -> str:
    return "order.refunded" if payload.get("outcome") == "refund" else "dispute.resolved"


RECORD_EVENTS: Final[Mapping[str, _Namer]] = {
    "order.placed": _fixed("order.placed"),
    "delivery.issued": _fixed("order.delivered"),
    "order.accepted": _fixed("order.accepted"),
    "order.auto_accepted": _fixed("order.accepted"),
    "order.disputed": _fixed("order.disputed"),
    "dispute.resolved": _resolution,
    "settlement.paid": _fixed("settlement.paid"),
    "access.revoked": _fixed("access.revoked"),
    "computation.requested": _fixed("computation.requested"),
    "computation.completed": _fixed("computation.completed"),
    "computation.refused": _fixed("computation.refused"),
    "delivery.overdue": _fixed("delivery.overdue"),
    **{record_type: _fixed(record_type) for record_type in _OWN_NAME},
}
"""Record type → the event type of such a record (given its payload)."""

_TYPES_OF_RECORD: Final[Mapping[str, frozenset[str]]] = {
    "order.placed": frozenset({"order.placed"}),
    "delivery.issued": frozenset({"order.delivered"}),
    "order.accepted": frozenset({"order.accepted"}),
    "order.auto_accepted": frozenset({"order.accepted"}),
    "order.disputed": frozenset({"order.disputed"}),
    "dispute.resolved": frozenset({"order.refunded", "dispute.resolved"}),
    "settlement.paid": frozenset({"settlement.paid"}),
    "access.revoked": frozenset({"access.revoked"}),
    "computation.requested": frozenset({"computation.requested"}),
    "computation.completed": frozenset({"computation.completed"}),
    "computation.refused": frozenset({"computation.refused"}),
    "delivery.overdue": frozenset({"delivery.overdue"}),
    **{record_type: frozenset({record_type}) for record_type in _OWN_NAME},
}

EVENT_TYPES: Final = tuple(
    sorted({name for names in _TYPES_OF_RECORD.values() for name in names} | {ANCHOR_FINAL})
)
"""Every event type the feed has."""


def event_type_of(record_type: str, payload: Mapping[str, Any]) -> str | None:
    """The event a record of ``record_type`` is, or ``None`` when it is none."""
    namer = RECORD_EVENTS.get(record_type)
    return None if namer is None else namer(payload)


def record_types_for(types: frozenset[str] | None) -> tuple[str, ...]:
    """The record types that can give one of ``types`` (``None``: every event type)."""
    return tuple(
        sorted(
            record_type
            for record_type, names in _TYPES_OF_RECORD.items()
            if types is None or names & types
        )
    )
