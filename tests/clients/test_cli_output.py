"""CLI output and errors: money formatting, JSON documents, one-line errors and exit codes
(in-process for behaviour, real subprocesses for what the terminal shows)."""

from __future__ import annotations

import dataclasses
import json
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from test_cli_support import SHANCHENG, invoke, make_runner, run_shancheng
from typer.testing import CliRunner

from clients.cli import _runtime
from clients.cli._common import CLIError
from clients.cli.config import CONFIG_KEYS
from clients.cli.output import parse_yuan, plain, yuan
from clients.sdk.errors import APIError
from ledger.sm2 import SM2PrivateKey, SM2PublicKey


@pytest.fixture(scope="module")
def cli() -> CliRunner:
    return make_runner()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in CONFIG_KEYS:
        monkeypatch.delenv("SHANCHENG_" + key.upper(), raising=False)
    monkeypatch.delenv("SHANCHENG_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def closed_url() -> str:
    """A URL nothing listens on (a port that was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key.pem"
    path.write_bytes(SM2PrivateKey.generate().to_pem())
    return path


# --------------------------------------------------------------------------- money


@pytest.mark.parametrize(
    ("fen", "text"),
    [
        (0, "¥0.00"),
        (5, "¥0.05"),
        (19_900, "¥199.00"),
        (123_456_789, "¥1,234,567.89"),
        (-150, "-¥1.50"),
        (None, "-"),
    ],
)
def test_yuan(fen: int | None, text: str) -> None:
    assert yuan(fen) == text


@pytest.mark.parametrize(
    ("text", "fen"),
    [("199", 19_900), ("199.5", 19_950), ("199.05", 19_905), ("¥1,000.00", 100_000), ("0", 0)],
)
def test_parse_yuan(text: str, fen: int) -> None:
    assert parse_yuan(text) == fen


@pytest.mark.parametrize("text", ["1.234", "-1", "abc", "1e3", "", "1.", "0.1.2"])
def test_parse_yuan_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not an amount in yuan"):
        parse_yuan(text)


def test_plain_makes_sdk_answers_json_ready() -> None:
    @dataclasses.dataclass(frozen=True)
    class Inner:
        digest: bytes
        names: tuple[str, ...]
        hidden: str = dataclasses.field(default="x", repr=False)

    @dataclasses.dataclass(frozen=True)
    class Outer:
        inner: Inner
        where: Path
        extra: dict[str, Any]

    class WithDict:
        def to_dict(self) -> dict[str, Any]:
            return {"amount": 5}

    key = SM2PrivateKey.generate().public_key()
    value = Outer(Inner(b"\x01\xff", ("a", "b")), Path("/x"), {"k": WithDict(), "key": key})
    assert plain(value) == {
        "inner": {"digest": "01ff", "names": ["a", "b"]},
        "where": "/x",
        "extra": {"k": {"amount": 5}, "key": key.to_pem().decode()},
    }
    json.dumps(plain(value))


# --------------------------------------------------------------------------- errors


def test_unreachable_exchange_is_one_line_exit_1(cli: CliRunner, closed_url: str) -> None:
    result = invoke(cli, "buyer", "search", "--exchange-url", closed_url)
    assert result.exit_code == 1
    assert (result.message or "").startswith("cannot reach the exchange:")
    assert closed_url.removeprefix("http://") in (result.message or "")

    done = run_shancheng("buyer", "search", "--exchange-url", closed_url, "--json")
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the exchange:"), lines
    assert "Traceback" not in done.stderr


def test_debug_shows_the_traceback(closed_url: str) -> None:
    done = run_shancheng("--debug", "buyer", "search", "--exchange-url", closed_url)
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "TransportError" in done.stderr


def test_api_error_line_names_code_message_and_status() -> None:
    def refuse() -> None:
        raise APIError(404, "listing_not_found", "no listing abc")

    with pytest.raises(CLIError) as caught, _runtime.convert_errors():
        refuse()
    assert caught.value.exit_code == 1
    assert caught.value.message == "listing_not_found: no listing abc (HTTP 404)"


def test_signing_commands_need_a_key(cli: CliRunner, closed_url: str) -> None:
    result = invoke(cli, "provider", "register", "--exchange-url", closed_url)
    assert result.exit_code == 2
    assert "signs with your SM2 key" in (result.message or "")


def test_unreadable_key_is_a_usage_error(cli: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    result = invoke(cli, "buyer", "orders", "--key-file", bad)
    assert result.exit_code == 2 and "not a usable SM2 private key" in (result.message or "")
    missing = invoke(cli, "buyer", "orders", "--key-file", tmp_path / "none.pem")
    assert missing.exit_code == 2 and "cannot read the key file" in (missing.message or "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["operator", "resolve", "o-1", "--note", "n"], "exactly one of --refund and --release"),
        (["operator", "resolve", "o-1", "--note", "n", "--refund", "--release"], "exactly one"),
        (["buyer", "order"], "give a QUOTE_FILE or --listing"),
        (["buyer", "quote", "L", "--rows", "5", "--periods", "2"], "--rows or --periods"),
        (["buyer", "search", "--max-price", "12.345"], "--max-price"),
        (["provider", "create-listing", "x.csv", "--title", "t"], "a listing needs --category"),
    ],
    ids=["no outcome", "two outcomes", "no quote", "two terms", "bad price", "missing fields"],
)
def test_usage_errors_exit_2(
    cli: CliRunner, key_file: Path, closed_url: str, args: list[str], message: str
) -> None:
    result = invoke(cli, *args, "--key-file", key_file, "--exchange-url", closed_url)
    assert result.exit_code == 2, result
    assert message in (result.message or "")


def test_typer_usage_errors_exit_2(cli: CliRunner) -> None:
    assert invoke(cli, "buyer", "quote", "L", "--rows", "0").exit_code == 2
    assert invoke(cli, "operator", "deposit", "k", "12.5", "--reference", "r").exit_code == 2
    assert invoke(cli, "buyer", "no-such-command").exit_code == 2


def test_dataset_errors(cli: CliRunner, key_file: Path, closed_url: str, tmp_path: Path) -> None:
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3\n")
    common: list[str | Path] = ["--title", "t", "--category", "c", "--free", "--key-file", key_file]
    result = invoke(
        cli, "provider", "create-listing", ragged, *common, "--exchange-url", closed_url
    )
    assert result.exit_code == 1
    assert result.message == "the dataset does not parse: line 3: 1 fields, the header has 2"
    missing = invoke(
        cli,
        "provider",
        "create-listing",
        tmp_path / "nope.csv",
        *common,
        "--exchange-url",
        closed_url,
    )
    assert missing.exit_code == 2 and "file not found" in (missing.message or "")


def test_create_listing_dry_run_prints_the_fields(
    cli: CliRunner, key_file: Path, tmp_path: Path, closed_url: str
) -> None:
    data = tmp_path / "bus.csv"
    data.write_text("stop,boardings\n解放碑,1200\n", encoding="utf-8")
    result = invoke(
        cli,
        "provider",
        "create-listing",
        data,
        "--title",
        "公交",
        "--category",
        "transport",
        "--price",
        "199.5",
        "--tag",
        "bus",
        "--classification",
        "一般",
        "--no-personal-information",
        "--provider",
        f"{'ab' * 32}:10000",
        "--dry-run",
        "--key-file",
        key_file,
        "--exchange-url",
        closed_url,  # nothing is sent
    )
    assert result.exit_code == 0, result
    fields = json.loads(result.stdout)
    assert fields["pricing"] == {"model": "fixed", "price": 19_950}
    assert fields["columns"] == [
        {"name": "stop", "type": "string"},
        {"name": "boardings", "type": "integer"},
    ]
    assert fields["providers"] == [{"key_id": "ab" * 32, "share_bps": 10_000}]
    assert fields["declarations"] == {"classification": "一般", "personal_information": False}
    assert fields["update_frequency"] == "once" and fields["tags"] == ["bus"]
    assert fields["row_count"] == 1 and fields["format"] == "csv"


def test_every_marketplace_command_has_json_and_connection_options(cli: CliRunner) -> None:
    for group in ("provider", "buyer", "operator"):
        listing = invoke(cli, group, "--help")
        assert listing.exit_code == 0
        commands = _commands_of(group)
        assert commands, group
        for name in commands:
            text = invoke(cli, group, name, "--help").stdout
            for option in ("--json", "--config", "--exchange-url", "--key-file"):
                assert option in text, (group, name, option)


def _commands_of(group: str) -> Iterator[str]:
    for info in SHANCHENG.registered_groups:
        if info.name == group and info.typer_instance is not None:
            return iter([c.name for c in info.typer_instance.registered_commands if c.name])
    return iter([])


# --------------------------------------------------------------------------- progress


def test_progress_bars_only_on_a_terminal_and_never_with_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from clients.cli.output import Output, transfer_progress

    with transfer_progress("x", 10) as callback:
        assert callback is None  # pytest's stdout is not a terminal
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    with Output(as_json=True).progress("x", 10) as callback:
        assert callback is None
    with Output(as_json=False).progress("upload", 10) as callback:
        assert callback is not None
        callback(4, 10)
        callback(10, 10)


# --------------------------------------------------------------------------- --json everywhere


def _leaf_commands() -> list[tuple[str, Any]]:
    """Every command of ``shancheng`` (the click tree typer builds), as ``"group name"``.
    (Typer carries its own copy of click, so groups are told by their ``commands``.)"""
    make_runner()  # every group registered

    def walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
        subcommands = getattr(command, "commands", None)
        if isinstance(subcommands, dict):
            for name, sub in subcommands.items():
                yield from walk(sub, (*path, name))
        else:
            yield " ".join(path), command

    return list(walk(typer.main.get_command(SHANCHENG), ()))


def test_every_registered_command_accepts_a_documented_json_flag() -> None:
    commands = dict(_leaf_commands())
    older = {"keys new", "keys pub", "sm3", "sign", "verify", "db upgrade", "db current"}
    older |= {"contracts build", "contracts check", "devnet up", "devnet down", "devnet status"}
    older |= {"serve", "run", "anchor-worker", "audit verify", "demo", "init", "config show"}
    assert older <= commands.keys(), older - commands.keys()
    assert {"buyer search", "provider create-listing", "operator resolve"} <= commands.keys()
    for name, command in commands.items():
        flags = [p for p in command.params if "--json" in getattr(p, "opts", ())]
        assert len(flags) == 1, f"`shancheng {name}` has no --json"
        flag = flags[0]
        assert flag.param_type_name == "option" and flag.is_flag, name
        assert flag.default is False, name
        assert flag.help, f"`shancheng {name} --json` is not documented"


@pytest.mark.parametrize("name", ["sm3", "db current", "serve", "run", "anchor-worker"])
def test_the_json_flag_shows_in_help(cli: CliRunner, name: str) -> None:
    result = invoke(cli, *name.split(), "--help")
    assert result.exit_code == 0 and "--json" in result.stdout, result


def _document(result: Any) -> Any:
    """The one JSON document on stdout (fails on anything else there)."""
    assert result.exit_code == 0, result
    return json.loads(result.stdout)


def test_keys_new_and_pub_json(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "k.pem"
    created = _document(invoke(cli, "keys", "new", "--out", out, "--json"))
    key = SM2PrivateKey.from_pem(out.read_bytes())
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert created == {
        "key_id": key.key_id(),
        "file": str(out),
        "public_key": key.public_key().to_pem().decode(),
        "encrypted": False,
    }
    shown = _document(invoke(cli, "keys", "pub", out, "--json"))
    assert shown == {"key_id": key.key_id(), "public_key": created["public_key"]}
    assert SM2PublicKey.from_pem(shown["public_key"]) == key.public_key()

    password = tmp_path / "pw"
    password.write_text("s3cret\n")
    locked = tmp_path / "locked.pem"
    made = _document(
        invoke(cli, "keys", "new", "--out", locked, "--password-file", password, "--json")
    )
    assert made["encrypted"] is True
    assert SM2PrivateKey.from_pem(locked.read_bytes(), b"s3cret").key_id() == made["key_id"]


def test_keys_new_json_refusal_prints_no_document(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "k.pem"
    out.write_text("keep me")
    refused = invoke(cli, "keys", "new", "--out", out, "--json")
    assert refused.exit_code == 2 and "already exists" in (refused.message or "")
    assert refused.stdout == "" and out.read_text() == "keep me"


def test_sm3_json(cli: CliRunner, tmp_path: Path) -> None:
    data = tmp_path / "abc"
    data.write_bytes(b"abc")
    assert _document(invoke(cli, "sm3", data, "--json")) == {
        "file": str(data),
        "size": 3,
        "sm3": "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0",
    }
    missing = invoke(cli, "sm3", tmp_path / "none", "--json")
    assert missing.exit_code == 2 and missing.stdout == ""


def test_sign_and_verify_json(cli: CliRunner, key_file: Path, tmp_path: Path) -> None:
    key = SM2PrivateKey.from_pem(key_file.read_bytes())
    public = tmp_path / "key.pub"
    public.write_bytes(key.public_key().to_pem())
    data = tmp_path / "data.csv"
    data.write_text("id,value\n1,42\n")

    signed = _document(invoke(cli, "sign", data, "--key", key_file, "--json"))
    assert signed["file"] == str(data) and signed["key_id"] == key.key_id()
    sig = tmp_path / "data.sig"
    sig.write_text(signed["signature"])
    verdict = _document(invoke(cli, "verify", data, "--pub", public, "--sig", sig, "--json"))
    assert verdict == {"valid": True, "file": str(data), "key_id": key.key_id()}

    data.write_text("id,value\n1,43\n")  # tampered: the verdict, then exit 1
    tampered = invoke(cli, "verify", data, "--pub", public, "--sig", sig, "--json")
    assert tampered.exit_code == 1 and tampered.message == "invalid signature"
    assert json.loads(tampered.stdout) == {
        "valid": False,
        "file": str(data),
        "key_id": key.key_id(),
        "reason": "invalid signature",
    }
    sig.write_text("!!not base64!!")
    garbled = invoke(cli, "verify", data, "--pub", public, "--sig", sig, "--json")
    assert garbled.exit_code == 1
    assert json.loads(garbled.stdout)["reason"].endswith("does not hold base64")
    unusable = invoke(cli, "verify", data, "--pub", key_file, "--sig", sig, "--json")
    assert unusable.exit_code == 2 and unusable.stdout == ""  # not a verdict: no document


def test_contracts_check_json(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    from contracts import build
    from contracts.errors import StaleArtifactError

    assert _document(invoke(cli, "contracts", "check", "--json")) == {
        "ok": True,
        "recompiled": False,
        "reasons": [],
    }

    def stale(**_: object) -> None:
        raise StaleArtifactError(["AnchorRegistry: source AnchorRegistry.sol changed"])

    monkeypatch.setattr(build, "check", stale)
    result = invoke(cli, "contracts", "check", "--json")
    assert result.exit_code == 1 and "shancheng contracts build" in (result.message or "")
    assert json.loads(result.stdout) == {
        "ok": False,
        "recompiled": False,
        "reasons": ["AnchorRegistry: source AnchorRegistry.sol changed"],
    }


def test_contracts_build_json(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    from contracts import build

    monkeypatch.setattr(build, "build", lambda: {"AnchorRegistry": False})  # no compiler
    assert _document(invoke(cli, "contracts", "build", "--json")) == {
        "artifacts": [
            {
                "name": "AnchorRegistry",
                "path": str(build.artifact_path("AnchorRegistry")),
                "written": False,
            }
        ]
    }


def test_devnet_down_and_status_json_when_nothing_runs(cli: CliRunner, tmp_path: Path) -> None:
    down = _document(invoke(cli, "devnet", "down", "--state-dir", tmp_path, "--json"))
    assert down == {"running": False, "stopped_pid": None}
    status = invoke(cli, "devnet", "status", "--state-dir", tmp_path, "--json")
    assert status.exit_code == 1 and json.loads(status.stdout) == {"running": False}
    assert invoke(cli, "devnet", "down", "--state-dir", tmp_path).stdout == (
        "devnet is not running\n"
    )


def test_search_words_are_one_query(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, closed_url: str
) -> None:
    from clients.sdk import ExchangeClient

    asked: list[tuple[str | None, dict[str, Any]]] = []

    def search(self: ExchangeClient, q: str | None = None, **filters: Any) -> dict[str, Any]:
        asked.append((q, filters))
        return {"items": [], "next_cursor": None}

    monkeypatch.setattr(ExchangeClient, "search", search)
    found = invoke(
        cli, "buyer", "search", "山城", "气象", "--tag", "w", "--exchange-url", closed_url, "--json"
    )
    assert json.loads(found.stdout)["items"] == []
    quoted = invoke(cli, "buyer", "search", "山城 气象", "--exchange-url", closed_url, "--json")
    assert quoted.exit_code == 0
    everything = invoke(cli, "buyer", "search", "--exchange-url", closed_url, "--json")
    assert everything.exit_code == 0
    held = invoke(
        cli, "buyer", "search", "--custody", "provider", "--no-computation",
        "--exchange-url", closed_url, "--json",
    )  # fmt: skip
    assert held.exit_code == 0
    assert [q for q, _ in asked] == ["山城 气象", "山城 气象", None, None]
    assert asked[0][1]["tag"] == ["w"]
    assert (asked[3][1]["custody"], asked[3][1]["computation"]) == ("provider", False)
