"""``/operator``: the figures an operator looks at, at a glance.

The figures come from :func:`get_operator_figures`, the one hook the metrics
work (issue 14, item 4: requests, log size and sequencer lag, anchor states and
the age of the oldest unanchored record, pending deliveries, queries and payouts,
the appender's batches) fills with what it measures; until then it gives none and
the page says so rather than showing made-up numbers. Tests swap it with
``app.dependency_overrides[get_operator_figures]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from exchange.api.explorer.rendering import render

__all__ = ["Figure", "OperatorFiguresDep", "get_operator_figures", "router"]

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure on the operator page."""

    name: str
    """Its metric's name (as ``/metrics`` exposes it)."""
    label: str
    """What it is, in Chinese and English."""
    value: str
    """As shown (the source formats it: counts, seconds, fen)."""
    help: str = ""


async def get_operator_figures() -> list[Figure]:
    """The figures to show, in order: none until the metrics work provides them."""
    return []


OperatorFiguresDep = Annotated[list[Figure], Depends(get_operator_figures)]


@router.get("/operator", response_class=HTMLResponse)
def operator_page(figures: OperatorFiguresDep) -> HTMLResponse:
    return render("operator.html", page="operator", title="运营 Operator", figures=figures)
