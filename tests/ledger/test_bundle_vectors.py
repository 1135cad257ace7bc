"""The Python verifier runs the receipt-bundle golden vectors (docs/vectors/bundle-v1.json).

The same file runs through ``web/src/verify.js`` under Node
(tests/web/test_verify_js.py) and, for digests and signatures, through the
``openssl`` CLI (tests/ledger/test_openssl_interop.py): three implementations
must agree on every case. The chain side is the vectors' recorded JSON-RPC
answers, decoded here into an :class:`~ledger.audit.AnchorSource`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from eth_utils.crypto import keccak

from ledger.audit import (
    STEPS,
    AnchorLookupError,
    AuditError,
    OnChainAnchor,
    StepStatus,
    WrongChainError,
    verify_bundle,
)
from ledger.bundle import Bundle, BundleFormatError
from ledger.checkpoint import Checkpoint, Promise
from ledger.errors import InvalidSignature
from ledger.merkle import leaf_hash, node_hash, verify_inclusion
from ledger.records import parse_json_text
from ledger.sm2 import SM2PublicKey
from ledger.sm3 import sm3

ROOT = Path(__file__).resolve().parents[2]
VECTORS: dict[str, Any] = json.loads(
    (ROOT / "docs" / "vectors" / "bundle-v1.json").read_text(encoding="utf-8")
)
ARTIFACT = ROOT / "contracts" / "artifacts" / "AnchorRegistry.json"


class RecordedChain:
    """An AnchorSource answering from a vector's recorded JSON-RPC answers."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self.by_method = {a["method"]: a for a in answers}

    def anchored_root(
        self, chain_id: int, registry_address: str, tree_size: int
    ) -> OnChainAnchor | None:
        served = int(self.by_method["eth_chainId"]["result"], 16)
        if served != chain_id:
            raise WrongChainError(chain_id, served)
        call = self.by_method["eth_call"]
        assert call["params"][0]["to"] == registry_address.lower()
        assert call["params"][0]["data"] == "0x6822d1b2" + f"{tree_size:064x}"
        stored = bytes.fromhex(call["result"][2:])
        if not stored or stored[:32] == bytes(32):
            return None
        logs = self.by_method["eth_getLogs"]["result"]
        if not logs:
            raise AnchorLookupError("stored, but no Anchored event")
        block = int(logs[-1]["blockNumber"], 16)
        head = int(self.by_method["eth_blockNumber"]["result"], 16)
        return OnChainAnchor(stored[:32], block, logs[-1]["transactionHash"], head - block + 1)


def _case_id(case: dict[str, Any]) -> str:
    return str(case["desc"])


@pytest.mark.parametrize("case", VECTORS["bundles"], ids=_case_id)
def test_bundle_case(case: dict[str, Any]) -> None:
    expect = case["expect"]
    if "bundle_text" in case:
        assert expect["failed_step"] == "format"
        with pytest.raises(BundleFormatError):
            Bundle.from_json(case["bundle_text"])
        return
    bundle = Bundle.from_dict(case["bundle"])
    options = case["options"]
    trusted = options.get("trusted_log_key")

    def run() -> Any:
        return verify_bundle(
            bundle,
            anchors=RecordedChain(case["rpc"]),
            trusted_log_key=None if trusted is None else SM2PublicKey.from_pem(trusted),
            trusted_registry=options["registry_address"],
            min_confirmations=options["min_confirmations"],
        )

    if expect["verdict"] == "verified":
        report = run()
        assert [s.status for s in report.steps] == [StepStatus.PASSED] * len(STEPS)
        return
    error: type[Exception] = AnchorLookupError if expect["inconclusive"] else AuditError
    with pytest.raises(error) as raised:
        run()
    failed = raised.value.report.failed_step  # type: ignore[attr-defined]
    assert failed is not None and failed.name == expect["failed_step"]


def test_every_step_has_a_failing_case_and_both_verdicts_occur() -> None:
    failing = {c["expect"]["failed_step"] for c in VECTORS["bundles"]}
    assert failing == {None, "format", *STEPS}


def test_sm3_cases() -> None:
    for case in VECTORS["sm3"]:
        assert sm3(bytes.fromhex(case["input_hex"])).hex() == case["digest"], case["desc"]


def test_canonicalization_cases() -> None:
    for case in VECTORS["canonicalization"]:
        parsed = parse_json_text(case["json"], "case")
        canonical = bytes(rfc8785.dumps(parsed))
        assert (
            canonical == case["canonical"].encode("utf-8") == bytes.fromhex(case["canonical_hex"])
        )


def test_key_ids() -> None:
    for case in VECTORS["key_ids"]:
        key = SM2PublicKey.from_pem(case["public_key_pem"])
        assert key.to_der().hex() == case["spki_der_hex"]
        assert key.key_id() == case["key_id"] == sm3(bytes.fromhex(case["spki_der_hex"])).hex()


