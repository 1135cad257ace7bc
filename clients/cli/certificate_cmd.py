"""``shancheng certificate …``: registration certificates (docs/certificates.md).

Anyone may ``show`` a certificate (its rights, scope, validity and the log index of
each of its records, for ``shancheng audit``) or ``list`` a listing's. Its holders
``transfer`` a right, ``change``, ``renew`` or ``cancel`` it (requests); the
receiver of a transfer ``accept``s it; an operator ``review``s the request under
review (``--approve`` or ``--reject``) or cancels outright (``cancel --outright``).
Each is a record signed with your own key. One group for every role: the exchange
decides who may sign what.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from clients.cli._common import CLIError
from clients.cli._runtime import EXIT_USAGE, Invocation, command
from clients.cli._views import show_logged
from clients.cli.output import Output, datetime_ms

certificate_app = typer.Typer(
    name="certificate",
    help="Registration certificates: show, list, transfer, accept, change, renew, cancel, review.",
    no_args_is_help=True,
)

NumberArg = Annotated[str, typer.Argument(help="The certificate number, e.g. SC-2026-000001.")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (recorded in the log).")]
RIGHTS = ("holding", "processing", "operation")


def _until(text: str) -> int:
    """A validity end: milliseconds since the epoch, or a date (YYYY-MM-DD, UTC midnight)."""
    if text.isdigit():
        return int(text)
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        raise CLIError(f"not a date (YYYY-MM-DD) or milliseconds: {text!r}", EXIT_USAGE) from None
    moment = datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC)
    return int(moment.timestamp()) * 1000


def show_certificate(out: Output, data: Mapping[str, Any], *, history: bool) -> None:
    rights = data.get("rights") or {}
    rows: list[tuple[str, Any]] = [
        ("number", data.get("number")),
        ("listing", data.get("listing_id")),
        ("version", data.get("version")),
        ("title", data.get("title")),
        ("state", f"{data.get('state')}{' (expired)' if data.get('expired') else ''}"),
        ("SM3", data.get("content_digest")),
        ("row root", data.get("row_root") or "-"),
    ]
    for right in RIGHTS:
        holders = [
            f"{h.get('participant')} ({h.get('share_bps')} bp)" for h in rights.get(right, [])
        ]
        rows.append((right, holders))
    scope = data.get("scope") or {}
    rows += [
        ("scope", f"{scope.get('category')}: {scope.get('text')}"),
        ("purposes", scope.get("purposes")),
        ("valid from", datetime_ms(data.get("valid_from"))),
        ("valid until", datetime_ms(data.get("valid_until"))),
    ]
    pending = data.get("pending")
    if pending:
        rows.append(("under review", json.dumps(pending, ensure_ascii=False)))
    out.fields("Certificate", rows)
    if history:
        out.table(
            "History",
            ["index", "record", "actor", "at"],
            [
                [h.get("index"), h.get("type"), h.get("actor"), datetime_ms(h.get("at"))]
                for h in data.get("history") or []
            ],
        )
    show_logged(out, data, "record")


def _shown(inv: Invocation, result: Any, *, history: bool = False) -> None:
    inv.out.result(result, lambda d: show_certificate(inv.out, d, history=history))


@command(certificate_app, "show")
def show(
    inv: Invocation,
    number: NumberArg,
    history: Annotated[
        bool, typer.Option("--history", help="List its records and their log indexes.")
    ] = False,
) -> None:
    """A certificate (public): rights, scope, validity, state."""
    _shown(inv, inv.client(signed=False).certificate(number), history=history)


@command(certificate_app, "list")
def list_(
    inv: Invocation,
    listing: Annotated[str, typer.Option("--listing", help="The listing's id (UUID).")],
) -> None:
    """The certificates of a listing's versions (public)."""
    items = inv.client(signed=False).certificates(listing=listing)
    if inv.out.as_json:
        inv.out.json(items)
        return
    inv.out.table(
        "Certificates",
        ["number", "version", "state", "valid until"],
        [
            [
                c.number,
                c.version,
                c.state + (" (expired)" if c.expired else ""),
                datetime_ms(c.valid_until),
            ]
            for c in items
        ],
    )


