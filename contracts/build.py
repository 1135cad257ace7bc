"""Compile the Solidity sources into committed, deterministic JSON artifacts.

Run ``python -m contracts.build`` (or ``shancheng contracts build``) after editing
a ``.sol`` file and commit ``contracts/artifacts/*.json`` with it;
``python -m contracts.build --check`` (``shancheng contracts check``) fails when an
artifact is stale. Run time never compiles: :func:`load_artifact` reads the JSON.

An artifact records the contract name, ABI, creation and runtime bytecode, the
compiler version with its commit, the exact standard-json ``settings`` and the
SHA-256 of each source file. It is written with sorted keys, two-space indent and
a final newline, and the bytecode carries no metadata hash, so rebuilding an
unchanged source yields a byte-identical file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from contracts.errors import ArtifactError, ContractsError, StaleArtifactError

CONTRACTS_DIR: Final = Path(__file__).resolve().parent
ARTIFACTS_DIR: Final = CONTRACTS_DIR / "artifacts"
ARTIFACT_FORMAT: Final = "shancheng-contract-artifact/1"

CONTRACT_SOURCES: Final[dict[str, str]] = {"AnchorRegistry": "AnchorRegistry.sol"}
"""Contract name → source file (relative to ``contracts/``, also its source unit name)."""


@dataclass(frozen=True)
class ContractArtifact:
    """One compiled contract as committed under ``contracts/artifacts/``."""

    contract_name: str
    source_name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    """Creation code (``0x``-prefixed hex in the file)."""
    deployed_bytecode: bytes
    """Runtime code: what ``eth_getCode`` returns after deployment (hex in the file)."""
    compiler_version: str
    """Full solc version with commit, e.g. ``0.8.37+commit.f401782d``."""
    settings: dict[str, Any]
    """The exact standard-json ``settings`` used."""
    source_sha256: dict[str, str]
    """Source unit name → hex SHA-256 of the file's bytes."""

    def to_json(self) -> str:
        """The canonical file text: sorted keys, two-space indent, final newline."""
        document = {
            "format": ARTIFACT_FORMAT,
            "contractName": self.contract_name,
            "sourceName": self.source_name,
            "abi": self.abi,
            "bytecode": "0x" + self.bytecode.hex(),
            "deployedBytecode": "0x" + self.deployed_bytecode.hex(),
            "compiler": {"name": "solc", "version": self.compiler_version},
            "settings": self.settings,
            "sources": {name: {"sha256": digest} for name, digest in self.source_sha256.items()},
        }
        return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ContractArtifact:
        try:
            document = json.loads(text)
            if document.get("format") != ARTIFACT_FORMAT:
                raise ArtifactError(f"unknown artifact format {document.get('format')!r}")
            return cls(
                contract_name=document["contractName"],
                source_name=document["sourceName"],
                abi=document["abi"],
                bytecode=_from_hex(document["bytecode"]),
                deployed_bytecode=_from_hex(document["deployedBytecode"]),
                compiler_version=document["compiler"]["version"],
                settings=document["settings"],
                source_sha256={k: v["sha256"] for k, v in document["sources"].items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ArtifactError(f"malformed contract artifact: {exc!r}") from exc


def _from_hex(text: str) -> bytes:
    if not isinstance(text, str):
        raise TypeError(f"expected hex text, got {type(text).__name__}")
    return bytes.fromhex(text.removeprefix("0x"))


def artifact_path(contract_name: str, artifacts_dir: Path = ARTIFACTS_DIR) -> Path:
    return artifacts_dir / f"{contract_name}.json"


def load_artifact(
    contract_name: str = "AnchorRegistry", path: Path | None = None
) -> ContractArtifact:
    """Read a committed artifact (no compiler involved)."""
    path = path or artifact_path(contract_name)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc}; run `python -m contracts.build`") from exc
    artifact = ContractArtifact.from_json(text)
    if artifact.contract_name != contract_name:
        raise ArtifactError(f"{path} holds {artifact.contract_name}, not {contract_name}")
    return artifact


def source_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_artifact(
    contract_name: str = "AnchorRegistry",
    *,
    sources_dir: Path = CONTRACTS_DIR,
    prefer_native: bool = True,
) -> ContractArtifact:
    """Compile ``contract_name`` from ``sources_dir`` and return its artifact (not written)."""
    from contracts import compiler  # build time only: keeps solcx out of run-time imports

    source_name = CONTRACT_SOURCES[contract_name]
    source_file = sources_dir / source_name
    try:
        text = source_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ArtifactError(f"cannot read {source_file}: {exc}") from exc
    solc = compiler.find_solc(prefer_native=prefer_native)
    output, solc = compiler.compile_sources({source_name: text}, base_path=sources_dir, solc=solc)
    try:
        compiled = output["contracts"][source_name][contract_name]
        bytecode = compiled["evm"]["bytecode"]["object"]
        deployed = compiled["evm"]["deployedBytecode"]["object"]
        abi = compiled["abi"]
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"solc output lacks {source_name}:{contract_name}: {exc!r}") from exc
    return ContractArtifact(
        contract_name=contract_name,
        source_name=source_name,
        abi=abi,
        bytecode=_from_hex(bytecode),
        deployed_bytecode=_from_hex(deployed),
        compiler_version=solc.version,
        settings=compiler.standard_json_settings(),
        source_sha256={source_name: source_sha256(source_file)},
    )


