"""``shancheng audit receipt INDEX | --order ID [--type T] [--wait] [--out PATH]``.

Fetches receipt bundles from the exchange, for an auditor to verify
(``shancheng audit verify``) without the exchange. ``INDEX`` is a log index;
``--order ID`` takes the order's records (``GET /orders/{id}/records``: its
buyer, the listing's providers and operators may read them), all of them or
those of ``--type`` (e.g. ``order.placed``, ``settlement.paid``).

A receipt exists once an anchored checkpoint covers the record. Before that the
exchange answers ``receipt_pending`` with the seconds to wait: the command says
so and exits 75 (EX_TEMPFAIL: try again later), or, with ``--wait``, asks again
when the exchange says to until ``--timeout``. Nothing is written unless every
selected receipt arrived and parsed as a bundle for the entry asked: an error
answer is never saved as a bundle. ``--out`` is the file for an INDEX's receipt,
and the directory (made if missing) of an order's, one ``<index>.json`` each;
without it the bundle (an order's: a JSON list of them) goes to stdout. Files are
written whole (a temporary file, then a rename), so a failure leaves nothing
half-written.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from clients.cli._common import CLIError
from clients.cli._runtime import EXIT_USAGE, Invocation, command

if TYPE_CHECKING:
    from clients.sdk import ExchangeClient
    from ledger.bundle import Bundle

__all__ = ["EXIT_PENDING", "register"]

EXIT_PENDING = 75
"""sysexits' EX_TEMPFAIL: the receipt is not ready yet; the same command later works."""


def _targets(out: Path | None, indexes: list[int], directory: bool) -> dict[int, Path]:
    """Where each bundle goes (checked before anything is fetched or waited for): the
    file ``out`` (``out/<index>.json`` when ``out`` is a directory), or with
    ``directory`` ``out/<index>.json`` each (the directory made if missing); a usage
    error when that cannot be written. Empty without ``--out``."""
    if out is None:
        return {}
    if not directory and not out.is_dir():
        parent = out.parent
        if not parent.is_dir():
            raise CLIError(f"--out {out}: directory {parent} does not exist", EXIT_USAGE)
        if not os.access(parent, os.W_OK | os.X_OK) or (
            out.exists() and not os.access(out, os.W_OK)
        ):
            raise CLIError(f"--out {out}: not writable", EXIT_USAGE)
        return {indexes[0]: out}
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out}: an order's receipts go into a directory", EXIT_USAGE)
    base = out if out.exists() else out.parent
    if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
        raise CLIError(f"--out {out}: not writable", EXIT_USAGE)
    return {index: out / f"{index}.json" for index in indexes}


def _write(path: Path, data: bytes) -> None:
    """``data`` to ``path`` whole: a temporary file beside it, then a rename."""
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise CLIError(f"--out {path}: {exc.strerror or exc}", EXIT_USAGE) from None


def _fetch(
    client: ExchangeClient, indexes: list[int], wait: bool, timeout: float
) -> dict[int, Bundle]:
    from clients.sdk.errors import ReceiptPendingError

    deadline = time.monotonic() + timeout
    bundles: dict[int, Bundle] = {}
    for index in indexes:
        if wait:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                bundles[index] = client.wait_for_receipt(index, timeout=remaining, interval=None)
            except ReceiptPendingError as exc:
                raise CLIError(
                    f"no receipt for entry {index} after waiting {timeout:g} s: {exc.message}",
                    EXIT_PENDING,
                ) from None
            continue
        try:
            bundles[index] = client.receipt(index)
        except ReceiptPendingError as exc:
            after = "" if exc.retry_after is None else f" (retry_after {exc.retry_after} s)"
            raise CLIError(
                f"receipt_pending: {exc.message}{after}; or pass --wait to wait for it",
                EXIT_PENDING,
            ) from None
    return bundles


def _selected(client: ExchangeClient, order: str, record_type: str | None) -> list[tuple[int, str]]:
    records = client.order_records(order).items
    chosen = [(r.index, r.type) for r in records if record_type in (None, r.type)]
    if not chosen:
        kinds = ", ".join(sorted({r.type for r in records})) or "none"
        raise CLIError(
            f"order {order} has no {record_type} record (its records: {kinds})", EXIT_USAGE
        )
    return chosen


def receipt(
    inv: Invocation,
    index: Annotated[
        int | None,
        typer.Argument(help="The entry's log index (or give --order).", min=0, show_default=False),
    ] = None,
    order: Annotated[
        str | None,
        typer.Option("--order", help="The receipts of this order's records.", show_default=False),
    ] = None,
    record_type: Annotated[
        str | None,
        typer.Option(
            "--type", help="With --order: only records of this type (e.g. settlement.paid)."
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait while a receipt is pending (see --timeout).")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="Seconds --wait waits at most.")
    ] = 120.0,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="INDEX: the bundle's file; --order: a directory, <index>.json each "
            "(default: stdout).",
        ),
    ] = None,
) -> None:
    """Fetch receipt bundles (to verify with `shancheng audit verify`); a pending one
    says when to ask again (exit 75), or waits with --wait. Never saves an error."""
    if (index is None) == (order is None):
        raise CLIError("give a log INDEX or --order ID (one of them)", EXIT_USAGE)
    if record_type is not None and order is None:
        raise CLIError("--type goes with --order", EXIT_USAGE)
    client = inv.client(signed=order is not None)
    chosen = [(index, "")] if index is not None else _selected(client, order or "", record_type)
    paths = _targets(out, [i for i, _ in chosen], directory=order is not None)
    bundles = _fetch(client, [i for i, _ in chosen], wait, timeout)
    texts = {
        i: json.dumps(b.to_dict(), indent=2, ensure_ascii=False) + "\n" for i, b in bundles.items()
    }
    for i, path in paths.items():
        try:
            path.parent.mkdir(exist_ok=True)
        except OSError as exc:
            raise CLIError(f"--out {path.parent}: {exc.strerror or exc}", EXIT_USAGE) from None
        _write(path, texts[i].encode("utf-8"))
    summary = [_summary(i, kind, bundles[i], paths.get(i)) for i, kind in chosen]
    if not paths:  # the bundles themselves are the output, in both modes
        if order is None:
            typer.echo(texts[chosen[0][0]], nl=False)
        else:
            typer.echo(
                json.dumps([bundles[i].to_dict() for i, _ in chosen], indent=2, ensure_ascii=False)
            )
        return

    def human(items: list[dict[str, Any]]) -> None:
        for item in items:
            kind = f" ({item['type']})" if item["type"] else ""
            inv.out.line(
                f"[green]✓[/] entry {item['index']}{kind} → {escape(item['path'])}: checkpoint "
                f"of tree size {item['tree_size']}, anchored in block {item['block_number']}"
            )
        first = items[0]["path"]
        inv.out.line(f"verify: [bold]{escape(f'shancheng audit verify {first}')}[/]")

    inv.out.result(summary, human)


def _summary(index: int, kind: str, bundle: Bundle, path: Path | None) -> dict[str, Any]:
    return {
        "index": index,
        "type": kind or bundle.record.record.type,
        "path": None if path is None else str(path),
        "tree_size": bundle.checkpoint.tree_size,
        "chain_id": bundle.anchor.chain_id,
        "registry_address": bundle.anchor.registry_address,
        "tx_hash": bundle.anchor.tx_hash,
        "block_number": bundle.anchor.block_number,
    }


def register(audit_app: typer.Typer) -> None:
    command(audit_app, "receipt")(receipt)
