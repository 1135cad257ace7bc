"""Human views of the exchange's resources, shared by the provider, buyer and operator
groups. Each takes the plain (JSON-ready) form of an SDK answer, so a view reads the
API's field names and nothing else; money is shown in yuan, times in local ISO."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from clients.cli.output import Output, datetime_ms, yuan

__all__ = [
    "price_text",
    "show_account",
    "show_listing",
    "show_logged",
    "show_order",
    "show_orders",
    "show_participant",
    "show_quote",
    "show_search",
]


def show_logged(out: Output, data: Mapping[str, Any], what: str) -> None:
    """One line saying the change is in the verifiable log (when the answer says so)."""
    log = data.get("log")
    if isinstance(log, Mapping) and "index" in log:
        out.line(f"{what}: logged at index [bold]{log['index']}[/] (leaf {log.get('leaf_hash')})")


def price_text(pricing: Mapping[str, Any] | None) -> str:
    """A listing's pricing object in words (amounts in yuan)."""
    if not pricing:
        return "-"
    model = pricing.get("model")
    if model == "free":
        text = "free"
    elif model == "fixed":
        text = f"{yuan(pricing.get('price'))} fixed"
    elif model == "subscription":
        text = (
            f"{yuan(pricing.get('price_per_period'))} per {pricing.get('period_days')} days "
            f"(at most {pricing.get('max_periods')} periods)"
        )
    elif model == "tiers":
        parts = []
        for tier in pricing.get("tiers") or []:
            bound = tier.get("up_to_rows")
            upto = f"up to {bound:,} rows" if isinstance(bound, int) else "beyond"
            parts.append(f"{yuan(tier.get('price_per_1000_rows'))}/1000 rows {upto}")
        text = "; ".join(parts) or "tiers"
    else:
        text = str(model)
    if pricing.get("exclusive"):
        text += ", exclusive"
    elif pricing.get("seats"):
        text += f", {pricing['seats']} seats"
    return text


def show_participant(out: Output, data: Mapping[str, Any], *, action: str = "registration") -> None:
    out.fields(
        "Participant",
        [
            ("key id", data.get("key_id")),
            ("name", data.get("display_name")),
            ("role", data.get("role")),
            ("status", data.get("status")),
            ("registered", datetime_ms(data.get("registered_at"))),
        ],
    )
    show_logged(out, data, action)


def policy_text(policy: Any) -> str | None:
    """A usage policy in one line (docs/policies.md)."""
    if not isinstance(policy, Mapping):
        return None
    parts = []
    permitted = policy.get("permitted_purposes")
    parts.append("any purpose" if permitted is None else "for " + ", ".join(permitted))
    if policy.get("prohibited_purposes"):
        parts.append("never " + ", ".join(policy["prohibited_purposes"]))
    regions = policy.get("processing_regions")
    parts.append("anywhere" if regions is None else "in " + ", ".join(regions))
    if policy.get("access_days") is not None:
        parts.append(f"{policy['access_days']} days")
    parts.append("resale allowed" if policy.get("onward_transfer") else "no resale")
    if policy.get("attribution"):
        parts.append(f"credit: {policy['attribution']}")
    return "; ".join(parts)


def show_listing(out: Output, data: Mapping[str, Any], *, action: str | None = None) -> None:
    providers = [
        f"{p.get('key_id')} ({p.get('share_bps')} bp)" for p in data.get("providers") or []
    ]
    declarations = data.get("declarations") or {}
    rows: list[tuple[str, Any]] = [
        ("id", data.get("id")),
        ("title", data.get("title")),
        ("state", data.get("state")),
        ("category", data.get("category")),
        ("tags", data.get("tags")),
        ("price", price_text(data.get("pricing"))),
        ("version", data.get("version")),
        ("format", data.get("format")),
        ("rows", _count(data.get("row_count"))),
        ("size", _bytes(data.get("byte_size"))),
        ("SM3", data.get("content_digest")),
        ("columns", [f"{c.get('name')}:{c.get('type')}" for c in data.get("columns") or []]),
        ("providers", providers),
        ("classification", declarations.get("classification")),
        ("licence", data.get("licence")),
        ("usage policy", policy_text(data.get("policy"))),
        ("certificate", data.get("certificate") or "-"),
        ("updated", datetime_ms(data.get("updated_at"))),
    ]
    for label, key in (("rejected", "rejection_reason"), ("delisted", "delisting_reason")):
        if data.get(key):
            rows.append((label, data[key]))
    out.fields("Listing", rows)
    version = data.get("added_version")
    if isinstance(version, Mapping):
        out.line(
            f"version [bold]{version.get('version')}[/] declared ({version.get('content_digest')})"
        )
    samples = data.get("sample_rows") or []
    if samples:
        names = [str(c.get("name")) for c in data.get("columns") or []]
        out.table("Sample rows", names, [[row.get(n) for n in names] for row in samples])
    show_logged(out, data, action or "change")