def write_artifact(artifact: ContractArtifact, path: Path) -> bool:
    """Write ``artifact`` atomically; return whether the file changed."""
    text = artifact.to_json()
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return True


def build(
    contract_names: Sequence[str] = tuple(CONTRACT_SOURCES),
    *,
    artifacts_dir: Path = ARTIFACTS_DIR,
    sources_dir: Path = CONTRACTS_DIR,
) -> dict[str, bool]:
    """Compile and write each artifact; return ``{contract name: changed}``."""
    changed = {}
    for name in contract_names:
        artifact = build_artifact(name, sources_dir=sources_dir)
        changed[name] = write_artifact(artifact, artifact_path(name, artifacts_dir))
    return changed


def stale_reasons(
    contract_name: str = "AnchorRegistry",
    *,
    artifacts_dir: Path = ARTIFACTS_DIR,
    sources_dir: Path = CONTRACTS_DIR,
    recompile: bool = False,
) -> list[str]:
    """Why the committed artifact is stale (empty when it is current).

    Without ``recompile`` this needs no compiler: it compares the recorded source
    hashes, settings and compiler version with the current ones. With it, the
    sources are compiled again and the result must equal the file byte for byte.
    """
    from contracts import compiler

    path = artifact_path(contract_name, artifacts_dir)
    try:
        committed = load_artifact(contract_name, path)
    except ArtifactError as exc:
        return [str(exc)]
    reasons = []
    for name, digest in sorted(committed.source_sha256.items()):
        try:
            current = source_sha256(sources_dir / name)
        except OSError:
            reasons.append(f"source {name} is missing")
            continue
        if current != digest:
            reasons.append(f"source {name} changed (sha256 {current} != recorded {digest})")
    if committed.settings != compiler.standard_json_settings():
        reasons.append("compiler settings changed")
    if committed.compiler_version.split("+", 1)[0] != compiler.SOLC_VERSION:
        reasons.append(
            f"built with solc {committed.compiler_version}, pinned {compiler.SOLC_VERSION}"
        )
    if recompile and not reasons:
        rebuilt = build_artifact(contract_name, sources_dir=sources_dir).to_json()
        if rebuilt != path.read_text(encoding="utf-8"):
            reasons.append(f"{path.name} differs from a fresh compilation")
    return reasons


def check(
    contract_names: Sequence[str] = tuple(CONTRACT_SOURCES),
    *,
    artifacts_dir: Path = ARTIFACTS_DIR,
    sources_dir: Path = CONTRACTS_DIR,
    recompile: bool = False,
) -> None:
    """Raise :class:`StaleArtifactError` naming every stale artifact and why."""
    reasons = []
    for name in contract_names:
        reasons += [
            f"{name}: {reason}"
            for reason in stale_reasons(
                name, artifacts_dir=artifacts_dir, sources_dir=sources_dir, recompile=recompile
            )
        ]
    if reasons:
        raise StaleArtifactError(reasons)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m contracts.build", description="Compile contracts into artifacts."
    )
    parser.add_argument("--check", action="store_true", help="fail if an artifact is stale")
    parser.add_argument(
        "--recompile",
        action="store_true",
        help="with --check: also recompile and compare byte for byte",
    )
    args = parser.parse_args(argv)
    try:
        if args.check:
            check(recompile=args.recompile)
            print("contract artifacts are up to date")
            return 0
        for name, changed in build().items():
            state = "written" if changed else "unchanged"
            print(f"{artifact_path(name)}: {state}")
    except ContractsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
