"""End to end: a real uvicorn, a real SQLite file, a real anvil and the auditor.

Records (notes of two enrolled participants) go in over HTTP through the log's
raw append; the exchange's own sequencer and anchoring worker
integrate and anchor them; receipts come back as bundles. Then the database is
tampered with the way a dishonest or compromised operator could, and each test
asserts which audit step catches it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients.audit import verify_bundle_file, walk_log
from clients.signing import SM2RequestSigner
from contracts.chain import DEVNET_TEST_ACCOUNTS, ChainClient
from devnet.deploy import ensure_registry
from devnet.launcher import Devnet
from exchange.app import create_app
from exchange.keys import read_key_file
from exchange.settings import Settings
from ledger.audit import AuditError
from ledger.checkpoint import sign_checkpoint
from ledger.merkle import CompactRange, leaf_hash
from ledger.records import SignedRecord, sign_record
from ledger.sm2 import SM2PrivateKey

REPO = Path(__file__).resolve().parents[1]
RECORDS = 6

# The exchange's test helpers live beside the exchange tests; pytest puts that
# directory on sys.path only when it collects there.
if str(REPO / "tests" / "exchange") not in sys.path:
    sys.path.append(str(REPO / "tests" / "exchange"))

from test_raw_append_support import enrol  # noqa: E402


@dataclass
class Stack:
    url: str
    rpc_url: str
    registry: str
    data_dir: Path
    authors: tuple[SM2PrivateKey, SM2PrivateKey]

    @property
    def db_file(self) -> Path:
        return self.data_dir / "exchange.db"

    def log_key(self) -> SM2PrivateKey:
        return read_key_file(self.data_dir / "exchange-key.pem")


@contextmanager
def _stack(tmp_path: Path, devnet: Devnet, live_server: Any) -> Iterator[Stack]:
    deployment, _ = ensure_registry(devnet.rpc_url, tmp_path / "deployment.json")
    settings = Settings(
        data_dir=tmp_path / "var",
        rpc_url=devnet.rpc_url,
        registry_address=deployment.registry_address,
        sequencer_interval=0.05,
        anchor_interval_s=0.0,
        anchor_size_threshold=1,
        anchor_confirmations=1,
        anchor_poll_s=0.05,
    )
    app = create_app(settings)
    authors = (SM2PrivateKey.generate(), SM2PrivateKey.generate())
    enrol(app.state.engine, *authors)
    with live_server(app) as url:
        yield Stack(url, devnet.rpc_url, deployment.registry_address, settings.data_dir, authors)


def _append_records(stack: Stack, count: int = RECORDS, first: int = 0) -> list[SignedRecord]:
    alice, bob = stack.authors
    records = []
    for number in range(first, first + count):
        actor = alice if number % 2 == 0 else bob
        signed = sign_record(
            actor, "note.added", {"listing": f"L-{number}", "title": f"数据集 {number}"}
        )
        response = httpx.post(
            f"{stack.url}/log/records",
            json={"record": signed.to_dict(), "public_key": actor.public_key().to_pem().decode()},
            auth=SM2RequestSigner(actor),
        )
        assert response.status_code == 201, response.text
        assert response.json()["index"] == number
        records.append(signed)
    return records


def _receipt(stack: Stack, index: int, timeout: float = 60.0) -> dict[str, Any]:
    """Wait until the exchange's own workers have anchored the entry; return its bundle."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(f"{stack.url}/receipts/{index}")
        if response.status_code == 200:
            bundle: dict[str, Any] = response.json()
            return bundle
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "receipt_pending"
        time.sleep(0.05)
    raise AssertionError(f"entry {index} was never anchored")


