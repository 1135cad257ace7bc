"""``shancheng provider …``: register, list a dataset, upload its content, see sales.

``create-listing FILE`` describes the file (format, SM3, size, rows, columns,
sample: :func:`clients.datasets.describe_file`) and drafts a listing whose
content digest (and row root) commits to those exact bytes; flags and
``--fields FILE`` (a JSON object of listing fields) add or override the rest.
Then ``submit`` it for the operators' review. In provider custody (the default)
the data stays with you: run ``agent`` beside it, which delivers each paid
order encrypted to its buyer. In exchange custody (``--custody exchange``)
``upload`` the bytes (any time before delisting; the exchange checks them
against the committed digest). ``--computation-offer OFFER.json`` offers
aggregate queries on the data (docs/computations.md): the agent answers them,
and the rows never leave your machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from clients.cli._common import CLIError
from clients.cli._runtime import EXIT_FAILED, EXIT_USAGE, Invocation, command
from clients.cli._views import show_account, show_listing, show_orders, show_participant
from clients.cli.output import parse_yuan
from clients.datasets import DatasetDescription, describe_file

provider_app = typer.Typer(
    name="provider",
    help="Providers: register, list datasets, upload their content, see sales and payouts.",
    no_args_is_help=True,
)

ListingArg = Annotated[str, typer.Argument(help="The listing's id (UUID).", show_default=False)]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (recorded in the log).")]
CUSTODIES = ("provider", "exchange")
UPDATE_FREQUENCIES = (
    "once",
    "realtime",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "quarterly",
    "yearly",
)


@command(provider_app, "register")
def register(
    inv: Invocation,
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "provider",
) -> None:
    """Register your key as a provider (an operator approves you before you can submit)."""
    participant = inv.client().register(name, "provider")
    inv.out.result(participant, lambda d: show_participant(inv.out, d))


def _shares(values: list[str], own_key_id: str) -> list[dict[str, Any]]:
    """``KEY_ID:BPS`` → provider shares; without any, the caller alone at 10,000 bp."""
    if not values:
        return [{"key_id": own_key_id, "share_bps": 10_000}]
    shares = []
    for value in values:
        key_id, _, bps = value.partition(":")
        if not key_id or not bps.isdigit():
            raise CLIError(f"--provider {value!r}: expected KEY_ID:BASIS_POINTS", EXIT_USAGE)
        shares.append({"key_id": key_id, "share_bps": int(bps)})
    return shares


def _pricing(price: str | None, free: bool, pricing: str | None) -> dict[str, Any] | None:
    given = [x for x in (price is not None, free, pricing is not None) if x]
    if len(given) > 1:
        raise CLIError("give one of --price, --free and --pricing", EXIT_USAGE)
    if price is not None:
        try:
            return {"model": "fixed", "price": parse_yuan(price)}
        except ValueError as exc:
            raise CLIError(f"--price: {exc}", EXIT_USAGE) from None
    if free:
        return {"model": "free"}
    if pricing is not None:
        try:
            parsed = json.loads(pricing)
        except ValueError as exc:
            raise CLIError(f"--pricing is not JSON: {exc}", EXIT_USAGE) from None
        if not isinstance(parsed, dict):
            raise CLIError("--pricing is a JSON object (see docs: model, amounts in fen)", 2)
        return parsed
    return None


def _fields_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CLIError(f"--fields {path} is not JSON: {exc}", EXIT_USAGE) from None
    if not isinstance(data, dict):
        raise CLIError(f"--fields {path} must hold a JSON object of listing fields", EXIT_USAGE)
    return data


def _offer_file(path: Path | None) -> dict[str, Any] | None:
    from ledger.computation.offer import ComputationOffer, OfferFormatError

    if path is None:
        return None
    try:
        return ComputationOffer.from_json(path.read_bytes()).to_dict()
    except OfferFormatError as exc:
        raise CLIError(f"--computation-offer {path}: {exc}", EXIT_USAGE) from None


def _policy_file(path: Path | None) -> dict[str, Any] | None:
    """The usage policy in FILE (docs/policies.md), strictly parsed and normalised."""
    from ledger.protocol.policy import Policy, PolicyFormatError

    if path is None:
        return None
    try:
        return Policy.from_json(path.read_bytes(), "policy").to_dict()
    except PolicyFormatError as exc:
        raise CLIError(f"--policy {path}: {exc}", EXIT_USAGE) from None


# Options both `create-listing` and `edit` take (one definition each).
DescriptionOption = Annotated[str | None, typer.Option("--description")]
CategoryOption = Annotated[str | None, typer.Option("--category")]
PriceOption = Annotated[
    str | None, typer.Option("--price", help="Fixed price in yuan, e.g. 199 or 199.50.")
]
FreeOption = Annotated[bool, typer.Option("--free", help="Free of charge.")]
UpdateFrequencyOption = Annotated[
    str | None, typer.Option("--update-frequency", help=", ".join(UPDATE_FREQUENCIES))
]
LicenceOption = Annotated[str | None, typer.Option("--licence")]
UsageTermsOption = Annotated[str | None, typer.Option("--usage-terms")]
ClassificationOption = Annotated[
    str | None, typer.Option("--classification", help="一般 or 重要 (核心 is refused).")
]
PersonalInformationOption = Annotated[
    bool | None,
    typer.Option(
        "--personal-information/--no-personal-information",
        help="Does it hold personal information?",
        show_default=False,
    ),
]
PiLegalBasisOption = Annotated[str | None, typer.Option("--pi-legal-basis")]
SourceLegalityOption = Annotated[str | None, typer.Option("--source-legality")]
FieldsOption = Annotated[
    Path | None,
    typer.Option("--fields", help="JSON file of listing fields (flags override it)."),
]


PolicyOption = Annotated[
    Path | None,
    typer.Option(
        "--policy",
        help="JSON file of the usage policy (docs/policies.md: purposes, regions, days, "
        "onward transfer, attribution); enforced on every order.",
    ),
]


@command(provider_app, "create-listing")
def create_listing(
    inv: Invocation,
    file: Annotated[Path, typer.Argument(help="The dataset (CSV, TSV, JSON Lines, Parquet, …).")],
    title: Annotated[str | None, typer.Option("--title", help="Listing title.")] = None,
    description: DescriptionOption = None,
    category: CategoryOption = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Repeatable.")] = None,
    price: PriceOption = None,
    free: FreeOption = False,
    pricing: Annotated[
        str | None,
        typer.Option("--pricing", help='Pricing JSON in fen, e.g. \'{"model": "tiers", …}\'.'),
    ] = None,
    update_frequency: UpdateFrequencyOption = None,
    licence: LicenceOption = None,
    usage_terms: UsageTermsOption = None,
    classification: ClassificationOption = None,
    personal_information: PersonalInformationOption = None,
    pi_legal_basis: PiLegalBasisOption = None,
    source_legality: SourceLegalityOption = None,
    purpose: Annotated[
        list[str] | None, typer.Option("--purpose", help="Permitted purpose (repeatable).")
    ] = None,
    provider: Annotated[
        list[str] | None,
        typer.Option(
            "--provider", help="Co-provider KEY_ID:BASIS_POINTS (repeatable; default: you alone)."
        ),
    ] = None,
    fields: FieldsOption = None,
    file_format: Annotated[
        str | None,
        typer.Option("--format", help="csv, tsv, jsonl, parquet or binary (default: by suffix)."),
    ] = None,
    sample_rows: Annotated[
        int, typer.Option("--sample-rows", min=0, max=100, help="Sample rows to publish.")
    ] = 5,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the fields; draft nothing.")
    ] = False,
    custody: Annotated[
        str,
        typer.Option(
            "--custody",
            help="provider: your agent keeps and delivers the data; exchange: you upload it.",
        ),
    ] = "provider",
    delivery_window: Annotated[
        int | None,
        typer.Option(
            "--delivery-window",
            min=60,
            help="Seconds you have to deliver a paid order (default: the exchange's, 1 day).",
        ),
    ] = None,
    computation_offer: Annotated[
        Path | None,
        typer.Option(
            "--computation-offer",
            help="JSON file of a computation offer (docs/computations.md; provider custody).",
        ),
    ] = None,
    policy: PolicyOption = None,
) -> None:
    """Draft a listing for FILE: digest, size, rows, row root, columns and sample are
    read from it."""
    if custody not in CUSTODIES:
        raise CLIError(f"--custody is one of {', '.join(CUSTODIES)}", EXIT_USAGE)
    client = inv.client()
    overrides = _fields_file(fields)
    declarations = dict(overrides.pop("declarations", None) or {})
    for key, value in (
        ("classification", classification),
        ("personal_information", personal_information),
        ("pi_legal_basis", pi_legal_basis),
        ("source_legality", source_legality),
        ("permitted_purposes", purpose or None),
    ):
        if value is not None:
            declarations[key] = value
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
        "computation": _offer_file(computation_offer),
        "policy": _policy_file(policy),
    }
    overrides.update({k: v for k, v in flags.items() if v is not None})
    if provider or "providers" not in overrides:
        overrides["providers"] = _shares(provider or [], client.key_id or "")
    overrides.setdefault("update_frequency", "once")
    if declarations:
        overrides["declarations"] = declarations
    missing = [k for k in ("title", "category", "pricing") if k not in overrides]
    if missing:
        flag_names = {
            "title": "--title",
            "category": "--category",
            "pricing": "--price/--free/--pricing",
        }
        raise CLIError(
            "a listing needs " + ", ".join(flag_names[k] for k in missing) + " (or --fields)",
            EXIT_USAGE,
        )
    described = _describe(inv, file, file_format, sample_rows)
    listing_fields = {**_file_fields(described), **overrides}
    if dry_run:
        inv.out.json(listing_fields)  # JSON in both modes: it is what would be signed
        return
    listing = client.create_listing(listing_fields)
    inv.out.result(listing, lambda d: _drafted(inv, d))


def _describe(
    inv: Invocation, file: Path, file_format: str | None, sample_rows: int
) -> DatasetDescription:
    """:func:`describe_file` (the SDK's ``listing_from_file`` uses it too) with a progress
    bar: one streamed pass gives the SM3 digest and the rows."""
    size = file.stat().st_size
    with inv.out.progress(f"SM3 {file.name}", size) as progress:
        if progress is None:
            return describe_file(file, format=file_format, sample_rows=sample_rows)
        done = [0]

        def advance(n: int) -> None:
            done[0] += n
            progress(done[0], size)

        return describe_file(file, format=file_format, sample_rows=sample_rows, progress=advance)


def _file_fields(described: DatasetDescription) -> dict[str, Any]:
    """The listing fields the file determines, with its row root."""
    return {**described.to_listing_fields(), "row_root": described.row_root}


def _drafted(inv: Invocation, data: dict[str, Any]) -> None:
    show_listing(inv.out, data, action="draft")
    listing_id = data.get("id")
    if data.get("custody") == "exchange":
        upload = inv.again("provider", "upload", listing_id, data.get("version"), "FILE")
        then = f"[bold]{escape(upload)}[/]"
    else:
        agent = inv.again(
            "provider", "agent", "--dataset", f"{listing_id}=FILE", "--state-dir", "DIR"
        )
        then = f"run [bold]{escape(agent)}[/]"
    submit = escape(inv.again("provider", "submit", listing_id))
    inv.out.line(f"next: [bold]{submit}[/], then {then}")


@command(provider_app, "submit")
def submit(inv: Invocation, listing: ListingArg) -> None:
    """Submit a draft for the operators' compliance review (its declarations must be
    complete: the check publication makes)."""
    from clients.sdk.errors import APIError

    try:
        result = inv.client().submit_listing(listing)
    except APIError as exc:
        if exc.code != "declarations_incomplete":
            raise
        edit = inv.again("provider", "edit", listing, "--classification", "一般", "…")
        raise CLIError(
            f"{exc.code}: {exc.message} (HTTP {exc.status_code}); complete them with `{edit}`",
            EXIT_FAILED,
        ) from None
    inv.out.result(result, lambda d: show_listing(inv.out, d, action="submission"))


@command(provider_app, "upload")
def upload(
    inv: Invocation,
    listing: ListingArg,
    version: Annotated[int, typer.Argument(help="The listing version the bytes are.", min=1)],
    file: Annotated[Path, typer.Argument(help="The dataset file (its SM3 must be the listing's).")],
) -> None:
    """Upload a version's content (streamed; the exchange checks it against the digest)."""
    size = file.stat().st_size
    with inv.out.progress(f"upload {file.name}", size) as progress:
        uploaded = inv.client().upload_content(listing, version, file, progress=progress)

    def human(d: dict[str, Any]) -> None:
        state = "uploaded" if d.get("created", True) else "already uploaded (same bytes)"
        inv.out.line(
            f"{state}: listing {d.get('listing_id')} v{d.get('version')}, "
            f"{d.get('size'):,} bytes, SM3 {d.get('sm3')}"
        )

    inv.out.result(uploaded, human)


