"""``shancheng operator …``: the exchange's operators at work.

Approve or suspend participants, review listings (start the review, publish or
reject), credit deposits (integer fen: the command line takes no floats for
money) and resolve disputes. Every action is a record signed with the
operator's own key; the exchange signs nothing on an operator's behalf.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from clients.cli._common import CLIError
from clients.cli._runtime import EXIT_USAGE, Invocation, command
from clients.cli._views import show_account, show_listing, show_order, show_participant

operator_app = typer.Typer(
    name="operator",
    help="Operators: approve participants, review listings, credit deposits, resolve disputes.",
    no_args_is_help=True,
)

KeyIdArg = Annotated[str, typer.Argument(help="The participant's key id (64 hex).")]
ListingArg = Annotated[str, typer.Argument(help="The listing's id (UUID).")]
OrderArg = Annotated[str, typer.Argument(help="The order id.")]


@command(operator_app, "approve")
def approve(inv: Invocation, key_id: KeyIdArg) -> None:
    """Approve a registered participant (providers must be approved to submit listings)."""
    result = inv.client().approve_participant(key_id)
    inv.out.result(result, lambda d: show_participant(inv.out, d, action="approval"))


@command(operator_app, "suspend")
def suspend(
    inv: Invocation,
    key_id: KeyIdArg,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the log).")],
) -> None:
    """Suspend a participant: their signed requests are refused from now on."""
    result = inv.client().suspend_participant(key_id, reason)
    inv.out.result(result, lambda d: show_participant(inv.out, d, action="suspension"))


@command(operator_app, "review")
def review(inv: Invocation, listing: ListingArg) -> None:
    """Start the compliance review of a submitted listing."""
    result = inv.client().review_listing(listing)
    inv.out.result(result, lambda d: show_listing(inv.out, d, action="review"))


@command(operator_app, "publish")
def publish(inv: Invocation, listing: ListingArg) -> None:
    """Publish a listing under review (its declarations must be complete)."""
    result = inv.client().publish_listing(listing)
    inv.out.result(result, lambda d: show_listing(inv.out, d, action="publication"))


@command(operator_app, "reject")
def reject(
    inv: Invocation,
    listing: ListingArg,
    reason: Annotated[str, typer.Option("--reason", help="What the provider must fix.")],
) -> None:
    """Reject a listing under review, with a reason: its provider edits it (`shancheng
    provider edit L`, which makes it a draft again) and submits it again."""
    result = inv.client().reject_listing(listing, reason)
    inv.out.result(result, lambda d: show_listing(inv.out, d, action="rejection"))


@command(operator_app, "deposit")
def deposit(
    inv: Invocation,
    key_id: KeyIdArg,
    amount_fen: Annotated[
        int, typer.Argument(help="Amount in fen (integer; 100 fen = ¥1.00).", min=1)
    ],
    reference: Annotated[
        str, typer.Option("--reference", help="The payment's reference (bank transfer id, …).")
    ],
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="Reuse to retry without crediting twice."),
    ] = None,
) -> None:
    """Credit a participant's account (e.g. after a bank transfer arrived)."""
    result = inv.client().deposit(key_id, amount_fen, reference, idempotency_key=idempotency_key)
    inv.out.result(result, lambda d: show_account(inv.out, d, movements=False))


@command(operator_app, "resolve")
def resolve(
    inv: Invocation,
    order: OrderArg,
    note: Annotated[str, typer.Option("--note", help="The decision's grounds.")],
    refund: Annotated[bool, typer.Option("--refund", help="Give the escrow back.")] = False,
    release: Annotated[bool, typer.Option("--release", help="Pay the providers.")] = False,
) -> None:
    """Resolve a disputed order: --refund the buyer or --release to the providers."""
    if refund == release:
        raise CLIError("give exactly one of --refund and --release", EXIT_USAGE)
    outcome = "refund" if refund else "release"
    result = inv.client().resolve_dispute(order, outcome, note)
    inv.out.result(result, lambda d: show_order(inv.out, d, action=f"resolution ({outcome})"))


crossborder_app = typer.Typer(
    name="crossborder",
    help="Cross-border assessments (数据出境安全评估): while approved, a buyer may order a "
    "listing of 重要 data or personal information for processing outside CN.",
    no_args_is_help=True,
)
ReferenceOption = Annotated[
    str, typer.Option("--reference", help="The assessment's reference (e.g. its filing number).")
]
DAY_MS = 86_400_000


def _assessed(inv: Invocation, data: dict[str, Any]) -> None:
    verdict = "approved" if data.get("approved") else "rejected"
    until = data.get("valid_until")
    inv.out.line(
        f"cross-border assessment {verdict}: buyer {data.get('buyer')} on listing "
        f"{data.get('listing_id')} ({data.get('reference')})"
        + (f", valid until {until} ms" if until is not None else "")
    )


@command(crossborder_app, "approve")
def crossborder_approve(
    inv: Invocation,
    buyer: KeyIdArg,
    listing: ListingArg,
    reference: ReferenceOption,
    days: Annotated[
        int, typer.Option("--days", min=1, max=3650, help="How long the approval holds.")
    ] = 365,
) -> None:
    """Record an approved assessment for BUYER on LISTING, valid for --days."""
    valid_until = int(time.time() * 1000) + days * DAY_MS
    result = inv.client().assess_cross_border(
        listing, buyer, approved=True, reference=reference, valid_until=valid_until
    )
    inv.out.result(result, lambda d: _assessed(inv, d))


@command(crossborder_app, "reject")
def crossborder_reject(
    inv: Invocation, buyer: KeyIdArg, listing: ListingArg, reference: ReferenceOption
) -> None:
    """Record a rejected assessment for BUYER on LISTING (it replaces an approval)."""
    result = inv.client().assess_cross_border(listing, buyer, approved=False, reference=reference)
    inv.out.result(result, lambda d: _assessed(inv, d))


@command(crossborder_app, "list")
def crossborder_list(
    inv: Invocation,
    listing: Annotated[str | None, typer.Option("--listing", help="Only this listing.")] = None,
    buyer: Annotated[str | None, typer.Option("--buyer", help="Only this buyer.")] = None,
) -> None:
    """The current assessments, newest first."""
    result = inv.client().crossborder_assessments(listing_id=listing, buyer=buyer)

    def human(items: list[dict[str, Any]]) -> None:
        if not items:
            inv.out.line("no cross-border assessments")
        for item in items:
            _assessed(inv, item)

    inv.out.result(result, human)


def register_group(app: typer.Typer) -> None:
    operator_app.add_typer(crossborder_app, name="crossborder")
    app.add_typer(operator_app, name="operator")
