"""The chain adapter: keys, connection failures, confirmations, transaction status."""

from __future__ import annotations

import re
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from contracts import chain as chain_module
from contracts.chain import (
    DEVNET_CHAIN_ID,
    DEVNET_TEST_ACCOUNTS,
    ChainClient,
    RegistryClient,
    is_devnet_test_key,
    require_key_for_chain,
    signing_backend,
)
from contracts.errors import (
    ChainError,
    ChainUnavailableError,
    ContractRevertError,
    DevKeyRefusedError,
    SigningKeyError,
    TransactionTimeoutError,
    TreeSizeNotIncreasingError,
)
from devnet.launcher import Devnet, DevnetConfig

REPO = Path(__file__).resolve().parents[2]
DEV_KEY = DEVNET_TEST_ACCOUNTS[0].private_key
ROOT = bytes.fromhex("5c" * 32)


def _rpc(url: str, method: str, params: list[object] | None = None) -> object:
    reply = httpx.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    ).json()
    assert "error" not in reply, reply
    return reply["result"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- keys ---------------------------------------------------------------------------------


def test_test_accounts_are_the_anvil_mnemonic_accounts() -> None:
    assert len(DEVNET_TEST_ACCOUNTS) == 10
    for account in DEVNET_TEST_ACCOUNTS:
        assert ChainClient("http://127.0.0.1:1", account.private_key).address == account.address
        assert is_devnet_test_key(account.private_key)
        assert is_devnet_test_key(account.private_key.removeprefix("0x").upper())
    assert not is_devnet_test_key("0x" + "11" * 32)


def test_require_key_for_chain() -> None:
    own_key = "0x" + secrets.token_hex(32)
    assert require_key_for_chain(DEVNET_CHAIN_ID, None) == DEV_KEY
    assert require_key_for_chain(DEVNET_CHAIN_ID, DEV_KEY) == DEV_KEY
    assert require_key_for_chain(1, own_key) == own_key
    assert require_key_for_chain(1, own_key[2:].upper()) == own_key
    with pytest.raises(DevKeyRefusedError) as caught:
        require_key_for_chain(11155111, DEVNET_TEST_ACCOUNTS[3].private_key[2:])
    assert caught.value.chain_id == 11155111
    assert caught.value.address == DEVNET_TEST_ACCOUNTS[3].address
    with pytest.raises(SigningKeyError, match="configure a private key"):
        require_key_for_chain(1, None)
    with pytest.raises(SigningKeyError, match="32 bytes"):
        require_key_for_chain(1, "0x1234")
    with pytest.raises(SigningKeyError, match="secp256k1"):
        ChainClient("http://127.0.0.1:1", "0x" + "00" * 32)


def test_signing_uses_coincurve() -> None:
    assert signing_backend() == "CoinCurveECCBackend"


@pytest.fixture(scope="module")
def foreign_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    """An anvil that calls itself chain 1337: "not the devnet" as far as keys go."""
    config = DevnetConfig(state_dir=tmp_path_factory.mktemp("foreign"), chain_id=1337)
    with Devnet(config) as node:
        yield node


@pytest.mark.chain
def test_dev_key_is_refused_on_a_non_devnet_chain(foreign_chain: Devnet) -> None:
    client = ChainClient(foreign_chain.rpc_url, DEV_KEY)
    assert client.chain_id() == 1337
    assert client.block_number() >= 0  # reads are fine
    with pytest.raises(DevKeyRefusedError):
        client.deploy_registry()
    assert client.block_number() == 0, "nothing was sent"


@pytest.mark.chain
def test_a_configured_key_works_on_a_non_devnet_chain(foreign_chain: Devnet) -> None:
    own = ChainClient(foreign_chain.rpc_url, "0x" + secrets.token_hex(32))
    assert own.address is not None
    _rpc(foreign_chain.rpc_url, "anvil_setBalance", [own.address, hex(10**18)])
    registry = own.registry(own.deploy_registry().address)
    assert registry.owner() == own.address
    assert registry.anchor(1, ROOT).gas_used


@pytest.mark.chain
def test_read_only_client_cannot_send(devnet: Devnet) -> None:
    reader = ChainClient(devnet.rpc_url)
    assert reader.address is None
    with pytest.raises(SigningKeyError, match="read-only"):
        reader.deploy_registry()


# -- connection failures ------------------------------------------------------------------


def test_closed_port_raises_chain_unavailable() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    client = ChainClient(url, DEV_KEY, timeout=2)
    for call in (
        client.chain_id,
        client.block_number,
        client.deploy_registry,
        lambda: client.code_at(DEVNET_TEST_ACCOUNTS[0].address),
        lambda: RegistryClient(client, DEVNET_TEST_ACCOUNTS[1].address).latest(),
        lambda: client.transaction_status("0x" + "00" * 32),
        lambda: client.rpc("evm_mine"),
    ):
        with pytest.raises(ChainUnavailableError) as caught:
            call()
        assert caught.value.rpc_url == url


def test_a_silent_endpoint_times_out_as_unavailable() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)  # accepts connections (kernel backlog) but never answers
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        with pytest.raises(ChainUnavailableError, match="timed out"):
            ChainClient(url, timeout=0.3).block_number()


