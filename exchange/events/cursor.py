"""Positions in the event feed and the ids that name them.

The feed is the log's entries in index order with the anchor events recorded
between them (:mod:`exchange.events.models`). A :class:`Position` orders both:

* the log entry at index ``i`` is ``(i, 0, 0)``, its event id ``"i"``;
* the anchor event for tree size ``T``, recorded in slot ``s`` (after entry ``s``),
  is ``(s, 1, T)``, its event id ``"anchor:T"``.

An event id is also a cursor: "everything after this event" (``?after=``,
``Last-Event-ID``); an anchor id is turned into its position by looking up its
slot. A page's ``next`` may name an entry that is not an event for the reader
(the page examined it and passed on): it is a cursor like any other.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from exchange.errors import ExchangeError

__all__ = ["START", "InvalidCursorError", "Position", "parse_event_id"]

_EVENT_ID: Final = re.compile(r"(?:0|[1-9][0-9]{0,17})|anchor:[1-9][0-9]{0,17}")
ANCHOR_PREFIX: Final = "anchor:"


class InvalidCursorError(ExchangeError):
    code = "invalid_cursor"


class Position(NamedTuple):
    slot: int
    """The log index the position is at or after."""
    kind: int
    """0: the log entry ``slot`` itself; 1: an anchor event recorded after it."""
    tree_size: int
    """The anchor event's tree size (0 for a log entry)."""

    @property
    def event_id(self) -> str:
        return f"{ANCHOR_PREFIX}{self.tree_size}" if self.kind else str(self.slot)


START: Final = Position(-1, 0, 0)
"""Before everything."""


def parse_event_id(text: str) -> tuple[int | None, int | None]:
    """``(log index, None)`` or ``(None, anchor tree size)`` of an event id;
    :class:`InvalidCursorError` (400) for anything else."""
    if len(text) > 40 or not _EVENT_ID.fullmatch(text):
        raise InvalidCursorError(
            f'{text[:40]!r} is not an event id: a log index ("42") or "anchor:<tree size>"'
        )
    if text.startswith(ANCHOR_PREFIX):
        return None, int(text.removeprefix(ANCHOR_PREFIX))
    return int(text), None
