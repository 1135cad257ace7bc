"""Recompute a listing's reference price from the public log and compare it with
the exchange's answer (``shancheng audit reference-price``; docs/pricing.md).

The exchange's answer names the log size it was computed at (``as_of``). This
reads the log's entries ``0 … log_size − 1`` (each checked by the SDK: actor
signature, leaf hash, promise under the log key), checks that the last one's
promise time is ``as_of.timestamp``, replays them with
``ledger.pricing_reference.PublicRecords`` and compares the two answers field by
field, quality grades included (those of the ``quality.reported`` records among
the entries, by the rule the listing view uses).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clients.sdk import ExchangeClient
from ledger.pricing_reference import AsOf, PublicRecords

__all__ = ["ReferenceAudit", "audit_reference_price", "differences"]


@dataclass(frozen=True, slots=True)
class ReferenceAudit:
    served: dict[str, Any]
    recomputed: dict[str, Any]
    differences: list[str]


class NotIntegratedError(Exception):
    """The log's latest checkpoint does not cover the answer's ``as_of`` yet."""


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Every path where ``actual`` differs from ``expected`` (``a.b[2].c: x != y``)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for key in sorted(set(expected) | set(actual)):
            where = f"{path}.{key}" if path else key
            found += differences(expected.get(key), actual.get(key), where)
        return found
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        found = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            found += differences(e, a, f"{path}[{i}]")
        return found
    return [] if expected == actual else [f"{path}: {expected!r} != {actual!r}"]


def audit_reference_price(
    client: ExchangeClient, listing_id: str, progress: Callable[[int], None] | None = None
) -> ReferenceAudit:
    """The exchange's answer, the recomputed one, and where they differ."""
    served = client.reference_price(listing_id)
    as_of = AsOf(**served["as_of"])
    integrated = client.checkpoint().tree_size
    if integrated < as_of.log_size:
        raise NotIntegratedError(
            f"the answer covers {as_of.log_size} entries, the latest checkpoint {integrated}: "
            "retry once the sequencer has integrated them"
        )
    records = PublicRecords()
    last_timestamp = None
    for index in range(as_of.log_size):
        entry = client.entry(index)
        records.add(entry.record["record"], entry.leaf_hash)
        last_timestamp = entry.promise.timestamp
        if progress is not None:
            progress(1)
    found: list[str] = []
    if as_of.log_size and last_timestamp != as_of.timestamp:
        found.append(f"as_of.timestamp: last promise {last_timestamp} != {as_of.timestamp}")
    try:
        recomputed = records.reference_price(listing_id, as_of)
    except KeyError:
        recomputed = {}
    found += differences(recomputed, served)
    return ReferenceAudit(served, recomputed, found)
