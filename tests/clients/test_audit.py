"""The auditor against a real anvil: bundles checked on chain, and the log walk.

The chain side is real (a fresh AnchorRegistry per test on the session's
anvil); the exchange side of ``walk_log`` is a small fake served through
``httpx.MockTransport`` from an InMemoryTree, which can be made to lie.
"""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from clients.audit import ChainAnchorSource, verify_bundle_file, walk_log
from contracts.chain import DEVNET_TEST_ACCOUNTS, ChainClient, RegistryClient
from devnet.launcher import Devnet
from ledger.audit import (
    STEPS,
    AnchorLookupError,
    AuditError,
    AuditInconclusiveError,
    StepStatus,
    verify_bundle,
)
from ledger.bundle import AnchorRef, Bundle, InclusionProof
from ledger.checkpoint import Checkpoint, sign_checkpoint, sign_promise
from ledger.merkle import InMemoryTree
from ledger.records import SignedRecord, sign_record
from ledger.sm2 import SM2PrivateKey

pytestmark = pytest.mark.chain

ANCHORER = DEVNET_TEST_ACCOUNTS[7]
ANCHORED_SIZES = (3, 7, 10)
N_RECORDS = 12  # two more than the last anchor: the exchange is ahead of the chain
EXCHANGE_URL = "http://exchange.test"


# --------------------------------------------------------------------------- a log of ledger pieces


@dataclasses.dataclass
class Log:
    log_key: SM2PrivateKey
    actors: list[SM2PrivateKey]
    records: list[SignedRecord]

    @property
    def tree(self) -> InMemoryTree:
        return InMemoryTree(r.leaf_hash() for r in self.records)

    def actor_of(self, index: int) -> SM2PrivateKey:
        return self.actors[index % len(self.actors)]

    def checkpoint(self, size: int, key: SM2PrivateKey | None = None) -> Checkpoint:
        return sign_checkpoint(key or self.log_key, size, self.tree.root(size), 1_700_000_000_000)

    def replaced(self, index: int, record: SignedRecord) -> Log:
        records = list(self.records)
        records[index] = record
        return dataclasses.replace(self, records=records)


def make_record(actor: SM2PrivateKey, i: int, note: str = "") -> SignedRecord:
    payload = {"order_id": f"订单-{i}", "amount_fen": 1000 + i, "note": note}
    return sign_record(actor, "order.placed", payload, timestamp=1_700_000_000_000 + i)


def make_log() -> Log:
    log_key = SM2PrivateKey.generate()
    actors = [SM2PrivateKey.generate() for _ in range(3)]
    return Log(log_key, actors, [make_record(actors[i % 3], i) for i in range(N_RECORDS)])


@pytest.fixture(scope="module")
def log() -> Log:
    return make_log()


@dataclasses.dataclass
class Anchored:
    chain: ChainClient
    registry: RegistryClient
    txs: dict[int, tuple[str, int]]  # tree size -> (tx hash, block)

    @property
    def address(self) -> str:
        return self.registry.address


def anchor_log(
    devnet: Devnet,
    log: Log,
    sizes: tuple[int, ...] = ANCHORED_SIZES,
    tree: InMemoryTree | None = None,
) -> Anchored:
    chain = ChainClient(devnet.rpc_url, ANCHORER.private_key)
    registry = chain.registry(chain.deploy_registry().address)
    tree = tree or log.tree
    txs = {}
    for n in sizes:
        sent = registry.anchor(n, tree.root(n))
        assert sent.receipt is not None
        txs[n] = (sent.tx_hash, sent.receipt.block_number)
    return Anchored(chain, registry, txs)


@pytest.fixture
def anchored(devnet: Devnet, log: Log) -> Anchored:
    return anchor_log(devnet, log)


