"""Helpers shared by the order lifecycle and authz-matrix tests (no tests of its
own): put an order in a state directly in the database (as the delivery endpoint
would), and read back the log records that name an order."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select
from sqlmodel import col

from exchange.log.models import LogEntry
from exchange.log.queries import entry_record
from exchange.orders.models import Order
from ledger.records import SignedRecord, thaw

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def set_order(app: FastAPI, order_id: str, **fields: Any) -> None:
    """Overwrite columns of an order (bumps its row_version like any change)."""
    with app.state.session_factory() as session:
        order = session.get(Order, order_id)
        assert order is not None
        for name, value in fields.items():
            setattr(order, name, value)
        session.commit()


def mark_delivered(app: FastAPI, order_id: str, *, deadline_in_ms: int = HOUR_MS) -> int:
    """Deliver an order (state, delivered_at, acceptance_deadline = now + deadline_in_ms,
    which may be negative: already past); return the deadline."""
    now = now_ms()
    deadline = now + deadline_in_ms
    set_order(app, order_id, state="delivered", delivered_at=now, acceptance_deadline=deadline)
    return deadline


@dataclass(frozen=True)
class Logged:
    index: int
    type: str
    actor: str
    payload: dict[str, Any]
    signed: SignedRecord


def order_records(app: FastAPI, order_id: str) -> list[Logged]:
    """Every log record whose payload names ``order_id`` (as ``order_id``), in log order."""
    found = []
    with app.state.session_factory() as session:
        entries = session.execute(select(LogEntry).order_by(col(LogEntry.index))).scalars().all()
        for entry in entries:
            signed = SignedRecord.from_dict(entry_record(entry))
            payload = thaw(signed.record.payload)
            if payload.get("order_id") == order_id:
                found.append(
                    Logged(entry.index, signed.record.type, signed.record.actor, payload, signed)
                )
    return found
