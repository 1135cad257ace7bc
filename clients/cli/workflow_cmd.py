"""A provider's own listings and their edits, and the operators' review queue.

``shancheng provider listings [--state S]`` lists your listings in every state
(drafts and rejected ones included, with the rejection's reason);
``shancheng provider edit L`` changes a draft or a rejected listing (which becomes a
draft again): the flags of ``create-listing`` (fields and declarations), ``--fields
FILE`` and ``--data FILE`` (new content: its digest, size, rows, columns and sample
read from the file) replace what they name, everything else stays. A published or
delisted listing cannot be edited (declare a new content version instead).
``shancheng operator queue`` shows what waits for an operator: listings submitted
or under review, and providers awaiting approval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from clients.cli._common import CLIError
from clients.cli._runtime import EXIT_FAILED, EXIT_USAGE, Invocation, command
from clients.cli._views import show_listing
from clients.cli.provider_cmd import (
    CUSTODIES,
    CategoryOption,
    ClassificationOption,
    DescriptionOption,
    FieldsOption,
    FreeOption,
    LicenceOption,
    PersonalInformationOption,
    PiLegalBasisOption,
    PriceOption,
    SourceLegalityOption,
    UpdateFrequencyOption,
    UsageTermsOption,
    _describe,
    _fields_file,
    _file_fields,
    _pricing,
    _shares,
)
from clients.cli.workflow_views import show_listing_rows, show_queue

__all__ = ["EDITABLE_STATES", "register"]

EDITABLE_STATES = ("draft", "rejected")
LISTING_STATES = ("draft", "submitted", "under_review", "published", "rejected", "delisted")
DECLARATION_KEYS = (
    "classification",
    "personal_information",
    "pi_legal_basis",
    "source_legality",
    "permitted_purposes",
)

ListingArg = Annotated[str, typer.Argument(help="The listing's id (UUID).", show_default=False)]


def listings(
    inv: Invocation,
    state: Annotated[
        str | None,
        typer.Option("--state", help=f"Only listings in this state: {', '.join(LISTING_STATES)}."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=200)] = 50,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
) -> None:
    """Your listings in every state (drafts, rejected ones with the reason), newest first."""
    if state is not None and state not in LISTING_STATES:
        raise CLIError(f"--state is one of {', '.join(LISTING_STATES)}, not {state!r}", EXIT_USAGE)
    page = inv.client().listings(provider="me", state=state, limit=limit, offset=offset)

    def human(data: dict[str, Any]) -> None:
        show_listing_rows(inv.out, data.get("items") or [], state)
        if data.get("next_offset") is not None:
            more = inv.again("provider", "listings", "--offset", data["next_offset"])
            inv.out.line(f"more: {escape(more)}")

    inv.out.result(page, human)


def _declarations(
    current: dict[str, Any], from_file: dict[str, Any], flags: dict[str, Any]
) -> dict[str, Any]:
    merged = {**current, **from_file}
    merged.update({k: v for k, v in flags.items() if v is not None})
    return merged


def edit(
    inv: Invocation,
    listing: ListingArg,
    title: Annotated[str | None, typer.Option("--title")] = None,
    description: DescriptionOption = None,
    category: CategoryOption = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Repeatable; replaces the tags.")
    ] = None,
    price: PriceOption = None,
    free: FreeOption = False,
    pricing: Annotated[
        str | None, typer.Option("--pricing", help="Pricing JSON, amounts in fen.")
    ] = None,
    update_frequency: UpdateFrequencyOption = None,
    licence: LicenceOption = None,
    usage_terms: UsageTermsOption = None,
    classification: ClassificationOption = None,
    personal_information: PersonalInformationOption = None,
    pi_legal_basis: PiLegalBasisOption = None,
    source_legality: SourceLegalityOption = None,
    purpose: Annotated[
        list[str] | None,
        typer.Option("--purpose", help="Permitted purpose (repeatable; replaces them)."),
    ] = None,
    provider: Annotated[
        list[str] | None,
        typer.Option("--provider", help="Co-provider KEY_ID:BASIS_POINTS (replaces them)."),
    ] = None,
    fields: FieldsOption = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="New content: digest, rows, columns, sample from FILE."),
    ] = None,
    file_format: Annotated[
        str | None, typer.Option("--format", help="With --data: csv, tsv, jsonl, parquet, …")
    ] = None,
    sample_rows: Annotated[
        int, typer.Option("--sample-rows", min=0, max=100, help="With --data: sample rows.")
    ] = 5,
    custody: Annotated[str | None, typer.Option("--custody", help="provider or exchange.")] = None,
    delivery_window: Annotated[
        int | None, typer.Option("--delivery-window", min=60, help="Seconds to deliver.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the new fields; change nothing.")
    ] = False,
) -> None:
    """Edit a draft or a rejected listing (it becomes a draft again): change the fields
    and declarations you name, keep the rest; then submit it again."""
    if custody is not None and custody not in CUSTODIES:
        raise CLIError(f"--custody is one of {', '.join(CUSTODIES)}", EXIT_USAGE)
    client = inv.client()
    current = client.listing(listing)
    if current.state not in EDITABLE_STATES:
        hint = (
            f"; declare new content with `{inv.again('provider', 'new-version', listing, 'FILE')}`"
            if current.state == "published"
            else ""
        )
        raise CLIError(
            f"listing {listing} is {current.state}: only a draft or a rejected listing can be "
            f"edited{hint}",
            EXIT_FAILED,
        )
    content = current.content_fields()
    overrides = _fields_file(fields)
    declarations = _declarations(
        dict(content.get("declarations") or {}),
        dict(overrides.pop("declarations", None) or {}),
        {
            "classification": classification,
            "personal_information": personal_information,
            "pi_legal_basis": pi_legal_basis,
            "source_legality": source_legality,
            "permitted_purposes": purpose or None,
        },
    )
    content.update(overrides)
    flags: dict[str, Any] = {
        "title": title,
        "description": description,
        "category": category,
        "tags": tag or None,
        "update_frequency": update_frequency,
        "licence": licence,
        "usage_terms": usage_terms,
        "pricing": _pricing(price, free, pricing),
        "custody": custody,
        "delivery_window_s": delivery_window,
        "providers": _shares(provider, client.key_id or "") if provider else None,
    }
    content.update({k: v for k, v in flags.items() if v is not None})
    if data is not None:
        content.update(_file_fields(_describe(inv, data, file_format, sample_rows)))
    content["declarations"] = declarations
    if dry_run:
        inv.out.json(content)  # JSON in both modes: it is what would be signed
        return
    edited = client.update_listing(listing, content)

    def human(d: dict[str, Any]) -> None:
        show_listing(inv.out, d, action="edit")
        inv.out.line(f"next: [bold]{escape(inv.again('provider', 'submit', listing))}[/]")

    inv.out.result(edited, human)


def queue(
    inv: Invocation,
    limit: Annotated[int, typer.Option("--limit", min=1, max=200, help="Most of each kind.")] = 50,
) -> None:
    """What awaits an operator: listings submitted or under review (longest waiting
    first) and providers awaiting approval."""
    waiting = inv.client().operator_queue(limit=limit)
    inv.out.result(waiting, lambda d: show_queue(inv.out, d, inv.again))


def register(provider_app: typer.Typer, operator_app: typer.Typer) -> None:
    command(provider_app, "listings")(listings)
    command(provider_app, "edit")(edit)
    command(operator_app, "queue")(queue)
