"""The provider → operator → buyer story through ``shancheng`` against a real exchange
(uvicorn via ``live_server``; each participant with their own config file made by
``shancheng init``): register, approve, create a listing from a file, submit, upload,
review, publish, deposit, search, quote, order, download (decrypt + digest check),
accept (settlement), dispute and resolve, revoke, renew, reject, new version, delist,
suspend. JSON output is parsed; human output is checked where it matters (yuan)."""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_cli_support import Outcome, invoke, make_runner, run_shancheng
from typer.testing import CliRunner

from clients.cli.config import CONFIG_KEYS
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import sm3_file

PRICE_FEN = 19_900


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in CONFIG_KEYS:
        monkeypatch.delenv("SHANCHENG_" + key.upper(), raising=False)
    monkeypatch.delenv("SHANCHENG_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@dataclass
class Shell:
    """``shancheng`` as one participant: their own config file (and key)."""

    cli: CliRunner
    config: Path

    def run(self, *args: str | Path) -> Outcome:
        return invoke(self.cli, *args, "--config", self.config)

    def ok(self, *args: str | Path) -> Any:
        """Run with --json; assert success; the parsed document."""
        result = self.run(*args, "--json")
        assert result.exit_code == 0, result
        return json.loads(result.stdout)

    def fails(self, *args: str | Path, code: int = 1) -> str:
        result = self.run(*args)
        assert result.exit_code == code, result
        assert result.message, result
        return result.message


@dataclass
class Market:
    url: str
    app: Any
    cli: CliRunner
    operator: Shell
    tmp: Path

    def participant(self, name: str) -> tuple[Shell, str]:
        """A new participant: ``shancheng init --generate-key`` into its own config."""
        config = self.tmp / name / "config.toml"
        made = invoke(
            self.cli,
            "init",
            "--config",
            config,
            "--exchange-url",
            self.url,
            "--generate-key",
            "--json",
        )
        assert made.exit_code == 0, made
        return Shell(self.cli, config), json.loads(made.stdout)["key_id"]


@pytest.fixture
def market(live_server: Any, tmp_path: Path) -> Iterator[Market]:
    from test_auth_support import running_exchange

    cli = make_runner()
    with running_exchange(live_server, tmp_path) as ex:
        key_file = tmp_path / "operator.pem"
        key_file.write_bytes(ex.operator.to_pem())
        config = tmp_path / "operator.toml"
        made = invoke(
            cli, "init", "--config", config, "--exchange-url", ex.url, "--key-file", key_file
        )
        assert made.exit_code == 0, made
        yield Market(ex.url, ex.app, cli, Shell(cli, config), tmp_path)


def write_dataset(path: Path, rows: int = 3000) -> Path:
    """A CSV over several 64 KiB ciphertext chunks."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["stop", "hour", "boardings", "day"])
        for n in range(rows):
            writer.writerow([f"解放碑-{n % 97}", n % 24, (n * 7919) % 5000, "2025-03-01"])
    return path


LISTING_FLAGS = (
    "--custody",  # these tests upload the content
    "exchange",
    "--category",
    "transport",
    "--tag",
    "bus",
    "--tag",
    "chongqing",
    "--description",
    "Hourly boardings per stop.",
    "--update-frequency",
    "monthly",
    "--licence",
    "Shancheng standard data licence v1",
    "--usage-terms",
    "No re-identification.",
    "--classification",
    "一般",
    "--no-personal-information",
    "--source-legality",
    "Collected under contract 2025-17.",
    "--purpose",
    "research",
)


def publish(
    market: Market, provider: Shell, data: Path, title: str, *pricing: str
) -> dict[str, Any]:
    """create-listing → submit → upload → review → publish; the published listing."""
    drafted = provider.ok(
        "provider", "create-listing", data, "--title", title, *LISTING_FLAGS, *pricing
    )
    listing_id = drafted["id"]
    assert provider.ok("provider", "submit", listing_id)["state"] == "submitted"
    uploaded = provider.ok("provider", "upload", listing_id, "1", data)
    assert uploaded["created"] is True and uploaded["sm3"] == sm3_file(data).hex()
    assert market.operator.ok("operator", "review", listing_id)["state"] == "under_review"
    published: dict[str, Any] = market.operator.ok("operator", "publish", listing_id)
    assert published["state"] == "published"
    return published


def test_provider_operator_buyer_flow(market: Market, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "boardings.csv")
    provider, provider_id = market.participant("provider")
    registered = provider.ok("provider", "register", "--name", "重庆公交数据")
    assert registered["key_id"] == provider_id and registered["role"] == "provider"
    assert registered["status"] == "unverified" and registered["log"]["index"] >= 0
    assert market.operator.ok("operator", "approve", provider_id)["status"] == "active"

    drafted = provider.ok(
        "provider",
        "create-listing",
        data,
        "--title",
        "重庆公交客流 2025",
        *LISTING_FLAGS,
        "--price",
        "199.00",
    )
    listing_id = drafted["id"]
    assert drafted["state"] == "draft"
    assert drafted["content_digest"] == sm3_file(data).hex()
    assert drafted["byte_size"] == data.stat().st_size and drafted["row_count"] == 3000
    assert [c["type"] for c in drafted["columns"]] == ["string", "integer", "integer", "date"]
    assert drafted["pricing"] == {"model": "fixed", "price": PRICE_FEN}
    assert drafted["providers"] == [{"key_id": provider_id, "share_bps": 10_000}]

    # a buyer cannot order before publication; the operator cannot publish a draft
    message = market.operator.fails("operator", "publish", listing_id)
    assert message.startswith("invalid_state: ") and message.endswith("(HTTP 409)")

    assert provider.ok("provider", "submit", listing_id)["state"] == "submitted"
    uploaded = provider.ok("provider", "upload", listing_id, "1", data)
    assert uploaded["created"] is True and uploaded["size"] == data.stat().st_size
    again = provider.run("provider", "upload", listing_id, "1", data)
    assert again.exit_code == 0 and "already uploaded" in again.stdout
    assert market.operator.ok("operator", "review", listing_id)["state"] == "under_review"
    assert market.operator.ok("operator", "publish", listing_id)["state"] == "published"

    buyer, buyer_id = market.participant("buyer")
    assert buyer.ok("buyer", "register", "--name", "买家")["role"] == "buyer"
    credited = market.operator.ok(
        "operator", "deposit", buyer_id, "50000", "--reference", "bank 2025-001"
    )
    assert credited["available"] == 50_000 and credited["log"]["index"] >= 0

    # search (no key needed) and show: money in yuan for people, fen in JSON
    found = buyer.ok("buyer", "search", "公交", "--max-price", "500")
    assert [hit["id"] for hit in found["items"]] == [listing_id]
    assert found["items"][0]["price_fen"] == PRICE_FEN
    assert buyer.ok("buyer", "search", "公交", "--max-price", "100")["items"] == []
    shown = buyer.run("buyer", "show", listing_id)
    assert shown.exit_code == 0 and "¥199.00 fixed" in shown.stdout

    # quote to a file, order from it
    quote_file = tmp_path / "quote.json"
    quoted = buyer.ok("buyer", "quote", listing_id, "--out", quote_file)
    assert quoted["amount"] == PRICE_FEN and json.loads(quote_file.read_text()) == quoted
    ordered = buyer.ok("buyer", "order", quote_file)
    order_id = ordered["id"]
    assert ordered["state"] == "placed" and ordered["escrow"] == PRICE_FEN
    assert ordered["account"]["held"] == PRICE_FEN
    used = buyer.fails("buyer", "order", quote_file)
    assert used.startswith("quote_used: ") and "(HTTP 409)" in used
    balance = buyer.ok("buyer", "balance")
    assert (balance["available"], balance["held"]) == (50_000 - PRICE_FEN, PRICE_FEN)
    human = buyer.run("buyer", "balance")
    assert "¥301.00" in human.stdout and "¥199.00" in human.stdout
    assert [o["id"] for o in buyer.ok("buyer", "orders")["items"]] == [order_id]

    # download: envelope, ciphertext, decryption, digest check
    out = tmp_path / "got.csv"
    downloaded = buyer.ok("buyer", "download", order_id, "--out", out)
    assert out.read_bytes() == data.read_bytes()
    assert downloaded["verified"] is True and downloaded["sm3"] == sm3_file(data).hex()
    assert downloaded["envelope"]["log"]["index"] >= 0
    assert not (tmp_path / "got.csv.sm4").exists()  # ciphertext removed
    refused = buyer.run("buyer", "download", order_id, "--out", out)
    assert refused.exit_code == 2 and "already exists" in (refused.message or "")
    assert buyer.ok("buyer", "status", order_id)["state"] == "delivered"

    # acceptance settles: the provider is paid
    accepted = buyer.ok("buyer", "accept", order_id)
    assert accepted["state"] == "settled"
    settlement = accepted["settlement"]
    assert settlement["amount"] == PRICE_FEN
    assert settlement["payouts"][provider_id] + settlement["platform_fee"] == PRICE_FEN
    closed = buyer.fails("buyer", "accept", order_id)
    assert "(HTTP 409)" in closed

    sales = provider.ok("provider", "sales")
    assert [o["id"] for o in sales["items"]] == [order_id]
    account = provider.ok("provider", "account")
    assert account["available"] == settlement["payouts"][provider_id]
    assert "payout" in [m["kind"] for m in account["movements"]]
    assert buyer.ok("buyer", "balance")["held"] == 0


def test_quote_and_order_in_one_dispute_and_resolve(market: Market, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "d.csv", rows=200)
    provider, provider_id = market.participant("provider")
    provider.ok("provider", "register")
    market.operator.ok("operator", "approve", provider_id)
    listing = publish(market, provider, data, "数据一", "--price", "10")
    buyer, buyer_id = market.participant("buyer")
    buyer.ok("buyer", "register")
    market.operator.ok("operator", "deposit", buyer_id, "3000", "--reference", "r")

    too_dear = buyer.fails("buyer", "order", "--listing", listing["id"], "--max-amount", "9.99")
    assert "above --max-amount ¥9.99: not ordered" in too_dear
    ordered = buyer.ok("buyer", "order", "--listing", listing["id"], "--max-amount", "10")
    assert ordered["amount"] == 1_000
    order_id = ordered["id"]

    not_yet = buyer.fails("buyer", "dispute", order_id, "--reason", "empty")
    assert not_yet.startswith("not_delivered: ")
    buyer.ok("buyer", "download", order_id, "--out", tmp_path / "x.csv", "--keep-ciphertext")
    assert (tmp_path / "x.csv.sm4").exists()
    disputed = buyer.ok("buyer", "dispute", order_id, "--reason", "columns are shifted")
    assert disputed["state"] == "disputed"
    resolved = market.operator.ok(
        "operator", "resolve", order_id, "--refund", "--note", "provider agreed"
    )
    assert resolved["state"] == "refunded"
    assert buyer.ok("buyer", "balance")["available"] == 3_000

    # a second order, revoked by the provider before settlement: escrow refunded
    second = buyer.ok("buyer", "order", "--listing", listing["id"])["id"]
    revoked = provider.ok("provider", "revoke", second, "--reason", "licence withdrawn")
    assert revoked["revoked_at"] is not None
    assert revoked["revocation_reason"] == "licence withdrawn"
    gone = buyer.fails("buyer", "download", second, "--out", tmp_path / "y.csv")
    assert gone.startswith("access_revoked: ") and "(HTTP 403)" in gone
    assert not (tmp_path / "y.csv").exists()
    after = buyer.ok("buyer", "balance")
    assert (after["available"], after["held"]) == (3_000, 0)


def test_subscription_renewal(market: Market, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "s.csv", rows=50)
    provider, provider_id = market.participant("provider")
    provider.ok("provider", "register")
    market.operator.ok("operator", "approve", provider_id)
    pricing = json.dumps(
        {"model": "subscription", "price_per_period": 3_000, "period_days": 30, "max_periods": 12}
    )
    listing = publish(market, provider, data, "订阅", "--pricing", pricing)
    shown = provider.run("buyer", "show", listing["id"])
    assert "¥30.00 per 30 days" in shown.stdout
    buyer, buyer_id = market.participant("buyer")
    buyer.ok("buyer", "register")
    market.operator.ok("operator", "deposit", buyer_id, "20000", "--reference", "r")

    first = buyer.ok("buyer", "order", "--listing", listing["id"], "--periods", "2")
    assert first["amount"] == 6_000
    renewed = buyer.ok("buyer", "renew", first["id"], "--periods", "1")
    assert renewed["renews_order_id"] == first["id"] and renewed["amount"] == 3_000
    assert renewed["access_expires_at"] > first["access_expires_at"]
    assert buyer.ok("buyer", "balance")["held"] == 9_000


def test_reject_new_version_delist_and_suspend(market: Market, tmp_path: Path) -> None:
    provider, provider_id = market.participant("provider")
    provider.ok("provider", "register")
    market.operator.ok("operator", "approve", provider_id)

    # rejection
    data = write_dataset(tmp_path / "r.csv", rows=10)
    drafted = provider.ok(
        "provider", "create-listing", data, "--title", "待审", *LISTING_FLAGS, "--free"
    )
    provider.ok("provider", "submit", drafted["id"])
    market.operator.ok("operator", "review", drafted["id"])
    rejected = market.operator.ok("operator", "reject", drafted["id"], "--reason", "no source")
    assert rejected["state"] == "rejected" and rejected["rejection_reason"] == "no source"

    # new version (declared and uploaded in one go), then delisting
    listing = publish(market, provider, data, "版本", "--price", "1")
    newer = write_dataset(tmp_path / "r2.csv", rows=20)
    versioned = provider.ok("provider", "new-version", listing["id"], newer, "--upload")
    assert versioned["listing"]["version"] == 2
    assert versioned["listing"]["content_digest"] == sm3_file(newer).hex()
    assert versioned["upload"]["version"] == 2 and versioned["upload"]["created"] is True
    delisted = provider.ok("provider", "delist", listing["id"], "--reason", "superseded")
    assert delisted["state"] == "delisted"

    # suspension: the provider's signed requests are refused afterwards
    suspended = market.operator.ok("operator", "suspend", provider_id, "--reason", "fraud")
    assert suspended["status"] == "suspended"
    refused = provider.fails("provider", "account")
    assert refused.startswith("participant_suspended: ") and "(HTTP 403)" in refused

    # a provider cannot act as an operator
    wrong = provider.fails("operator", "approve", provider_id)
    assert "(HTTP 403)" in wrong


def test_bad_digest_upload_is_refused(market: Market, tmp_path: Path) -> None:
    provider, provider_id = market.participant("provider")
    provider.ok("provider", "register")
    market.operator.ok("operator", "approve", provider_id)
    data = write_dataset(tmp_path / "a.csv", rows=10)
    drafted = provider.ok(
        "provider", "create-listing", data, "--title", "t", *LISTING_FLAGS, "--free"
    )
    other = write_dataset(tmp_path / "b.csv", rows=11)
    message = provider.fails("provider", "upload", drafted["id"], "1", other)
    assert message.startswith("content_digest_mismatch: ") and "(HTTP 422)" in message


def test_unknown_key_is_refused_with_the_server_code(market: Market) -> None:
    stranger = SM2PrivateKey.generate()
    key_file = market.tmp / "stranger.pem"
    key_file.write_bytes(stranger.to_pem())
    result = invoke(
        market.cli, "buyer", "orders", "--exchange-url", market.url, "--key-file", key_file
    )
    assert result.exit_code == 1
    assert (result.message or "").startswith("unknown_key: ")
    assert (result.message or "").endswith("(HTTP 401)")


def test_a_refusal_is_one_line_on_stderr_in_a_real_process(market: Market) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    done = run_shancheng("buyer", "show", missing, "--exchange-url", market.url, "--json")
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: listing_not_found: ")
    assert lines[0].endswith("(HTTP 404)")


def test_an_encrypted_key_through_the_environment(
    market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = tmp_path / "pw"
    password.write_text("secret\n")
    key = SM2PrivateKey.generate()
    key_file = tmp_path / "enc.pem"
    key_file.write_bytes(key.to_pem(b"secret"))
    monkeypatch.setenv("SHANCHENG_EXCHANGE_URL", market.url)
    monkeypatch.setenv("SHANCHENG_KEY_FILE", str(key_file))
    no_password = invoke(market.cli, "buyer", "register", "--json")
    assert no_password.exit_code == 2 and "enc.pem" in (no_password.message or "")
    monkeypatch.setenv("SHANCHENG_KEY_PASSWORD_FILE", str(password))
    registered = invoke(market.cli, "buyer", "register", "--json")
    assert registered.exit_code == 0, registered
    assert json.loads(registered.stdout)["key_id"] == key.key_id()


def test_download_refuses_a_wrong_digest_or_tampered_bytes_and_leaves_nothing(
    market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clients.sdk import ExchangeClient

    data = write_dataset(tmp_path / "d.csv", rows=500)
    provider, provider_id = market.participant("provider")
    provider.ok("provider", "register")
    market.operator.ok("operator", "approve", provider_id)
    listing = publish(market, provider, data, "篡改", "--price", "1")
    buyer, buyer_id = market.participant("buyer")
    buyer.ok("buyer", "register")
    market.operator.ok("operator", "deposit", buyer_id, "1000", "--reference", "r")
    order_id = buyer.ok("buyer", "order", "--listing", listing["id"])["id"]

    real_delivery = ExchangeClient.request_delivery

    def lying(self: ExchangeClient, order: str) -> Any:
        return dataclasses.replace(real_delivery(self, order), content_digest="00" * 32)

    with monkeypatch.context() as patch:
        patch.setattr(ExchangeClient, "request_delivery", lying)
        message = buyer.fails("buyer", "download", order_id, "--out", tmp_path / "a.csv")
    assert message.startswith("the delivery does not verify: SM3 of the content is ")
    assert message.endswith(f"nothing was written to {tmp_path / 'a.csv'}")
    assert not (tmp_path / "a.csv").exists()

    real_download = ExchangeClient.download

    def tampering(self: ExchangeClient, *args: Any, **kwargs: Any) -> Path:
        path: Path = real_download(self, *args, **kwargs)
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        path.write_bytes(bytes(raw))
        return path

    with monkeypatch.context() as patch:
        patch.setattr(ExchangeClient, "download", tampering)
        message = buyer.fails("buyer", "download", order_id, "--out", tmp_path / "b.csv")
    assert message.startswith("the delivery does not verify: SM4-GCM authentication failed")
    assert not (tmp_path / "b.csv").exists()

    # the genuine download still works afterwards
    buyer.ok("buyer", "download", order_id, "--out", tmp_path / "c.csv")
    assert (tmp_path / "c.csv").read_bytes() == data.read_bytes()
