"""Where ``shancheng audit verify|log`` take the chain's RPC URL and the registry from:
the flag, else ``SHANCHENG_RPC_URL`` / ``SHANCHENG_REGISTRY_ADDRESS``, else the config
file, else the ``/health`` of the exchange named with ``--exchange`` (printed, to be
pinned). The exchange here is a real uvicorn configured with a chain that does not
answer, so its ``/health`` names a chain while nothing is anchored anywhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_cli_support import invoke, make_runner

from clients.cli._common import CLIError
from clients.cli.chain_config import require_chain, resolve_chain
from exchange.local_exchange import free_port

HEALTH_REGISTRY = "0x" + "4e" * 20
FILE_REGISTRY = "0x" + "f1" * 20
ENV_REGISTRY = "0x" + "e2" * 20
FLAG_REGISTRY = "0x" + "a3" * 20


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("RPC_URL", "REGISTRY_ADDRESS", "CONFIG", "EXCHANGE_URL"):
        monkeypatch.delenv(f"SHANCHENG_{name}", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)


@pytest.fixture
def exchange(live_server: Any, tmp_path: Path) -> Iterator[Any]:
    from test_auth_support import running_exchange  # (on the path once test_cli_support is)

    dead_chain = f"http://127.0.0.1:{free_port()}"
    with running_exchange(
        live_server,
        tmp_path,
        rpc_url=dead_chain,
        registry_address=HEALTH_REGISTRY,
        anchor_worker_enabled=False,
    ) as ex:
        yield ex


def config_file(tmp_path: Path, **values: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text("".join(f'{k} = "{v}"\n' for k, v in values.items()), encoding="utf-8")
    return path


def test_flags_then_environment_then_file_then_the_exchanges_health(
    exchange: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    health = exchange.http().get("/health").json()["chain"]
    config = config_file(tmp_path, rpc_url="http://file:8545", registry_address=FILE_REGISTRY)
    monkeypatch.setenv("SHANCHENG_RPC_URL", "http://env:8545")
    monkeypatch.setenv("SHANCHENG_REGISTRY_ADDRESS", ENV_REGISTRY)

    flags = resolve_chain("http://flag:8545", FLAG_REGISTRY, config=config, exchange=exchange.url)
    assert (flags.rpc_url, flags.registry) == ("http://flag:8545", FLAG_REGISTRY)
    assert (flags.rpc_source, flags.registry_source) == ("flag", "flag")

    env = resolve_chain(None, None, config=config, exchange=exchange.url)
    assert (env.rpc_url, env.registry) == ("http://env:8545", ENV_REGISTRY)
    assert env.registry_source == "env SHANCHENG_REGISTRY_ADDRESS"

    monkeypatch.delenv("SHANCHENG_RPC_URL")
    monkeypatch.delenv("SHANCHENG_REGISTRY_ADDRESS")
    from_file = resolve_chain(None, None, config=config, exchange=exchange.url)
    assert (from_file.rpc_url, from_file.registry) == ("http://file:8545", FILE_REGISTRY)
    assert from_file.registry_source == f"file {config}"
    assert capsys.readouterr().err == ""  # the exchange was not asked

    mixed = resolve_chain("http://flag:8545", None, config=None, exchange=exchange.url)
    assert mixed.rpc_url == "http://flag:8545" and mixed.registry == HEALTH_REGISTRY
    printed = capsys.readouterr().err
    assert HEALTH_REGISTRY in printed and "pin it" in printed

    from_health = resolve_chain(None, None, config=None, exchange=exchange.url)
    assert (from_health.rpc_url, from_health.registry) == (
        health["rpc_url"],
        health["registry_address"],
    )
    assert from_health.registry_source == f"exchange {exchange.url}/health"

    nothing = resolve_chain(None, None, config=None, exchange=None)
    with pytest.raises(CLIError) as caught:
        require_chain(nothing)
    message = caught.value.message
    assert caught.value.exit_code == 2 and message.startswith("--rpc and --registry required")
    for way in ("SHANCHENG_RPC_URL", "config file", "--exchange URL"):
        assert way in message


def test_a_malformed_registry_is_refused_naming_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHANCHENG_REGISTRY_ADDRESS", "0x12")
    with pytest.raises(CLIError) as caught:
        resolve_chain("http://x", None, config=None, exchange=None)
    assert caught.value.exit_code == 2
    assert "env SHANCHENG_REGISTRY_ADDRESS" in caught.value.message
    unreachable = f"http://127.0.0.1:{free_port()}"
    monkeypatch.delenv("SHANCHENG_REGISTRY_ADDRESS")
    with pytest.raises(CLIError) as down:
        resolve_chain(None, None, config=None, exchange=unreachable)
    assert down.value.exit_code == 2 and f"{unreachable}/health" in down.value.message


def test_verify_and_log_use_the_exchanges_chain_and_print_it(exchange: Any, tmp_path: Path) -> None:
    cli = make_runner()
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps({"version": 1}), encoding="utf-8")
    verified = invoke(cli, "audit", "verify", bundle, "--exchange", exchange.url)
    # the chain came from /health (printed); the malformed bundle is then refused
    assert HEALTH_REGISTRY in verified.stderr and "pin it" in verified.stderr
    assert verified.exit_code == 2 and verified.message is not None
    assert "not a usable bundle" in verified.message

    # audit log audits the configured exchange when --exchange is not given
    config = config_file(tmp_path, exchange_url=exchange.url)
    walked = invoke(cli, "audit", "log", "--config", config)
    assert HEALTH_REGISTRY in walked.stderr
    assert walked.exit_code == 2 and walked.message is not None  # the chain does not answer
    assert "inconclusive" in walked.message
