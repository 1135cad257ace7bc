"""``shancheng audit verify|log``: exit codes, step output, JSON, never a traceback.

Bundles and the fake exchange come from ``test_audit`` (the same directory);
the chain is the session's real anvil, the exchange a real uvicorn serving
the fake over HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from test_audit import (
    ANCHORED_SIZES,
    Anchored,
    FakeExchange,
    Log,
    anchor_log,
    free_port,
    make_bundle,
    make_log,
    make_record,
)
from typer.testing import CliRunner

import clients.cli
from clients.cli._common import CLIError
from devnet.launcher import Devnet
from ledger.sm2 import SM2PrivateKey

pytestmark = pytest.mark.chain

LiveServer = Callable[[Any], AbstractContextManager[str]]


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    message: str | None  # the one line main() prints for a CLIError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No chain from the environment or a config file of the machine's."""
    for name in ("RPC_URL", "REGISTRY_ADDRESS", "CONFIG", "EXCHANGE_URL"):
        monkeypatch.delenv(f"SHANCHENG_{name}", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)


@pytest.fixture(scope="module")
def cli() -> CliRunner:
    clients.cli._register_groups()
    return CliRunner()


def invoke(cli: CliRunner, *args: str | Path) -> Outcome:
    """Run the app as ``main()`` would, mapping a CLIError to its exit code."""
    result = cli.invoke(clients.cli.app, [str(a) for a in args])
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        if not isinstance(exc, CLIError):
            raise exc  # anything else would be a traceback for the user
        return Outcome(exc.exit_code, result.stdout, result.stderr, exc.message)
    return Outcome(result.exit_code, result.stdout, result.stderr, None)


@pytest.fixture(scope="module")
def log() -> Log:
    return make_log()


@pytest.fixture(scope="module")
def anchored(devnet: Devnet, log: Log) -> Anchored:
    return anchor_log(devnet, log)


@pytest.fixture
def bundle_file(log: Log, anchored: Anchored, tmp_path: Path) -> Path:
    path = tmp_path / "receipt.json"
    path.write_text(make_bundle(log, anchored, 5, 7).to_json(indent=2), encoding="utf-8")
    return path


@pytest.fixture
def log_key_file(log: Log, tmp_path: Path) -> Path:
    path = tmp_path / "log.pub"
    path.write_bytes(log.log_key.public_key().to_pem())
    return path


def _chain(devnet: Devnet, anchored: Anchored) -> list[str]:
    return ["--rpc", devnet.rpc_url, "--registry", anchored.address]


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- audit verify


def test_verify_online_passes(
    cli: CliRunner, devnet: Devnet, anchored: Anchored, bundle_file: Path, log_key_file: Path
) -> None:
    out = invoke(
        cli, "audit", "verify", bundle_file, *_chain(devnet, anchored), "--log-key", log_key_file
    )
    assert out.exit_code == 0, out
    lines = out.stdout.splitlines()
    for step in ("actor_signature", "leaf_hash", "inclusion", "checkpoint_signature"):
        assert any(line.startswith(f"✓ {step}") for line in lines), out.stdout
    assert any(line.startswith("✓ chain_anchor") for line in lines)
    assert "receipt verified against the chain" in out.stdout


def test_verify_offline_needs_no_chain(cli: CliRunner, bundle_file: Path) -> None:
    out = invoke(cli, "audit", "verify", bundle_file, "--offline")
    assert out.exit_code == 0, out
    assert "– chain_anchor" in out.stdout
    assert "offline" in out.stdout


def test_verify_json(cli: CliRunner, devnet: Devnet, anchored: Anchored, bundle_file: Path) -> None:
    out = invoke(cli, "audit", "verify", bundle_file, *_chain(devnet, anchored), "--json")
    assert out.exit_code == 0, out
    report = json.loads(out.stdout)
    assert report["ok"] is True
    assert [s["status"] for s in report["steps"]] == ["passed"] * 5
    assert report["subject"]["index"] == 5


