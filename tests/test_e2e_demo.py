"""End to end: ``shancheng demo`` on a real uvicorn, a real anvil and a real database.

One exchange (devnet + registry + API, started by the demo's own
:func:`clients.demo.demo_exchange` with the server's
:func:`exchange.local_exchange.local_exchange`, because nothing answers on the probed port)
serves the whole module: the full story runs once against it, and the
tampering variants run their own (shorter) stories against the same exchange.
The CLI runs as a subprocess too: it must start its own exchange when none
answers and leave no process behind, also on Ctrl-C.

Fewer rows than the CLI's 100,000 keep it quick; the code path is the same.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from clients.cli._common import CLIError
from clients.demo import (
    STEPS,
    Demo,
    DemoExchange,
    DemoFailure,
    DemoResult,
    demo_exchange,
    expected_split,
    run_demo,
    tier_price,
)
from devnet.launcher import process_is_anvil
from exchange.books import assert_books_balance
from exchange.cli import app as shancheng
from exchange.db import make_engine
from exchange.local_exchange import free_port, local_exchange
from ledger.bundle import Bundle, InclusionProof
from ledger.sm2 import SM2PrivateKey

pytestmark = [pytest.mark.chain, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
ROWS = 2_500
FEE_BP = 500  # clients.demo.DEMO_EXCHANGE_SETTINGS
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")


def _nobody_url() -> str:
    """A URL where no exchange answers, so the demo starts its own."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def exchange_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's exchange keeps its files (its SQLite database) here."""
    return tmp_path_factory.mktemp("demo-exchange")


@pytest.fixture(scope="module")
def exchange(exchange_dir: Path) -> Iterator[DemoExchange]:
    work = exchange_dir
    with demo_exchange(_nobody_url(), work, start_local=local_exchange) as target:
        assert target.started_here
        yield target


@pytest.fixture(scope="module")
def story(
    exchange: DemoExchange, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Demo, DemoResult]]:
    """The whole story, run once; the demo object stays open for the variants."""
    with Demo(exchange, tmp_path_factory.mktemp("demo-story"), rows=ROWS) as demo:
        result = demo.run()
        yield demo, result


def _flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    position = len(data) // 2 if offset is None else offset
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- the story


def test_the_story_settles_the_exact_split(story: tuple[Demo, DemoResult]) -> None:
    demo, result = story
    amount = tier_price(ROWS)
    fee = amount * FEE_BP // 10_000
    a, b = demo.key_id("provider_a"), demo.key_id("provider_b")
    payouts = expected_split(amount, fee, {a: 7_000, b: 3_000})
    assert payouts[a] + payouts[b] + fee == amount
    assert result.settlement == {"amount": amount, "platform_fee": fee, "payouts": payouts}
    assert result.balances["buyer"] == demo.deposit - amount
    assert result.balances["buyer_held"] == 0
    assert result.balances["provider_a"] == payouts[a]
    assert result.balances["provider_b"] == payouts[b]
    assert result.balances["platform"] == fee
    # The SDK's own view of the accounts agrees with the summary.
    assert demo.client("provider_a").account().available == payouts[a]
    order = demo.client("buyer").order(demo.order_id)
    assert order.state == "settled"
    assert order.settlement is not None and order.settlement.payouts == payouts


def test_the_books_balance_after_the_story(
    story: tuple[Demo, DemoResult], exchange_dir: Path
) -> None:
    """Every balance the story moved is explained by exactly one record of the log."""
    engine = make_engine(f"sqlite:///{exchange_dir / 'exchange' / 'exchange.db'}")
    try:
        assert_books_balance(engine)
    finally:
        engine.dispose()