# -- confirmations and transaction status --------------------------------------------------


@pytest.fixture
def client(devnet: Devnet) -> ChainClient:
    return ChainClient(devnet.rpc_url, DEV_KEY, poll_interval=0.02)


@pytest.fixture
def registry(client: ChainClient) -> RegistryClient:
    return client.registry(client.deploy_registry().address)


@pytest.mark.chain
def test_confirmations_count_blocks_on_top(
    devnet: Devnet, client: ChainClient, registry: RegistryClient
) -> None:
    sent = registry.anchor(1, ROOT)
    assert registry.confirmations(sent.tx_hash) == 1
    for _ in range(3):
        _rpc(devnet.rpc_url, "evm_mine")
    assert registry.confirmations(sent.tx_hash) == 4
    receipt = registry.wait_for_confirmations(sent.tx_hash, 4, timeout=2)
    assert receipt.block_number == sent.block_number
    with pytest.raises(TransactionTimeoutError) as caught:
        client.wait_for_confirmations(sent.tx_hash, 50, timeout=0.2)
    assert caught.value.tx_hash == sent.tx_hash
    assert client.confirmations("0x" + "ab" * 32) == 0


@pytest.mark.chain
def test_transaction_status_follows_a_dropped_transaction(
    devnet: Devnet, client: ChainClient, registry: RegistryClient
) -> None:
    assert client.transaction_status("0x" + "cd" * 32).state == "unknown"
    snapshot = _rpc(devnet.rpc_url, "evm_snapshot")
    sent = registry.anchor(2, ROOT)
    status = client.transaction_status(sent.tx_hash)
    assert (status.state, status.block_number) == ("mined", sent.block_number)
    assert sent.receipt is not None and status.block_hash == sent.receipt.block_hash
    # Roll the chain back past the transaction's block, as a reorg would.
    assert _rpc(devnet.rpc_url, "evm_revert", [snapshot]) is True
    assert client.transaction_status(sent.tx_hash).state == "unknown"
    assert client.get_receipt(sent.tx_hash) is None
    assert client.confirmations(sent.tx_hash) == 0
    assert registry.latest() is None
    with pytest.raises(TransactionTimeoutError):
        client.wait_receipt(sent.tx_hash, timeout=0.1)


@pytest.mark.chain
def test_pending_transaction(devnet: Devnet, client: ChainClient, registry: RegistryClient) -> None:
    _rpc(devnet.rpc_url, "evm_setAutomine", [False])
    try:
        tx_hash = registry.send_anchor(3, ROOT)
        assert client.transaction_status(tx_hash).state == "pending"
        assert client.get_receipt(tx_hash) is None
        assert client.confirmations(tx_hash) == 0
        _rpc(devnet.rpc_url, "evm_mine")
    finally:
        _rpc(devnet.rpc_url, "evm_setAutomine", [True])
    assert client.transaction_status(tx_hash).state == "mined"
    assert client.wait_receipt(tx_hash, timeout=2).succeeded


# -- nothing of web3 leaks ----------------------------------------------------------------


@pytest.mark.chain
def test_calling_an_address_without_code_raises_our_error(client: ChainClient) -> None:
    empty = RegistryClient(client, DEVNET_TEST_ACCOUNTS[5].address)
    with pytest.raises(ChainError) as caught:
        empty.latest()
    assert type(caught.value).__module__ == "contracts.errors"


def test_revert_data_decoding() -> None:
    specs = chain_module._error_table(chain_module.load_artifact().abi)
    data = bytes.fromhex("52d232b1") + (7).to_bytes(32, "big") + (3).to_bytes(32, "big")
    decoded = chain_module.decode_revert(data, specs)
    assert isinstance(decoded, TreeSizeNotIncreasingError)
    assert (decoded.latest, decoded.given) == (7, 3)

    reason = b"nope"
    error_string = (
        bytes.fromhex("08c379a0")
        + (32).to_bytes(32, "big")
        + len(reason).to_bytes(32, "big")
        + reason.ljust(32, b"\0")
    )
    assert str(chain_module.decode_revert(error_string, specs)) == "reverted: nope"
    for garbage in (b"", b"\xde\xad\xbe\xef", bytes.fromhex("52d232b1") + b"\x01"):
        decoded = chain_module.decode_revert(garbage, specs)
        assert type(decoded) is ContractRevertError and decoded.data == garbage


_WEB3_IMPORT = re.compile(r"^\s*(?:from|import)\s+(?:web3|eth_account)\b", re.MULTILINE)


def test_only_the_adapter_imports_web3() -> None:
    skip = {".venv", "node_modules", "var", "build", ".git"}
    offenders = [
        str(path.relative_to(REPO))
        for path in REPO.rglob("*.py")
        if not skip.intersection(path.relative_to(REPO).parts)
        and path != REPO / "contracts" / "chain.py"
        and _WEB3_IMPORT.search(path.read_text(encoding="utf-8", errors="replace"))
    ]
    assert offenders == []
