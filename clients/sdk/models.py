"""Typed answers of the exchange API: frozen dataclasses with ``from_dict``.

Signed statements are the :mod:`ledger` types themselves
(:class:`ledger.checkpoint.Checkpoint`, :class:`ledger.checkpoint.Promise`,
:class:`ledger.records.SignedRecord`, :class:`ledger.bundle.Bundle`), so what
the SDK returns can be verified, stored and re-serialised with the ledger's
own code. Parsing is strict: a missing or ill-typed field raises
:class:`ledger.records.RecordFormatError` (the client turns it into
:class:`clients.sdk.errors.ResponseFormatError`).

The log's answers (:class:`LogKey`, :class:`Appended`, :class:`Entry`,
:class:`InclusionProof`, :class:`ConsistencyProof`, :class:`Anchor`) are
:mod:`ledger.protocol.log` and the health answer's (:class:`Health`,
:class:`DatabaseStatus`, :class:`ChainStatus`) :mod:`ledger.protocol.health`:
the exchange serves the same classes. They hold the wire form (hex, base64,
PEM); their properties give bytes, keys, records and the ledger's
:class:`~ledger.checkpoint.Promise` (``appended.signed_promise``).

Every call that writes answers with an :class:`Appended` (for the log's own
``POST /log/records``) or carries one under ``"log"`` (the marketplace's
resources): parse it with :meth:`Appended.from_dict`.
"""

from __future__ import annotations

from ledger.protocol.health import ChainStatus, DatabaseStatus, Health
from ledger.protocol.log import (
    Anchor,
    Appended,
    ConsistencyProof,
    Entry,
    InclusionProof,
    LogKey,
)

__all__ = [
    "Anchor",
    "Appended",
    "ChainStatus",
    "ConsistencyProof",
    "DatabaseStatus",
    "Entry",
    "Health",
    "InclusionProof",
    "LogKey",
]