def test_every_record_of_the_story_has_a_verified_receipt(
    story: tuple[Demo, DemoResult],
) -> None:
    demo, result = story
    types = [r.type for r in result.records]
    for expected in (
        "participant.registered",
        "participant.approved",
        "listing.drafted",
        "listing.published",
        "deposit.credited",
        "order.placed",
        "delivery.issued",
        "order.accepted",
        "settlement.paid",
    ):
        assert expected in types
    assert result.audited == len(result.records) == len(demo.bundles)
    assert [t.step for t in result.timings] == list(STEPS)
    assert result.tree_size > max(r.index for r in result.records)
    assert result.anchors and all(a["gas_used"] > 0 for a in result.anchors)
    assert sum(a["records"] for a in result.anchors) == len(result.records)
    auditor = demo.client("auditor")
    for index, bundle in demo.bundles.items():
        assert bundle.record.leaf_hash() == bundle.promise.leaf_hash
        report = auditor.verify_receipt(bundle, exchange_rpc(demo), demo.exchange.registry_address)
        assert report.ok, index
    summary = result.to_dict()
    json.dumps(summary)  # the --json output is plain JSON
    assert summary["records_written"] == len(result.records)


def exchange_rpc(demo: Demo) -> str:
    return demo.exchange.rpc_url


def _audit_fails(demo: Demo, index: int, tampered: Bundle) -> DemoFailure:
    original = demo.bundles[index]
    demo.bundles[index] = tampered
    try:
        with pytest.raises(DemoFailure) as caught:
            demo.run_step("audit")
    finally:
        demo.bundles[index] = original
    assert caught.value.step == "audit"
    return caught.value


def test_a_changed_record_field_fails_at_actor_signature(story: tuple[Demo, DemoResult]) -> None:
    demo, result = story
    placed = next(r for r in result.records if r.type == "order.placed")
    data = demo.bundles[placed.index].to_dict()
    data["record"]["record"]["payload"]["order_id"] = "00000000-0000-4000-8000-000000000000"
    failure = _audit_fails(demo, placed.index, Bundle.from_dict(data))
    assert "step actor_signature" in failure.message
    assert f"receipt {placed.index} (order.placed)" in failure.message


def test_a_changed_proof_node_fails_at_inclusion(story: tuple[Demo, DemoResult]) -> None:
    demo, _ = story
    index, bundle = max(demo.bundles.items(), key=lambda item: len(item[1].inclusion.hashes))
    hashes = list(bundle.inclusion.hashes)
    assert hashes, "every receipt proves against a one-leaf tree"
    hashes[0] = bytes([hashes[0][0] ^ 0x01]) + hashes[0][1:]
    proof = InclusionProof(index, bundle.inclusion.tree_size, tuple(hashes))
    tampered = replace(bundle, inclusion=proof)
    failure = _audit_fails(demo, index, tampered)
    assert "step inclusion" in failure.message
    # Untouched, the same receipts pass again.
    demo.run_step("audit")


# --------------------------------------------------------------------------- tampered downloads


def _story_until_failure(
    exchange: DemoExchange, work: Path, after: dict[str, Callable[[Demo], None]]
) -> DemoFailure:
    with pytest.raises(DemoFailure) as caught:
        run_demo(exchange, work, rows=200, after=after)
    return caught.value


def test_a_changed_ciphertext_byte_fails_decryption(exchange: DemoExchange, tmp_path: Path) -> None:
    failure = _story_until_failure(
        exchange, tmp_path, {"download": lambda demo: _flip_byte(demo.ciphertext_path)}
    )
    assert failure.step == "decrypt"
    assert "does not decrypt" in failure.message
    assert not (tmp_path / "download" / "shancheng-weather.csv").exists()


def test_a_changed_plaintext_byte_fails_the_digest_check(
    exchange: DemoExchange, tmp_path: Path
) -> None:
    failure = _story_until_failure(
        exchange, tmp_path, {"decrypt": lambda demo: _flip_byte(demo.plaintext_path)}
    )
    assert failure.step == "digest"
    assert "the listing commits to" in failure.message


