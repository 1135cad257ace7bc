"""The browser's verifier (web/src/verify.js) under Node.

* ``node --test web/test/``: the golden vectors (docs/vectors/bundle-v1.json) and
  the RFC 9162 inclusion vectors, the same files the Python verifier runs.
* Against a real chain: an exchange (real uvicorn, SQLite file, its own
  sequencer and anchoring worker) on the session's anvil serves receipts; the
  JS verifier (``web/src/verify-cli.mjs``, a node subprocess) reads the
  registry through anvil's JSON-RPC and verifies them, and fails at
  ``chain_anchor`` when the anchor is tampered with.

Skipped, with the reason, only when ``node`` (20 or later) is not installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clients.sdk import ExchangeClient
from contracts.chain import DEVNET_TEST_ACCOUNTS, ChainClient
from devnet.deploy import ensure_registry
from devnet.launcher import Devnet
from exchange.app import create_app
from exchange.settings import Settings
from ledger.sm2 import SM2PrivateKey

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "web" / "src" / "verify-cli.mjs"
VECTORS = json.loads((ROOT / "docs" / "vectors" / "bundle-v1.json").read_text(encoding="utf-8"))


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the browser verifier's tests need Node 20+")
    major = subprocess.run(
        [node, "-p", "process.versions.node.split('.')[0]"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    if int(major) < 20:
        pytest.skip(f"node {major} is too old: the browser verifier's tests need Node 20+")
    if not (ROOT / "web" / "node_modules" / "sm-crypto" / "dist" / "sm2.js").is_file():
        pytest.fail("web/node_modules/sm-crypto is missing: run `make setup`")
    return node


@pytest.fixture(scope="module")
def node() -> str:
    return _node()


def test_node_runs_the_golden_vectors(node: str) -> None:
    run = subprocess.run(
        [node, "--test", "web/test/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    passed = int(re.search(r"^# pass (\d+)$", run.stdout, re.M).group(1))  # type: ignore[union-attr]
    failed = int(re.search(r"^# fail (\d+)$", run.stdout, re.M).group(1))  # type: ignore[union-attr]
    assert failed == 0
    # One test per bundle case, plus the primitives'.
    assert passed > len(VECTORS["bundles"])
    for case in VECTORS["bundles"]:
        assert f"bundle: {case['desc']}" in run.stdout


# --------------------------------------------------------------------------- against anvil


@dataclass
class Stack:
    rpc_url: str
    registry: str
    bundles: list[dict[str, Any]]
    log_key_pem: str


@pytest.fixture(scope="module")
def stack(
    devnet: Devnet, tmp_path_factory: pytest.TempPathFactory, live_server: Any
) -> Iterator[Stack]:
    """An exchange anchoring on anvil; receipts of a lone entry and of a batch of two."""
    tmp_path = tmp_path_factory.mktemp("verify-js")
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
    key = SM2PrivateKey.generate()
    with live_server(app) as url, ExchangeClient(url, key=key) as client:
        client.register("JS verifier test", "auditor")
        first = client.append(client.sign("note.added", {"text": '山城 😀 \u2028 "q"'}))
        batch = client.append_many(
            [client.sign("note.added", {"n": n, "fen": 9007199254740991 - n}) for n in (1, 2)]
        )
        indexes = [first.index, *(a.index for a in batch)]
        bundles = [client.wait_for_receipt(i, timeout=60, interval=0.05).to_dict() for i in indexes]
        log_key_pem = client.log_key().sm2_public_key.to_pem().decode("ascii")
    assert bundles[2]["promise"]["batch_size"] == 2  # a promise with a batch proof
    yield Stack(devnet.rpc_url, deployment.registry_address, bundles, log_key_pem)


def _verify(
    node: str, tmp_path: Path, bundle: dict[str, Any], rpc_url: str, registry: str, *extra: str
) -> tuple[int, dict[str, Any]]:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle, ensure_ascii=False), encoding="utf-8")
    run = subprocess.run(
        [node, str(CLI), str(path), "--rpc", rpc_url, "--registry", registry, *extra],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert run.stderr == "", run.stderr
    result: dict[str, Any] = json.loads(run.stdout)
    return run.returncode, result


@pytest.mark.chain
def test_real_receipts_verify_in_js_against_anvil(node: str, stack: Stack, tmp_path: Path) -> None:
    for bundle in stack.bundles:
        code, result = _verify(node, tmp_path, bundle, stack.rpc_url, stack.registry)
        assert (code, result["verdict"], result["failedStep"]) == (0, "verified", None), result
        assert [s["ok"] for s in result["steps"]] == [True] * 5
        anchor = result["steps"][4]
        assert anchor["step"] == "chain_anchor"
        labels = {c["label"].split(" (")[0]: c for c in anchor["compared"]}
        assert labels["chain id"]["expected"] == labels["chain id"]["actual"] == "31337"
        root = next(c for c in anchor["compared"] if c["label"].startswith("anchored root"))
        assert root["expected"] == root["actual"] == bundle["checkpoint"]["root"]
    pinned = tmp_path / "log-key.pem"
    pinned.write_text(stack.log_key_pem, encoding="ascii")
    code, result = _verify(
        node, tmp_path, stack.bundles[2], stack.rpc_url, stack.registry, "--log-key", str(pinned)
    )
    assert code == 0, result


@pytest.mark.chain
def test_tampered_anchors_fail_at_chain_anchor_in_js(
    node: str, devnet: Devnet, stack: Stack, tmp_path: Path
) -> None:
    bundle = stack.bundles[1]
    size = bundle["checkpoint"]["tree_size"]
    # Another registry holding another root for the same tree size.
    chain = ChainClient(devnet.rpc_url, DEVNET_TEST_ACCOUNTS[6].private_key)
    rogue = chain.registry(chain.deploy_registry().address)
    rogue.anchor(size, bytes.fromhex("ab" * 32))
    elsewhere = {**bundle, "anchor": {**bundle["anchor"], "registry_address": rogue.address}}
    cases = [
        ("the registry holds another root", elsewhere, rogue.address, ()),
        ("the bundle names another registry than the pinned one", elsewhere, stack.registry, ()),
        (
            "the bundle names another chain",
            {**bundle, "anchor": {**bundle["anchor"], "chain_id": 1}},
            stack.registry,
            (),
        ),
        ("not final yet", bundle, stack.registry, ("--min-confirmations", "1000000")),
    ]
    for name, tampered, registry, extra in cases:
        code, result = _verify(node, tmp_path, tampered, stack.rpc_url, registry, *extra)
        assert (code, result["verdict"], result["failedStep"]) == (1, "failed", "chain_anchor"), (
            name,
            result,
        )
        assert [s["ok"] for s in result["steps"]] == [True, True, True, True, False], name
    # Not anchored at all: a tree size the registry never saw.
    unanchored = {**bundle, "anchor": {**bundle["anchor"], "registry_address": rogue.address}}
    rogue_empty = chain.registry(chain.deploy_registry().address)
    unanchored["anchor"]["registry_address"] = rogue_empty.address
    code, result = _verify(node, tmp_path, unanchored, stack.rpc_url, rogue_empty.address)
    assert (code, result["failedStep"]) == (1, "chain_anchor"), result
    assert "not anchored" in result["steps"][4]["message"]


@pytest.mark.chain
def test_an_unreachable_chain_is_inconclusive_in_js(
    node: str, stack: Stack, tmp_path: Path
) -> None:
    code, result = _verify(node, tmp_path, stack.bundles[0], "http://127.0.0.1:9/", stack.registry)
    assert (code, result["failedStep"], result["inconclusive"]) == (2, "chain_anchor", True)