@pytest.mark.parametrize(
    ("change", "step"),
    [
        (lambda d: d["record"]["record"]["payload"].update(amount_fen=1), "actor_signature"),
        (lambda d: d["promise"].update(leaf_hash="00" * 32), "leaf_hash"),
        (lambda d: d["inclusion"]["hashes"].reverse(), "inclusion"),
        (lambda d: d["checkpoint"].update(timestamp=1), "checkpoint_signature"),
        (lambda d: d["anchor"].update(chain_id=5), "chain_anchor"),
    ],
    ids=["payload", "promise", "proof", "checkpoint", "chain id"],
)
def test_verify_tampered_exits_1_naming_the_step(
    cli: CliRunner,
    devnet: Devnet,
    anchored: Anchored,
    bundle_file: Path,
    change: Callable[[dict[str, Any]], None],
    step: str,
) -> None:
    _edit(bundle_file, change)
    out = invoke(cli, "audit", "verify", bundle_file, *_chain(devnet, anchored))
    assert out.exit_code == 1, out
    assert out.message is not None and f"step {step}:" in out.message
    assert "expected" in out.message and "actual" in out.message
    assert f"✗ {step}" in out.stdout
    assert "    expected: " in out.stdout and "    actual:   " in out.stdout

    as_json = invoke(cli, "audit", "verify", bundle_file, *_chain(devnet, anchored), "--json")
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["failure"]["step"] == step


def test_verify_another_registry(
    cli: CliRunner, devnet: Devnet, log: Log, anchored: Anchored, bundle_file: Path
) -> None:
    forged = log.replaced(5, make_record(log.actor_of(5), 5, "rewritten"))
    other = anchor_log(devnet, log, (7,), tree=forged.tree)
    _edit(bundle_file, lambda d: d["anchor"].update(registry_address=other.address))
    pinned = invoke(cli, "audit", "verify", bundle_file, *_chain(devnet, anchored))
    assert pinned.exit_code == 1
    assert pinned.message is not None and "another registry" in pinned.message
    followed = invoke(
        cli, "audit", "verify", bundle_file, "--rpc", devnet.rpc_url, "--registry", other.address
    )
    assert followed.exit_code == 1
    assert followed.message is not None and "step chain_anchor" in followed.message
    assert forged.tree.root(7).hex() in followed.message


