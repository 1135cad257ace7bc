"""``shancheng buyer …``: find, quote, order, download, accept or dispute datasets.

``receive ORDER --out PATH`` takes a provider-held delivery: the record signed
by the provider, the ciphertext, the decryption, and the plaintext against what
the provider signed for the listing version (the rows bought: a range proof
against the version's row root). A failed check names itself, leaves nothing at
PATH, exits 3, and can write the evidence (``--evidence FILE``) for
``dispute --evidence FILE``.

``query LISTING_OR_ORDER "SQL"`` asks an aggregate query on a computation order
(``quote LISTING --computation --queries N`` then ``order`` buys one): the
provider's agent runs it on data that never leaves the provider; the answer is
checked (the provider's signature, both SM3 digests, the decryption) and printed
as a table. A refusal is one line, ``error: query_refused: <reason>``, exit 1.

``download ORDER`` does the whole delivery of an exchange-held listing: asks
for the envelope (the content key sealed to your SM2 key; a ``delivery.issued``
record), downloads the SM4-GCM ciphertext (resuming an interrupted ``.part`` with HTTP Range),
decrypts it and checks its SM3 against the digest the provider committed in
the listing. A mismatch removes the output and exits 1. Only then is the data
yours to ``accept`` (which settles the payment) or ``dispute``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from clients.cli._common import CLIError
from clients.cli._runtime import EXIT_FAILED, EXIT_USAGE, Invocation, command
from clients.cli._views import (
    show_account,
    show_listing,
    show_order,
    show_orders,
    show_participant,
    show_quote,
    show_search,
)
from clients.cli.output import parse_yuan, plain, yuan
from ledger.delivery import DigestMismatchError
from ledger.errors import DecryptionError
from ledger.protocol.policy import LEGAL_BASES, PURPOSES

PURPOSE_NAMES = sorted(PURPOSES)
BASIS_NAMES = list(LEGAL_BASES)

buyer_app = typer.Typer(
    name="buyer",
    help="Buyers: search, quote, order, download (decrypt + verify), accept or dispute.",
    no_args_is_help=True,
)

OrderArg = Annotated[str, typer.Argument(help="The order id.", show_default=False)]
ListingArg = Annotated[str, typer.Argument(help="The listing's id (UUID).", show_default=False)]
RowsOption = Annotated[
    int | None, typer.Option("--rows", min=1, help="Rows to buy (tiered pricing).")
]
PeriodsOption = Annotated[
    int | None, typer.Option("--periods", min=1, help="Periods to buy (subscriptions).")
]
RowOffsetOption = Annotated[
    int | None,
    typer.Option("--row-offset", min=0, help="First row to buy (with --rows; default 0)."),
]
EXIT_CHECK_FAILED = 3

_EXTENSIONS = {
    "csv": ".csv",
    "tsv": ".tsv",
    "jsonl": ".jsonl",
    "json": ".json",
    "parquet": ".parquet",
    "xlsx": ".xlsx",
}


def _terms(rows: int | None, periods: int | None, row_offset: int | None = None) -> dict[str, int]:
    if rows is not None and periods is not None:
        raise CLIError("give --rows or --periods, not both", EXIT_USAGE)
    if row_offset is not None and rows is None:
        raise CLIError("--row-offset goes with --rows", EXIT_USAGE)
    terms = {}
    if rows is not None:
        terms["rows"] = rows
    if row_offset is not None:
        terms["row_offset"] = row_offset
    if periods is not None:
        terms["periods"] = periods
    return terms


def _fen(option: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_yuan(text)
    except ValueError as exc:
        raise CLIError(f"{option}: {exc}", EXIT_USAGE) from None


@command(buyer_app, "register")
def register(
    inv: Invocation,
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "buyer",
) -> None:
    """Register your key as a buyer."""
    participant = inv.client().register(name, "buyer")
    inv.out.result(participant, lambda d: show_participant(inv.out, d))


@command(buyer_app, "search")
def search(
    inv: Invocation,
    query: Annotated[
        list[str] | None,
        typer.Argument(help="Words to find (all must match); several words need no quotes."),
    ] = None,
    category: Annotated[str | None, typer.Option("--category")] = None,
    min_price: Annotated[str | None, typer.Option("--min-price", help="Yuan.")] = None,
    max_price: Annotated[str | None, typer.Option("--max-price", help="Yuan.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Repeatable.")] = None,
    pricing_model: Annotated[
        str | None, typer.Option("--pricing-model", help="free, fixed, tiers, subscription.")
    ] = None,
    custody: Annotated[
        str | None, typer.Option("--custody", help="provider or exchange: who holds the data.")
    ] = None,
    computation: Annotated[
        bool | None,
        typer.Option(
            "--computation/--no-computation", help="Offers computations on the data, or not."
        ),
    ] = None,
    sort: Annotated[
        str | None, typer.Option("--sort", help="relevance, newest, price_asc, price_desc, …")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100)] = 20,
    cursor: Annotated[str | None, typer.Option("--cursor", help="Next page.")] = None,
) -> None:
    """Search published listings (no key needed); `search 山城 气象` = `search "山城 气象"`."""
    words = " ".join(query or ()).strip() or None
    filters: dict[str, Any] = {
        "category": category,
        "min_price": _fen("--min-price", min_price),
        "max_price": _fen("--max-price", max_price),
        "tag": tag or None,
        "pricing_model": pricing_model,
        "custody": custody,
        "computation": computation,
        "sort": sort,
        "limit": limit,
        "cursor": cursor,
    }
    page = inv.client(signed=False).search(
        words, **{k: v for k, v in filters.items() if v is not None}
    )
    inv.out.result(page, lambda d: show_search(inv.out, d))


@command(buyer_app, "show")
def show(inv: Invocation, listing: ListingArg) -> None:
    """A listing's details, columns and sample rows."""
    signed = inv.config.key_file is not None  # a signed read shows your drafts too
    client = inv.client(signed=signed)
    result = client.listing(listing)
    inv.out.result(result, lambda d: show_listing(inv.out, d, action="listing"))
    if not inv.out.as_json:  # where the asking price falls (docs/pricing.md)
        from clients.cli._refprice_view import asking_line

        inv.out.line(asking_line(client.reference_price(listing)))


