"""Rendering the explorer's pages: one Jinja2 environment (autoescaped, strict about
undefined names), the filters the templates share (fen, times, sizes, prices) and
the HTML error page.

A page that cannot be shown answers with the status and ``code`` the API would
(``listing_not_found`` 404, ``invalid_request`` 422, …), as an HTML page that
names both (``data-code`` on its ``<main>``): a person reads it in a browser.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec

import jinja2
from fastapi.responses import HTMLResponse

from exchange.errors import ExchangeError

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "TEMPLATES",
    "PageParamError",
    "describe_price",
    "duration",
    "error_page",
    "fen",
    "html_errors",
    "int_param",
    "render",
    "size",
    "text_param",
    "when",
]

TEMPLATES = Path(__file__).parent / "templates"

_P = ParamSpec("_P")


class PageParamError(ExchangeError):
    """A page's query or path parameter is not one it can show (as the API's 422)."""

    status = 422
    code = "invalid_request"


def fen(amount: int | None) -> str:
    """``12345`` → ``¥123.45`` (integer fen, never a float on the way)."""
    if amount is None:
        return "—"
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(int(amount)), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"


def when(ms: int | None) -> str:
    """Milliseconds since the epoch as a UTC time to the second."""
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def size(count: int | None) -> str:
    """Bytes in B, KiB, MiB, GiB (one decimal above bytes)."""
    if count is None:
        return "—"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count:,} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def duration(seconds: int) -> str:
    """Whole days, hours or minutes when the seconds are, else seconds."""
    for unit, label in ((86_400, "天 d"), (3_600, "小时 h"), (60, "分钟 min")):
        if seconds >= unit and seconds % unit == 0:
            return f"{seconds // unit} {label}"
    return f"{seconds} 秒 s"


def describe_price(pricing: Mapping[str, Any]) -> str:
    """A listing's pricing in words, with its unit (fen shown as yuan)."""
    model = pricing.get("model")
    if model == "free":
        text = "免费 Free"
    elif model == "fixed":
        text = f"{fen(pricing.get('price'))} / 每单 per order"
    elif model == "tiers":
        tiers = pricing.get("tiers") or []
        first = tiers[0].get("price_per_1000_rows") if tiers else None
        text = f"{fen(first)} / 千行 per 1,000 rows" + (" (分档 tiered)" if len(tiers) > 1 else "")
    elif model == "subscription":
        text = (
            f"{fen(pricing.get('price_per_period'))} / {pricing.get('period_days')} 天 days "
            f"(订阅 subscription, ≤ {pricing.get('max_periods')} 期 periods)"
        )
    else:
        text = str(model)
    if pricing.get("exclusive"):
        text += " · 独家 exclusive"
    elif pricing.get("seats") is not None:
        text += f" · {pricing['seats']} 席 seats"
    return text


def _short(value: str | None, keep: int = 12) -> str:
    if value is None:
        return "—"
    return value if len(value) <= keep + 1 else value[:keep] + "…"


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _columns(rows: list[Mapping[str, Any]]) -> list[str]:
    """The keys of a list of objects, in first-seen order (a table's columns)."""
    return list(dict.fromkeys(key for row in rows for key in row))


_ENV.filters.update(
    fen=fen,
    when=when,
    size=size,
    duration=duration,
    price=describe_price,
    short=_short,
    columns=_columns,
)


CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    # the verify page reads the chain's JSON-RPC, wherever the auditor points it
    "connect-src 'self' http: https:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""The explorer's pages run only the exchange's own scripts and styles (no inline
code: what providers write can never become markup that runs, even if escaping
failed somewhere)."""


def render(template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """``template`` rendered with ``context`` as an HTML response."""
    html = _ENV.get_template(template).render(**context)
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
        },
    )


def error_page(exc: ExchangeError) -> HTMLResponse:
    """The HTML page of a refusal: its status, code and message."""
    return render(
        "error.html",
        status=exc.status,
        page="error",
        title=f"{exc.status} {exc.code}",
        code=exc.code,
        message=exc.message,
    )


def html_errors(page: Callable[_P, HTMLResponse]) -> Callable[_P, HTMLResponse]:
    """Answer the domain errors ``page`` raises as the HTML error page (the API
    answers them as JSON; a person opened this URL in a browser)."""

    @functools.wraps(page)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> HTMLResponse:
        try:
            return page(*args, **kwargs)
        except ExchangeError as exc:
            return error_page(exc)

    return wrapper


def int_param(value: str | None, name: str, *, low: int, high: int) -> int | None:
    """A page's integer query parameter (``None`` when absent or empty)."""
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 16:
        raise PageParamError(f"{name} must be a whole number from {low} to {high}")
    number = int(value)
    if not low <= number <= high:
        raise PageParamError(f"{name} must be a whole number from {low} to {high}")
    return number


def text_param(value: str | None, name: str, *, max_length: int) -> str | None:
    """A page's text query parameter (``None`` when absent or blank)."""
    if value is None or not value.strip():
        return None
    if len(value) > max_length or "\x00" in value:
        raise PageParamError(f"{name} must be at most {max_length} characters, without NUL")
    return value.strip()
