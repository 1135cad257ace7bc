"""The committed artifact: deterministic, current, and checked against its sources."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import solcx

from clients.cli import contracts_cmd
from clients.cli._common import CLIError
from contracts import build, compiler
from contracts.errors import ArtifactError, CompilationError, StaleArtifactError

COMMITTED = build.artifact_path("AnchorRegistry")


@pytest.fixture(scope="module")
def shim() -> compiler.Solc:
    return compiler.find_solc(prefer_native=False)


@pytest.fixture(scope="module")
def fresh(shim: compiler.Solc) -> build.ContractArtifact:
    """The artifact compiled now, through the same code path as the build, with the shim."""
    assert shim.flavour == "solcjs-shim"
    return build.build_artifact("AnchorRegistry", prefer_native=False)


def test_committed_artifact_equals_a_fresh_compilation_with_the_shim(
    fresh: build.ContractArtifact,
) -> None:
    assert fresh.to_json() == COMMITTED.read_text(encoding="utf-8"), (
        "contracts/artifacts/AnchorRegistry.json is stale: run `python -m contracts.build`"
    )


def test_rebuilding_is_byte_identical(tmp_path: Path, fresh: build.ContractArtifact) -> None:
    target = tmp_path / "AnchorRegistry.json"
    assert build.write_artifact(fresh, target) is True
    assert target.read_bytes() == COMMITTED.read_bytes()
    assert build.write_artifact(fresh, target) is False
    reloaded = build.load_artifact("AnchorRegistry", target)
    assert reloaded == fresh and reloaded.to_json() == fresh.to_json()


def test_artifact_records_compiler_settings_and_source_hash() -> None:
    document = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert document["contractName"] == "AnchorRegistry"
    assert document["compiler"]["version"].startswith(compiler.SOLC_VERSION + "+commit.")
    assert document["settings"] == compiler.standard_json_settings()
    assert document["settings"]["evmVersion"] == "cancun"
    assert document["settings"]["metadata"] == {"bytecodeHash": "none"}
    assert document["settings"]["optimizer"] == {"enabled": True, "runs": compiler.OPTIMIZER_RUNS}
    source = build.CONTRACTS_DIR / "AnchorRegistry.sol"
    assert document["sources"] == {"AnchorRegistry.sol": {"sha256": build.source_sha256(source)}}
    assert document["bytecode"].startswith("0x60") and document["deployedBytecode"].startswith("0x")
    names = {entry.get("name") for entry in document["abi"]}
    assert {"anchor", "anchorOf", "latest", "isAnchorer", "anchorCount", "Anchored"} <= names
    assert {"ZeroRoot", "TreeSizeNotIncreasing", "NotAnchorer", "NotOwner"} <= names


def test_the_committed_artifact_is_current_without_a_compiler() -> None:
    assert build.stale_reasons() == []
    build.check()


def test_a_modified_source_is_detected(tmp_path: Path) -> None:
    shutil.copy(build.CONTRACTS_DIR / "AnchorRegistry.sol", tmp_path / "AnchorRegistry.sol")
    with (tmp_path / "AnchorRegistry.sol").open("a", encoding="utf-8") as source:
        source.write("// an innocent-looking comment\n")
    reasons = build.stale_reasons(sources_dir=tmp_path)
    assert len(reasons) == 1 and "AnchorRegistry.sol changed" in reasons[0]
    with pytest.raises(StaleArtifactError) as caught:
        build.check(sources_dir=tmp_path)
    assert caught.value.reasons == ["AnchorRegistry: " + reasons[0]]


def test_a_missing_source_is_detected(tmp_path: Path) -> None:
    assert build.stale_reasons(sources_dir=tmp_path) == ["source AnchorRegistry.sol is missing"]


def test_a_hand_edited_artifact_is_caught_by_recompiling(tmp_path: Path) -> None:
    document = json.loads(COMMITTED.read_text(encoding="utf-8"))
    document["deployedBytecode"] = document["deployedBytecode"][:-2] + "0b"
    (tmp_path / "AnchorRegistry.json").write_text(json.dumps(document, sort_keys=True, indent=2))
    assert build.stale_reasons(artifacts_dir=tmp_path) == []  # hashes alone cannot see it
    reasons = build.stale_reasons(artifacts_dir=tmp_path, recompile=True)
    assert reasons == ["AnchorRegistry.json differs from a fresh compilation"]


def test_a_malformed_or_missing_artifact_is_reported(tmp_path: Path) -> None:
    assert "cannot read" in build.stale_reasons(artifacts_dir=tmp_path)[0]
    (tmp_path / "AnchorRegistry.json").write_text("{}")
    with pytest.raises(ArtifactError, match="unknown artifact format"):
        build.load_artifact("AnchorRegistry", tmp_path / "AnchorRegistry.json")


# -- the solc-js shim ---------------------------------------------------------------------


def test_shim_version_is_what_py_solc_x_parses(shim: compiler.Solc) -> None:
    version = solcx.wrapper.get_solc_version(shim.path, with_commit_hash=True)
    assert str(version) == shim.version
    assert shim.version.startswith("0.8.37+commit.")


def test_shim_rejects_unknown_options_like_native_solc(shim: compiler.Solc) -> None:
    result = subprocess.run(
        [str(shim.path), "--bin"], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.startswith("unrecognised option '--bin'")


def test_shim_resolves_imports_inside_the_base_path_only(
    tmp_path: Path, shim: compiler.Solc
) -> None:
    base = tmp_path / "base"
    (base / "lib").mkdir(parents=True)
    (base / "lib" / "Answer.sol").write_text(
        "// SPDX-License-Identifier: Apache-2.0\npragma solidity 0.8.37;\n"
        "library Answer { function get() internal pure returns (uint256) { return 42; } }\n"
    )
    (tmp_path / "Outside.sol").write_text(
        "// SPDX-License-Identifier: Apache-2.0\npragma solidity 0.8.37;\nlibrary Outside {}\n"
    )
    header = "// SPDX-License-Identifier: Apache-2.0\npragma solidity 0.8.37;\n"
    ok = (
        header
        + 'import "lib/Answer.sol";\n'
        + "contract C { function f() external pure returns (uint256) { return Answer.get(); } }\n"
    )
    output, used = compiler.compile_sources({"C.sol": ok}, base_path=base, solc=shim)
    assert used is shim and "C" in output["contracts"]["C.sol"]

    # solc normalises "../x" against the importing unit's name, so escape attempts
    # reach the callback as absolute paths or through symlinks.
    (base / "link.sol").symlink_to(tmp_path / "Outside.sol")
    for target in (str(tmp_path / "Outside.sol"), "link.sol"):
        escaping = header + f'import "{target}";\ncontract D {{}}\n'
        with pytest.raises(CompilationError, match="outside of allowed directories"):
            compiler.compile_sources({"D.sol": escaping}, base_path=base, solc=shim)


# -- the CLI ------------------------------------------------------------------------------


def test_cli_check_passes_on_the_committed_artifact() -> None:
    contracts_cmd.check_command(recompile=False)


def test_cli_check_exits_1_when_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    def stale(**_: object) -> None:
        raise StaleArtifactError(["AnchorRegistry: source AnchorRegistry.sol changed"])

    monkeypatch.setattr(build, "check", stale)
    with pytest.raises(CLIError) as caught:
        contracts_cmd.check_command(recompile=False)
    assert caught.value.exit_code == 1
    assert "shancheng contracts build" in caught.value.message


def _fake_solc(directory: Path, script: str) -> None:
    directory.mkdir()
    executable = directory / "solc"
    executable.write_text("#!/bin/sh\n" + script)
    executable.chmod(0o755)


def test_a_native_solc_of_the_pinned_version_is_preferred(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_solc(tmp_path / "pinned", f'exec "{compiler.SHIM_PATH}" "$@"\n')
    _fake_solc(
        tmp_path / "other",
        "echo 'solc, the solidity compiler commandline interface'\n"
        "echo 'Version: 0.8.20+commit.a1b79de6.Linux.g++'\n",
    )
    node = shutil.which("node")
    assert node is not None
    node_dir = str(Path(node).parent)
    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path / "pinned"), node_dir]))
    chosen = compiler.find_solc()
    assert (chosen.flavour, chosen.path) == ("native", tmp_path / "pinned" / "solc")
    assert compiler.find_solc(prefer_native=False).flavour == "solcjs-shim"

    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path / "other"), node_dir]))
    assert compiler.find_solc().flavour == "solcjs-shim"