@command(buyer_app, "reference-price")
def reference_price(inv: Invocation, listing: ListingArg) -> None:
    """A listing's reference price: cost and market methods, where its asking price falls
    (docs/pricing.md); `shancheng audit reference-price` recomputes it from the log."""
    from clients.cli._refprice_view import show_reference_price

    signed = inv.config.key_file is not None
    result = inv.client(signed=signed).reference_price(listing)
    inv.out.result(result, lambda d: show_reference_price(inv.out, d))


@command(buyer_app, "quote")
def quote(
    inv: Invocation,
    listing: ListingArg,
    rows: RowsOption = None,
    periods: PeriodsOption = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Save the quote (JSON) for `buyer order`.")
    ] = None,
    row_offset: RowOffsetOption = None,
    computation: Annotated[
        bool,
        typer.Option("--computation", help="Buy queries on a computation listing, not rows."),
    ] = False,
    queries: Annotated[
        int | None,
        typer.Option("--queries", min=1, help="Queries to buy (offers priced per query)."),
    ] = None,
) -> None:
    """Ask the exchange for a signed price quote (valid for a few minutes)."""
    terms: dict[str, Any] = dict(_terms(rows, periods, row_offset))
    if queries is not None and not computation:
        raise CLIError("--queries goes with --computation", EXIT_USAGE)
    if computation:
        if terms:
            raise CLIError("--computation buys queries, not --rows or --periods", EXIT_USAGE)
        terms = {"computation": True, "queries": queries}
    issued = inv.client().quote(listing, **terms)
    if out_file is not None:
        out_file.write_text(
            json.dumps(issued.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )

    def human(d: dict[str, Any]) -> None:
        show_quote(inv.out, d)
        if out_file is not None:
            again = inv.again("buyer", "order", out_file)
            inv.out.line(f"saved to {escape(str(out_file))}: order it with `{escape(again)}`")

    inv.out.result(issued, human)


def _read_quote(path: Path) -> Any:
    from clients.sdk.market_models import Quote

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CLIError(f"{path} is not JSON: {exc}", EXIT_USAGE) from None
    if isinstance(data, dict) and isinstance(data.get("quote"), dict):
        data = data["quote"]
    try:
        return Quote.from_dict(data)
    except Exception as exc:  # RecordFormatError and friends: name the file
        raise CLIError(f"{path} does not hold a quote: {exc}", EXIT_USAGE) from None


@command(buyer_app, "order")
def order(
    inv: Invocation,
    quote_file: Annotated[
        Path | None, typer.Argument(help="A quote saved by `buyer quote --out`.")
    ] = None,
    listing: Annotated[
        str | None, typer.Option("--listing", help="Quote and order this listing in one go.")
    ] = None,
    rows: RowsOption = None,
    periods: PeriodsOption = None,
    max_amount: Annotated[
        str | None,
        typer.Option("--max-amount", help="Refuse to order if the quote exceeds this (yuan)."),
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Reuse to retry safely.")
    ] = None,
    row_offset: RowOffsetOption = None,
    purpose: Annotated[
        str,
        typer.Option(
            "--purpose",
            help="What you will use the data for (docs/policies.md): " + ", ".join(PURPOSE_NAMES),
        ),
    ] = "internal_analytics",
    region: Annotated[
        str,
        typer.Option("--region", help="Where you will process it (ISO 3166-1 alpha-2, e.g. CN)."),
    ] = "CN",
    legal_basis: Annotated[
        str | None,
        typer.Option(
            "--legal-basis",
            help="For personal information, the PIPL Art. 13 basis: " + ", ".join(BASIS_NAMES),
        ),
    ] = None,
) -> None:
    """Place an order from a saved quote, or from a fresh one (--listing); the amount
    moves from your balance into escrow. The order declares its purpose and processing
    region (and legal basis): checked first against the listing's usage policy, and
    nothing is ordered when it does not allow them."""
    if (quote_file is None) == (listing is None):
        raise CLIError("give a QUOTE_FILE or --listing ID (one of them)", EXIT_USAGE)
    client = inv.client()
    if quote_file is not None:
        if rows is not None or periods is not None or row_offset is not None:
            raise CLIError("--rows/--periods go with --listing (the quote has its terms)", 2)
        issued = _read_quote(quote_file)
    else:
        assert listing is not None
        issued = client.quote(listing, **_terms(rows, periods, row_offset))
    limit = _fen("--max-amount", max_amount)
    if limit is not None and issued.amount > limit:
        raise CLIError(
            f"the quote is {yuan(issued.amount)}, above --max-amount {yuan(limit)}: not ordered",
            1,
        )
    _check_policy(client, issued.listing_id, purpose, region, legal_basis)
    placed = client.place_order(
        issued,
        purpose=purpose,
        region=region,
        legal_basis=legal_basis,
        idempotency_key=idempotency_key,
    )
    inv.out.result(placed, lambda d: _ordered(inv, d))


def _check_policy(
    client: Any, listing_id: str, purpose: str, region: str, legal_basis: str | None
) -> None:
    """Refuse here (exit 2 for an unknown name, 1 for a clause the listing's policy
    does not allow) what the exchange would refuse with 422 policy_violation."""
    from ledger.records import RecordFormatError

    try:
        broken = client.check_policy(
            listing_id, purpose=purpose, region=region, legal_basis=legal_basis
        )
    except RecordFormatError as exc:
        raise CLIError(f"{exc}", EXIT_USAGE) from None
    if broken:
        clauses = "; ".join(f"{v.clause}: {v.message}" for v in broken)
        raise CLIError(
            f"the listing's usage policy does not allow this order ({clauses}): not ordered", 1
        )


def _ordered(inv: Invocation, data: dict[str, Any]) -> None:
    show_order(inv.out, data, action="order")
    order_id = data.get("id")
    if data.get("custody") == "provider":  # the provider's agent delivers it
        then = inv.again("buyer", "receive", order_id, "--out", "FILE")
    else:
        then = inv.again("buyer", "download", order_id)
    inv.out.line(f"next: [bold]{escape(then)}[/]")


@command(buyer_app, "orders")
def orders(inv: Invocation) -> None:
    """Your orders."""
    page = inv.client().orders()
    inv.out.result(page, lambda d: show_orders(inv.out, _items(d), "Orders"))


def _items(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, dict):
        return list(data.get("items") or [])
    return list(data or [])


@command(buyer_app, "status")
def status(inv: Invocation, order_id: OrderArg) -> None:
    """One order: state, deadlines, settlement, and each of its records in the log
    (index, anchor state: its receipt is ready once anchored)."""
    from clients.cli.workflow_views import show_records

    client = inv.client()
    result = {**plain(client.order(order_id)), "records": client.order_records(order_id).items}

    def human(d: dict[str, Any]) -> None:
        show_order(inv.out, d, action="order")
        show_records(inv.out, d["records"])

    inv.out.result(result, human)


@command(buyer_app, "balance")
def balance(
    inv: Invocation,
    movements: Annotated[
        bool, typer.Option("--movements/--no-movements", help="List the movements too.")
    ] = False,
) -> None:
    """Your balance: available, and held in escrow."""
    result = inv.client().account()
    inv.out.result(result, lambda d: show_account(inv.out, d, movements=movements))


@command(buyer_app, "download")
def download(
    inv: Invocation,
    order_id: OrderArg,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="Where the decrypted data goes (default: ./ORDER.<format>)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out.")] = False,
    keep_ciphertext: Annotated[
        bool, typer.Option("--keep-ciphertext", help="Keep the downloaded ciphertext file.")
    ] = False,
) -> None:
    """Get the envelope, download (resumably), decrypt and verify the SM3 digest."""
    client = inv.client()
    if out_file is None:
        out_file = Path(order_id + _extension(client, order_id))
    if out_file.is_dir():
        raise CLIError(f"--out {out_file} is a directory", EXIT_USAGE)
    if out_file.exists() and not force:
        raise CLIError(f"{out_file} already exists (use --force to replace it)", EXIT_USAGE)
    envelope = client.request_delivery(order_id)
    ciphertext = out_file.with_name(out_file.name + ".sm4")
    with inv.out.progress(f"download {order_id[:8]}", envelope.ciphertext_size) as progress:
        client.download(envelope, ciphertext, progress=progress, resume=True)
    try:
        opened = client.open_delivery(envelope, ciphertext, out_file)
    except (DigestMismatchError, DecryptionError) as exc:
        raise CLIError(
            f"the delivery does not verify: {exc}; nothing was written to {out_file}", 1
        ) from exc
    if not keep_ciphertext:
        ciphertext.unlink(missing_ok=True)
    result = {
        "order_id": order_id,
        "path": str(out_file),
        "size": getattr(opened, "size", envelope.size),
        "sm3": getattr(opened, "sm3", envelope.content_digest),
        "verified": True,
        "ciphertext": str(ciphertext) if keep_ciphertext else None,
        "envelope": envelope,
    }

    def human(d: dict[str, Any]) -> None:
        inv.out.line(
            f"[green]✓[/] {d['path']}: {d['size']:,} bytes, SM3 {d['sm3']} matches the listing"
        )
        log = (d.get("envelope") or {}).get("log") or {}
        if "index" in log:
            inv.out.line(f"delivery logged at index [bold]{log['index']}[/]")
        inv.out.line(
            f"next: [bold]{escape(inv.again('buyer', 'accept', order_id))}[/] "
            f"(or dispute it with --reason before the deadline)"
        )

    inv.out.result(result, human)