def test_verify_pinned_log_key_mismatch(
    cli: CliRunner, devnet: Devnet, anchored: Anchored, bundle_file: Path, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger.pub"
    stranger.write_bytes(SM2PrivateKey.generate().public_key().to_pem())
    out = invoke(
        cli, "audit", "verify", bundle_file, *_chain(devnet, anchored), "--log-key", stranger
    )
    assert out.exit_code == 1
    assert out.message is not None and "step checkpoint_signature" in out.message


def test_verify_min_confirmations(
    cli: CliRunner, devnet: Devnet, anchored: Anchored, bundle_file: Path
) -> None:
    out = invoke(
        cli,
        "audit",
        "verify",
        bundle_file,
        *_chain(devnet, anchored),
        "--min-confirmations",
        "1000000",
    )
    assert out.exit_code == 1
    assert out.message is not None and "not final" in out.message


def _unusable_cases(tmp_path: Path, bundle_file: Path) -> list[tuple[str, list[str | Path], str]]:
    not_json = tmp_path / "not.json"
    not_json.write_text("{nope", encoding="utf-8")
    v2 = tmp_path / "v2.json"
    v2.write_text(
        json.dumps({**json.loads(bundle_file.read_text(encoding="utf-8")), "version": 2}),
        encoding="utf-8",
    )
    malformed = tmp_path / "malformed.json"
    malformed.write_text(json.dumps({"version": 1, "record": {}}), encoding="utf-8")
    bad_key = tmp_path / "bad.pub"
    bad_key.write_text("not a key", encoding="utf-8")
    return [
        ("missing file", [tmp_path / "nope.json", "--offline"], "not found"),
        ("directory", [tmp_path, "--offline"], "directory"),
        ("not JSON", [not_json, "--offline"], "not valid JSON"),
        ("unknown version", [v2, "--offline"], "unsupported bundle version 2"),
        ("malformed", [malformed, "--offline"], "not a usable bundle"),
        ("no --rpc", [bundle_file, "--registry", "0x" + "11" * 20], "--rpc required"),
        ("no chain", [bundle_file], "--rpc and --registry required"),
        ("bad registry", [bundle_file, "--rpc", "http://x", "--registry", "0x12"], "address"),
        ("bad log key", [bundle_file, "--offline", "--log-key", bad_key], "not an SM2 public key"),
        ("missing log key", [bundle_file, "--offline", "--log-key", tmp_path / "x"], "not found"),
    ]


def test_verify_unusable_input_exits_2(
    cli: CliRunner, tmp_path: Path, bundle_file: Path, anchored: Anchored
) -> None:
    for desc, args, message in _unusable_cases(tmp_path, bundle_file):
        out = invoke(cli, "audit", "verify", *args)
        assert out.exit_code == 2, desc
        assert out.message is not None and message in out.message, (desc, out.message)
    down = invoke(
        cli,
        "audit",
        "verify",
        bundle_file,
        "--rpc",
        f"http://127.0.0.1:{free_port()}",
        "--registry",
        anchored.address,
    )
    assert down.exit_code == 2
    assert down.message is not None and "inconclusive" in down.message


def test_verify_subprocess_prints_one_line_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "clients.cli", "audit", "verify", tmp_path / "x.json", "--offline"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: bundle not found: {tmp_path / 'x.json'}"]


# --------------------------------------------------------------------------- audit log


def _asgi(exchange: FakeExchange) -> Any:
    """A bare ASGI app serving the fake exchange over real HTTP."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        status, body = exchange.respond(scope["path"], scope["query_string"].decode())
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})

    return app


@pytest.fixture
def serve(live_server: LiveServer) -> Callable[[FakeExchange], AbstractContextManager[str]]:
    def start(exchange: FakeExchange) -> AbstractContextManager[str]:
        return live_server(_asgi(exchange))

    return start


def test_audit_log_consistent(
    cli: CliRunner,
    devnet: Devnet,
    log: Log,
    anchored: Anchored,
    serve: Callable[[FakeExchange], AbstractContextManager[str]],
    log_key_file: Path,
) -> None:
    with serve(FakeExchange(log)) as url:
        out = invoke(
            cli,
            "audit",
            "log",
            "--exchange",
            url,
            *_chain(devnet, anchored),
            "--spot-checks",
            "4",
            "--log-key",
            log_key_file,
        )
        as_json = invoke(
            cli, "audit", "log", "--exchange", url, *_chain(devnet, anchored), "--json"
        )
    assert out.exit_code == 0, out
    assert f"{len(ANCHORED_SIZES)} anchored checkpoint(s)" in out.stdout
    assert "4 entries spot-checked" in out.stdout
    assert "✓ consistency  tree sizes 3 → 7" in out.stdout
    assert as_json.exit_code == 0
    report = json.loads(as_json.stdout)
    assert report["ok"] is True
    assert [a["tree_size"] for a in report["anchors"]] == list(ANCHORED_SIZES)


def test_audit_log_rewritten_history_exits_1(
    cli: CliRunner,
    devnet: Devnet,
    log: Log,
    anchored: Anchored,
    serve: Callable[[FakeExchange], AbstractContextManager[str]],
) -> None:
    forged = log.replaced(1, make_record(log.actor_of(1), 1, "rewritten"))
    with serve(FakeExchange(forged, checkpoint_log=log)) as url:
        out = invoke(cli, "audit", "log", "--exchange", url, *_chain(devnet, anchored))
        as_json = invoke(
            cli, "audit", "log", "--exchange", url, *_chain(devnet, anchored), "--json"
        )
    assert out.exit_code == 1
    assert out.message is not None and "step consistency" in out.message
    assert "✗ consistency" in out.stdout
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["failure"]["step"] == "consistency"


def test_audit_log_edited_entry_exits_1(
    cli: CliRunner,
    devnet: Devnet,
    log: Log,
    anchored: Anchored,
    serve: Callable[[FakeExchange], AbstractContextManager[str]],
) -> None:
    def edit(index: int, body: dict[str, Any]) -> dict[str, Any]:
        body["record"]["record"]["payload"]["note"] = "edited"
        return body

    with serve(replace(FakeExchange(log), entry_hook=edit)) as url:
        out = invoke(
            cli, "audit", "log", "--exchange", url, *_chain(devnet, anchored), "--spot-checks", "1"
        )
    assert out.exit_code == 1
    assert out.message is not None and "step entry" in out.message


def test_audit_log_unusable(cli: CliRunner, devnet: Devnet, anchored: Anchored) -> None:
    down = invoke(
        cli,
        "audit",
        "log",
        "--exchange",
        f"http://127.0.0.1:{free_port()}",
        *_chain(devnet, anchored),
    )
    assert down.exit_code == 2
    assert down.message is not None and "inconclusive" in down.message
    unread = invoke(cli, "audit", "log", "--exchange", f"http://127.0.0.1:{free_port()}")
    assert unread.exit_code == 2  # no chain anywhere: the exchange's /health is asked
    assert unread.message is not None and "/health" in unread.message
