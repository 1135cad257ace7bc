"""Find the pinned solc and compile through py-solc-x's standard-json interface.

Build-time only: nothing at run time imports this module (the chain adapter loads
the committed artifact). The compiler is, in order of preference:

1. a native ``solc`` on ``PATH`` whose version is exactly :data:`SOLC_VERSION`;
2. ``devnet/solc``, a node shim over the pinned ``solc`` npm package (solc-js),
   which speaks the native CLI's ``--version`` / ``--standard-json`` dialect.

Both produce the same bytecode for the same input; the artifact records only the
version with its commit, not which flavour built it, so either rebuilds it
byte-for-byte. py-solc-x never downloads anything here: we always hand it the
executable.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import solcx
from solcx.exceptions import SolcError

from contracts.errors import CompilationError, CompilerNotFoundError

SOLC_VERSION: Final = "0.8.37"
"""The pinned compiler version (``pragma solidity 0.8.37`` in the sources)."""

SHIM_PATH: Final = Path(__file__).resolve().parent.parent / "devnet" / "solc"

EVM_VERSION: Final = "cancun"
"""Target EVM. solc 0.8.37 defaults to ``osaka``, which few chains run yet. Cancun
(PUSH0 from Shanghai, MCOPY, transient storage) is live on Ethereum mainnet and
its testnets, the major L2s, and Hyperledger Besu; anvil 1.7.1 defaults to its
latest hardfork (reported as ``Bpo1``, after Osaka), which executes Cancun code
unchanged. Prague and Osaka add nothing this contract's code generation uses, so
the older target costs no gas and deploys on more chains."""

OPTIMIZER_RUNS: Final = 10_000
"""Anchoring is called for the life of the registry; deployment is once. Favour
runtime gas."""


def standard_json_settings() -> dict[str, Any]:
    """The exact ``settings`` object of the standard-json input (recorded in the artifact)."""
    return {
        "evmVersion": EVM_VERSION,
        "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
        # No IPFS/Swarm hash of the metadata in the bytecode: the bytecode then depends
        # only on the code, not on comments, paths or whitespace, and rebuilds are
        # byte-identical. The CBOR trailer still names the solc version.
        "metadata": {"bytecodeHash": "none"},
        "outputSelection": {
            "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}
        },
    }


@dataclass(frozen=True)
class Solc:
    """A usable compiler executable."""

    path: Path
    version: str
    """Full version with commit, e.g. ``0.8.37+commit.f401782d``."""
    flavour: str
    """``"native"`` or ``"solcjs-shim"``."""


def _version_of(path: Path) -> str | None:
    try:
        return str(solcx.wrapper.get_version_str_from_solc_binary(path))
    except (OSError, SolcError, ValueError, UnicodeDecodeError):
        return None
    except Exception:  # subprocess.CalledProcessError and friends from a broken binary
        return None


def find_solc(*, prefer_native: bool = True) -> Solc:
    """The compiler to use: a native solc of the pinned version, else the shim.

    Raises :class:`CompilerNotFoundError` when neither works (e.g. ``node`` or the
    npm packages are missing: run ``npm ci`` in ``devnet/``).
    """
    if prefer_native:
        native = shutil.which("solc")
        if native is not None and Path(native).resolve() != SHIM_PATH:
            version = _version_of(Path(native))
            if version is not None and version.split("+", 1)[0] == SOLC_VERSION:
                return Solc(Path(native), version, "native")
    if not SHIM_PATH.is_file():
        raise CompilerNotFoundError(f"solc shim missing at {SHIM_PATH}")
    version = _version_of(SHIM_PATH)
    if version is None:
        raise CompilerNotFoundError(
            f"{SHIM_PATH} did not answer --version: is node installed and "
            f"`npm ci` run in {SHIM_PATH.parent}?"
        )
    if version.split("+", 1)[0] != SOLC_VERSION:
        raise CompilerNotFoundError(f"{SHIM_PATH} is solc {version}, expected {SOLC_VERSION}")
    return Solc(SHIM_PATH, version, "solcjs-shim")


def compile_sources(
    sources: dict[str, str],
    *,
    base_path: Path,
    solc: Solc | None = None,
) -> tuple[dict[str, Any], Solc]:
    """Compile ``{source unit name: content}`` with :func:`standard_json_settings`.

    Returns the compiler's output JSON and the compiler used. Errors (severity
    ``error``) raise :class:`CompilationError` with solc's formatted messages.
    """
    solc = solc or find_solc()
    input_json = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sorted(sources.items())},
        "settings": standard_json_settings(),
    }
    try:
        output: dict[str, Any] = solcx.compile_standard(
            input_json,
            base_path=base_path,
            allow_paths=[base_path],
            solc_binary=solc.path,
        )
    except SolcError as exc:
        raise CompilationError(str(exc)) from exc
    except (json.JSONDecodeError, OSError) as exc:
        raise CompilationError(f"{solc.path} failed: {exc}") from exc
    return output, solc
