"""``shancheng contracts``: compile the Solidity sources and check the committed artifacts."""

from __future__ import annotations

import typer

from clients.cli._common import CLIError, stdout

contracts_app = typer.Typer(
    name="contracts",
    help="Compile contracts into committed artifacts; check they are current.",
    no_args_is_help=True,
)


@contracts_app.command("build")
def build_command() -> None:
    """Compile contracts/*.sol with the pinned solc into contracts/artifacts/*.json."""
    from contracts import build
    from contracts.errors import ContractsError

    try:
        changed = build.build()
    except ContractsError as exc:
        raise CLIError(str(exc)) from exc
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
) -> None:
    """Exit 1 if a committed artifact is stale (sources, settings or compiler changed)."""
    from contracts import build
    from contracts.errors import ContractsError, StaleArtifactError

    try:
        build.check(recompile=recompile)
    except StaleArtifactError as exc:
        raise CLIError(f"{exc}; run `shancheng contracts build`", exit_code=1) from exc
    except ContractsError as exc:
        raise CLIError(str(exc)) from exc
    stdout.print("contract artifacts are up to date")


def register(app: typer.Typer) -> None:
    app.add_typer(contracts_app, name="contracts")
