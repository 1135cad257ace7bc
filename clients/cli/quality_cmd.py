"""Quality reports from the command line (docs/quality.md).

* ``shancheng provider quality LISTING FILE --schema SCHEMA.json``: compute FILE's
  report (GB/T 36344's six indicators) against a Frictionless Table Schema, here,
  where the data is, and publish it signed by you.
* ``shancheng assessor register``: register your key as an assessor (评估机构; an
  operator approves you).
* ``shancheng assessor assess LISTING``: order the listing at 0 fen (an assessment),
  receive it, recompute its provider report and countersign it, or sign your own
  when the bytes differ.
* ``shancheng assessor quality LISTING``: a listing's reports, grade and signers.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from clients.cli._common import CLIError
from clients.cli._runtime import EXIT_FAILED, Invocation, command
from clients.cli._views import show_participant
from clients.quality import QualityError, compute_report, load_table_schema
from ledger.protocol.quality import INDICATORS, QualityReport

__all__ = ["assessor_app", "register_group", "register_provider_commands"]

assessor_app = typer.Typer(
    name="assessor",
    help="Assessors (评估机构): recompute and countersign listings' quality reports.",
    no_args_is_help=True,
)

ListingArg = Annotated[str, typer.Argument(help="The listing's id (UUID).", show_default=False)]


def _report_view(report: QualityReport, digest: str) -> dict[str, Any]:
    return {
        "report_sm3": digest,
        "grade": report.grade,
        "score_bps": report.score_bps,
        "indicators": {name: bps for name, bps in report.bps().items()},
        "rows": report.rows,
        "as_of": report.as_of,
    }


def _show_report(inv: Invocation, d: dict[str, Any], heading: str) -> None:
    inv.out.line(f"{heading}: grade [bold]{d['grade']}[/bold] (score {d['score_bps']} bp)")
    inv.out.fields("indicators (bp)", [(name, d["indicators"][name]) for name in INDICATORS])
    inv.out.line(f"report SM3 {d['report_sm3']}")


def quality(
    inv: Invocation,
    listing: ListingArg,
    file: Annotated[Path, typer.Argument(help="The dataset file, as the listing commits to.")],
    schema: Annotated[
        Path, typer.Option("--schema", help="A Frictionless Table Schema (JSON) with constraints.")
    ],
    as_of: Annotated[
        int | None,
        typer.Option("--as-of", help="Report time, ms since the epoch (default: now)."),
    ] = None,
) -> None:
    """Compute FILE's quality report against --schema here, and publish it signed."""
    client = inv.client()
    info = client.listing(listing)
    try:
        report = compute_report(
            file,
            load_table_schema(schema),
            update_frequency=info.update_frequency,
            as_of=as_of if as_of is not None else time.time_ns() // 1_000_000,
            format=info.format if info.format in ("csv", "tsv") else None,
        )
    except QualityError as exc:
        raise CLIError(str(exc), EXIT_FAILED) from None
    published = client.report_quality(listing, report, version=info.version)
    data = {**_report_view(report, published.report_sm3), "log": published.log}
    inv.out.result(data, lambda d: _show_report(inv, d, f"published on listing {listing}"))


def register_provider_commands(provider_app: typer.Typer) -> None:
    command(provider_app, "quality")(quality)


@command(assessor_app, "register")
def register(
    inv: Invocation,
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "assessor",
) -> None:
    """Register your key as an assessor (an operator approves you before you assess)."""
    participant = inv.client().register(name, "assessor")
    inv.out.result(participant, lambda d: show_participant(inv.out, d))


@command(assessor_app, "assess")
def assess(
    inv: Invocation,
    listing: ListingArg,
    workdir: Annotated[
        Path | None,
        typer.Option("--workdir", help="Where the received data goes (default: a temp dir)."),
    ] = None,
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for the provider's delivery.")
    ] = 120.0,
) -> None:
    """Order LISTING at 0 fen, receive it, recompute its report; countersign or dispute."""
    client = inv.client()
    with tempfile.TemporaryDirectory() as scratch:
        try:
            done = client.assess(listing, workdir or Path(scratch), delivery_wait=wait)
        except QualityError as exc:
            raise CLIError(str(exc), EXIT_FAILED) from None
    data = {
        "order_id": done.order_id,
        "agreed": done.agreed,
        "provider_report_sm3": done.provider_report.report_sm3,
        "recomputed": _report_view(done.recomputed, done.recomputed.digest()),
        "log": done.log,
    }

    def human(d: dict[str, Any]) -> None:
        verdict = "countersigned" if d["agreed"] else "signed a differing report on"
        inv.out.line(f"{verdict} listing {listing} (order {d['order_id']})")
        _show_report(inv, d["recomputed"], "recomputed")

    inv.out.result(data, human)


@command(assessor_app, "quality")
def show_quality(inv: Invocation, listing: ListingArg) -> None:
    """A listing's quality: grade, reports, signers and countersigners."""
    result = inv.client().listing_quality(listing)

    def human(d: dict[str, Any]) -> None:
        current = d.get("quality")
        if current is None:
            inv.out.line(f"listing {listing}: no quality report")
        else:
            inv.out.fields(
                f"listing {listing} quality",
                [
                    ("grade", current["grade"]),
                    ("score (bp)", current["score_bps"]),
                    ("report SM3", current["report_digest"]),
                    ("signed by", current["signed_by"]),
                    ("countersigned by", ", ".join(current["countersigned_by"]) or "-"),
                    ("disputed by", ", ".join(current["disputed_by"]) or "-"),
                ],
            )
        for report in d.get("reports", []):
            inv.out.line(
                f"v{report['version']} {report['signer_role']} {report['signer'][:16]}… "
                f"grade {report['grade']} {report['report_sm3'][:16]}…"
            )

    inv.out.result(result, human)


def register_group(app: typer.Typer) -> None:
    app.add_typer(assessor_app, name="assessor")
