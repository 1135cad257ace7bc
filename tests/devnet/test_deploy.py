"""Deploying the registry once and reusing it across devnet restarts."""

from __future__ import annotations

import json
from pathlib import Path

from contracts.chain import DEVNET_TEST_ACCOUNTS, ChainClient, RegistryClient
from devnet.deploy import ensure_registry
from devnet.launcher import Devnet, DevnetConfig


def test_registry_and_anchors_survive_a_restart_and_are_reused(tmp_path: Path) -> None:
    config = DevnetConfig(state_dir=tmp_path / "devnet")
    record = tmp_path / "devnet" / "deployment.json"
    root = bytes.fromhex("ab" * 32)
    with Devnet(config) as node:
        first, reused = ensure_registry(node.rpc_url, record)
        assert not reused
        chain = ChainClient(node.rpc_url, private_key=DEVNET_TEST_ACCOUNTS[0].private_key)
        RegistryClient(chain, first.registry_address).anchor(7, root)

    with Devnet(config) as node:
        again, reused = ensure_registry(node.rpc_url, record)
        assert reused and again == first
        registry = RegistryClient(ChainClient(node.rpc_url), again.registry_address)
        anchor = registry.anchor_of(7)
        assert anchor is not None and anchor.root == root


def test_a_fresh_chain_gets_a_fresh_deployment(tmp_path: Path) -> None:
    record = tmp_path / "deployment.json"
    with Devnet(DevnetConfig(state_dir=tmp_path / "a")) as node:
        first, _ = ensure_registry(node.rpc_url, record)
    with Devnet(DevnetConfig(state_dir=tmp_path / "b")) as node:
        second, reused = ensure_registry(node.rpc_url, record)
        assert not reused
        assert ChainClient(node.rpc_url).code_at(second.registry_address)
    assert json.loads(record.read_text())["registry_address"] == second.registry_address
    del first


def test_a_damaged_record_is_replaced(tmp_path: Path, devnet: Devnet) -> None:
    record = tmp_path / "deployment.json"
    record.write_text("{not json")
    deployment, reused = ensure_registry(devnet.rpc_url, record)
    assert not reused
    assert json.loads(record.read_text())["registry_address"] == deployment.registry_address
