"""AnchorRegistry behaviour on a real anvil, through the adapter. A fresh registry per test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from contracts.chain import DEVNET_TEST_ACCOUNTS, ChainClient, RegistryClient
from contracts.errors import (
    ContractRevertError,
    NotAnchorerError,
    NotOwnerError,
    TreeSizeNotIncreasingError,
    ZeroAddressError,
    ZeroRootError,
)
from devnet.launcher import Devnet

pytestmark = pytest.mark.chain

OWNER, ALICE, MALLORY = DEVNET_TEST_ACCOUNTS[0], DEVNET_TEST_ACCOUNTS[1], DEVNET_TEST_ACCOUNTS[2]
ROOT_A = bytes.fromhex("a1" * 32)
ROOT_B = bytes.fromhex("b2" * 32)


def _rpc(url: str, method: str, params: list[object] | None = None) -> object:
    reply = httpx.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    ).json()
    assert "error" not in reply, reply
    return reply["result"]


@pytest.fixture
def chain(devnet: Devnet) -> ChainClient:
    return ChainClient(devnet.rpc_url, OWNER.private_key)


@pytest.fixture
def registry(chain: ChainClient) -> RegistryClient:
    return chain.registry(chain.deploy_registry().address)


def _as(devnet: Devnet, account_key: str, registry: RegistryClient) -> RegistryClient:
    return RegistryClient(ChainClient(devnet.rpc_url, account_key), registry.address)


def test_deploy(chain: ChainClient) -> None:
    deployed = chain.deploy_registry()
    registry = chain.registry(deployed.address)
    assert registry.code_matches_artifact()
    assert chain.get_receipt(deployed.tx_hash) is not None
    assert deployed.block_number <= chain.block_number()
    assert registry.owner() == OWNER.address
    assert registry.is_anchorer(OWNER.address)
    assert not registry.is_anchorer(ALICE.address)
    assert registry.anchor_count() == 0
    assert registry.latest() is None
    assert registry.anchor_of(1) is None
    assert registry.anchored_events() == []


def test_anchor_and_read_back(chain: ChainClient, registry: RegistryClient) -> None:
    sent = registry.anchor(5, ROOT_A)
    assert sent.receipt is not None and sent.receipt.succeeded
    assert sent.tree_size == 5 and sent.root == ROOT_A and sent.gas_used
    block = chain.block(sent.receipt.block_number)
    assert block is not None and block.hash == sent.receipt.block_hash

    stored = registry.anchor_of(5)
    assert stored is not None
    assert (stored.tree_size, stored.root, stored.timestamp) == (5, ROOT_A, block.timestamp)
    assert stored.anchorer == OWNER.address
    assert type(stored.root) is bytes and type(stored.timestamp) is int
    assert registry.latest() == stored
    assert registry.anchor_count() == 1

    event = registry.find_anchor_event(5)
    assert event is not None
    assert (event.tree_size, event.root, event.anchorer) == (5, ROOT_A, OWNER.address)
    assert event.timestamp == block.timestamp
    assert (event.tx_hash, event.block_number, event.block_hash) == (
        sent.tx_hash,
        block.number,
        block.hash,
    )
    assert registry.find_anchor_event(6) is None


def test_anchors_accumulate_and_events_are_ordered(registry: RegistryClient) -> None:
    sizes = [1, 2, 10, 1000, 2**64 - 1]
    for size in sizes:
        registry.anchor(size, size.to_bytes(32, "big"))
    assert registry.anchor_count() == len(sizes)
    latest = registry.latest()
    assert latest is not None and latest.tree_size == 2**64 - 1
    events = registry.anchored_events()
    assert [e.tree_size for e in events] == sizes
    assert [e.root for e in events] == [s.to_bytes(32, "big") for s in sizes]
    assert registry.anchored_events(from_block=events[2].block_number or 0)[0].tree_size == 10
    # Earlier anchors stay readable: a bundle may point at any of them.
    old = registry.anchor_of(2)
    assert old is not None and old.root == (2).to_bytes(32, "big")


@dataclass(frozen=True)
class RevertCase:
    desc: str
    prior: int | None
    tree_size: int
    root: bytes
    error: type[ContractRevertError]
    fields: dict[str, int]


REVERT_CASES = [
    RevertCase("zero root", None, 1, b"\0" * 32, ZeroRootError, {}),
    RevertCase("zero root is checked before size", 5, 5, b"\0" * 32, ZeroRootError, {}),
    RevertCase("tree size zero first", None, 0, ROOT_A, TreeSizeNotIncreasingError,
               {"latest": 0, "given": 0}),
    RevertCase("equal tree size", 5, 5, ROOT_B, TreeSizeNotIncreasingError,
               {"latest": 5, "given": 5}),
    RevertCase("smaller tree size", 5, 4, ROOT_B, TreeSizeNotIncreasingError,
               {"latest": 5, "given": 4}),
]  # fmt: skip


@pytest.mark.parametrize("case", REVERT_CASES, ids=lambda case: case.desc)
def test_reverts_surface_as_typed_errors(
    chain: ChainClient, registry: RegistryClient, case: RevertCase
) -> None:
    if case.prior is not None:
        registry.anchor(case.prior, ROOT_A)
    before = chain.block_number()
    with pytest.raises(case.error) as caught:
        registry.anchor(case.tree_size, case.root)
    for name, value in case.fields.items():
        assert getattr(caught.value, name) == value
    assert caught.value.data[:4]  # the raw selector is kept
    assert chain.block_number() == before, "a pre-flight revert must not send anything"


def test_unauthorised_sender_is_refused(devnet: Devnet, registry: RegistryClient) -> None:
    with pytest.raises(NotAnchorerError) as caught:
        _as(devnet, MALLORY.private_key, registry).anchor(1, ROOT_A)
    assert caught.value.address == MALLORY.address
    assert registry.anchor_count() == 0


def test_owner_adds_and_removes_anchorers(devnet: Devnet, registry: RegistryClient) -> None:
    alice = _as(devnet, ALICE.private_key, registry)
    assert registry.add_anchorer(ALICE.address).succeeded
    assert registry.is_anchorer(ALICE.address)
    alice.anchor(3, ROOT_A)
    event = registry.find_anchor_event(3)
    assert event is not None and event.anchorer == ALICE.address
    stored = registry.anchor_of(3)
    assert stored is not None and stored.anchorer == ALICE.address

    assert registry.add_anchorer(ALICE.address).succeeded  # idempotent
    assert registry.remove_anchorer(ALICE.address).succeeded
    assert not registry.is_anchorer(ALICE.address)
    with pytest.raises(NotAnchorerError) as caught:
        alice.anchor(4, ROOT_B)
    assert caught.value.address == ALICE.address


def test_non_owner_cannot_manage_anchorers(devnet: Devnet, registry: RegistryClient) -> None:
    registry.add_anchorer(ALICE.address)
    alice = _as(devnet, ALICE.private_key, registry)  # an anchorer, but not the owner
    with pytest.raises(NotOwnerError) as caught:
        alice.add_anchorer(MALLORY.address)
    assert caught.value.address == ALICE.address
    with pytest.raises(NotOwnerError):
        alice.remove_anchorer(OWNER.address)
    with pytest.raises(NotOwnerError):
        alice.transfer_ownership(ALICE.address)
    assert not registry.is_anchorer(MALLORY.address)


def test_zero_address_is_refused(registry: RegistryClient) -> None:
    zero = "0x" + "00" * 20
    with pytest.raises(ZeroAddressError):
        registry.add_anchorer(zero)
    with pytest.raises(ZeroAddressError):
        registry.transfer_ownership(zero)


def test_ownership_transfer(devnet: Devnet, registry: RegistryClient) -> None:
    registry.transfer_ownership(ALICE.address)
    assert registry.owner() == ALICE.address
    assert not registry.is_anchorer(ALICE.address), "ownership does not imply anchoring"
    assert registry.is_anchorer(OWNER.address), "the old owner keeps anchoring until removed"
    with pytest.raises(NotOwnerError):
        registry.add_anchorer(MALLORY.address)
    _as(devnet, ALICE.private_key, registry).add_anchorer(MALLORY.address)
    assert registry.is_anchorer(MALLORY.address)


def test_send_then_wait_lets_a_worker_persist_the_hash(
    chain: ChainClient, registry: RegistryClient
) -> None:
    signed = registry.sign_anchor(8, ROOT_A)
    assert chain.transaction_status(signed.tx_hash).state == "unknown"  # not sent yet
    assert chain.broadcast(signed) == signed.tx_hash
    receipt = registry.wait_receipt(signed.tx_hash, timeout=10)
    assert receipt.succeeded and receipt.tx_hash == signed.tx_hash
    # Re-sending the same signed transaction (say, after a crash) is harmless.
    assert chain.broadcast(signed) == signed.tx_hash
    assert registry.anchor_count() == 1

    tx_hash = registry.send_anchor(9, ROOT_B)
    assert registry.wait_receipt(tx_hash).block_number > receipt.block_number


@pytest.fixture
def manual_mining(devnet: Devnet) -> Iterator[None]:
    _rpc(devnet.rpc_url, "evm_setAutomine", [False])
    try:
        yield
    finally:
        _rpc(devnet.rpc_url, "evm_setAutomine", [True])


def test_a_revert_after_mining_is_decoded(
    devnet: Devnet, chain: ChainClient, registry: RegistryClient, manual_mining: None
) -> None:
    # Two anchors of the same size both pass the pre-flight while neither is mined;
    # the second reverts in the block and must still surface as the typed error.
    first = registry.send_anchor(10, ROOT_A)
    second = registry.send_anchor(10, ROOT_B)
    assert chain.transaction_status(second).state == "pending"
    _rpc(devnet.rpc_url, "evm_mine")
    assert registry.wait_receipt(first, timeout=10).succeeded
    with pytest.raises(TreeSizeNotIncreasingError) as caught:
        registry.wait_receipt(second, timeout=10)
    assert (caught.value.latest, caught.value.given, caught.value.tx_hash) == (10, 10, second)
    receipt = chain.get_receipt(second)
    assert receipt is not None and not receipt.succeeded
    anchored = registry.anchor_of(10)
    assert anchored is not None and anchored.root == ROOT_A
