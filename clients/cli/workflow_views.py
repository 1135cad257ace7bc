"""Human views of a provider's listings, the operators' queue and an order's records
(plain, JSON-ready data in; tables and lines out), as :mod:`clients.cli._views`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.markup import escape

from clients.cli._views import price_text
from clients.cli.output import Output, datetime_ms

__all__ = ["show_listing_rows", "show_queue", "show_records"]

Again = Callable[..., str]
"""``inv.again``: a command with the flags the user passed."""

_ANCHOR_MARKS = {"final": "final ✓", "anchored": "anchored", "pending": "pending"}


def _short(key_id: Any) -> str:
    return f"{key_id[:12]}…" if isinstance(key_id, str) and len(key_id) > 12 else str(key_id)


def show_listing_rows(out: Output, items: Sequence[Mapping[str, Any]], state: str | None) -> None:
    rows = [
        [
            item.get("id"),
            item.get("title"),
            item.get("state"),
            item.get("version"),
            price_text(item.get("pricing")),
            datetime_ms(item.get("updated_at")),
            item.get("rejection_reason") or item.get("delisting_reason") or "",
        ]
        for item in items
    ]
    title = "Your listings" + (f" ({state})" if state else "")
    out.table(
        title,
        ["id", "title", "state", "v", "price", "updated", "reason"],
        rows,
        empty="none" + (f" in state {state}" if state else ""),
    )


def show_queue(out: Output, data: Mapping[str, Any], again: Again) -> None:
    listings = data.get("listings") or []
    out.table(
        "Listings awaiting review",
        ["id", "title", "state", "provider", "classification", "waiting since"],
        [
            [
                item.get("id"),
                item.get("title"),
                item.get("state"),
                _short(item.get("owner")),
                (item.get("declarations") or {}).get("classification"),
                datetime_ms(item.get("updated_at")),
            ]
            for item in listings
        ],
        empty="none",
    )
    if data.get("more_listings"):
        out.line("[dim]more listings wait: --limit N shows more[/]")
    participants = data.get("participants") or []
    out.table(
        "Providers awaiting approval",
        ["key id", "name", "registered"],
        [
            [p.get("key_id"), p.get("display_name"), datetime_ms(p.get("registered_at"))]
            for p in participants
        ],
        empty="none",
    )
    if data.get("more_participants"):
        out.line("[dim]more providers wait: --limit N shows more[/]")
    hints = []
    for item in listings[:1]:
        verb = "review" if item.get("state") == "submitted" else "publish"
        hints.append(again("operator", verb, item.get("id")))
        if verb == "publish":
            hints.append(again("operator", "reject", item.get("id"), "--reason", "WHAT TO FIX"))
    for participant in participants[:1]:
        hints.append(again("operator", "approve", participant.get("key_id")))
    if hints:
        out.line("next: " + " | ".join(f"[bold]{escape(h)}[/]" for h in hints))


def show_records(out: Output, records: Sequence[Mapping[str, Any]]) -> None:
    """An order's records (the plain form of the SDK's ``OrderRecord``): log index,
    type, signer, time and anchor state."""
    rows = []
    for record in records:
        state = str(record.get("anchor_state"))
        block = record.get("block_number")
        rows.append(
            [
                record.get("index"),
                record.get("type"),
                _short(record.get("actor")),
                datetime_ms(record.get("timestamp")),
                _ANCHOR_MARKS.get(state, state)
                + (f" (block {block})" if block is not None else ""),
            ]
        )
    out.table("Records in the log", ["index", "record", "signed by", "when", "anchor"], rows)
    pending = [str(r.get("index")) for r in records if r.get("anchor_state") == "pending"]
    if pending:
        out.line(
            f"[dim]receipt(s) of {', '.join(pending)} pending until an anchor covers them: "
            "`shancheng audit receipt INDEX --wait`[/]"
        )
