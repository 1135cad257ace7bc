"""Every role's workflow through ``shancheng`` against a real exchange (uvicorn via
``live_server``): a provider's own listings and their edits (declarations checked at
submission, a rejected listing edited and resubmitted, a published one refused), the
operators' queue, ``buyer status`` with each record's log index and anchor state,
``audit receipt`` (pending: when to retry, exit 75, nothing written; ``--wait``;
``--out`` checked before anything is fetched), search results with the provider's
name and the price's unit, and ``next:`` hints that repeat the user's flags.

The exchange runs without a chain: anchoring is played by recording an anchor row for
the latest checkpoint (as tests/exchange/test_receipts.py does), so receipts exist and
verify offline."""

from __future__ import annotations

import json
import shlex
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import test_cli_market
from sqlmodel import Session
from test_cli_market import LISTING_FLAGS, Market, Shell, publish, write_dataset
from test_cli_support import invoke

from exchange.anchoring.models import AnchorRow, AnchorState
from exchange.log.models import CheckpointRow
from exchange.log.queries import latest_tree_size
from exchange.log.sequencer import integrate_pending

clean_env = test_cli_market.clean_env  # the fixtures of the market story
market = test_cli_market.market

EXIT_PENDING = 75
WITHOUT_CLASSIFICATION = tuple(
    flag
    for position, flag in enumerate(LISTING_FLAGS)
    if flag != "--classification" and LISTING_FLAGS[position - 1] != "--classification"
)


def anchor_everything(app: Any) -> int:
    """Integrate the log and record an on-chain anchor of its latest checkpoint (the
    chain is played); the anchored tree size."""
    integrate_pending(app.state.session_factory, app.state.log_key)
    now = int(time.time() * 1000)
    with app.state.session_factory() as session:
        assert isinstance(session, Session)
        size = latest_tree_size(session)
        checkpoint = session.get(CheckpointRow, size)
        assert checkpoint is not None
        session.add(
            AnchorRow(
                tree_size=size,
                root=checkpoint.root,
                state=AnchorState.ANCHORED,
                chain_id=31337,
                registry_address="0x" + "5a" * 20,
                tx_hash="0x" + f"{size:064x}",
                block_number=7,
                block_hash="0x" + "bb" * 32,
                created_at=now,
                updated_at=now,
            )
        )
        session.commit()
    return size


def approved_provider(market: Market, name: str = "provider") -> tuple[Shell, str]:
    provider, key_id = market.participant(name)
    provider.ok("provider", "register", "--name", f"{name} 数据")
    market.operator.ok("operator", "approve", key_id)
    return provider, key_id


def funded_buyer(market: Market, fen: int = 100_000) -> tuple[Shell, str]:
    buyer, key_id = market.participant("buyer")
    buyer.ok("buyer", "register", "--name", "两江交通规划院")
    market.operator.ok("operator", "deposit", key_id, str(fen), "--reference", "r")
    return buyer, key_id


# --------------------------------------------------------------------------- provider


def test_listings_edit_submit_reject_and_resubmit(market: Market, tmp_path: Path) -> None:
    provider, _ = approved_provider(market)
    data = write_dataset(tmp_path / "d.csv", rows=40)
    drafted = provider.ok(
        "provider", "create-listing", data, "--title", "缺分级", *WITHOUT_CLASSIFICATION, "--free"
    )
    listing_id = drafted["id"]

    # submission makes publication's declarations check, and says how to fix it
    refused = provider.fails("provider", "submit", listing_id)
    assert refused.startswith("declarations_incomplete: cannot submit without the declarations: ")
    assert "classification" in refused and "(HTTP 422)" in refused
    assert f"shancheng provider edit {listing_id}" in refused
    assert f"--config {shlex.quote(str(provider.config))}" in refused

    drafts = provider.ok("provider", "listings", "--state", "draft")
    assert [item["id"] for item in drafts["items"]] == [listing_id]
    assert provider.ok("provider", "listings", "--state", "published")["items"] == []
    human = provider.run("provider", "listings")
    assert human.exit_code == 0 and "缺分级" in human.stdout and "draft" in human.stdout

    # a dry run prints the fields and changes nothing
    dry = provider.ok("provider", "edit", listing_id, "--classification", "一般", "--dry-run")
    assert dry["declarations"]["classification"] == "一般" and dry["title"] == "缺分级"
    assert provider.ok("buyer", "show", listing_id)["declarations"].get("classification") is None

    edited = provider.ok("provider", "edit", listing_id, "--classification", "一般")
    assert edited["state"] == "draft" and edited["declarations"]["classification"] == "一般"
    assert edited["title"] == "缺分级"  # what was not named stays
    assert edited["declarations"]["source_legality"] == "Collected under contract 2025-17."
    assert provider.ok("provider", "submit", listing_id)["state"] == "submitted"

    # the operator's queue holds it; the operator rejects it
    queue = market.operator.ok("operator", "queue")
    assert listing_id in [item["id"] for item in queue["listings"]]
    market.operator.ok("operator", "review", listing_id)
    market.operator.ok("operator", "reject", listing_id, "--reason", "标题不清楚")
    rejected = provider.ok("provider", "listings", "--state", "rejected")["items"]
    assert [(r["id"], r["rejection_reason"]) for r in rejected] == [(listing_id, "标题不清楚")]
    assert "标题不清楚" in provider.run("provider", "listings", "--state", "rejected").stdout

    # reject --help promises an edit: it is one
    fixed = provider.ok("provider", "edit", listing_id, "--title", "重庆公交客流（修订）")
    assert fixed["state"] == "draft" and fixed["rejection_reason"] is None
    assert fixed["title"] == "重庆公交客流（修订）"
    assert "provider edit" in invoke(market.cli, "operator", "reject", "--help").stdout
    provider.ok("provider", "submit", listing_id)
    market.operator.ok("operator", "review", listing_id)
    assert market.operator.ok("operator", "publish", listing_id)["state"] == "published"

    # a published listing is not edited: the error says what to do instead
    published = provider.fails("provider", "edit", listing_id, "--title", "x")
    assert f"listing {listing_id} is published" in published
    assert f"shancheng provider new-version {listing_id} FILE" in published
    assert provider.ok("buyer", "show", listing_id)["title"] == "重庆公交客流（修订）"


