"""``shancheng contracts``: compile the Solidity sources and check the committed artifacts.

Both commands print lines for people, or with ``--json`` one JSON document
(:class:`clients.cli.output.Output`). ``check`` is a verdict: with ``--json``
a stale artifact still prints its document (``ok`` false, the ``reasons``)
before the one-line error and exit 1.
"""

from __future__ import annotations

from typing import Annotated

import typer

from clients.cli._common import CLIError, stdout
from clients.cli.output import Output

contracts_app = typer.Typer(
    name="contracts",
    help="Compile contracts into committed artifacts; check they are current.",
    no_args_is_help=True,
)


@contracts_app.command("build")
def build_command(
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON document (artifacts: name, path, written) instead.",
        ),
    ] = False,
) -> None:
    """Compile contracts/*.sol with the pinned solc into contracts/artifacts/*.json."""
    from contracts import build
    from contracts.errors import ContractsError

    try:
        changed = build.build()
    except ContractsError as exc:
        raise CLIError(str(exc)) from exc
    if as_json:
        artifacts = [
            {"name": name, "path": build.artifact_path(name), "written": was_changed}
            for name, was_changed in changed.items()
        ]
        Output(as_json).json({"artifacts": artifacts})
        return
    for name, was_changed in changed.items():
        state = "written" if was_changed else "unchanged"
        stdout.print(f"{build.artifact_path(name)}: {state}", highlight=False)


@contracts_app.command("check")
def check_command(
    recompile: bool = typer.Option(
        False,
        "--recompile",
        help="Also recompile (needs solc or node) and compare byte for byte.",
    ),
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON document (ok, recompiled, reasons) instead; "
            "a stale artifact still exits 1.",
        ),
    ] = False,
) -> None:
    """Exit 1 if a committed artifact is stale (sources, settings or compiler changed)."""
    from contracts import build
    from contracts.errors import ContractsError, StaleArtifactError

    out = Output(as_json)
    try:
        build.check(recompile=recompile)
    except StaleArtifactError as exc:
        if as_json:
            out.json({"ok": False, "recompiled": recompile, "reasons": exc.reasons})
        raise CLIError(f"{exc}; run `shancheng contracts build`", exit_code=1) from exc
    except ContractsError as exc:
        raise CLIError(str(exc)) from exc
    if as_json:
        out.json({"ok": True, "recompiled": recompile, "reasons": []})
        return
    stdout.print("contract artifacts are up to date")


def register(app: typer.Typer) -> None:
    app.add_typer(contracts_app, name="contracts")
