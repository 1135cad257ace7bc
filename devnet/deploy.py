"""Deploy the AnchorRegistry to a devnet once, and reuse it while the chain keeps it.

The deployment is recorded next to the chain state. It is reused when the chain
id matches and the code at the recorded address is the committed artifact's
deployed bytecode; otherwise (fresh chain, new contract version) it is deployed
again and the record rewritten.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from contracts.chain import DEVNET_TEST_ACCOUNTS, ChainClient, load_artifact
from contracts.errors import ContractsError


class DeployError(RuntimeError):
    """The registry could not be deployed or its record could not be written."""


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    registry_address: str
    tx_hash: str
    block_number: int


def ensure_registry(
    rpc_url: str, record_file: Path, private_key: str | None = None
) -> tuple[Deployment, bool]:
    """Return the usable deployment and whether it was reused.

    ``private_key`` defaults to the devnet's first test account; the chain
    adapter refuses that key on any chain other than the devnet.
    """
    key = private_key or DEVNET_TEST_ACCOUNTS[0].private_key
    try:
        chain = ChainClient(rpc_url, private_key=key)
        recorded = _read_record(record_file)
        if recorded is not None and _still_deployed(chain, recorded):
            return recorded, True
        deployed = chain.deploy_registry()
        deployment = Deployment(
            chain_id=chain.chain_id(),
            registry_address=deployed.address,
            tx_hash=deployed.tx_hash,
            block_number=deployed.block_number,
        )
    except ContractsError as exc:
        raise DeployError(f"could not deploy AnchorRegistry at {rpc_url}: {exc}") from exc
    _write_record(record_file, deployment)
    return deployment, False


def _still_deployed(chain: ChainClient, recorded: Deployment) -> bool:
    if recorded.chain_id != chain.chain_id():
        return False
    expected = load_artifact().deployed_bytecode
    return chain.code_at(recorded.registry_address) == expected


def _read_record(path: Path) -> Deployment | None:
    try:
        return Deployment(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_record(path: Path, deployment: Deployment) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(deployment), indent=2) + "\n")
    os.replace(temporary, path)
