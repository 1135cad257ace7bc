"""How the CLI shows a reference price (``shancheng buyer reference-price``)."""

from __future__ import annotations

from typing import Any

from clients.cli.output import Output


def _fen(value: int | None) -> str:
    return "–" if value is None else f"{value} fen"


def asking_line(d: dict[str, Any]) -> str:
    """One line: the asking unit price and where it falls against each range."""
    asking = d.get("asking")
    if asking is None:
        return "reference price: the listing's pricing has no unit"
    position = asking["position"]
    market = position["market"] or "no market range"
    cost = position["cost"] or "no cost range"
    return (
        f"asking {_fen(asking['unit_price_fen'])} per {d['unit']}: "
        f"market [bold]{market}[/], cost [bold]{cost}[/] (buyer reference-price for more)"
    )


def show_reference_price(out: Output, d: dict[str, Any]) -> None:
    unit = d.get("unit") or "none"
    as_of = d["as_of"]
    rows: list[tuple[str, Any]] = [
        ("listing", d["listing_id"]),
        ("pricing unit", unit),
        ("as of", f"log size {as_of['log_size']} ({as_of['timestamp']} ms)"),
    ]
    cost = d.get("cost")
    if cost is None:
        rows.append(("cost method", "no cost basis declared"))
    else:
        rows.append(("cost method", f"{_fen(cost['low'])} – {_fen(cost['high'])}"))
    market = d.get("market")
    if market is None:
        rows.append(("market method", "no pricing unit"))
    elif market["status"] != "ok":
        rows.append(("market method", f"insufficient comparables ({len(market['comparables'])})"))
    else:
        rows.append(
            (
                "market method",
                f"{_fen(market['low'])} – {_fen(market['high'])} "
                f"(median {_fen(market['median'])}, {len(market['comparables'])} comparables)",
            )
        )
    asking = d.get("asking")
    if asking is not None:
        position = asking["position"]
        rows.append(
            (
                "asking",
                f"{_fen(asking['unit_price_fen'])}: market {position['market'] or '–'}, "
                f"cost {position['cost'] or '–'}",
            )
        )
    out.fields("Reference price", rows)
    if market is not None and market["comparables"]:
        out.table(
            "Comparables (order ids only)",
            ["order", "listing", "unit price", "quality bp", "freshness bp", "adjusted"],
            [
                [
                    c["order_id"],
                    c["listing_id"],
                    c["unit_price_fen"],
                    c["adjustments"]["quality_bp"],
                    c["adjustments"]["freshness_bp"],
                    c["adjusted_unit_price_fen"],
                ]
                for c in market["comparables"]
            ],
        )
