"""``shancheng db upgrade`` and ``shancheng db current``: the database's Alembic migrations;
``shancheng db check``: the books recomputed from the log, and the reconciliation
deposits − paid withdrawals = Σ available + Σ held.

Both print one line for people, or with ``--json`` one JSON document
(:class:`clients.cli.output.Output`); the database URL is always shown with its
password redacted. A further database command is one more ``@db_app.command``
here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clients.cli._common import CLIError, stdout
from clients.cli.output import Output

if TYPE_CHECKING:
    from sqlalchemy import Engine

db_app = typer.Typer(
    name="db",
    help="Database schema: Alembic migrations (SQLite by default, PostgreSQL by URL).",
    no_args_is_help=True,
)

_DATABASE_URL = typer.Option(
    None,
    "--database-url",
    help="SQLAlchemy URL (default: SHANCHENG_DATABASE_URL or DATABASE_URL, "
    "else the SQLite file in the data directory).",
)
_DATA_DIR = typer.Option(
    None, "--data-dir", help="Data directory (the default SQLite database lives there)."
)


def _resolve_url(database_url: str | None, data_dir: Path | None) -> str:
    if database_url:
        return database_url
    from exchange.settings import Settings

    try:
        settings = Settings() if data_dir is None else Settings(data_dir=data_dir)
    except ValueError as exc:
        raise CLIError(f"invalid settings: {exc}") from exc
    return settings.resolved_database_url


def _engine(url: str) -> Engine:
    from exchange.db import make_engine

    try:
        return make_engine(url)
    except Exception as exc:  # a malformed URL or a missing driver
        raise CLIError(f"bad database URL: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _fail(what: str, redacted: str, exc: Exception) -> CLIError:
    return CLIError(f"{what} {redacted} failed: {_one_line(exc)}")


@db_app.command("upgrade")
def upgrade(
    database_url: str | None = _DATABASE_URL,
    data_dir: Path | None = _DATA_DIR,
    revision: str = typer.Option("head", "--revision", help="Target revision."),
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON document (database, before, after, changed, head) instead.",
        ),
    ] = False,
) -> None:
    """Migrate the database to --revision (default: the newest). Running it again is a no-op.

    A database made by an earlier version without migrations (revision 0001's tables,
    unmarked) is marked at 0001 first.
    """
    from alembic.util import CommandError
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from exchange import migrations
    from exchange.db import redact_url

    url = _resolve_url(database_url, data_dir)
    engine = _engine(url)
    redacted = redact_url(url)
    try:
        before = migrations.current(engine)
        if revision == "head" and before is None and inspect(engine).get_table_names():
            migrations.ensure_schema(engine)  # unversioned tables: mark 0001, upgrade
        else:
            migrations.upgrade(engine, revision)
        after = migrations.current(engine)
    except (SQLAlchemyError, CommandError, OSError, migrations.SchemaError) as exc:
        raise _fail("upgrading", redacted, exc) from exc
    finally:
        engine.dispose()
    if as_json:
        Output(as_json).json(
            {
                "database": redacted,
                "before": before,
                "after": after,
                "changed": before != after,
                "head": migrations.head(),
            }
        )
    elif before == after:
        stdout.print(f"{redacted}: already at {after or 'base'}", highlight=False, soft_wrap=True)
    else:
        stdout.print(
            f"{redacted}: upgraded {before or 'base'} -> {after}", highlight=False, soft_wrap=True
        )


@db_app.command("current")
def current(
    database_url: str | None = _DATABASE_URL,
    data_dir: Path | None = _DATA_DIR,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON document (database, revision, head, up_to_date) instead; "
            "revision is null when the database is not under migrations.",
        ),
    ] = False,
) -> None:
    """Print the database's revision (``none`` when it is not under migrations) and head."""
    from sqlalchemy.exc import SQLAlchemyError

    from exchange import migrations
    from exchange.db import redact_url

    url = _resolve_url(database_url, data_dir)
    engine = _engine(url)
    try:
        revision = migrations.current(engine)
    except SQLAlchemyError as exc:
        raise _fail("reading", redact_url(url), exc) from exc
    finally:
        engine.dispose()
    head = migrations.head()
    if as_json:
        Output(as_json).json(
            {
                "database": redact_url(url),
                "revision": revision,
                "head": head,
                "up_to_date": revision == head,
            }
        )
        return
    state = "up to date" if revision == head else "behind: run `shancheng db upgrade`"
    stdout.print(f"{revision or 'none'} (head {head}; {state})", highlight=False)


@db_app.command("check")
def check(
    database_url: str | None = _DATABASE_URL,
    data_dir: Path | None = _DATA_DIR,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON document (database, balanced, reconciliation, "
            "discrepancies) instead.",
        ),
    ] = False,
) -> None:
    """Recompute every account, escrow, withdrawal and movement from the log's records
    and compare them with what is stored, and reconcile the whole: deposits − paid
    withdrawals (the log) = Σ available + Σ held (the accounts). Exit 1 when the
    books do not balance."""
    from sqlalchemy.exc import SQLAlchemyError

    from exchange.books import audit_books
    from exchange.db import redact_url

    url = _resolve_url(database_url, data_dir)
    engine = _engine(url)
    redacted = redact_url(url)
    try:
        report = audit_books(engine)
    except SQLAlchemyError as exc:
        raise _fail("checking", redacted, exc) from exc
    finally:
        engine.dispose()
    discrepancies, reconciliation = report.discrepancies, report.reconciliation
    if as_json:
        Output(as_json).json(
            {
                "database": redacted,
                "balanced": not discrepancies,
                "reconciliation": {
                    "deposits": reconciliation.deposits,
                    "paid_withdrawals": reconciliation.paid_withdrawals,
                    "available": reconciliation.available,
                    "held": reconciliation.held,
                    "ok": reconciliation.ok,
                },
                "discrepancies": [
                    {
                        "kind": str(d.kind),
                        "account": d.account,
                        "expected": d.expected,
                        "actual": d.actual,
                        "detail": d.detail,
                    }
                    for d in discrepancies
                ],
            }
        )
    else:
        for discrepancy in discrepancies:
            stdout.print(str(discrepancy), highlight=False, soft_wrap=True)
        verdict = "OK" if reconciliation.ok else "FAIL"
        stdout.print(
            f"reconciliation: {reconciliation}: {verdict}", highlight=False, soft_wrap=True
        )
        verdict = (
            "the books balance with the log"
            if not discrepancies
            else f"the books do not balance: {len(discrepancies)} discrepancies"
        )
        stdout.print(f"{redacted}: {verdict}", highlight=False, soft_wrap=True)
    if discrepancies:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
