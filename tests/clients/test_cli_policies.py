"""Usage policies through ``shancheng`` against a real exchange: a provider sets a
policy from a file (malformed files refused before anything is signed), a buyer's
order declares purpose and region and is stopped locally when the policy does not
allow them, the exchange refuses a cross-border order without an assessment, and
the operator's ``crossborder approve|reject|list`` decides it."""

from __future__ import annotations

import json
from pathlib import Path

from test_cli_market import LISTING_FLAGS, Market, Shell, clean_env, market, write_dataset
from test_cli_market import publish as _publish_plain

from clients.cli._views import policy_text
from ledger.protocol.policy import Policy
from ledger.sm3 import sm3_file

__all__ = ["clean_env", "market"]  # fixtures used here

POLICY = {
    "permitted_purposes": ["academic_research", "public_service"],
    "processing_regions": ["CN", "SG"],
    "access_days": 90,
}


def _important(flags: tuple[str, ...]) -> list[str]:
    out = list(flags)
    out[out.index("一般")] = "重要"
    return out


def _publish(market: Market, provider: Shell, data: Path, policy: Path) -> str:
    drafted = provider.ok(
        "provider",
        "create-listing",
        data,
        "--title",
        "重要数据",
        *_important(LISTING_FLAGS),
        "--price",
        "10",
        "--policy",
        policy,
    )
    listing_id: str = drafted["id"]
    assert drafted["policy"] == Policy.from_dict(POLICY).to_dict()
    provider.ok("provider", "submit", listing_id)
    assert provider.ok("provider", "upload", listing_id, "1", data)["sm3"] == sm3_file(data).hex()
    market.operator.ok("operator", "review", listing_id)
    market.operator.ok("operator", "publish", listing_id)
    return listing_id


def test_policies_and_cross_border_from_the_command_line(market: Market, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "d.csv", rows=100)
    provider, provider_id = market.participant("provider")
    provider.ok("provider", "register")
    market.operator.ok("operator", "approve", provider_id)

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"processing_regions": ["CN", "XX"]}), encoding="utf-8")
    refused = provider.fails(
        "provider",
        "create-listing",
        data,
        "--title",
        "t",
        *LISTING_FLAGS,
        "--free",
        "--policy",
        bad,
        code=2,
    )
    assert "policy.processing_regions[1]" in refused and "ISO 3166-1" in refused
    bad.write_text('{"access_days": 30, "access_days": 3650}', encoding="utf-8")
    refused = provider.fails(
        "provider",
        "create-listing",
        data,
        "--title",
        "t",
        *LISTING_FLAGS,
        "--free",
        "--policy",
        bad,
        code=2,
    )
    assert "duplicate key 'access_days'" in refused

    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY), encoding="utf-8")
    listing_id = _publish(market, provider, data, policy)

    buyer, buyer_id = market.participant("buyer")
    buyer.ok("buyer", "register")
    market.operator.ok("operator", "deposit", buyer_id, "5000", "--reference", "r")

    # stopped before anything is signed: the policy does not permit marketing
    stopped = buyer.fails("buyer", "order", "--listing", listing_id, "--purpose", "marketing")
    assert "permitted_purposes" in stopped and "not ordered" in stopped
    unknown = buyer.fails("buyer", "order", "--listing", listing_id, "--purpose", "spying", code=2)
    assert "spying" in unknown
    # SG is permitted by the policy, but 重要 data abroad needs an assessment: the
    # exchange refuses
    abroad = ("buyer", "order", "--listing", listing_id, "--purpose", "academic_research")
    refused = buyer.fails(*abroad, "--region", "SG")
    assert refused.startswith("policy_violation: cross_border: ") and "(HTTP 422)" in refused
    assert buyer.ok("buyer", "orders")["items"] == []

    approved = market.operator.ok(
        "operator", "crossborder", "approve", buyer_id, listing_id, "--reference", "CAC-1"
    )
    assert approved["approved"] is True and approved["valid_until"] > approved["assessed_at"]
    ordered = buyer.ok(*abroad, "--region", "SG")
    assert ordered["declaration"] == {
        "purpose": "academic_research",
        "processing_region": "SG",
        "legal_basis": None,
    }
    assert ordered["use_until"] == ordered["created_at"] + 90 * 86_400_000
    shown = buyer.run("buyer", "status", ordered["id"])
    assert shown.exit_code == 0 and "academic_research in SG" in shown.stdout
    shown = buyer.run("buyer", "show", listing_id)
    assert shown.exit_code == 0 and "usage policy" in shown.stdout
    assert policy_text(shown_listing := buyer.ok("buyer", "show", listing_id)["policy"]) == (
        "for academic_research, public_service; in CN, SG; 90 days; no resale"
    )
    assert shown_listing["access_days"] == 90

    market.operator.ok(
        "operator", "crossborder", "reject", buyer_id, listing_id, "--reference", "CAC-1 revoked"
    )
    listed = market.operator.ok("operator", "crossborder", "list", "--listing", listing_id)
    assert [(a["buyer"], a["approved"]) for a in listed] == [(buyer_id, False)]
    refused = buyer.fails(*abroad, "--region", "SG")
    assert "cross_border" in refused and "rejected" in refused
    # at home it needs none
    assert buyer.ok(*abroad, "--region", "CN")["declaration"]["processing_region"] == "CN"
    # a plain listing (default policy) takes the default declaration
    plain = _publish_plain(
        market, provider, write_dataset(tmp_path / "e.csv", 50), "一般", "--free"
    )
    assert buyer.ok("buyer", "order", "--listing", plain["id"])["declaration"]["purpose"] == (
        "internal_analytics"
    )