def show_search(out: Output, data: Mapping[str, Any]) -> None:
    rows = [
        [
            hit.get("id"),
            hit.get("title"),
            hit.get("provider_name") or f"{str(hit.get('owner'))[:12]}…",
            hit.get("category"),
            _hit_price(hit),
            _count(hit.get("row_count")),
        ]
        for hit in data.get("items") or []
    ]
    out.table(
        f"Listings ({data.get('total', len(rows))} found)",
        ["id", "title", "provider", "category", "price", "rows"],
        rows,
        empty="no published listing matches",
    )
    facets = data.get("facets") or {}
    for name in ("category", "pricing_model", "tags"):
        counts = facets.get(name) or []
        if counts:
            text = ", ".join(f"{c.get('value')} ({c.get('count')})" for c in counts)
            out.line(f"[dim]{name}:[/] {text}")
    if data.get("next_cursor"):
        out.line(f"more: --cursor {data['next_cursor']}")


def _hit_price(hit: Mapping[str, Any]) -> str:
    """A search hit's comparable price with what it buys: ``¥8.00 per 1,000 rows``."""
    unit = hit.get("price_unit") or (hit.get("pricing") or {}).get("model") or ""
    if unit == "free":
        return "free"
    return f"{yuan(hit.get('price_fen'))} {unit}".strip()


def show_quote(out: Output, data: Mapping[str, Any]) -> None:
    out.fields(
        "Quote",
        [
            ("quote id", data.get("quote_id")),
            ("listing", f"{data.get('listing_id')} v{data.get('listing_version')}"),
            ("terms", _terms(data.get("terms"))),
            ("amount", yuan(data.get("amount"))),
            ("expires", datetime_ms(data.get("expires_at"))),
        ],
    )


def show_order(out: Output, data: Mapping[str, Any], *, action: str | None = None) -> None:
    rows: list[tuple[str, Any]] = [
        ("order id", data.get("id")),
        ("state", data.get("state")),
        ("listing", f"{data.get('listing_id')} v{data.get('version')}"),
        ("buyer", data.get("buyer")),
        ("terms", _terms(data.get("terms"))),
        ("amount", yuan(data.get("amount"))),
        ("escrow", yuan(data.get("escrow"))),
        ("placed", datetime_ms(data.get("created_at"))),
    ]
    for label, key in (
        ("delivered", "delivered_at"),
        ("accept by", "acceptance_deadline"),
        ("access until", "access_expires_at"),
        ("revoked", "revoked_at"),
    ):
        if data.get(key) is not None:
            rows.append((label, datetime_ms(data[key])))
    if data.get("revocation_reason"):
        rows.append(("revocation reason", data["revocation_reason"]))
    if data.get("renews_order_id"):
        rows.append(("renews", data["renews_order_id"]))
    declared = data.get("declaration")
    if isinstance(declared, Mapping):
        basis = declared.get("legal_basis")
        rows.append(
            (
                "declared use",
                f"{declared.get('purpose')} in {declared.get('processing_region')}"
                + (f" (legal basis: {basis})" if basis else ""),
            )
        )
    if data.get("use_until") is not None:
        rows.append(("use until", datetime_ms(data["use_until"])))
    settlement = data.get("settlement")
    if isinstance(settlement, Mapping):
        rows.append(("settled", yuan(settlement.get("amount"))))
        rows.append(("platform fee", yuan(settlement.get("platform_fee"))))
        for key_id, amount in (settlement.get("payouts") or {}).items():
            rows.append((f"paid to {key_id[:12]}…", yuan(amount)))
    account = data.get("account")
    if isinstance(account, Mapping):
        rows.append(("your balance", _balance_text(account)))
    out.fields("Order", rows)
    show_logged(out, data, action or "change")
    if isinstance(settlement, Mapping):
        show_logged(out, settlement, "settlement")


def show_orders(out: Output, items: Sequence[Mapping[str, Any]], title: str) -> None:
    rows = [
        [
            o.get("id"),
            o.get("state"),
            o.get("listing_id"),
            o.get("version"),
            yuan(o.get("amount")),
            datetime_ms(o.get("created_at")),
        ]
        for o in items
    ]
    out.table(title, ["order", "state", "listing", "v", "amount", "placed"], rows, empty="none")


def show_account(out: Output, data: Mapping[str, Any], *, movements: bool = True) -> None:
    out.fields(
        "Account",
        [
            ("key id", data.get("key_id")),
            ("available", yuan(data.get("available"))),
            ("held in escrow", yuan(data.get("held"))),
        ],
    )
    if movements:
        rows = [
            [
                m.get("kind"),
                yuan(m.get("available_delta")),
                yuan(m.get("held_delta")),
                m.get("order_id") or m.get("reference"),
                datetime_ms(m.get("created_at")),
            ]
            for m in data.get("movements") or []
        ]
        out.table("Movements", ["kind", "available Δ", "held Δ", "order / reference", "when"], rows)
    show_logged(out, data, "deposit")


def _terms(terms: Any) -> Any:
    """Order terms without the ones that do not apply (``null``)."""
    if isinstance(terms, Mapping):
        return {k: v for k, v in terms.items() if v is not None} or "-"
    return terms


def _balance_text(account: Mapping[str, Any]) -> str:
    return f"{yuan(account.get('available'))} available, {yuan(account.get('held'))} held"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "-"


def _bytes(value: Any) -> str:
    if not isinstance(value, int):
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{value:,} B" if unit == "B" else f"{size:.1f} {unit} ({value:,} B)"
        size /= 1024
    return f"{value:,} B"  # pragma: no cover
