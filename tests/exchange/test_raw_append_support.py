"""Helper for tests that append to the log's raw endpoint (no tests of its own).

The raw append takes only registered, active participants. Registering through
``POST /participants`` would put a ``participant.registered`` entry in the log
before the records a test counts; :func:`enrol` writes the participant's row
directly instead (test setup, like ``test_lifecycle_support.set_order``), so the
log holds only what the test appends."""

from __future__ import annotations

import time
from typing import Any

from sqlmodel import Session

from exchange.participants.models import Participant, ParticipantStatus
from ledger.sm2 import SM2PrivateKey

__all__ = ["enrol"]


def enrol(engine: Any, *keys: SM2PrivateKey, role: str = "auditor") -> None:
    """Make ``keys`` active participants of the exchange whose database is ``engine``."""
    now = time.time_ns() // 1_000_000
    with Session(engine) as session:
        for key in keys:
            session.add(
                Participant(
                    key_id=key.key_id(),
                    display_name=f"test {key.key_id()[:8]}",
                    role=role,
                    status=ParticipantStatus.ACTIVE.value,
                    public_key=key.public_key().to_pem().decode("ascii"),
                    registered_at=now,
                    updated_at=now,
                )
            )
        session.commit()
