"""The request id: the exchange names every request it answers in the
``X-Request-Id`` response header (errors included), and writes it in each log line
about that request, so a user's report and the operator's logs meet.

A client may send its own id in the same request header; the exchange keeps it
when it is well formed (1 to 128 of ``A-Z a-z 0-9 . _ : -``, starting with a letter
or digit) and replaces it with a fresh one otherwise.
"""

from __future__ import annotations

import re

__all__ = ["REQUEST_ID_HEADER", "is_well_formed_request_id"]

REQUEST_ID_HEADER = "X-Request-Id"

_WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def is_well_formed_request_id(value: str) -> bool:
    """Whether ``value`` may stand as a request id."""
    return _WELL_FORMED.fullmatch(value) is not None
