"""Who a key id is, for people reading the log: display names of participants and
operators, in one query."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlmodel import Session

from exchange.participants.models import participant_table
from exchange.participants.operators import Operators

__all__ = ["display_names"]


def display_names(session: Session, operators: Operators, key_ids: Iterable[str]) -> dict[str, str]:
    """Key id → display name for each of ``key_ids`` that is a participant or an
    operator (operators are named ``operator``); unknown ids are left out."""
    wanted = set(key_ids)
    names = {key_id: operators.principal(key_id).display_name for key_id in wanted & set(operators)}
    rest = sorted(wanted - set(names))
    if rest:
        columns = participant_table.c
        rows = session.connection().execute(
            select(columns.key_id, columns.display_name).where(columns.key_id.in_(rest))
        )
        names.update({str(key_id): str(name) for key_id, name in rows})
    return names
