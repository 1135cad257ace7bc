"""What the marketplace commands print: one JSON document, or rich tables for people.

* ``--json``: exactly one JSON document on stdout (money in integer fen, times in
  ms, as the API has them); nothing else on stdout, no progress bars.
* otherwise: rich tables and lines; money as yuan with two decimals
  (:func:`yuan`); progress bars (:func:`transfer_progress`) on stderr for
  uploads, downloads and digests when stdout is a terminal.

:func:`plain` turns the SDK's answers (frozen dataclasses, ledger types) into
JSON-ready data, so the commands never depend on a model's Python shape beyond
its fields.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from clients.cli._common import stderr, stdout

__all__ = [
    "Output",
    "datetime_ms",
    "parse_yuan",
    "plain",
    "transfer_progress",
    "yuan",
]

ProgressCallback = Callable[[int, int | None], None]


def yuan(fen: int | None) -> str:
    """``12345`` → ``¥123.45`` (exact: integer arithmetic, never floats)."""
    if fen is None:
        return "-"
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"


_YUAN = re.compile(r"(\d{1,13})(?:\.(\d{1,2}))?")


def parse_yuan(text: str) -> int:
    """``"199"``, ``"199.5"``, ``"199.50"`` → fen (19900, 19950, 19950): exact, never a
    float; at most two decimals. Raises :class:`ValueError` otherwise."""
    match = _YUAN.fullmatch(text.strip().replace(",", "").removeprefix("¥"))
    if match is None:
        raise ValueError(f"{text!r} is not an amount in yuan (e.g. 199 or 199.50)")
    whole, cents = match.group(1), (match.group(2) or "").ljust(2, "0")
    return int(whole) * 100 + int(cents)


def datetime_ms(ms: int | None) -> str:
    """Milliseconds since the epoch as local ISO time to the second (``-`` for none)."""
    if ms is None:
        return "-"
    moment = _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.UTC).astimezone()
    return moment.isoformat(timespec="seconds")


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data: ``to_dict()`` when the object has one, dataclass
    fields otherwise (``raw``-style fields excluded from repr are skipped), tuples as
    lists, bytes as lowercase hex, keys as PEM, paths as strings."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, Path):
        return str(value)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return plain(to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.repr and not f.name.startswith("_")
        }
    to_pem = getattr(value, "to_pem", None)
    if callable(to_pem):
        pem = to_pem()
        return pem.decode("ascii") if isinstance(pem, bytes) else str(pem)
    if hasattr(value, "value") and isinstance(value.value, str):  # enums
        return value.value
    return str(value)


class Output:
    """Where a command's result goes: JSON (``as_json``) or people."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def json(self, data: Any) -> None:
        typer.echo(json.dumps(plain(data), indent=2, ensure_ascii=False, sort_keys=False))

    def result(self, data: Any, human: Callable[[Any], None]) -> None:
        """Emit ``data`` as JSON, or call ``human`` with its plain form."""
        if self.as_json:
            self.json(data)
        else:
            human(plain(data))

    def line(self, text: str) -> None:
        """A line of rich markup for people (never in JSON mode)."""
        if not self.as_json:
            stdout.print(text, highlight=False, soft_wrap=True)

    def note(self, text: str) -> None:
        """A remark on stderr (not part of the result), shown in both modes."""
        stderr.print(escape(text), highlight=False, soft_wrap=True)

    def fields(self, title: str, rows: Sequence[tuple[str, Any]]) -> None:
        """A two-column table of ``(label, value)``."""
        table = Table(title=title, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for label, value in rows:
            table.add_row(label, escape(_cell(value)))
        stdout.print(table)

    def table(
        self,
        title: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        empty: str = "nothing to show",
    ) -> None:
        if not rows:
            stdout.print(f"{title}: {empty}", highlight=False)
            return
        table = Table(title=title, title_justify="left")
        for name in columns:
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*(escape(_cell(v)) for v in row))
        stdout.print(table)

    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[ProgressCallback | None]:
        with transfer_progress(description, total, enabled=not self.as_json) as callback:
            yield callback


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


@contextmanager
def transfer_progress(
    description: str, total: int | None, *, enabled: bool = True, unit: str = "bytes"
) -> Iterator[ProgressCallback | None]:
    """A progress bar on stderr fed by ``callback(done, total)`` (the SDK's
    progress signature; ``unit`` "bytes" or "checks"), or ``None`` when not
    wanted: disabled, or stdout is not a terminal (piped output, tests)."""
    if not enabled or not sys.stdout.isatty():
        yield None
        return
    columns = (
        (DownloadColumn(), TransferSpeedColumn())
        if unit == "bytes"
        else (MofNCompleteColumn(), TextColumn(unit))
    )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        *columns,
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
    ) as progress:
        task = progress.add_task(escape(description), total=total)

        def callback(done: int, size: int | None = None) -> None:
            progress.update(task, completed=done, total=size if size is not None else total)

        yield callback