def test_listing_and_edit_refusals(market: Market, tmp_path: Path) -> None:
    provider, _ = approved_provider(market)
    other, _ = approved_provider(market, "other")
    listing_id = provider.ok(
        "provider",
        "create-listing",
        write_dataset(tmp_path / "d.csv", rows=5),
        "--title",
        "t",
        *LISTING_FLAGS,
        "--free",
    )["id"]
    bad_state = provider.fails("provider", "listings", "--state", "sold", code=2)
    assert "--state is one of draft, submitted" in bad_state
    unknown = provider.fails("provider", "edit", "00000000-0000-4000-8000-000000000000")
    assert unknown.startswith("listing_not_found: ") and "(HTTP 404)" in unknown
    hidden = other.fails("provider", "edit", listing_id, "--title", "mine now")
    assert hidden.startswith("listing_not_found: ")  # another's draft is not even visible
    assert other.ok("provider", "listings")["items"] == []
    both = provider.fails("provider", "edit", listing_id, "--price", "1", "--free", code=2)
    assert "one of --price, --free and --pricing" in both
    custody = provider.fails("provider", "edit", listing_id, "--custody", "cloud", code=2)
    assert "--custody is one of" in custody
    core = provider.fails("provider", "edit", listing_id, "--classification", "核心")
    assert core.startswith("core_data_forbidden: ")
    fields = tmp_path / "fields.json"
    fields.write_text("[1, 2]", encoding="utf-8")
    assert "JSON object" in provider.fails(
        "provider", "edit", listing_id, "--fields", fields, code=2
    )
    # nothing of that changed the draft
    assert provider.ok("buyer", "show", listing_id)["title"] == "t"


def test_edit_with_new_content_from_a_file(market: Market, tmp_path: Path) -> None:
    provider, _ = approved_provider(market)
    first = write_dataset(tmp_path / "a.csv", rows=10)
    listing_id = provider.ok(
        "provider", "create-listing", first, "--title", "t", *LISTING_FLAGS, "--free"
    )["id"]
    newer = write_dataset(tmp_path / "b.csv", rows=25)
    edited = provider.ok("provider", "edit", listing_id, "--data", newer)
    assert edited["row_count"] == 25 and edited["byte_size"] == newer.stat().st_size
    assert edited["version"] == 1


# --------------------------------------------------------------------------- operator


def test_operator_queue(market: Market, tmp_path: Path) -> None:
    waiting, waiting_id = market.participant("waiting")
    waiting.ok("provider", "register", "--name", "待批准的供应商")
    provider, _ = approved_provider(market)
    listing_id = provider.ok(
        "provider",
        "create-listing",
        write_dataset(tmp_path / "d.csv", rows=5),
        "--title",
        "待审",
        *LISTING_FLAGS,
        "--free",
    )["id"]
    provider.ok("provider", "submit", listing_id)

    queue = market.operator.ok("operator", "queue")
    assert [(item["id"], item["state"]) for item in queue["listings"]] == [
        (listing_id, "submitted")
    ]
    assert [p["key_id"] for p in queue["participants"]] == [waiting_id]
    assert queue["more_listings"] is False and queue["more_participants"] is False
    human = market.operator.run("operator", "queue")
    assert human.exit_code == 0 and "待审" in human.stdout and "待批准的供应商" in human.stdout
    config = shlex.quote(str(market.operator.config))
    assert f"shancheng operator review {listing_id} --config {config}" in human.stdout
    assert f"shancheng operator approve {waiting_id} --config {config}" in human.stdout

    market.operator.ok("operator", "review", listing_id)
    assert market.operator.ok("operator", "queue")["listings"][0]["state"] == "under_review"
    market.operator.ok("operator", "approve", waiting_id)
    market.operator.ok("operator", "publish", listing_id)
    empty = market.operator.ok("operator", "queue", "--limit", "1")
    assert empty["listings"] == [] and empty["participants"] == []
    assert "none" in market.operator.run("operator", "queue").stdout

    refused = provider.fails("operator", "queue")
    assert refused.startswith("role_forbidden: ") and "(HTTP 403)" in refused