@command(provider_app, "new-version")
def new_version(
    inv: Invocation,
    listing: ListingArg,
    file: Annotated[Path, typer.Argument(help="The new version's dataset file.")],
    file_format: Annotated[str | None, typer.Option("--format", help="Default: by suffix.")] = None,
    upload_now: Annotated[
        bool, typer.Option("--upload", help="Upload the content right after declaring it.")
    ] = False,
    policy: PolicyOption = None,
) -> None:
    """Declare the next content version of a published listing (its digest from FILE;
    its usage policy from --policy, else the current version's)."""
    client = inv.client()
    fields = _file_fields(_describe(inv, file, file_format, 0))
    new_policy = _policy_file(policy)
    if new_policy is not None:
        fields["policy"] = new_policy
    result = client.new_version(listing, fields)
    data: dict[str, Any] = {"listing": result}
    if upload_now:
        version = result.added_version.version if result.added_version else result.version
        with inv.out.progress(f"upload {file.name}", file.stat().st_size) as progress:
            data["upload"] = client.upload_content(listing, version, file, progress=progress)

    def human(d: dict[str, Any]) -> None:
        show_listing(inv.out, d["listing"], action="new version")
        if "upload" in d:
            inv.out.line(f"uploaded {d['upload'].get('size'):,} bytes")

    inv.out.result(data, human)