def _all_anchored(stack: Stack) -> list[dict[str, Any]]:
    bundles = [_receipt(stack, index) for index in range(RECORDS)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        checkpoint = httpx.get(f"{stack.url}/log/checkpoint").json()
        anchors = httpx.get(f"{stack.url}/log/anchors").json()
        anchored = {a["tree_size"] for a in anchors if a["state"] in ("anchored", "final")}
        if checkpoint["tree_size"] == RECORDS and RECORDS in anchored:
            return bundles
        time.sleep(0.05)
    raise AssertionError("the full log was never anchored")


def _write_bundle(tmp_path: Path, bundle: dict[str, Any], name: str = "bundle.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(bundle))
    return path


def _verify_online(stack: Stack, path: Path) -> None:
    verify_bundle_file(path, stack.rpc_url, stack.registry, trusted_log_key=None)


def _failing_step(stack: Stack, bundle: dict[str, Any], tmp_path: Path) -> str:
    with pytest.raises(AuditError) as caught:
        _verify_online(stack, _write_bundle(tmp_path, bundle, "tampered.json"))
    return caught.value.step


def _walk_failing_step(stack: Stack, **kwargs: Any) -> str:
    with pytest.raises(AuditError) as caught:
        walk_log(stack.url, stack.rpc_url, stack.registry, **kwargs)
    return caught.value.step


# --------------------------------------------------------------------------- tampering tools


def _sql(stack: Stack, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(stack.db_file) as connection:
        return connection.execute(statement, params).fetchall()


def _rewrite_history(stack: Stack, leaves: list[bytes]) -> None:
    """What an operator with the database and the log key can do: replace the
    entries, rebuild every stored tree node and re-sign every checkpoint so
    that the exchange's own view is perfectly self-consistent again."""
    log_key = stack.log_key()
    hashes = [leaf_hash(leaf) for leaf in leaves]
    with sqlite3.connect(stack.db_file) as connection:
        sizes = [row[0] for row in connection.execute("SELECT tree_size FROM checkpoint")]
        connection.execute('UPDATE log_entry SET "index" = -1 - "index"')
        for new_index, digest in enumerate(hashes):
            connection.execute(
                'UPDATE log_entry SET "index" = ? WHERE leaf_hash = ?', (new_index, digest)
            )
        connection.execute('DELETE FROM log_entry WHERE "index" < 0')
        connection.execute("DELETE FROM tree_node")
        tree = CompactRange()
        roots = {}
        for digest in hashes:
            for node in tree.append(digest):
                connection.execute(
                    'INSERT INTO tree_node (level, "index", hash) VALUES (?, ?, ?)',
                    (node.level, node.index, node.hash),
                )
            roots[tree.size] = tree.root()
        connection.execute("DELETE FROM checkpoint WHERE tree_size > ?", (len(leaves),))
        for size in sizes:
            if size > len(leaves):
                continue
            forged = sign_checkpoint(log_key, size, roots[size], int(time.time() * 1000))
            connection.execute(
                "UPDATE checkpoint SET root = ?, signature = ?, timestamp = ? WHERE tree_size = ?",
                (forged.root, forged.signature, forged.timestamp, size),
            )


def _stored_leaves(stack: Stack) -> list[bytes]:
    return [row[0] for row in _sql(stack, 'SELECT leaf FROM log_entry ORDER BY "index"')]


# --------------------------------------------------------------------------- the honest log


def test_every_receipt_verifies_against_the_chain_and_the_log_walk_passes(
    tmp_path: Path, devnet: Devnet, live_server: Any
) -> None:
    with _stack(tmp_path, devnet, live_server) as stack:
        records = _append_records(stack)
        bundles = _all_anchored(stack)
        for index, bundle in enumerate(bundles):
            assert bundle["record"] == records[index].to_dict()
            report = verify_bundle_file(
                _write_bundle(tmp_path, bundle), stack.rpc_url, stack.registry
            )
            assert [step.status for step in report.steps] == ["passed"] * 5
            assert bundle["anchor"]["registry_address"] == stack.registry
        walked = walk_log(stack.url, stack.rpc_url, stack.registry, spot_checks=RECORDS)
        assert walked.checks


def test_cli_audit_verify_exit_codes(tmp_path: Path, devnet: Devnet, live_server: Any) -> None:
    with _stack(tmp_path, devnet, live_server) as stack:
        _append_records(stack)
        bundle = _all_anchored(stack)[3]
        good = _write_bundle(tmp_path, bundle)
        bundle["record"]["record"]["payload"]["title"] = "篡改"
        bad = _write_bundle(tmp_path, bundle, "bad.json")
        command = [sys.executable, "-m", "clients.cli", "audit", "verify"]
        target = ["--rpc", stack.rpc_url, "--registry", stack.registry]
        passed = subprocess.run(
            [*command, str(good), *target], capture_output=True, text=True, cwd=REPO, check=False
        )
        failed = subprocess.run(
            [*command, str(bad), *target], capture_output=True, text=True, cwd=REPO, check=False
        )
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert failed.returncode == 1
    assert "actor_signature" in failed.stdout + failed.stderr
    assert "Traceback" not in failed.stdout + failed.stderr


# --------------------------------------------------------------------------- tampering


def test_an_edited_record_fails_its_signature_and_the_spot_check(
    tmp_path: Path, devnet: Devnet, live_server: Any
) -> None:
    with _stack(tmp_path, devnet, live_server) as stack:
        _append_records(stack)
        _all_anchored(stack)
        leaf = _stored_leaves(stack)[2]
        edited = leaf.replace(b"L-2", b"L-9")
        assert edited != leaf
        _sql(stack, 'UPDATE log_entry SET leaf = ? WHERE "index" = 2', edited)

        assert _failing_step(stack, httpx.get(f"{stack.url}/receipts/2").json(), tmp_path) == (
            "actor_signature"
        )
        assert _walk_failing_step(stack, spot_indices=[2]) == "entry"


def test_a_deleted_record_rewritten_history_is_caught_by_the_log_walk(
    tmp_path: Path, devnet: Devnet, live_server: Any
) -> None:
    with _stack(tmp_path, devnet, live_server) as stack:
        # an anchor of a size the shortened log still has (4), so that the exchange
        # can still build a receipt for entry 2 after the rewrite (else it depends
        # on how the sequencer happened to batch the six appends)
        _append_records(stack, 4)
        assert _receipt(stack, 3)["checkpoint"]["tree_size"] == 4
        _append_records(stack, RECORDS - 4, first=4)
        _all_anchored(stack)
        leaves = _stored_leaves(stack)
        _rewrite_history(stack, leaves[:2] + leaves[3:])

        assert _walk_failing_step(stack, spot_checks=0) == "checkpoint"
        # A fresh receipt for a moved entry contradicts the promise it was given.
        bundle = httpx.get(f"{stack.url}/receipts/2").json()
        assert _failing_step(stack, bundle, tmp_path) == "leaf_hash"


def test_two_reordered_records_are_caught_by_the_log_walk(
    tmp_path: Path, devnet: Devnet, live_server: Any
) -> None:
    with _stack(tmp_path, devnet, live_server) as stack:
        _append_records(stack)
        _all_anchored(stack)
        leaves = _stored_leaves(stack)
        leaves[1], leaves[4] = leaves[4], leaves[1]
        _rewrite_history(stack, leaves)

        assert _walk_failing_step(stack, spot_checks=0) == "checkpoint"
        bundle = httpx.get(f"{stack.url}/receipts/1").json()
        assert _failing_step(stack, bundle, tmp_path) == "leaf_hash"


def test_a_replaced_tree_node_breaks_inclusion(
    tmp_path: Path, devnet: Devnet, live_server: Any
) -> None:
    with _stack(tmp_path, devnet, live_server) as stack:
        _append_records(stack)
        _all_anchored(stack)
        # Only the full tree covers the last entry; leaf 4 is its sibling there.
        last = RECORDS - 1
        sibling = last - 1
        _sql(
            stack,
            'UPDATE tree_node SET hash = ? WHERE level = 0 AND "index" = ?',
            b"Z" * 32,
            sibling,
        )

        bundle = httpx.get(f"{stack.url}/receipts/{last}").json()
        assert bundle["inclusion"]["tree_size"] == RECORDS
        assert _failing_step(stack, bundle, tmp_path) == "inclusion"


def test_a_checkpoint_re_signed_with_another_key_is_caught(
    tmp_path: Path, devnet: Devnet, live_server: Any
) -> None:
    with _stack(tmp_path, devnet, live_server) as stack:
        _append_records(stack)
        bundle = _all_anchored(stack)[0]
        size = bundle["checkpoint"]["tree_size"]
        intruder = SM2PrivateKey.generate()
        forged = sign_checkpoint(
            intruder, size, bytes.fromhex(bundle["checkpoint"]["root"]), int(time.time() * 1000)
        )
        _sql(
            stack,
            "UPDATE checkpoint SET signature = ?, log_key_id = ?, timestamp = ? "
            "WHERE tree_size = ?",
            forged.signature,
            forged.log_key_id,
            forged.timestamp,
            size,
        )

        tampered = httpx.get(f"{stack.url}/receipts/0").json()
        assert tampered["checkpoint"]["log_key_id"] == intruder.key_id()
        assert _failing_step(stack, tampered, tmp_path) == "checkpoint_signature"
        # A bundle that names the intruder's key instead no longer matches the
        # promise the exchange signed with its real key; the pinned key agrees.
        tampered["log_public_key"] = intruder.public_key().to_pem().decode()
        with pytest.raises(AuditError) as caught:
            verify_bundle_file(
                _write_bundle(tmp_path, tampered, "pinned.json"),
                stack.rpc_url,
                stack.registry,
                trusted_log_key=stack.log_key().public_key(),
            )
        assert caught.value.step == "leaf_hash"


def test_a_bundle_pointed_at_another_registry_fails_the_chain_step(
    tmp_path: Path, devnet: Devnet, live_server: Any
) -> None:
    with _stack(tmp_path, devnet, live_server) as stack:
        _append_records(stack)
        bundle = _all_anchored(stack)[0]
        # A second registry that even holds the same root for that size.
        chain = ChainClient(devnet.rpc_url, private_key=DEVNET_TEST_ACCOUNTS[1].private_key)
        other = chain.deploy_registry().address
        checkpoint = bundle["checkpoint"]
        chain.registry(other).anchor(checkpoint["tree_size"], bytes.fromhex(checkpoint["root"]))
        bundle["anchor"]["registry_address"] = other

        assert _failing_step(stack, bundle, tmp_path) == "chain_anchor"
        # Audited against the registry it names, it passes: the auditor must pin the registry.
        report = verify_bundle_file(
            _write_bundle(tmp_path, bundle, "other.json"), stack.rpc_url, other
        )
        assert all(step.status == "passed" for step in report.steps)