def _extension(client: Any, order_id: str) -> str:
    """The file suffix of the order's listing format (``.bin`` when unknown)."""
    try:
        listing = client.listing(client.order(order_id).listing_id)
    except Exception:  # only a file name hangs on it; the real calls report errors
        return ".bin"
    return _EXTENSIONS.get(getattr(listing, "format", ""), ".bin")


@command(buyer_app, "accept")
def accept(inv: Invocation, order_id: OrderArg) -> None:
    """Accept a delivered order: the escrow is paid out to the providers (settlement)."""
    result = inv.client().accept(order_id)
    inv.out.result(result, lambda d: show_order(inv.out, d, action="acceptance"))


@command(buyer_app, "receive")
def receive(
    inv: Invocation,
    order_id: OrderArg,
    out_file: Annotated[Path, typer.Option("--out", help="Where the checked data goes.")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out.")] = False,
    evidence_file: Annotated[
        Path | None,
        typer.Option("--evidence", help="On a failed check, write its evidence (JSON) here."),
    ] = None,
) -> None:
    """Receive a provider-held delivery: check the provider's signature, the ciphertext,
    the decryption and the data (rows: the range proof), then write --out."""
    from clients.sdk.errors import DeliveryCheckError

    if out_file.is_dir():
        raise CLIError(f"--out {out_file} is a directory", EXIT_USAGE)
    if out_file.exists() and not force:
        raise CLIError(f"{out_file} already exists (use --force to replace it)", EXIT_USAGE)
    client = inv.client()
    try:
        with inv.out.progress(f"download {order_id[:8]}", None) as progress:
            received = client.receive(order_id, out_file, progress=progress)
    except DeliveryCheckError as exc:
        if evidence_file is not None:
            evidence_file.write_text(json.dumps(exc.evidence, indent=2) + "\n", encoding="utf-8")
        hint = f"; evidence in {evidence_file}" if evidence_file is not None else ""
        raise CLIError(
            f"check {exc.check} failed: {exc.message}; nothing was written to {out_file}{hint}",
            EXIT_CHECK_FAILED,
        ) from exc
    rows = received.rows
    result = {
        "order_id": order_id,
        "path": str(received.path),
        "size": received.size,
        "sm3": received.sm3,
        "rows": None if rows is None else rows.to_dict(),
        "verified": True,
    }

    def human(d: dict[str, Any]) -> None:
        what = (
            "the whole dataset"
            if rows is None
            else (f"rows [{rows.offset}, {rows.offset + rows.count}) proven against the row root")
        )
        inv.out.line(
            f"[green]✓[/] {d['path']}: {d['size']:,} bytes, {what}, signed by the provider"
        )
        accept = escape(inv.again("buyer", "accept", order_id))
        inv.out.line(f"next: [bold]{accept}[/] (or dispute it)")

    inv.out.result(result, human)


@command(buyer_app, "query")
def query(
    inv: Invocation,
    target: Annotated[
        str,
        typer.Argument(
            help="Your computation order's id, or the listing's (your one open computation "
            "order on it).",
            show_default=False,
        ),
    ],
    sql: Annotated[str, typer.Argument(help="The aggregate query.", show_default=False)],
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait for the answer.")
    ] = 120.0,
) -> None:
    """Ask an aggregate query on provider-held data; wait, check and decrypt the answer
    and print it as a table."""
    from clients.sdk.errors import ComputationCheckError, QueryRefusedError

    client = inv.client()
    try:
        answer = client.query(target, sql, timeout=timeout)
    except QueryRefusedError as exc:
        raise CLIError(f"query_refused: {exc.reason}", EXIT_FAILED) from None
    except ComputationCheckError as exc:
        raise CLIError(
            f"check {exc.check} failed: {exc.message}; the answer was not shown",
            EXIT_CHECK_FAILED,
        ) from None
    except TimeoutError as exc:
        raise CLIError(f"no answer yet: {exc}", EXIT_FAILED) from None

    def human(d: dict[str, Any]) -> None:
        inv.out.table(
            f"computation {d['computation_id']}", d["columns"], d["rows"], empty="no groups"
        )
        inv.out.line(
            f"[green]✓[/] signed by provider {d['provider'][:16]}…, ε spent "
            f"{d['epsilon_spent']}, rows scanned {d['rows_scanned']:,}, log index "
            f"{d['log_index']}"
        )

    inv.out.result(answer.to_dict(), human)


