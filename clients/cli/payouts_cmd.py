"""Payouts on the command line: ``shancheng provider withdraw`` (and ``buyer withdraw``,
the same command: buyers withdraw unspent deposits) and ``shancheng operator payouts``.

``withdraw AMOUNT_FEN --to REF`` signs a ``withdrawal.requested`` record (integer
fen: the command line takes no floats for money); the amount is held until an
operator decides. ``operator payouts [--state pending]`` lists withdrawals (all of
them, newest first), ``operator payouts pay ID --reference R`` records one paid
(the outside transfer's reference) and ``operator payouts reject ID --reason R``
rejects it (the amount is available again). Each decision is the operator's own
signed record. ``operator payouts withdraw-fees AMOUNT_FEN --to REF`` withdraws the
exchange's fees (the platform account), which another operator pays out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import typer

from clients.cli._runtime import (
    ConfigOption,
    ExchangeUrlOption,
    Invocation,
    JsonOption,
    KeyFileOption,
    KeyPasswordFileOption,
    command,
    convert_errors,
    load_config,
)
from clients.cli._views import show_logged
from clients.cli.output import Output, datetime_ms, yuan

__all__ = ["register"]

payouts_app = typer.Typer(
    name="payouts",
    help="Withdrawals: list them (--state), record one paid, or reject it.",
)

WithdrawalArg = Annotated[str, typer.Argument(help="The withdrawal's id (UUID).")]
IdempotencyOption = Annotated[
    str | None,
    typer.Option("--idempotency-key", help="Reuse to retry without acting twice."),
]
StateOption = Annotated[
    str | None,
    typer.Option(
        "--state",
        help="Only withdrawals in this state: pending, paid or rejected.",
        show_default=False,
    ),
]


def show_withdrawal(out: Output, data: Mapping[str, Any], *, action: str) -> None:
    out.fields(
        "Withdrawal",
        [
            ("id", data.get("id")),
            ("participant", data.get("participant")),
            ("amount", yuan(data.get("amount"))),
            ("destination", data.get("destination")),
            ("state", data.get("state")),
            ("requested", datetime_ms(data.get("requested_at"))),
            ("decided", datetime_ms(data.get("decided_at"))),
            ("transfer reference", data.get("transfer_reference") or "-"),
            ("reason", data.get("reason") or "-"),
        ],
    )
    account = data.get("account")
    if isinstance(account, Mapping):
        out.line(
            f"balance now: available {yuan(account.get('available'))}, "
            f"held {yuan(account.get('held'))}"
        )
    show_logged(out, data, action)


def show_withdrawals(out: Output, items: Sequence[Mapping[str, Any]]) -> None:
    rows = [
        [
            w.get("id"),
            w.get("state"),
            w.get("participant"),
            yuan(w.get("amount")),
            w.get("destination"),
            datetime_ms(w.get("requested_at")),
        ]
        for w in items
    ]
    out.table(
        "Withdrawals",
        ["withdrawal", "state", "participant", "amount", "destination", "requested"],
        rows,
        empty="none",
    )


AmountFenArg = Annotated[
    int, typer.Argument(help="Amount in fen (integer; 100 fen = ¥1.00).", min=1)
]
ToOption = Annotated[
    str, typer.Option("--to", help="Where the money goes: a bank account reference.")
]


def withdraw(
    inv: Invocation,
    amount_fen: AmountFenArg,
    to: ToOption,
    idempotency_key: IdempotencyOption = None,
) -> None:
    """Withdraw available funds: the amount is held until an operator pays it out."""
    result = inv.client().withdraw(amount_fen, to, idempotency_key=idempotency_key)
    inv.out.result(result, lambda d: show_withdrawal(inv.out, d, action="withdrawal request"))


@payouts_app.callback(invoke_without_command=True)
def payouts(
    ctx: typer.Context,
    state: StateOption = None,
    config: ConfigOption = None,
    exchange_url: ExchangeUrlOption = None,
    key_file: KeyFileOption = None,
    key_password_file: KeyPasswordFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """List withdrawals, newest first (operators see everyone's); or pay / reject one."""
    if ctx.invoked_subcommand is not None:
        return
    with convert_errors():
        inv = Invocation(
            config=load_config(config, exchange_url, key_file, key_password_file),
            out=Output(as_json),
        )
        try:
            page = inv.client().withdrawals(state=state, limit=200)
            inv.out.result(page, lambda d: show_withdrawals(inv.out, d["items"]))
        finally:
            inv.close()


@command(payouts_app, "withdraw-fees")
def withdraw_fees(
    inv: Invocation,
    amount_fen: AmountFenArg,
    to: ToOption,
    idempotency_key: IdempotencyOption = None,
) -> None:
    """Withdraw the exchange's fees (the platform account): held until another operator
    pays it out."""
    result = inv.client().withdraw(amount_fen, to, idempotency_key=idempotency_key, platform=True)
    inv.out.result(result, lambda d: show_withdrawal(inv.out, d, action="fee withdrawal request"))


@command(payouts_app, "pay")
def pay(
    inv: Invocation,
    withdrawal: WithdrawalArg,
    reference: Annotated[
        str, typer.Option("--reference", help="The outside transfer's reference.")
    ],
    idempotency_key: IdempotencyOption = None,
) -> None:
    """Record a pending withdrawal paid, once the money was sent."""
    result = inv.client().pay_withdrawal(withdrawal, reference, idempotency_key=idempotency_key)
    inv.out.result(result, lambda d: show_withdrawal(inv.out, d, action="payment"))


@command(payouts_app, "reject")
def reject(
    inv: Invocation,
    withdrawal: WithdrawalArg,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the log).")],
    idempotency_key: IdempotencyOption = None,
) -> None:
    """Reject a pending withdrawal: its amount is available to the participant again."""
    result = inv.client().reject_withdrawal(withdrawal, reason, idempotency_key=idempotency_key)
    inv.out.result(result, lambda d: show_withdrawal(inv.out, d, action="rejection"))


def register(*, withdrawing: Sequence[typer.Typer], operators: typer.Typer) -> None:
    """``withdraw`` on each group of ``withdrawing`` (providers, buyers), ``payouts`` on
    the operators' group (once: the groups are the modules' own)."""
    if any(info.typer_instance is payouts_app for info in operators.registered_groups):
        return
    for group in withdrawing:
        command(group, "withdraw")(withdraw)
    operators.add_typer(payouts_app, name="payouts")