# --------------------------------------------------------------------------- buyer, auditor


def test_status_records_and_receipts(market: Market, tmp_path: Path) -> None:
    provider, _ = approved_provider(market)
    data = write_dataset(tmp_path / "d.csv", rows=30)
    listing = publish(market, provider, data, "回执", "--price", "10")
    buyer, buyer_id = funded_buyer(market)
    order_id = buyer.ok("buyer", "order", "--listing", listing["id"])["id"]

    status = buyer.ok("buyer", "status", order_id)
    assert status["state"] == "placed"
    [placed] = status["records"]
    assert placed["type"] == "order.placed" and placed["actor"] == buyer_id
    assert placed["anchor_state"] == "pending" and placed["tx_hash"] is None
    index = placed["index"]
    human = buyer.run("buyer", "status", order_id)
    assert human.exit_code == 0 and "order.placed" in human.stdout and "pending" in human.stdout

    # pending: when to retry, exit 75, and nothing written (never an error body)
    out = tmp_path / "bundle.json"
    pending = buyer.fails("audit", "receipt", str(index), "--out", out, code=EXIT_PENDING)
    assert pending.startswith("receipt_pending: ") and "retry in about" in pending
    assert "(retry_after " in pending and "--wait" in pending and not out.exists()
    timed_out = buyer.fails(
        "audit", "receipt", str(index), "--wait", "--timeout", "0", "--out", out, code=EXIT_PENDING
    )
    assert f"no receipt for entry {index} after waiting 0 s" in timed_out and not out.exists()
    order_pending = buyer.fails("audit", "receipt", "--order", order_id, code=EXIT_PENDING)
    assert order_pending.startswith("receipt_pending: ")

    # --out is checked before anything is fetched or waited for
    missing_dir = buyer.fails(
        "audit", "receipt", str(index), "--out", tmp_path / "no" / "b.json", code=2
    )
    assert "does not exist" in missing_dir

    anchor_everything(market.app)
    records = buyer.ok("buyer", "status", order_id)["records"]
    assert [(r["index"], r["anchor_state"], r["block_number"]) for r in records] == [
        (index, "anchored", 7)
    ]
    written = buyer.ok("audit", "receipt", str(index), "--out", out)
    assert written == [
        {
            "index": index,
            "type": "order.placed",
            "path": str(out),
            "tree_size": written[0]["tree_size"],
            "chain_id": 31337,
            "registry_address": "0x" + "5a" * 20,
            "tx_hash": written[0]["tx_hash"],
            "block_number": 7,
        }
    ]
    verified = invoke(market.cli, "audit", "verify", out, "--offline")
    assert verified.exit_code == 0, verified
    bundle = json.loads(out.read_text(encoding="utf-8"))
    assert bundle["version"] == 1 and bundle["promise"]["index"] == index

    # without --out the bundle itself goes to stdout (a file to verify, byte for byte)
    stdout = buyer.run("audit", "receipt", str(index))
    assert stdout.exit_code == 0 and json.loads(stdout.stdout) == bundle

    # by order: a directory of <index>.json (or a JSON list on stdout)
    folder = tmp_path / "receipts"
    by_type = buyer.ok(
        "audit", "receipt", "--order", order_id, "--type", "order.placed", "--out", folder
    )
    assert [item["path"] for item in by_type] == [str(folder / f"{index}.json")]
    assert json.loads((folder / f"{index}.json").read_text(encoding="utf-8")) == bundle
    listed = buyer.run("audit", "receipt", "--order", order_id)
    assert listed.exit_code == 0 and json.loads(listed.stdout) == [bundle]
    on_a_file = buyer.fails("audit", "receipt", "--order", order_id, "--out", out, code=2)
    assert "an order's receipts go into a directory" in on_a_file
    none = buyer.fails("audit", "receipt", "--order", order_id, "--type", "settlement.paid", code=2)
    assert "has no settlement.paid record (its records: order.placed)" in none

    # an unwritable --out: one line, exit 2, nothing left behind
    unwritable = buyer.fails(
        "audit", "receipt", str(index), "--out", "/proc/shancheng.json", code=2
    )
    assert unwritable.startswith("--out /proc/shancheng.json")