@pytest.mark.parametrize("case", VECTORS["sm2"], ids=_case_id)
def test_sm2_cases(case: dict[str, Any]) -> None:
    key = SM2PublicKey.from_pem(case["public_key_pem"])
    message = bytes.fromhex(case["message_hex"])
    distid = case["id"].encode("ascii")
    signature = bytes.fromhex(case["signature_der_hex"])
    if case["valid"]:
        key.verify(signature, message, distid=distid)
    else:
        with pytest.raises(InvalidSignature):
            key.verify(signature, message, distid=distid)
    # The raw form is r ‖ s of the DER form, 32 bytes each.
    raw = bytes.fromhex(case["signature_raw_hex"])
    assert len(raw) == 64
    assert int.from_bytes(raw[:32], "big") and int.from_bytes(raw[32:], "big")


def test_merkle_section() -> None:
    merkle = VECTORS["merkle"]
    leaves = [bytes.fromhex(leaf["leaf_hash"]) for leaf in merkle["leaves"]]
    for leaf, data in zip(leaves, merkle["leaves"], strict=True):
        assert leaf_hash(data["data_utf8"].encode("utf-8")) == leaf
    for node in merkle["nodes"]:
        assert (
            node_hash(bytes.fromhex(node["left"]), bytes.fromhex(node["right"])).hex()
            == node["hash"]
        )
    for case in merkle["inclusion"]:
        verify_inclusion(
            bytes.fromhex(case["leaf_hash"]),
            case["index"],
            case["tree_size"],
            [bytes.fromhex(h) for h in case["proof"]],
            bytes.fromhex(case["root"]),
        )


def test_statements() -> None:
    promise_case, checkpoint_case = VECTORS["statements"]
    log_key = SM2PublicKey.from_pem(promise_case["log_public_key"])
    promise = Promise.from_dict(promise_case["from_promise"])
    assert promise.signed_bytes().decode() == promise_case["signed_bytes"]
    assert promise.batch_root().hex() == promise_case["batch_root"]
    promise.verify(log_key)
    checkpoint = Checkpoint.from_dict(checkpoint_case["from_checkpoint"])
    assert checkpoint.signed_bytes().decode() == checkpoint_case["signed_bytes"]
    checkpoint.verify(log_key)


def test_selectors_are_the_registry_abi_hashed_with_keccak256() -> None:
    """The selector and topic the spec, the vectors and verify.js hard-code are
    keccak256 of the ABI's signatures (computed here with eth-utils, web3's own
    hashing; only contracts/chain.py imports web3 itself)."""
    abi = json.loads(ARTIFACT.read_text(encoding="utf-8"))["abi"]
    by_name = {item["name"]: item for item in abi if "name" in item}
    record = by_name["anchorRecord"]
    assert [i["type"] for i in record["inputs"]] == ["uint64"]
    assert [o["type"] for o in record["outputs"]] == ["bytes32", "uint64", "address"]
    event = by_name["Anchored"]
    assert [(i["type"], i["indexed"]) for i in event["inputs"]] == [
        ("uint64", True),
        ("bytes32", False),
        ("address", True),
        ("uint64", False),
    ]
    selector = "0x" + keccak(text="anchorRecord(uint64)")[:4].hex()
    topic = "0x" + keccak(text="Anchored(uint64,bytes32,address,uint64)").hex()
    assert VECTORS["selectors"] == {
        "anchorRecord(uint64)": selector,
        "Anchored(uint64,bytes32,address,uint64)": topic,
    }
    verify_js = (ROOT / "web" / "src" / "verify.js").read_text(encoding="utf-8")
    assert f'SELECTOR_ANCHOR_RECORD = "{selector}"' in verify_js
    assert f'"{topic}"; // Anchored(uint64,bytes32,address,uint64)' in verify_js
    spec = (ROOT / "docs" / "bundle-v1.md").read_text(encoding="utf-8")
    assert selector in spec and topic in spec


def test_the_specs_constants_are_the_ones_verify_js_uses() -> None:
    """The SubjectPublicKeyInfo prefix and the curve parameters entering Z, as the spec
    writes them, are verify.js's, and make the vectors' key ids."""
    spec = (ROOT / "docs" / "bundle-v1.md").read_text(encoding="utf-8")
    verify_js = (ROOT / "web" / "src" / "verify.js").read_text(encoding="utf-8")
    prefix = "3059301306072a8648ce3d020106082a811ccf5501822d034200"
    assert f"{prefix} ‖ 04 ‖ X ‖ Y" in spec and f'"{prefix}"' in verify_js
    for case in VECTORS["key_ids"]:
        assert case["spki_der_hex"].startswith(prefix + "04")
    for name in ("a", "b", "xG", "yG"):
        value = re.search(rf"^{name} +=\s*([0-9a-f]{{64}})$", spec, re.M)
        assert value is not None, name
        assert f'"{value.group(1)}"' in verify_js, name