def make_bundle(log: Log, anchored: Anchored, index: int, size: int) -> Bundle:
    record = log.records[index]
    tx_hash, block = anchored.txs.get(size, ("0x" + "00" * 32, 0))
    return Bundle(
        record=record,
        actor_public_key=log.actor_of(index).public_key(),
        promise=sign_promise(log.log_key, record.leaf_hash(), index, 1_700_000_000_000),
        log_public_key=log.log_key.public_key(),
        inclusion=InclusionProof(index, size, tuple(log.tree.inclusion_proof(index, size))),
        checkpoint=log.checkpoint(size),
        anchor=AnchorRef(anchored.chain.chain_id(), anchored.address, tx_hash, block),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --------------------------------------------------------------------------- bundles on chain


@pytest.mark.parametrize(("index", "size"), [(0, 3), (2, 3), (5, 7), (9, 10), (0, 10)])
def test_bundle_verifies_against_the_chain(
    devnet: Devnet, log: Log, anchored: Anchored, index: int, size: int
) -> None:
    bundle = make_bundle(log, anchored, index, size)
    report = verify_bundle(
        bundle,
        anchors=ChainAnchorSource(devnet.rpc_url),
        trusted_log_key=log.log_key.public_key(),
        trusted_registry=anchored.address,
    )
    assert [s.status for s in report.steps] == [StepStatus.PASSED] * len(STEPS)
    assert "the bundle names" not in report.steps[-1].detail  # the tx is the one anchored


def test_chain_anchor_source_reads_root_tx_and_confirmations(
    devnet: Devnet, log: Log, anchored: Anchored
) -> None:
    source = ChainAnchorSource(devnet.rpc_url)
    chain_id = anchored.chain.chain_id()
    on_chain = source.anchored_root(chain_id, anchored.address.lower(), 7)
    assert on_chain is not None
    assert on_chain.root == log.tree.root(7)
    assert (on_chain.tx_hash, on_chain.block_number) == anchored.txs[7]
    head = anchored.chain.block_number()
    assert on_chain.confirmations == head - anchored.txs[7][1] + 1
    assert source.anchored_root(chain_id, anchored.address, 5) is None


def test_finality_needs_confirmations(devnet: Devnet, log: Log, anchored: Anchored) -> None:
    bundle = make_bundle(log, anchored, 9, 10)
    source = ChainAnchorSource(devnet.rpc_url)
    have = anchored.chain.block_number() - anchored.txs[10][1] + 1
    with pytest.raises(AuditError) as err:
        verify_bundle(bundle, anchors=source, min_confirmations=have + 2)
    assert err.value.step == "chain_anchor"
    assert err.value.actual == f"{have} confirmations"
    anchored.chain.rpc("anvil_mine", [2])
    assert verify_bundle(bundle, anchors=source, min_confirmations=have + 2).ok


def test_bundle_pointed_at_another_registry(devnet: Devnet, log: Log, anchored: Anchored) -> None:
    forged_tree = log.replaced(5, make_record(log.actor_of(5), 5, "rewritten")).tree
    other = anchor_log(devnet, log, (7,), tree=forged_tree)  # same size, another root
    bundle = make_bundle(log, anchored, 5, 7)
    moved = dataclasses.replace(
        bundle, anchor=dataclasses.replace(bundle.anchor, registry_address=other.address)
    )
    source = ChainAnchorSource(devnet.rpc_url)
    with pytest.raises(AuditError) as err:
        verify_bundle(moved, anchors=source)
    assert err.value.step == "chain_anchor"
    assert "another root" in err.value.message
    assert err.value.expected == forged_tree.root(7).hex()
    assert err.value.actual == log.tree.root(7).hex()
    with pytest.raises(AuditError) as err:  # and an auditor who pins the registry says so
        verify_bundle(moved, anchors=source, trusted_registry=anchored.address)
    assert err.value.step == "chain_anchor"
    assert "another registry" in err.value.message


def test_unanchored_tree_size(devnet: Devnet, log: Log, anchored: Anchored) -> None:
    bundle = make_bundle(log, anchored, 4, 6)
    with pytest.raises(AuditError) as err:
        verify_bundle(bundle, anchors=ChainAnchorSource(devnet.rpc_url))
    assert err.value.step == "chain_anchor"
    assert "not anchored" in err.value.message
    assert verify_bundle(bundle, anchors=None).ok  # offline, it is a fine bundle


def test_no_contract_at_the_registry_address(devnet: Devnet, log: Log, anchored: Anchored) -> None:
    bundle = make_bundle(log, anchored, 1, 3)
    nowhere = dataclasses.replace(
        bundle, anchor=dataclasses.replace(bundle.anchor, registry_address="0x" + "11" * 20)
    )
    with pytest.raises(AuditError) as err:
        verify_bundle(nowhere, anchors=ChainAnchorSource(devnet.rpc_url))
    assert err.value.step == "chain_anchor"


def test_wrong_chain_id(devnet: Devnet, log: Log, anchored: Anchored) -> None:
    bundle = make_bundle(log, anchored, 1, 3)
    elsewhere = dataclasses.replace(bundle, anchor=dataclasses.replace(bundle.anchor, chain_id=1))
    with pytest.raises(AuditError) as err:
        verify_bundle(elsewhere, anchors=ChainAnchorSource(devnet.rpc_url))
    assert err.value.step == "chain_anchor"
    assert (err.value.expected, err.value.actual) == (str(anchored.chain.chain_id()), "1")


def test_checkpoint_resigned_with_another_key(devnet: Devnet, log: Log, anchored: Anchored) -> None:
    mallory = SM2PrivateKey.generate()
    bundle = make_bundle(log, anchored, 8, 10)
    c, p = bundle.checkpoint, bundle.promise
    resigned = dataclasses.replace(
        bundle,
        log_public_key=mallory.public_key(),
        promise=sign_promise(mallory, p.leaf_hash, p.index, p.timestamp),
        checkpoint=sign_checkpoint(mallory, c.tree_size, c.root, c.timestamp),
    )
    with pytest.raises(AuditError) as err:
        verify_bundle(
            resigned,
            anchors=ChainAnchorSource(devnet.rpc_url),
            trusted_log_key=log.log_key.public_key(),
        )
    assert err.value.step == "checkpoint_signature"
    assert err.value.expected == log.log_key.key_id()


def test_unreachable_chain_is_inconclusive(log: Log, anchored: Anchored) -> None:
    bundle = make_bundle(log, anchored, 1, 3)
    source = ChainAnchorSource(f"http://127.0.0.1:{free_port()}", timeout=5)
    with pytest.raises(AnchorLookupError) as err:
        verify_bundle(bundle, anchors=source)
    assert err.value.report is not None
    assert [s.status for s in err.value.report.steps] == [StepStatus.PASSED] * 4 + [
        StepStatus.FAILED
    ]


def test_verify_bundle_file(devnet: Devnet, log: Log, anchored: Anchored, tmp_path: Path) -> None:
    path = tmp_path / "receipt.json"
    path.write_text(make_bundle(log, anchored, 6, 7).to_json(indent=2), encoding="utf-8")
    assert verify_bundle_file(path, devnet.rpc_url, anchored.address).ok
    offline = verify_bundle_file(path, offline=True)
    assert offline.steps[-1].status is StepStatus.SKIPPED
    with pytest.raises(ValueError):
        verify_bundle_file(path, devnet.rpc_url, None)

    data = json.loads(path.read_text(encoding="utf-8"))
    data["record"]["record"]["payload"]["amount_fen"] += 1
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(AuditError) as err:
        verify_bundle_file(path, devnet.rpc_url, anchored.address)
    assert err.value.step == "actor_signature"


# --------------------------------------------------------------------------- a fake exchange


@dataclasses.dataclass
class FakeExchange:
    """Serves the log's public GET endpoints from ledger pieces.

    ``checkpoint_log`` signs the checkpoints it serves; ``proof_log`` builds
    the proofs and entries. Honest: both are the real log. Lies are made by
    swapping them, or through the hooks.
    """

    log: Log
    checkpoint_log: Log | None = None
    checkpoint_key: SM2PrivateKey | None = None
    latest_size: int = N_RECORDS
    entry_hook: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None
    missing: tuple[str, ...] = ()
    down: bool = False

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        status, body = self.respond(request.url.path, request.url.query.decode())
        return httpx.Response(status, json=body)

    def respond(self, path: str, query: str) -> tuple[int, Any]:
        """(status, JSON body) for a GET; also used by the CLI tests' ASGI app."""
        params = {k: int(v[0]) for k, v in parse_qs(query).items()}
        if any(path.startswith(m) for m in self.missing):
            return 404, {"code": "not_found", "message": path}
        proofs = self.log.tree
        signer = self.checkpoint_log or self.log
        if path == "/.well-known/shancheng/log-key":
            public = self.log.log_key.public_key()
            return 200, {"key_id": public.key_id(), "public_key": public.to_pem().decode()}
        if path == "/log/checkpoint":
            return 200, signer.checkpoint(self.latest_size, self.checkpoint_key).to_dict()
        if path.startswith("/log/checkpoints/"):
            size = int(path.rsplit("/", 1)[1])
            if not 0 < size <= self.latest_size:
                return 404, {"code": "checkpoint_not_found", "message": str(size)}
            return 200, signer.checkpoint(size, self.checkpoint_key).to_dict()
        if path.startswith("/log/entries/"):
            index = int(path.rsplit("/", 1)[1])
            record = self.log.records[index]
            body = {
                "index": index,
                "leaf_hash": record.leaf_hash().hex(),
                "record": record.to_dict(),
                "public_key": self.log.actor_of(index).public_key().to_pem().decode(),
                "promise": sign_promise(
                    self.log.log_key, record.leaf_hash(), index, 1_700_000_000_000
                ).to_dict(),
            }
            return 200, self.entry_hook(index, body) if self.entry_hook else body
        if path == "/log/proofs/inclusion":
            index, size = params["index"], params["tree_size"]
            hashes = proofs.inclusion_proof(index, size)
            leaf = self.log.records[index].leaf_hash().hex()
            return 200, {
                "index": index,
                "tree_size": size,
                "leaf_hash": leaf,
                "hashes": [h.hex() for h in hashes],
            }
        if path == "/log/proofs/consistency":
            first, second = params["first"], params["second"]
            hashes = proofs.consistency_proof(first, second)
            return 200, {"first": first, "second": second, "hashes": [h.hex() for h in hashes]}
        return 404, {"code": "not_found", "message": path}


def walk(devnet: Devnet, anchored: Anchored, exchange: FakeExchange, **kwargs: Any) -> Any:
    return walk_log(
        EXCHANGE_URL, devnet.rpc_url, anchored.address, transport=exchange.transport, **kwargs
    )


# --------------------------------------------------------------------------- the walk


def test_honest_log_passes(devnet: Devnet, log: Log, anchored: Anchored) -> None:
    ticks: list[tuple[int, int]] = []
    report = walk(
        devnet, anchored, FakeExchange(log), spot_checks=5, progress=lambda *t: ticks.append(t)
    )
    # every anchored checkpoint, every link (the last to the latest checkpoint), 5 entries
    total = 2 * len(ANCHORED_SIZES) + 5
    assert ticks == [(done, total) for done in range(1, total + 1)]
    assert [a.tree_size for a in report.anchors] == list(ANCHORED_SIZES)
    subjects = [(c.step, c.subject) for c in report.checks]
    for n in ANCHORED_SIZES:
        assert ("checkpoint", f"tree size {n}") in subjects
    assert ("consistency", "tree sizes 3 → 7") in subjects
    assert ("consistency", "tree sizes 7 → 10") in subjects
    assert ("consistency", f"tree sizes 10 → {N_RECORDS}") in subjects  # latest, unanchored
    assert len(report.spot_checked) == 5
    assert all(0 <= i < 10 for i in report.spot_checked)
    assert sum(1 for step, _ in subjects if step == "entry") == 5
    json.dumps(report.to_dict())


def test_every_entry_can_be_spot_checked(devnet: Devnet, log: Log, anchored: Anchored) -> None:
    report = walk(
        devnet,
        anchored,
        FakeExchange(log),
        trusted_log_key=log.log_key.public_key(),
        spot_indices=range(10),
    )
    assert report.spot_checked == list(range(10))
    with pytest.raises(ValueError):
        walk(devnet, anchored, FakeExchange(log), spot_indices=[10])


def test_latest_checkpoint_equal_to_last_anchor(
    devnet: Devnet, log: Log, anchored: Anchored
) -> None:
    report = walk(devnet, anchored, FakeExchange(log, latest_size=10), spot_checks=0)
    assert not any(c.subject == "tree sizes 10 → 10" for c in report.checks)


def test_nothing_anchored(devnet: Devnet, log: Log) -> None:
    empty = anchor_log(devnet, log, ())
    report = walk(devnet, empty, FakeExchange(log))
    assert report.anchors == [] and report.checks == []


def test_anchors_before_from_block_are_not_seen(
    devnet: Devnet, log: Log, anchored: Anchored
) -> None:
    after_first = anchored.txs[3][1] + 1
    report = walk(devnet, anchored, FakeExchange(log), spot_checks=1, from_block=after_first)
    assert [a.tree_size for a in report.anchors] == [7, 10]


def test_no_registry_at_the_address_is_inconclusive(devnet: Devnet, log: Log) -> None:
    with pytest.raises(AuditInconclusiveError, match="no contract"):
        walk_log(
            EXCHANGE_URL,
            devnet.rpc_url,
            "0x" + "22" * 20,
            transport=FakeExchange(log).transport,
        )


def test_rewritten_history_is_caught_at_the_checkpoint(
    devnet: Devnet, log: Log, anchored: Anchored
) -> None:
    """The exchange replaced entry 5 (with another record its actor really signed)
    and serves re-signed checkpoints and proofs of the new tree."""
    forged = log.replaced(5, make_record(log.actor_of(5), 5, "rewritten"))
    with pytest.raises(AuditError) as err:
        walk(devnet, anchored, FakeExchange(forged), spot_checks=0)
    assert err.value.step == "checkpoint"
    assert "tree size 7" in err.value.message
    assert err.value.expected == log.tree.root(7).hex()
    assert err.value.actual == forged.tree.root(7).hex()
    assert [c.subject for c in err.value.report.checks] == ["tree size 3"]


def test_rewritten_history_is_caught_by_consistency(
    devnet: Devnet, log: Log, anchored: Anchored
) -> None:
    """Replaying the old (anchored) checkpoints does not help: the proofs served
    from the rewritten tree do not link the anchored roots."""
    forged = log.replaced(5, make_record(log.actor_of(5), 5, "rewritten"))
    exchange = FakeExchange(forged, checkpoint_log=log)
    with pytest.raises(AuditError) as err:
        walk(devnet, anchored, exchange, spot_checks=0)
    assert err.value.step == "consistency"
    assert "3 → 7" in err.value.message


def test_reordered_entries_are_caught(devnet: Devnet, log: Log, anchored: Anchored) -> None:
    records = list(log.records)
    records[8], records[9] = records[9], records[8]
    reordered = dataclasses.replace(log, records=records)
    with pytest.raises(AuditError) as err:
        walk(devnet, anchored, FakeExchange(reordered, checkpoint_log=log), spot_checks=0)
    assert err.value.step == "consistency"
    assert "7 → 10" in err.value.message


def test_edited_entry_is_caught(devnet: Devnet, log: Log, anchored: Anchored) -> None:
    def edit(index: int, body: dict[str, Any]) -> dict[str, Any]:
        if index == 4:
            body["record"]["record"]["payload"]["amount_fen"] = 1
        return body

    exchange = FakeExchange(log, entry_hook=edit)
    walk(devnet, anchored, exchange, spot_indices=[3, 5])
    with pytest.raises(AuditError) as err:
        walk(devnet, anchored, exchange, spot_indices=[3, 4, 5])
    assert err.value.step == "entry"
    assert "entry 4" in err.value.message and "signature" in err.value.message
    assert err.value.report.spot_checked == [3]


def test_substituted_entry_is_not_in_the_anchored_tree(
    devnet: Devnet, log: Log, anchored: Anchored
) -> None:
    """Entry 2 served as another record its actor really signed, with a fresh
    promise and its leaf hash: everything checks but the inclusion proof."""
    other = make_record(log.actor_of(2), 2, "substitute")

    def substitute(index: int, body: dict[str, Any]) -> dict[str, Any]:
        if index != 2:
            return body
        leaf = other.leaf_hash()
        return {
            **body,
            "record": other.to_dict(),
            "leaf_hash": leaf.hex(),
            "promise": sign_promise(log.log_key, leaf, 2, 1).to_dict(),
        }

    with pytest.raises(AuditError) as err:
        walk(devnet, anchored, FakeExchange(log, entry_hook=substitute), spot_indices=[2])
    assert err.value.step == "entry"
    assert "size 10" in err.value.message
    assert err.value.expected == log.tree.root(10).hex()


def test_entry_with_a_wrong_leaf_hash_or_promise(
    devnet: Devnet, log: Log, anchored: Anchored
) -> None:
    def wrong_leaf(index: int, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "leaf_hash": "00" * 32}

    with pytest.raises(AuditError, match="leaf hash") as err:
        walk(devnet, anchored, FakeExchange(log, entry_hook=wrong_leaf), spot_indices=[1])
    assert err.value.step == "entry"

    def stale_promise(index: int, body: dict[str, Any]) -> dict[str, Any]:
        promise = sign_promise(log.log_key, log.records[index].leaf_hash(), index + 1, 1)
        return {**body, "promise": promise.to_dict()}

    with pytest.raises(AuditError, match="promise") as err:
        walk(devnet, anchored, FakeExchange(log, entry_hook=stale_promise), spot_indices=[1])
    assert err.value.step == "entry"


def test_checkpoints_resigned_with_another_key(
    devnet: Devnet, log: Log, anchored: Anchored
) -> None:
    mallory = SM2PrivateKey.generate()
    exchange = FakeExchange(log, checkpoint_key=mallory)
    with pytest.raises(AuditError) as err:
        walk(devnet, anchored, exchange, trusted_log_key=log.log_key.public_key())
    assert err.value.step == "checkpoint"
    assert err.value.expected == log.log_key.key_id()
    assert err.value.actual == mallory.key_id()


def test_exchange_behind_the_chain(devnet: Devnet, log: Log, anchored: Anchored) -> None:
    with pytest.raises(AuditError) as err:
        walk(devnet, anchored, FakeExchange(log, latest_size=8), spot_checks=0)
    assert err.value.step == "checkpoint"  # it cannot serve the checkpoint of size 10


def test_exchange_refuses_a_proof(devnet: Devnet, log: Log, anchored: Anchored) -> None:
    exchange = FakeExchange(log, missing=("/log/proofs/consistency",))
    with pytest.raises(AuditError) as err:
        walk(devnet, anchored, exchange, spot_checks=0)
    assert err.value.step == "consistency"
    assert "HTTP 404 not_found" in err.value.message


def test_exchange_down_is_inconclusive(devnet: Devnet, log: Log, anchored: Anchored) -> None:
    with pytest.raises(AuditInconclusiveError):
        walk(devnet, anchored, FakeExchange(log, down=True))


def test_chain_down_is_inconclusive(log: Log, anchored: Anchored) -> None:
    with pytest.raises(AuditInconclusiveError):
        walk_log(
            EXCHANGE_URL,
            f"http://127.0.0.1:{free_port()}",
            anchored.address,
            transport=FakeExchange(log).transport,
            timeout=5,
        )
