"""The one adapter between Shancheng and an EVM chain (web3.py lives here only).

Everything public here speaks plain Python — ``int``, ``bytes``, ``str`` (hex
with ``0x``; addresses checksummed) and frozen dataclasses — and raises only the
errors of :mod:`contracts.errors`. No web3, eth-account or requests type or
exception leaves this module.

* :class:`ChainClient` — one JSON-RPC endpoint and, optionally, one signing key:
  chain facts, receipts, confirmations, transaction status, deployment.
* :class:`RegistryClient` — the ``AnchorRegistry`` contract at an address:
  anchor, read anchors (storage and ``Anchored`` events), manage anchorers.

Transactions are built and signed locally (eth-account over eth-keys, which uses
the coincurve backend when it is installed — it is a dependency) and sent with
``eth_sendRawTransaction``: the node never holds the key. Each write is
pre-flighted with ``eth_estimateGas``, so a revert surfaces as a typed error
(:class:`~contracts.errors.TreeSizeNotIncreasingError` …) before anything is
sent. The nonce is the account's *pending* nonce fetched per transaction under a
lock, so use one writer process per key (the anchoring worker is elected).

For crash-safe anchoring, split send into two steps: :meth:`RegistryClient.sign_anchor`
returns the signed transaction and its hash *before* anything is sent, the caller
persists both, then :meth:`ChainClient.broadcast` sends it (re-broadcasting the same
raw transaction is harmless: same hash, and the node answers "already known").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar, cast

import requests
from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.exceptions import (
    BlockNotFound,
    ContractLogicError,
    ProviderConnectionError,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)

from contracts.build import ContractArtifact, load_artifact
from contracts.errors import (
    ChainError,
    ChainRPCError,
    ChainUnavailableError,
    ContractRevertError,
    DevKeyRefusedError,
    NotAnchorerError,
    NotOwnerError,
    SigningKeyError,
    TransactionFailedError,
    TransactionTimeoutError,
    TreeSizeNotIncreasingError,
    ZeroAddressError,
    ZeroRootError,
)

__all__ = [
    "DEVNET_CHAIN_ID",
    "DEVNET_TEST_ACCOUNTS",
    "Anchor",
    "AnchorTx",
    "BlockInfo",
    "ChainClient",
    "ContractArtifact",
    "DeployedRegistry",
    "DevAccount",
    "RegistryClient",
    "SignedTx",
    "TxReceipt",
    "TxStatus",
    "is_devnet_test_key",
    "load_artifact",
    "require_key_for_chain",
    "signing_backend",
]

DEVNET_CHAIN_ID: Final = 31337
"""Chain id of the local anvil devnet; the only chain the test keys below may sign for."""

MAX_TREE_SIZE: Final = 2**64 - 1

_T = TypeVar("_T")


# ---------------------------------------------------------------------------------------
# !!! TEST-ONLY KEYS !!!  PUBLIC TO THE WHOLE WORLD — NEVER USE THEM ON A REAL CHAIN  !!!
# The first ten accounts of anvil's well-known mnemonic
# "test test test test test test test test test test test junk" (m/44'/60'/0'/0/i).
# Every Ethereum developer knows these keys; bots drain anything sent to them on
# public networks within seconds. They exist here so the devnet (chain id 31337)
# works out of the box. `require_key_for_chain` refuses them on every other chain.
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DevAccount:
    """A TEST-ONLY anvil account: address and (public!) private key."""

    address: str
    private_key: str


DEVNET_TEST_ACCOUNTS: Final[tuple[DevAccount, ...]] = (
    DevAccount(
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    ),
    DevAccount(
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    ),
    DevAccount(
        "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
        "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    ),
    DevAccount(
        "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
        "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    ),
    DevAccount(
        "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
        "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    ),
    DevAccount(
        "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
        "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    ),
    DevAccount(
        "0x976EA74026E726554dB657fA54763abd0C3a0aa9",
        "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    ),
    DevAccount(
        "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",
        "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    ),
    DevAccount(
        "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f",
        "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    ),
    DevAccount(
        "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
        "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
    ),
)

_DEV_KEYS: Final = {account.private_key[2:].lower(): account for account in DEVNET_TEST_ACCOUNTS}


def _normalise_key(key: str) -> str:
    body = key.strip().lower().removeprefix("0x")
    if len(body) != 64 or any(c not in "0123456789abcdef" for c in body):
        raise SigningKeyError("a private key must be 32 bytes of hex (64 digits, optional 0x)")
    return "0x" + body


def is_devnet_test_key(key: str) -> bool:
    """Whether ``key`` is one of the public anvil test keys."""
    return key.strip().lower().removeprefix("0x") in _DEV_KEYS


def require_key_for_chain(chain_id: int, key: str | None) -> str:
    """The key to sign with on ``chain_id``; refuses the public test keys off the devnet.

    On the devnet (chain id 31337) a missing key falls back to the first TEST-ONLY
    account. On any other chain a key must be configured, and it must not be one
    of :data:`DEVNET_TEST_ACCOUNTS` (:class:`DevKeyRefusedError`).
    """
    if key is None:
        if chain_id == DEVNET_CHAIN_ID:
            return DEVNET_TEST_ACCOUNTS[0].private_key
        raise SigningKeyError(f"chain {chain_id} is not the devnet: configure a private key")
    normalised = _normalise_key(key)
    dev = _DEV_KEYS.get(normalised[2:])
    if dev is not None and chain_id != DEVNET_CHAIN_ID:
        raise DevKeyRefusedError(chain_id, dev.address)
    return normalised


# -- value types ------------------------------------------------------------------------


@dataclass(frozen=True)
class Anchor:
    """An anchored checkpoint, read from storage or from an ``Anchored`` event.

    Storage reads fill ``anchorer`` but not the transaction fields; event reads fill all.
    """

    tree_size: int
    root: bytes
    timestamp: int
    anchorer: str | None = None
    tx_hash: str | None = None
    block_number: int | None = None
    block_hash: str | None = None


@dataclass(frozen=True)
class TxReceipt:
    tx_hash: str
    block_number: int
    block_hash: str
    gas_used: int
    effective_gas_price: int
    status: int
    """1 = success, 0 = reverted."""
    contract_address: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == 1


@dataclass(frozen=True)
class TxStatus:
    """Where a transaction is: ``pending`` (in a mempool), ``mined`` or ``unknown``.

    ``unknown`` means the node has never heard of it or dropped it (e.g. after a
    reorg removed its block and it was not re-admitted to the pool).
    """

    state: Literal["pending", "mined", "unknown"]
    block_number: int | None = None
    block_hash: str | None = None


@dataclass(frozen=True)
class BlockInfo:
    number: int
    hash: str
    parent_hash: str
    timestamp: int


@dataclass(frozen=True)
class SignedTx:
    """A signed, not necessarily sent, transaction. Persist both fields before sending."""

    tx_hash: str
    raw: str
    """The RLP-encoded signed transaction, hex with ``0x``."""
    nonce: int
    sender: str


@dataclass(frozen=True)
class DeployedRegistry:
    address: str
    tx_hash: str
    block_number: int
    block_hash: str
    gas_used: int


@dataclass(frozen=True)
class AnchorTx:
    """An anchoring transaction; ``receipt`` is ``None`` until it was waited for."""

    tx_hash: str
    tree_size: int
    root: bytes
    receipt: TxReceipt | None = None

    @property
    def block_number(self) -> int | None:
        return None if self.receipt is None else self.receipt.block_number

    @property
    def gas_used(self) -> int | None:
        return None if self.receipt is None else self.receipt.gas_used


# -- revert decoding --------------------------------------------------------------------

_ERROR_STRING_SELECTOR: Final = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR: Final = bytes.fromhex("4e487b71")  # Panic(uint256)

_RevertFactory = Callable[[tuple[Any, ...], bytes, "str | None"], ContractRevertError]

_REVERT_FACTORIES: Final[dict[str, _RevertFactory]] = {
    "ZeroRoot": lambda args, data, tx: ZeroRootError(data=data, tx_hash=tx),
    "TreeSizeNotIncreasing": lambda args, data, tx: TreeSizeNotIncreasingError(
        int(args[0]), int(args[1]), data=data, tx_hash=tx
    ),
    "NotAnchorer": lambda args, data, tx: NotAnchorerError(
        to_checksum_address(args[0]), data=data, tx_hash=tx
    ),
    "NotOwner": lambda args, data, tx: NotOwnerError(
        to_checksum_address(args[0]), data=data, tx_hash=tx
    ),
    "ZeroAddress": lambda args, data, tx: ZeroAddressError(data=data, tx_hash=tx),
}


@dataclass(frozen=True)
class _ErrorSpec:
    name: str
    types: tuple[str, ...]


def _error_table(abi: Sequence[dict[str, Any]]) -> dict[bytes, _ErrorSpec]:
    table = {}
    for entry in abi:
        if entry.get("type") != "error":
            continue
        types = tuple(str(arg["type"]) for arg in entry.get("inputs", []))
        signature = f"{entry['name']}({','.join(types)})"
        table[keccak(text=signature)[:4]] = _ErrorSpec(entry["name"], types)
    return table


def _revert_data_bytes(data: object) -> bytes:
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, str):
        text = data.removeprefix("0x")
        try:
            return bytes.fromhex(text)
        except ValueError:
            return b""
    return b""


def decode_revert(
    data: bytes, errors: dict[bytes, _ErrorSpec], tx_hash: str | None = None
) -> ContractRevertError:
    """Turn revert data into our typed error (generic :class:`ContractRevertError` if unknown)."""
    selector, payload = data[:4], data[4:]
    spec = errors.get(selector)
    try:
        if spec is not None:
            args = abi_decode(list(spec.types), payload) if spec.types else ()
            factory = _REVERT_FACTORIES.get(spec.name)
            if factory is not None:
                return factory(tuple(args), data, tx_hash)
            return ContractRevertError(
                f"reverted: {spec.name}{tuple(args)}", data=data, tx_hash=tx_hash
            )
        if selector == _ERROR_STRING_SELECTOR:
            (reason,) = abi_decode(["string"], payload)
            return ContractRevertError(f"reverted: {reason}", data=data, tx_hash=tx_hash)
        if selector == _PANIC_SELECTOR:
            (code,) = abi_decode(["uint256"], payload)
            return ContractRevertError(f"panic 0x{code:02x}", data=data, tx_hash=tx_hash)
    except (DecodingError, ValueError, TypeError):  # malformed payload: report it raw
        pass
    shown = "0x" + data.hex() if data else "no data"
    return ContractRevertError(f"reverted ({shown})", data=data, tx_hash=tx_hash)


# -- helpers ----------------------------------------------------------------------------


def _hex(value: bytes | str) -> str:
    if isinstance(value, str):
        return value if value.startswith("0x") else "0x" + value
    return "0x" + bytes(value).hex()


def _tx_hash_bytes(tx_hash: str) -> bytes:
    try:
        raw = bytes.fromhex(tx_hash.removeprefix("0x"))
    except ValueError as exc:
        raise ValueError(f"not a transaction hash: {tx_hash!r}") from exc
    if len(raw) != 32:
        raise ValueError(f"not a transaction hash: {tx_hash!r}")
    return raw


def _checksum(address: str) -> str:
    try:
        return str(to_checksum_address(address))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not an address: {address!r}") from exc


def _check_anchor_args(tree_size: int, root: bytes) -> None:
    if not 0 <= tree_size <= MAX_TREE_SIZE:
        raise ValueError(f"tree size {tree_size} does not fit in uint64")
    if len(root) != 32:
        raise ValueError(f"a root is 32 bytes, got {len(root)}")


def _receipt(raw: Any) -> TxReceipt:
    contract = raw.get("contractAddress")
    return TxReceipt(
        tx_hash=_hex(raw["transactionHash"]),
        block_number=int(raw["blockNumber"]),
        block_hash=_hex(raw["blockHash"]),
        gas_used=int(raw["gasUsed"]),
        effective_gas_price=int(raw.get("effectiveGasPrice") or 0),
        status=int(raw["status"]),
        contract_address=None if contract is None else _checksum(contract),
    )


_ALREADY_KNOWN: Final = ("already known", "known transaction", "already imported")


def _address_of(key: str) -> str:
    try:
        return str(Account.from_key(key).address)
    except Exception:  # eth-keys' ValidationError is not a ValueError
        raise SigningKeyError("invalid private key: not in the secp256k1 range") from None


def signing_backend() -> str:
    """Name of the secp256k1 backend eth-account signs with (``CoinCurveECCBackend`` here)."""
    from eth_keys.backends import get_backend

    return type(get_backend()).__name__


class ChainClient:
    """One EVM JSON-RPC endpoint, optionally with a key to sign transactions.

    ``timeout`` bounds each HTTP request; ``receipt_timeout`` is the default wait
    for a receipt or confirmations. Requests are not retried here: a failure
    raises :class:`ChainUnavailableError` at once and the caller decides.
    Nothing touches the network until a method is called.
    """

    def __init__(
        self,
        rpc_url: str,
        private_key: str | None = None,
        *,
        timeout: float = 10.0,
        receipt_timeout: float = 120.0,
        poll_interval: float = 0.1,
        gas_multiplier: float = 1.2,
    ) -> None:
        self.rpc_url = rpc_url
        self.timeout = timeout
        self.receipt_timeout = receipt_timeout
        self.poll_interval = poll_interval
        self.gas_multiplier = gas_multiplier
        provider = Web3.HTTPProvider(
            rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None
        )
        # No default middleware: no ENS lookups or per-call chain-id validation; the
        # transactions we send are complete and signed here.
        self._w3 = Web3(provider, middleware=[])
        self._key = None if private_key is None else _normalise_key(private_key)
        self._address = None if self._key is None else _address_of(self._key)
        self._chain_id: int | None = None
        self._key_checked = False
        self._send_lock = threading.Lock()
        self._artifact: ContractArtifact | None = None
        self._errors: dict[bytes, _ErrorSpec] | None = None

    # -- plumbing ------------------------------------------------------------------------

    @property
    def address(self) -> str | None:
        """The signing account's checksummed address, or ``None`` when read-only."""
        return self._address

    @property
    def registry_artifact(self) -> ContractArtifact:
        if self._artifact is None:
            self._artifact = load_artifact("AnchorRegistry")
        return self._artifact

    def _error_specs(self) -> dict[bytes, _ErrorSpec]:
        if self._errors is None:
            self._errors = _error_table(self.registry_artifact.abi)
        return self._errors

    @contextmanager
    def _translating(self, what: str, tx_hash: str | None = None) -> Iterator[None]:
        """Map web3 / requests exceptions onto :mod:`contracts.errors`."""
        try:
            yield
        except ChainError:
            raise
        except ContractLogicError as exc:
            raise decode_revert(
                _revert_data_bytes(exc.data), self._error_specs(), tx_hash
            ) from None
        except (
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
            ProviderConnectionError,
            ConnectionError,
            TimeoutError,
        ) as exc:
            raise ChainUnavailableError(self.rpc_url, f"{what}: {exc}") from None
        except requests.exceptions.RequestException as exc:
            raise ChainUnavailableError(self.rpc_url, f"{what}: {exc}") from None
        except Web3RPCError as exc:
            raise ChainRPCError(f"{what}: {exc.message or exc}") from None
        except Web3Exception as exc:
            raise ChainError(f"{what}: {exc}") from None

    def _do(self, what: str, fn: Callable[[], _T]) -> _T:
        with self._translating(what):
            return fn()

    def rpc(self, method: str, params: Sequence[Any] = ()) -> Any:
        """A raw JSON-RPC call (e.g. ``evm_mine``); returns the decoded ``result``."""
        with self._translating(method):
            response = self._w3.provider.make_request(cast(Any, method), list(params))
        if "error" in response:
            error = response["error"]
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise ChainRPCError(f"{method}: {message}")
        return response.get("result")

    # -- chain facts ---------------------------------------------------------------------

    def chain_id(self) -> int:
        """The chain id (cached after the first successful call)."""
        if self._chain_id is None:
            self._chain_id = int(self._do("eth_chainId", lambda: self._w3.eth.chain_id))
        return self._chain_id

    def block_number(self) -> int:
        return int(self._do("eth_blockNumber", lambda: self._w3.eth.block_number))

    def block(
        self, block: int | Literal["latest", "safe", "finalized"] = "latest"
    ) -> BlockInfo | None:
        """Header facts of ``block``, or ``None`` if the node has no such block."""

        def fetch() -> BlockInfo | None:
            try:
                raw = self._w3.eth.get_block(block)
            except BlockNotFound:
                return None
            return BlockInfo(
                number=int(raw["number"]),
                hash=_hex(raw["hash"]),
                parent_hash=_hex(raw["parentHash"]),
                timestamp=int(raw["timestamp"]),
            )

        return self._do("eth_getBlockByNumber", fetch)

    def code_at(self, address: str) -> bytes:
        address = _checksum(address)
        return bytes(self._do("eth_getCode", lambda: self._w3.eth.get_code(cast(Any, address))))

    def balance(self, address: str) -> int:
        address = _checksum(address)
        return int(self._do("eth_getBalance", lambda: self._w3.eth.get_balance(cast(Any, address))))

    # -- transactions --------------------------------------------------------------------

    def _signing_key(self) -> str:
        if self._key is None:
            raise SigningKeyError("this ChainClient is read-only: no private key configured")
        if not self._key_checked:
            require_key_for_chain(self.chain_id(), self._key)
            self._key_checked = True
        return self._key

    def _fee_fields(self) -> dict[str, int]:
        latest = self._do("eth_getBlockByNumber", lambda: self._w3.eth.get_block("latest"))
        base_fee = latest.get("baseFeePerGas")
        if base_fee is None:  # a pre-London / free-gas consortium chain
            return {"gasPrice": int(self._do("eth_gasPrice", lambda: self._w3.eth.gas_price))}
        tip = int(self._do("eth_maxPriorityFeePerGas", lambda: self._w3.eth.max_priority_fee))
        # Twice the base fee survives six consecutive full blocks (+12.5% each).
        return {"maxFeePerGas": 2 * int(base_fee) + tip, "maxPriorityFeePerGas": tip}

    def sign_transaction(self, to: str | None, data: bytes, *, value: int = 0) -> SignedTx:
        """Pre-flight (``eth_estimateGas``), then build and sign; nothing is sent.

        A revert in the pre-flight raises the decoded typed error.
        """
        key = self._signing_key()
        sender = cast(str, self._address)
        call: dict[str, Any] = {"from": sender, "data": _hex(data), "value": value}
        if to is not None:
            call["to"] = _checksum(to)
        with self._send_lock:
            estimate = int(
                self._do("eth_estimateGas", lambda: self._w3.eth.estimate_gas(cast(Any, call)))
            )
            nonce = int(
                self._do(
                    "eth_getTransactionCount",
                    lambda: self._w3.eth.get_transaction_count(cast(Any, sender), "pending"),
                )
            )
            tx: dict[str, Any] = {
                **call,
                "chainId": self.chain_id(),
                "nonce": nonce,
                "gas": int(estimate * self.gas_multiplier) + 1_000,
                **self._fee_fields(),
            }
            if "maxFeePerGas" in tx:
                tx["type"] = 2
            try:
                signed = Account.sign_transaction(tx, key)
            except (ValueError, TypeError) as exc:
                raise TransactionFailedError(f"cannot sign transaction: {exc}") from None
        return SignedTx(
            tx_hash=_hex(bytes(signed.hash)),
            raw=_hex(bytes(signed.raw_transaction)),
            nonce=nonce,
            sender=sender,
        )

    def broadcast(self, signed: SignedTx) -> str:
        """Send a signed transaction; return its hash. Sending it again is harmless."""
        raw = bytes.fromhex(signed.raw.removeprefix("0x"))
        try:
            with self._translating("eth_sendRawTransaction", signed.tx_hash):
                sent = self._w3.eth.send_raw_transaction(raw)
        except ChainRPCError as exc:
            if any(marker in str(exc).lower() for marker in _ALREADY_KNOWN):
                return signed.tx_hash
            # A re-broadcast of a transaction that was already mined is refused as
            # "nonce too low"; it is not a failure if the node knows the hash.
            if self.transaction_status(signed.tx_hash).state != "unknown":
                return signed.tx_hash
            raise TransactionFailedError(str(exc), tx_hash=signed.tx_hash) from None
        return _hex(bytes(sent))

    def send_transaction(self, to: str | None, data: bytes, *, value: int = 0) -> str:
        """Pre-flight, sign and send; return the transaction hash without waiting."""
        return self.broadcast(self.sign_transaction(to, data, value=value))

    def get_receipt(self, tx_hash: str) -> TxReceipt | None:
        """The receipt if the transaction is mined (on the node's canonical chain)."""
        raw_hash = _tx_hash_bytes(tx_hash)

        def fetch() -> TxReceipt | None:
            try:
                raw = self._w3.eth.get_transaction_receipt(cast(Any, raw_hash))
            except TransactionNotFound:
                return None
            if raw is None or raw.get("blockNumber") is None:
                return None
            return _receipt(raw)

        return self._do("eth_getTransactionReceipt", fetch)

    def wait_receipt(self, tx_hash: str, timeout: float | None = None) -> TxReceipt:
        """Poll until mined; :class:`TransactionTimeoutError` after ``timeout`` seconds.

        Returns reverted receipts too (``status == 0``); see
        :meth:`RegistryClient.wait_receipt` for one that raises the decoded revert.
        """
        timeout = self.receipt_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            receipt = self.get_receipt(tx_hash)
            if receipt is not None:
                return receipt
            if time.monotonic() >= deadline:
                raise TransactionTimeoutError(tx_hash, timeout)
            time.sleep(self.poll_interval)

    def transaction_status(self, tx_hash: str) -> TxStatus:
        """``pending`` / ``mined`` (with block) / ``unknown`` (never seen, or dropped)."""
        raw_hash = _tx_hash_bytes(tx_hash)

        def fetch() -> TxStatus:
            try:
                raw = self._w3.eth.get_transaction(cast(Any, raw_hash))
            except TransactionNotFound:
                return TxStatus("unknown")
            if raw is None:
                return TxStatus("unknown")
            if raw.get("blockNumber") is None:
                return TxStatus("pending")
            return TxStatus("mined", int(raw["blockNumber"]), _hex(raw["blockHash"]))

        return self._do("eth_getTransactionByHash", fetch)

    def confirmations(self, tx_hash: str) -> int:
        """Blocks on top of and including the transaction's block; 0 if not mined."""
        receipt = self.get_receipt(tx_hash)
        if receipt is None:
            return 0
        return max(0, self.block_number() - receipt.block_number + 1)

    def wait_for_confirmations(
        self, tx_hash: str, confirmations: int, timeout: float | None = None
    ) -> TxReceipt:
        """Wait until the transaction has ``confirmations`` confirmations; return its receipt.

        The receipt is re-read each poll, so a reorg that moves the transaction to
        another block is followed. Raises :class:`TransactionTimeoutError`.
        """
        timeout = self.receipt_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            receipt = self.get_receipt(tx_hash)
            if (
                receipt is not None
                and self.block_number() - receipt.block_number + 1 >= confirmations
            ):
                return receipt
            if time.monotonic() >= deadline:
                raise TransactionTimeoutError(tx_hash, timeout, f"{confirmations} confirmations")
            time.sleep(self.poll_interval)

    def revert_reason(self, tx_hash: str) -> ContractRevertError | None:
        """Replay a mined, reverted transaction as a call on its block's state and decode it.

        ``None`` when the replay does not revert (e.g. the transaction ran out of gas).
        """
        raw_hash = _tx_hash_bytes(tx_hash)
        tx = self._do(
            "eth_getTransactionByHash", lambda: self._w3.eth.get_transaction(cast(Any, raw_hash))
        )
        call = {
            "from": tx["from"],
            "to": tx["to"],
            "data": _hex(bytes(tx["input"])),
            "value": tx["value"],
        }
        block: Any = tx.get("blockNumber") or "latest"
        try:
            with self._translating("eth_call", tx_hash):
                self._w3.eth.call(cast(Any, call), block_identifier=block)
        except ContractRevertError as exc:
            return exc
        return None

    # -- registry --------------------------------------------------------------------------

    def deploy_registry(self, *, timeout: float | None = None) -> DeployedRegistry:
        """Deploy a fresh ``AnchorRegistry`` from the committed artifact; wait for it."""
        tx_hash = self.send_transaction(None, self.registry_artifact.bytecode)
        receipt = self.wait_receipt(tx_hash, timeout)
        if not receipt.succeeded or receipt.contract_address is None:
            raise TransactionFailedError("registry deployment reverted", tx_hash=tx_hash)
        return DeployedRegistry(
            address=receipt.contract_address,
            tx_hash=tx_hash,
            block_number=receipt.block_number,
            block_hash=receipt.block_hash,
            gas_used=receipt.gas_used,
        )

    def registry(self, address: str) -> RegistryClient:
        return RegistryClient(self, address)

    def _contract(self, address: str) -> Any:
        return self._w3.eth.contract(address=cast(Any, address), abi=self.registry_artifact.abi)


