"""Errors raised by ``contracts``: the only exceptions that leave the chain adapter.

Plain Python: no web3 types in here, so callers can catch these without
importing web3. Contract reverts are decoded into one class per Solidity custom
error of ``AnchorRegistry`` with the error's arguments as attributes.
"""

from __future__ import annotations


class ContractsError(Exception):
    """Base class of every error raised by the ``contracts`` package."""


class ChainError(ContractsError):
    """Base class of every error raised by the chain adapter (:mod:`contracts.chain`)."""


class ChainUnavailableError(ChainError):
    """The JSON-RPC endpoint could not be reached or did not answer in time."""

    def __init__(self, rpc_url: str, detail: str) -> None:
        super().__init__(f"chain unavailable at {rpc_url}: {detail}")
        self.rpc_url = rpc_url
        self.detail = detail


class ChainRPCError(ChainError):
    """The node answered with a JSON-RPC error that is not a contract revert."""


class TransactionFailedError(ChainError):
    """A transaction was rejected by the node, or mined with status 0 for no decodable reason."""

    def __init__(self, message: str, *, tx_hash: str | None = None) -> None:
        super().__init__(message)
        self.tx_hash = tx_hash


class TransactionTimeoutError(ChainError):
    """A transaction was not mined (or not confirmed) within the time allowed."""

    def __init__(self, tx_hash: str, timeout: float, waiting_for: str = "receipt") -> None:
        super().__init__(f"no {waiting_for} for {tx_hash} within {timeout:g}s")
        self.tx_hash = tx_hash
        self.timeout = timeout


class SigningKeyError(ChainError):
    """No key is configured for a write, or the key is not allowed on this chain."""


class DevKeyRefusedError(SigningKeyError):
    """A well-known devnet test key was offered for a chain that is not the devnet."""

    def __init__(self, chain_id: int, address: str) -> None:
        super().__init__(
            f"refusing the public anvil TEST key of {address} on chain {chain_id}: "
            "it is only allowed on the local devnet (chain id 31337); configure a real key"
        )
        self.chain_id = chain_id
        self.address = address


# -- contract reverts -----------------------------------------------------------------


class ContractRevertError(ChainError):
    """The registry reverted. ``data`` is the raw revert data (selector + arguments)."""

    def __init__(self, message: str, *, data: bytes = b"", tx_hash: str | None = None) -> None:
        super().__init__(message)
        self.data = data
        self.tx_hash = tx_hash


class ZeroRootError(ContractRevertError):
    """``ZeroRoot()``: the root to anchor was 32 zero bytes."""

    def __init__(self, *, data: bytes = b"", tx_hash: str | None = None) -> None:
        super().__init__("registry refused a zero root", data=data, tx_hash=tx_hash)


class TreeSizeNotIncreasingError(ContractRevertError):
    """``TreeSizeNotIncreasing(latest, given)``: ``given`` is not above the latest anchor."""

    def __init__(
        self, latest: int, given: int, *, data: bytes = b"", tx_hash: str | None = None
    ) -> None:
        super().__init__(
            f"tree size {given} is not greater than the latest anchored size {latest}",
            data=data,
            tx_hash=tx_hash,
        )
        self.latest = latest
        self.given = given


class NotAnchorerError(ContractRevertError):
    """``NotAnchorer(account)``: the sender is not an authorised anchorer."""

    def __init__(self, address: str, *, data: bytes = b"", tx_hash: str | None = None) -> None:
        super().__init__(f"{address} is not an authorised anchorer", data=data, tx_hash=tx_hash)
        self.address = address


class NotOwnerError(ContractRevertError):
    """``NotOwner(account)``: the sender is not the registry's owner."""

    def __init__(self, address: str, *, data: bytes = b"", tx_hash: str | None = None) -> None:
        super().__init__(f"{address} is not the registry owner", data=data, tx_hash=tx_hash)
        self.address = address


class ZeroAddressError(ContractRevertError):
    """``ZeroAddress()``: the zero address cannot be an anchorer or the owner."""

    def __init__(self, *, data: bytes = b"", tx_hash: str | None = None) -> None:
        super().__init__("the zero address is not allowed here", data=data, tx_hash=tx_hash)


# -- build time -----------------------------------------------------------------------


class ArtifactError(ContractsError):
    """The committed artifact is missing, malformed, or out of date with its sources."""


class StaleArtifactError(ArtifactError):
    """The artifact does not match what the current sources and settings compile to."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("stale contract artifact: " + "; ".join(reasons))
        self.reasons = reasons


class CompilerNotFoundError(ContractsError):
    """Neither a native solc of the pinned version nor the solc-js shim is usable."""


class CompilationError(ContractsError):
    """solc reported errors."""