def test_receipt_wait_returns_once_anchored(market: Market, tmp_path: Path) -> None:
    buyer, _ = market.participant("auditor")
    provider, _ = approved_provider(market)
    registered = provider.ok("provider", "listings")  # any signed read; the log has entries
    assert registered["items"] == []
    timer = threading.Timer(0.5, anchor_everything, args=(market.app,))
    timer.start()
    try:
        out = tmp_path / "r.json"
        waited = buyer.ok("audit", "receipt", "0", "--wait", "--timeout", "60", "--out", out)
    finally:
        timer.cancel()
        timer.join()
    assert waited[0]["index"] == 0 and json.loads(out.read_text(encoding="utf-8"))["version"] == 1


def test_receipt_usage_errors(market: Market) -> None:
    buyer, _ = market.participant("someone")
    buyer.ok("buyer", "register")
    assert "one of them" in buyer.fails("audit", "receipt", code=2)
    both = buyer.fails("audit", "receipt", "0", "--order", "x", code=2)
    assert "one of them" in both
    assert "--type goes with --order" in buyer.fails("audit", "receipt", "0", "--type", "x", code=2)
    negative = buyer.run("audit", "receipt", "--", "-1")
    assert negative.exit_code == 2
    unknown = buyer.fails("audit", "receipt", "99999")
    assert unknown.startswith("entry_not_found: ") and "(HTTP 404)" in unknown
    not_mine = buyer.fails("audit", "receipt", "--order", "00000000-0000-4000-8000-000000000000")
    assert not_mine.startswith("order_not_found: ")


def test_verify_names_an_error_body(market: Market, tmp_path: Path) -> None:
    saved = tmp_path / "bundle.json"  # what `curl …/receipts/N > bundle.json` used to leave
    saved.write_text(
        json.dumps({"code": "receipt_pending", "message": "entry 3 is accepted but …"}),
        encoding="utf-8",
    )
    out = invoke(market.cli, "audit", "verify", saved, "--offline")
    assert out.exit_code == 2
    assert out.message is not None
    assert "holds an error answer of the exchange, not a bundle: receipt_pending" in out.message
    assert "shancheng audit receipt" in out.message


def test_search_shows_provider_name_and_price_unit(
    market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clients.cli import _common

    monkeypatch.setattr(_common.stdout, "width", 200)  # a wide terminal: cells unfolded
    provider, _ = approved_provider(market)
    data = write_dataset(tmp_path / "d.csv", rows=20)
    publish(market, provider, data, "公交客流定价", "--price", "199")
    buyer, _ = funded_buyer(market)
    found = buyer.ok("buyer", "search", "公交客流定价")
    [hit] = found["items"]
    assert hit["provider_name"] == "provider 数据" and hit["price_unit"] == "one-off"
    human = buyer.run("buyer", "search", "公交客流定价")
    assert "provider 数据" in human.stdout and "¥199.00 one-off" in human.stdout


def test_next_hints_repeat_the_flags_given(market: Market, tmp_path: Path) -> None:
    provider, _ = approved_provider(market)
    data = write_dataset(tmp_path / "d.csv", rows=5)
    drafted = provider.run(
        "provider", "create-listing", data, "--title", "t", *LISTING_FLAGS, "--free"
    )
    assert drafted.exit_code == 0, drafted
    config = shlex.quote(str(provider.config))
    next_line = next(line for line in drafted.stdout.splitlines() if line.startswith("next:"))
    assert "shancheng provider submit " in next_line and f"--config {config}" in next_line
    assert "shancheng provider upload " in next_line  # exchange custody: upload the bytes


@pytest.mark.parametrize("custody", ["exchange", "provider"])
def test_order_hint_names_how_the_data_comes(market: Market, tmp_path: Path, custody: str) -> None:
    provider, _ = approved_provider(market)
    data = write_dataset(tmp_path / "d.csv", rows=5)
    flags = [f for f in LISTING_FLAGS]
    flags[1] = custody
    drafted = provider.ok(
        "provider", "create-listing", data, "--title", "t", *flags, "--price", "1"
    )
    provider.ok("provider", "submit", drafted["id"])
    market.operator.ok("operator", "review", drafted["id"])
    market.operator.ok("operator", "publish", drafted["id"])
    buyer, _ = funded_buyer(market)
    ordered = buyer.run("buyer", "order", "--listing", drafted["id"])
    assert ordered.exit_code == 0, ordered
    verb = "download" if custody == "exchange" else "receive"
    config = shlex.quote(str(buyer.config))
    assert f"next: shancheng buyer {verb} " in ordered.stdout
    assert f"--config {config}" in ordered.stdout