class RegistryClient:
    """The ``AnchorRegistry`` at ``address``, reached through ``chain``."""

    def __init__(self, chain: ChainClient, address: str) -> None:
        self.chain = chain
        self.address = _checksum(address)
        self._contract = chain._contract(self.address)

    def _view(self, name: str, *args: Any, block: int | str = "latest") -> Any:
        function = getattr(self._contract.functions, name)(*args)
        return self.chain._do(f"{name}()", lambda: function.call(block_identifier=block))

    def _calldata(self, name: str, *args: Any) -> bytes:
        encoded = self.chain._do(
            f"encode {name}", lambda: self._contract.encode_abi(name, list(args))
        )
        return bytes.fromhex(str(encoded).removeprefix("0x"))

    def _write(self, name: str, *args: Any, timeout: float | None = None) -> TxReceipt:
        tx_hash = self.chain.send_transaction(self.address, self._calldata(name, *args))
        return self.wait_receipt(tx_hash, timeout)

    # -- deployment check ----------------------------------------------------------------

    def code_matches_artifact(self) -> bool:
        """Whether the code at ``address`` is exactly the committed artifact's runtime code."""
        return self.chain.code_at(self.address) == self.chain.registry_artifact.deployed_bytecode

    # -- anchoring -----------------------------------------------------------------------

    def sign_anchor(self, tree_size: int, root: bytes) -> SignedTx:
        """Pre-flight and sign ``anchor(tree_size, root)`` without sending it.

        Raises the typed revert (:class:`ZeroRootError`, :class:`TreeSizeNotIncreasingError`,
        :class:`NotAnchorerError`) if the registry would refuse it now.
        """
        _check_anchor_args(tree_size, root)
        return self.chain.sign_transaction(self.address, self._calldata("anchor", tree_size, root))

    def send_anchor(self, tree_size: int, root: bytes) -> str:
        """Pre-flight, sign and send ``anchor``; return the transaction hash at once."""
        return self.chain.broadcast(self.sign_anchor(tree_size, root))

    def anchor(
        self, tree_size: int, root: bytes, *, wait: bool = True, timeout: float | None = None
    ) -> AnchorTx:
        """Anchor a checkpoint; with ``wait`` return once mined (receipt filled in)."""
        tx_hash = self.send_anchor(tree_size, root)
        if not wait:
            return AnchorTx(tx_hash, tree_size, bytes(root))
        return AnchorTx(tx_hash, tree_size, bytes(root), self.wait_receipt(tx_hash, timeout))

    def wait_receipt(self, tx_hash: str, timeout: float | None = None) -> TxReceipt:
        """Wait until mined; a reverted transaction raises its decoded typed error.

        Undecodable failures (e.g. out of gas) raise :class:`TransactionFailedError`.
        """
        receipt = self.chain.wait_receipt(tx_hash, timeout)
        if receipt.succeeded:
            return receipt
        reason = self.chain.revert_reason(tx_hash)
        if reason is not None:
            raise reason
        raise TransactionFailedError(
            f"transaction reverted without a decodable reason (gas used {receipt.gas_used})",
            tx_hash=tx_hash,
        )

    # -- reads ---------------------------------------------------------------------------

    def anchor_of(self, tree_size: int) -> Anchor | None:
        """The stored anchor for ``tree_size`` (``None`` if never anchored)."""
        _check_anchor_args(tree_size, b"\0" * 32)
        root, timestamp, anchorer = self._view("anchorRecord", tree_size)
        if bytes(root) == b"\0" * 32:
            return None
        return Anchor(tree_size, bytes(root), int(timestamp), _checksum(anchorer))

    def latest(self) -> Anchor | None:
        """The most recent anchor (``None`` before the first)."""
        tree_size, root, timestamp = self._view("latest")
        if int(tree_size) == 0:
            return None
        # Records are immutable once written, so this second read cannot disagree.
        record = self.anchor_of(int(tree_size))
        anchorer = None if record is None else record.anchorer
        return Anchor(int(tree_size), bytes(root), int(timestamp), anchorer)

    def anchor_count(self) -> int:
        return int(self._view("anchorCount"))

    def owner(self) -> str:
        return _checksum(self._view("owner"))

    def is_anchorer(self, address: str) -> bool:
        return bool(self._view("isAnchorer", _checksum(address)))

    def anchored_events(
        self,
        from_block: int = 0,
        to_block: int | Literal["latest"] = "latest",
        *,
        tree_size: int | None = None,
    ) -> list[Anchor]:
        """``Anchored`` events in ``[from_block, to_block]``, oldest first."""
        filters = None if tree_size is None else {"treeSize": tree_size}
        event = self._contract.events.Anchored()

        def fetch() -> list[Anchor]:
            logs = event.get_logs(
                argument_filters=filters, from_block=from_block, to_block=to_block
            )
            return [
                Anchor(
                    tree_size=int(log["args"]["treeSize"]),
                    root=bytes(log["args"]["root"]),
                    timestamp=int(log["args"]["timestamp"]),
                    anchorer=_checksum(log["args"]["anchorer"]),
                    tx_hash=_hex(bytes(log["transactionHash"])),
                    block_number=int(log["blockNumber"]),
                    block_hash=_hex(bytes(log["blockHash"])),
                )
                for log in logs
            ]

        return self.chain._do("eth_getLogs", fetch)

    def find_anchor_event(self, tree_size: int, *, from_block: int = 0) -> Anchor | None:
        """The ``Anchored`` event for ``tree_size`` (with tx hash and block), if any."""
        events = self.anchored_events(from_block, tree_size=tree_size)
        return events[-1] if events else None

    # -- anchorers and ownership (owner only) ---------------------------------------------

    def add_anchorer(self, address: str, *, timeout: float | None = None) -> TxReceipt:
        return self._write("addAnchorer", _checksum(address), timeout=timeout)

    def remove_anchorer(self, address: str, *, timeout: float | None = None) -> TxReceipt:
        return self._write("removeAnchorer", _checksum(address), timeout=timeout)

    def transfer_ownership(self, new_owner: str, *, timeout: float | None = None) -> TxReceipt:
        return self._write("transferOwnership", _checksum(new_owner), timeout=timeout)

    # -- confirmations (delegated) --------------------------------------------------------

    def confirmations(self, tx_hash: str) -> int:
        return self.chain.confirmations(tx_hash)

    def wait_for_confirmations(
        self, tx_hash: str, confirmations: int, timeout: float | None = None
    ) -> TxReceipt:
        return self.chain.wait_for_confirmations(tx_hash, confirmations, timeout)

    def transaction_status(self, tx_hash: str) -> TxStatus:
        return self.chain.transaction_status(tx_hash)