@command(provider_app, "delist")
def delist(inv: Invocation, listing: ListingArg, reason: ReasonOption) -> None:
    """Delist a published listing (existing buyers keep their access rules)."""
    result = inv.client().delist(listing, reason)
    inv.out.result(result, lambda d: show_listing(inv.out, d, action="delisting"))


@command(provider_app, "revoke")
def revoke(
    inv: Invocation,
    order: Annotated[str, typer.Argument(help="The order id.")],
    reason: ReasonOption,
) -> None:
    """Revoke a buyer's access to an order's data (refund rules: docs/money.md)."""
    from clients.cli._views import show_order

    result = inv.client().revoke(order, reason)
    inv.out.result(result, lambda d: show_order(inv.out, d, action="revocation"))


@command(provider_app, "sales")
def sales(inv: Invocation) -> None:
    """Orders of your listings."""
    page = inv.client().sales()
    inv.out.result(page, lambda d: show_orders(inv.out, _items(d), "Sales"))


@command(provider_app, "account")
def account(inv: Invocation) -> None:
    """Your balance and movements (payouts, fees, refunds)."""
    result = inv.client().account()
    inv.out.result(result, lambda d: show_account(inv.out, d))


@command(provider_app, "agent")
def agent(
    inv: Invocation,
    state_dir: Annotated[
        Path, typer.Option("--state-dir", help="The agent's own small state (created if missing).")
    ],
    dataset: Annotated[
        list[str],
        typer.Option(
            "--dataset", help="LISTING_ID=PATH: a provider-held listing and its file (repeatable)."
        ),
    ],
    query_time_limit: Annotated[
        float,
        typer.Option("--query-time-limit", min=0.001, help="Seconds a query may run (timeout)."),
    ] = 10.0,
    memory_limit: Annotated[
        str, typer.Option("--memory-limit", help="DuckDB's memory limit for queries, e.g. 1GB.")
    ] = "1GB",
) -> None:
    """Run the provider agent: deliver every paid order of these listings, encrypted to
    its buyer, and answer their computations, until SIGTERM/SIGINT. Outbound
    connections only; one log line per step."""
    from agent.compute import ComputeLimits
    from agent.runner import Agent

    datasets: dict[str, Path] = {}
    for value in dataset:
        listing_id, sep, path = value.partition("=")
        if not sep or not listing_id or not path:
            raise CLIError(f"--dataset {value!r}: expected LISTING_ID=PATH", EXIT_USAGE)
        if not Path(path).is_file():
            raise CLIError(f"--dataset {value!r}: {path} is not a file", EXIT_USAGE)
        datasets[listing_id] = Path(path)
    limits = ComputeLimits(memory_limit=memory_limit, time_limit_s=query_time_limit)
    code = Agent(inv.client(), state_dir, datasets, limits=limits).run()
    if code:
        raise typer.Exit(code)


def _items(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, dict):
        return list(data.get("items") or [])
    return list(data or [])


def register_group(app: typer.Typer) -> None:
    app.add_typer(provider_app, name="provider")