@command(certificate_app, "transfer")
def transfer(
    inv: Invocation,
    number: NumberArg,
    right: Annotated[str, typer.Option("--right", help="holding, processing or operation.")],
    share_bps: Annotated[
        int, typer.Option("--share-bps", help="Basis points of your share to move.", min=1)
    ],
    to: Annotated[str, typer.Option("--to", help="The receiver's key id.")],
) -> None:
    """Holders: offer part of a right to another participant (who accepts; an operator
    reviews)."""
    if right not in RIGHTS:
        raise CLIError(f"--right is one of {', '.join(RIGHTS)}", EXIT_USAGE)
    _shown(inv, inv.client().offer_transfer(number, right=right, share_bps=share_bps, to=to))


@command(certificate_app, "accept")
def accept(inv: Invocation, number: NumberArg) -> None:
    """The receiver: accept the transfer offered to you."""
    _shown(inv, inv.client().accept_transfer(number))


@command(certificate_app, "change")
def change(
    inv: Invocation,
    number: NumberArg,
    reason: ReasonOption,
    valid_until: Annotated[
        str | None, typer.Option("--valid-until", help="New end of validity (date or ms).")
    ] = None,
    scope: Annotated[
        str | None,
        typer.Option("--scope", help='New scope as JSON: {"category", "purposes", "text"}.'),
    ] = None,
) -> None:
    """Holders: ask for a change of scope or validity (an operator reviews)."""
    if valid_until is None and scope is None:
        raise CLIError("give --valid-until or --scope", EXIT_USAGE)
    try:
        parsed = None if scope is None else json.loads(scope)
    except json.JSONDecodeError as exc:
        raise CLIError(f"--scope is not JSON: {exc}", EXIT_USAGE) from None
    until = None if valid_until is None else _until(valid_until)
    client = inv.client()
    _shown(inv, client.request_certificate_change(number, reason, scope=parsed, valid_until=until))


@command(certificate_app, "renew")
def renew(
    inv: Invocation,
    number: NumberArg,
    until: Annotated[str, typer.Option("--until", help="Requested end of validity (date or ms).")],
) -> None:
    """Holders: ask for a renewal (an operator reviews)."""
    _shown(inv, inv.client().request_renewal(number, _until(until)))


@command(certificate_app, "cancel")
def cancel(
    inv: Invocation,
    number: NumberArg,
    reason: ReasonOption,
    outright: Annotated[
        bool, typer.Option("--outright", help="Operators: cancel without a holder's request.")
    ] = False,
) -> None:
    """Holders: ask for cancellation (注销); operators: cancel --outright."""
    client = inv.client()
    if outright:
        _shown(inv, client.cancel_certificate(number, reason))
    else:
        _shown(inv, client.request_cancellation(number, reason))


@command(certificate_app, "review")
def review(
    inv: Invocation,
    number: NumberArg,
    reason: ReasonOption,
    approve: Annotated[bool, typer.Option("--approve", help="Grant the request.")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Refuse the request.")] = False,
    valid_until: Annotated[
        str | None,
        typer.Option("--valid-until", help="A renewal's granted end of validity (date or ms)."),
    ] = None,
) -> None:
    """Operators: approve or reject the request under review."""
    if approve == reject:
        raise CLIError("give exactly one of --approve and --reject", EXIT_USAGE)
    until = None if valid_until is None else _until(valid_until)
    client = inv.client()
    try:
        result = client.review_certificate(
            number, "approve" if approve else "reject", reason, valid_until=until
        )
    except ValueError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from None
    _shown(inv, result)


def register_group(app: typer.Typer) -> None:
    app.add_typer(certificate_app, name="certificate")
