"""End to end: ``shancheng demo`` on a real uvicorn, a real anvil and SQLite, with the
provider agent as its own process.

One exchange (devnet + registry + API, started by the demo's own
:func:`clients.demo.demo_exchange` with the server's
:func:`exchange.local_exchange.local_exchange`, because nothing answers on the probed port)
serves the whole module: the full story runs once against it, and the
tampering variants run their own (shorter) stories against the same exchange.
The CLI runs as a subprocess too: it must start its own exchange when none
answers and leave no process behind (exchange, anvil, agent), also on Ctrl-C.
(PostgreSQL, the plaintext scan and ``--keep-running``: tests/test_e2e_demo_custody.py.)

Fewer rows than the CLI's 100,000 keep it quick; the code path is the same.
"""

from __future__ import annotations

import csv
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

import duckdb
import pytest
from typer.testing import CliRunner

from clients.cli._common import CLIError
from clients.demo import (
    RAW_ROWS_SQL,
    STEPS,
    Demo,
    DemoExchange,
    DemoFailure,
    DemoResult,
    bought_slice,
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
    a, b = demo.key_id("provider_a"), demo.key_id("provider_b")
    _, count = bought_slice(ROWS)
    total = {a: 0, b: 0}
    fees = 0
    for who, rows in (("buyer_1", count), ("buyer_2", ROWS)):
        order = demo.orders[who]
        amount = tier_price(rows)
        fee = amount * FEE_BP // 10_000
        payouts = expected_split(amount, fee, {a: 7_000, b: 3_000})
        assert payouts[a] + payouts[b] + fee == amount
        assert order.settlement == {"amount": amount, "platform_fee": fee, "payouts": payouts}
        assert result.balances[who] == order.deposit - amount
        assert result.balances[f"{who}_held"] == 0
        # The SDK's own view of the order agrees with the summary.
        seen = demo.client(who).order(order.id)
        assert seen.state == "settled"
        assert seen.settlement is not None and seen.settlement.payouts == payouts
        total = {key: total[key] + payouts[key] for key in total}
        fees += fee
    assert result.balances["provider_a"] == total[a]
    assert result.balances["provider_b"] == total[b]
    assert result.balances["platform"] == fees
    assert result.settlement["amount"] == tier_price(count) + tier_price(ROWS)
    # then A withdrew part of it, which the operator paid out
    assert 0 < demo.paid_out <= total[a]
    account = demo.client("provider_a").account()
    assert (account.available, account.held) == (total[a] - demo.paid_out, 0)


def test_each_buyer_gets_exactly_the_rows_bought(story: tuple[Demo, DemoResult]) -> None:
    demo, result = story
    offset, count = bought_slice(ROWS)
    summary = {o["buyer"]: o for o in result.to_dict()["orders"]}
    assert (summary["buyer_1"]["row_offset"], summary["buyer_1"]["rows_ordered"]) == (offset, count)
    assert summary["buyer_1"]["rows_delivered"] == count
    assert summary["buyer_2"]["row_offset"] is None
    assert summary["buyer_2"]["rows_ordered"] == summary["buyer_2"]["rows_delivered"] == ROWS
    with demo.csv_path.open(newline="", encoding="utf-8") as handle:
        provider_rows = list(csv.reader(handle))
    with Path(summary["buyer_1"]["received"]).open(newline="", encoding="utf-8") as handle:
        slice_rows = list(csv.reader(handle))
    assert slice_rows[0] == provider_rows[0]  # the header
    assert slice_rows[1:] == provider_rows[1 + offset : 1 + offset + count]
    assert Path(summary["buyer_2"]["received"]).read_bytes() == demo.csv_path.read_bytes()
    for who in ("buyer_1", "buyer_2"):
        assert demo.client(who).order(demo.orders[who].id).custody == "provider"


def test_buyer_3_gets_aggregates_close_to_the_truth_and_no_rows(
    story: tuple[Demo, DemoResult],
) -> None:
    """The computation step: k and noise applied by the provider's agent, the answer
    within the noise of the exact averages DuckDB computes from the provider's file,
    the raw rows refused with nothing spent, and no row delivered to buyer 3."""
    demo, result = story
    computed = result.to_dict()["computation"]
    assert computed["columns"] == ["district", "month", "avg_t"]
    assert computed["rows_scanned"] == ROWS
    assert computed["epsilon_spent"] == "1"
    assert computed["refused"] == {"sql": RAW_ROWS_SQL, "reason": "returns_rows"}
    con = duckdb.connect()
    exact = {
        (district, month): (avg, count)
        for district, month, avg, count in con.execute(
            "SELECT district, month(observed_at), AVG(temperature_c), COUNT(*) "
            "FROM read_csv_auto(?) GROUP BY 1, 2",
            [str(demo.csv_path)],
        ).fetchall()
    }
    shown = {(d, m) for d, m in exact if exact[d, m][1] >= 10}
    assert computed["groups"] <= len(shown)  # groups under k = 10 rows are suppressed
    for district, month, noisy in computed["first_rows"]:
        truth, count = exact[district, month]
        assert count >= 10
        # Laplace on a sum over ≥ 10 rows clamped to [-10, 45]: far inside a few degrees
        assert abs(float(noisy) - truth) < 5
    order = demo.client("buyer_3").order(computed["order"])
    assert order.state == "delivered" and order.rows is None
    assert len(demo.client("buyer_3").computations(computed["order"]).items) == 1


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
    # the provider signed both deliveries (its agent did), the exchange none
    deliveries = [r for r in result.records if r.type == "delivery.issued"]
    assert [r.actor for r in deliveries] == ["provider_a", "provider_a"]
    for record in deliveries:
        signed = demo.bundles[record.index].record
        assert signed.record.actor == demo.key_id("provider_a")
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


# --------------------------------------------------------------------------- tampered deliveries


def _story_until_failure(
    exchange: DemoExchange, work: Path, after: dict[str, Callable[[Demo], None]]
) -> DemoFailure:
    with pytest.raises(DemoFailure) as caught:
        run_demo(exchange, work, rows=200, after=after)
    return caught.value


def _flip_stored_deliverable(exchange_dir: Path) -> Callable[[Demo], None]:
    """A hook: the exchange changes a byte of buyer 2's stored ciphertext."""

    def flip(demo: Demo) -> None:
        order = demo.orders["buyer_2"].id
        stored = exchange_dir / "exchange" / "content" / "deliverables" / "orders" / order
        (ciphertext,) = stored.glob("*.sm4s")
        _flip_byte(ciphertext)

    return flip


def test_a_ciphertext_changed_on_the_exchange_fails_the_buyers_check(
    exchange: DemoExchange, exchange_dir: Path, tmp_path: Path
) -> None:
    failure = _story_until_failure(
        exchange, tmp_path, {"deliver": _flip_stored_deliverable(exchange_dir)}
    )
    assert failure.step == "receive"
    assert "buyer_2's delivery failed the check ciphertext_sm3" in failure.message
    assert not (tmp_path / "download" / "buyer_2.csv").exists()


def test_a_changed_plaintext_byte_fails_the_digest_check(
    exchange: DemoExchange, tmp_path: Path
) -> None:
    failure = _story_until_failure(
        exchange, tmp_path, {"receive": lambda demo: _flip_byte(demo.download_dir / "buyer_2.csv")}
    )
    assert failure.step == "digest"
    assert "the listing commits to" in failure.message


def test_a_changed_row_of_the_slice_fails_the_digest_check(
    exchange: DemoExchange, tmp_path: Path
) -> None:
    def change_a_row(demo: Demo) -> None:
        path = demo.download_dir / "buyer_1.csv"
        lines = path.read_text("utf-8").splitlines(keepends=True)
        lines[2] = lines[2].replace(",", ";", 1)
        path.write_text("".join(lines), "utf-8")

    failure = _story_until_failure(exchange, tmp_path, {"receive": change_a_row})
    assert failure.step == "digest"
    assert "is not the rows bought" in failure.message


def test_the_cli_exits_1_with_one_line_when_a_delivery_is_tampered(
    exchange: DemoExchange, exchange_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator_key = tmp_path / "operator.pem"
    operator_key.write_bytes(exchange.operator.to_pem())
    deliver = Demo.step_deliver
    flip = _flip_stored_deliverable(exchange_dir)

    def tampered_deliver(self: Demo) -> str:
        detail = deliver(self)
        flip(self)
        return detail

    monkeypatch.setattr(Demo, "step_deliver", tampered_deliver)
    error = _invoke_demo(
        "--exchange", exchange.url, "--operator-key", operator_key,
        "--rows", "200", "--work-dir", tmp_path / "work",
    )  # fmt: skip
    assert error.exit_code == 1
    assert error.message.startswith("demo failed at step receive: ")


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


# --------------------------------------------------------------------------- the command


def _started_under(directory: Path) -> list[int]:
    """Processes the demo starts with ``directory`` on their command line: anvil (its
    state dir) and the provider agent (its state dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not any(str(directory).encode() in part for part in cmdline):
            continue
        is_agent = b"provider" in cmdline and b"agent" in cmdline
        if is_agent or process_is_anvil(int(entry.name)):
            found.append(int(entry.name))
    return found


def _agents_under(directory: Path) -> list[int]:
    return [pid for pid in _started_under(directory) if not process_is_anvil(pid)]


def _without_shancheng_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SHANCHENG_")}


def _demo_process(work: Path, *args: str, cwd: Path = REPO) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "exchange.cli", "demo", "--exchange", _nobody_url(),
         "--work-dir", str(work), *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**_without_shancheng_env(), "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


def _wait_until(predicate: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 240
    while not predicate():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"the demo never {what}"
        time.sleep(0.1)


def test_the_command_starts_its_own_exchange_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    process = _demo_process(tmp_path, "--rows", "300", "--json")
    try:
        out, err = process.communicate(timeout=240)
    finally:
        _stop(process)
    assert process.returncode == 0, err.decode()
    summary: dict[str, Any] = json.loads(out)
    assert summary["ok"] is True
    assert summary["exchange"]["started_by_demo"] is True
    assert summary["receipts_verified"] == summary["records_written"] > 0
    assert [(o["rows_ordered"], o["rows_delivered"]) for o in summary["orders"]] == [
        (60, 60),
        (300, 300),
    ]
    assert b"Traceback" not in err
    assert _started_under(tmp_path) == [], "anvil or the agent outlived `shancheng demo`"


def test_ctrl_c_stops_everything_the_demo_started(tmp_path: Path) -> None:
    process = _demo_process(tmp_path, "--rows", "300")
    try:
        _wait_until(lambda: bool(_agents_under(tmp_path)), process, "started its agent")
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        _stop(process)
    assert process.returncode == 130, err.decode()
    assert b"interrupted" in err
    assert b"Traceback" not in err
    assert _started_under(tmp_path) == []


def _by_hand(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "exchange.cli", *args, "--json"],
        cwd=REPO, capture_output=True, env=_without_shancheng_env(), timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_keep_running_leaves_the_story_running_until_ctrl_c(tmp_path: Path) -> None:
    story_file = tmp_path / "work" / "story.json"
    # a relative --work-dir: story.json's paths and the agent's still work
    process = _demo_process(Path("work"), "--rows", "300", "--keep-running", cwd=tmp_path)
    try:
        _wait_until(story_file.exists, process, "wrote story.json")
        story = json.loads(story_file.read_text("utf-8"))
        for field in ("exchange_url", "rpc_url", "registry", "participants", "listings", "orders"):
            assert story[field], field
        everyone = {"operator", "provider_a", "provider_b", "buyer_1", "buyer_2", "buyer_3"}
        assert everyone | {"auditor", "assessor"} == set(story["participants"])
        for participant in story["participants"].values():
            assert Path(participant["key_file"]).is_absolute()
            assert Path(participant["key_file"]).is_file()
            assert participant["key_id"] and participant["role"]
        listing, computation = story["listings"]
        assert listing["custody"] == "provider" and listing["id"] and listing["title"]
        assert computation["custody"] == "provider" and computation["computation"] is True
        for order in story["orders"]:
            assert order["listing"] == listing["id"]
            assert order["rows_ordered"] == order["rows_delivered"]
        time.sleep(1.0)  # still running after the story: the exchange, its anvil, the agent
        assert process.poll() is None
        assert len(_started_under(tmp_path)) == 2
        assert _agents_under(tmp_path) == [story["agent"]["pid"]]

        # a person goes on by hand, as buyer 1 and as provider A
        buyer = story["participants"]["buyer_1"]
        mine = next(o for o in story["orders"] if o["buyer"] == "buyer_1")
        status = _by_hand(
            "buyer", "status", mine["id"],
            "--exchange-url", story["exchange_url"], "--key-file", buyer["key_file"],
        )  # fmt: skip
        assert status["state"] == "settled"
        assert status["rows"] == mine["rows_ordered"]
        provider = story["participants"]["provider_a"]
        account = _by_hand(
            "provider", "account",
            "--exchange-url", story["exchange_url"], "--key-file", provider["key_file"],
        )  # fmt: skip
        assert account["available"] > 0

        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        _stop(process)
    assert process.returncode == 0, err.decode()
    assert b"Traceback" not in err
    assert _started_under(tmp_path) == []


def test_kill_9_of_the_demo_takes_its_agent_and_anvil_along(tmp_path: Path) -> None:
    """Nothing the demo started outlives it, even when it gets no chance to stop them."""
    process = _demo_process(tmp_path / "work", "--rows", "300", "--keep-running")
    try:
        _wait_until((tmp_path / "work" / "story.json").exists, process, "wrote story.json")
        assert _agents_under(tmp_path)
        process.kill()
        process.communicate()
        deadline = time.monotonic() + 30
        while _started_under(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _started_under(tmp_path) == []
    finally:
        _stop(process)
        for pid in _started_under(tmp_path):
            os.kill(pid, signal.SIGKILL)


def test_keep_running_needs_a_work_dir() -> None:
    outcome = CliRunner().invoke(shancheng, ["demo", "--keep-running"])
    assert isinstance(outcome.exception, CLIError)
    assert outcome.exception.exit_code == 2
    assert "--work-dir" in outcome.exception.message
