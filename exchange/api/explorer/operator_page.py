"""``/operator``: the figures an operator looks at, at a glance.

The figures come from :func:`get_operator_figures`: the same registry ``/metrics``
renders (requests, log size and sequencer lag, anchor states and the age of the
oldest unanchored record, pending deliveries and queries, the appender's batches),
collected when the page is asked for and put in words by
:mod:`exchange.api.explorer.operator_figures`. Tests swap it with
``app.dependency_overrides[get_operator_figures]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from exchange.api.deps import MetricsDep
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


def get_operator_figures(metrics: MetricsDep) -> list[Figure]:
    """The figures to show, in order, collected now (in a worker thread: it reads
    the database)."""
    from exchange.api.explorer.operator_figures import figures_from_samples

    return figures_from_samples(metrics.samples())


OperatorFiguresDep = Annotated[list[Figure], Depends(get_operator_figures)]


@router.get("/operator", response_class=HTMLResponse)
def operator_page(figures: OperatorFiguresDep) -> HTMLResponse:
    return render("operator.html", page="operator", title="运营 Operator", figures=figures)