def test_the_cli_exits_1_with_one_line_when_the_download_is_tampered(
    exchange: DemoExchange, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator_key = tmp_path / "operator.pem"
    operator_key.write_bytes(exchange.operator.to_pem())
    download = Demo.step_download

    def tampered_download(self: Demo) -> str:
        detail = download(self)
        _flip_byte(self.ciphertext_path, offset=len(self.ciphertext_path.read_bytes()) - 1)
        return detail

    monkeypatch.setattr(Demo, "step_download", tampered_download)
    error = _invoke_demo(
        "--exchange", exchange.url, "--operator-key", operator_key,
        "--rows", "200", "--work-dir", tmp_path / "work",
    )  # fmt: skip
    assert error.exit_code == 1
    assert error.message.startswith("demo failed at step decrypt: ")


def _invoke_demo(*args: str | Path) -> CLIError:
    outcome = CliRunner().invoke(shancheng, ["demo", *[str(a) for a in args]])
    error = outcome.exception
    assert isinstance(error, CLIError), outcome.output
    assert "\n" not in error.message
    return error


def test_a_key_that_is_not_the_exchanges_operator_is_named(
    exchange: DemoExchange, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(SM2PrivateKey.generate().to_pem())
    error = _invoke_demo(
        "--exchange", exchange.url, "--operator-key", stranger, "--work-dir", tmp_path / "w"
    )
    assert error.exit_code == 1
    assert error.message.startswith("demo failed at step register: ")
    assert "--operator-key" in error.message


def test_a_missing_operator_key_is_named(exchange: DemoExchange, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    error = _invoke_demo(
        "--exchange", exchange.url, "--operator-key", missing, "--work-dir", tmp_path / "w"
    )
    assert error.exit_code == 1
    assert error.message.startswith("demo failed at step exchange: ")
    assert str(missing) in error.message


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
@pytest.mark.skipif(POSTGRES_URL is None, reason="TEST_POSTGRES_URL is not set")
def test_the_story_on_postgresql(tmp_path: Path) -> None:
    from exchange.log.testing import isolated_database

    with (
        isolated_database(POSTGRES_URL, tmp_path) as database,
        demo_exchange(
            _nobody_url(), tmp_path, database_url=database.url, start_local=local_exchange
        ) as target,
    ):
        result = run_demo(target, tmp_path / "story", rows=500)
        assert_books_balance(database.engine)
    amount = tier_price(500)
    assert result.settlement["amount"] == amount
    assert result.balances["platform"] == amount * FEE_BP // 10_000
    assert result.audited == len(result.records)


# --------------------------------------------------------------------------- the command


def _anvils_under(directory: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and process_is_anvil(int(entry.name)):
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(directory).encode() in cmdline:
                found.append(int(entry.name))
    return found


def _demo_process(work: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHANCHENG_")}
    return subprocess.Popen(
        [sys.executable, "-m", "exchange.cli", "demo", "--exchange", _nobody_url(),
         "--work-dir", str(work), *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip


def test_the_command_starts_its_own_exchange_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    process = _demo_process(tmp_path, "--rows", "300", "--json")
    try:
        out, err = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err.decode()
    summary: dict[str, Any] = json.loads(out)
    assert summary["ok"] is True
    assert summary["exchange"]["started_by_demo"] is True
    assert summary["receipts_verified"] == summary["records_written"] > 0
    assert b"Traceback" not in err
    assert _anvils_under(tmp_path) == [], "anvil outlived `shancheng demo`"


def test_ctrl_c_stops_everything_the_demo_started(tmp_path: Path) -> None:
    process = _demo_process(tmp_path, "--rows", "300")
    try:
        deadline = time.monotonic() + 60
        while not _anvils_under(tmp_path):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the demo never started its devnet"
            time.sleep(0.05)
        time.sleep(1.0)  # let it get into the story
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err.decode()
    assert b"interrupted" in err
    assert b"Traceback" not in err
    assert _anvils_under(tmp_path) == []