@command(buyer_app, "dispute")
def dispute(
    inv: Invocation,
    order_id: OrderArg,
    reason: Annotated[str, typer.Option("--reason", help="What is wrong (1-1000 characters).")],
    evidence_file: Annotated[
        Path | None,
        typer.Option("--evidence", help="A JSON object to attach (e.g. from receive --evidence)."),
    ] = None,
) -> None:
    """Dispute a delivered order before its acceptance deadline (escrow is frozen)."""
    evidence = None
    if evidence_file is not None:
        try:
            evidence = json.loads(evidence_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise CLIError(f"--evidence {evidence_file} is not JSON: {exc}", EXIT_USAGE) from None
        if not isinstance(evidence, dict):
            raise CLIError(f"--evidence {evidence_file} must hold a JSON object", EXIT_USAGE)
    result = inv.client().dispute(order_id, reason, evidence=evidence)
    inv.out.result(result, lambda d: show_order(inv.out, d, action="dispute"))


@command(buyer_app, "renew")
def renew(inv: Invocation, order_id: OrderArg, periods: PeriodsOption = None) -> None:
    """Renew a subscription: a new order whose period starts when the old one ends."""
    client = inv.client()
    result = client.renew(order_id) if periods is None else client.renew(order_id, periods=periods)
    inv.out.result(result, lambda d: show_order(inv.out, d, action="renewal"))


def register_group(app: typer.Typer) -> None:
    app.add_typer(buyer_app, name="buyer")
