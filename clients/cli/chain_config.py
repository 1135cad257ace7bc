"""Which chain and registry ``shancheng audit`` checks against.

Each of the RPC URL and the registry address comes from the first that has it:

1. the flag (``--rpc``, ``--registry``);
2. ``SHANCHENG_RPC_URL`` / ``SHANCHENG_REGISTRY_ADDRESS``;
3. the config file (``rpc_url`` / ``registry_address``, as ``shancheng init
   --rpc-url … --registry …`` writes them);
4. the exchange named with ``--exchange URL``: its ``/health`` says which chain
   and registry it anchors to. That is the exchange's own word, so the address is
   printed (on stderr) for the auditor to pin with ``--registry`` or the config
   file: a registry pinned once cannot be swapped by the exchange later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from clients.cli._common import CLIError, stderr
from clients.cli._runtime import load_config

__all__ = ["ChainChoice", "check_address", "resolve_chain"]

EXIT_UNUSABLE = 2
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def check_address(registry: str, source: str = "--registry") -> str:
    if not _ADDRESS.fullmatch(registry):
        raise CLIError(
            f"{source} {registry!r} is not a 0x-prefixed 20-byte hex address", EXIT_UNUSABLE
        )
    return registry


@dataclass(frozen=True, slots=True)
class ChainChoice:
    """The resolved chain: each value with where it came from (``flag``, ``env …``,
    ``file …``, ``exchange <url>/health``); ``None`` when nothing gave it."""

    rpc_url: str | None
    registry: str | None
    rpc_source: str
    registry_source: str


def _from_health(exchange: str) -> tuple[str | None, str | None]:
    from clients.sdk import ExchangeClient
    from clients.sdk.errors import ClientError

    try:
        client = ExchangeClient(exchange)
    except ValueError as exc:
        raise CLIError(f"--exchange: {exc}", EXIT_UNUSABLE) from None
    with client:
        try:
            chain = client.health().chain
        except ClientError as exc:
            raise CLIError(
                f"cannot read the chain and registry from {exchange.rstrip('/')}/health: {exc}",
                EXIT_UNUSABLE,
            ) from None
    return chain.rpc_url, chain.registry_address


def resolve_chain(
    rpc: str | None,
    registry: str | None,
    *,
    config: Path | None,
    exchange: str | None,
    quiet: bool = False,
) -> ChainChoice:
    """Resolve the RPC URL and registry as the module doc says. ``exchange``: the
    exchange whose ``/health`` fills what is still missing (``None``: do not ask);
    what it gives is printed on stderr (unless ``quiet``) so it can be pinned."""
    resolved = load_config(config, rpc_url=rpc, registry_address=registry)
    rpc_setting = resolved.settings["rpc_url"]
    registry_setting = resolved.settings["registry_address"]
    choice = ChainChoice(
        rpc_setting.value,
        registry_setting.value,
        rpc_setting.source,
        registry_setting.source,
    )
    if exchange is not None and (choice.rpc_url is None or choice.registry is None):
        health_rpc, health_registry = _from_health(exchange)
        source = f"exchange {exchange.rstrip('/')}/health"
        choice = ChainChoice(
            choice.rpc_url or health_rpc,
            choice.registry or health_registry,
            choice.rpc_source if choice.rpc_url else source,
            choice.registry_source if choice.registry else source,
        )
        if choice.registry_source == source and choice.registry and not quiet:
            stderr.print(
                f"registry {choice.registry} as {source} reports it; pin it: --registry "
                f"{choice.registry} (or `shancheng init --registry {choice.registry}`)",
                highlight=False,
                soft_wrap=True,
            )
    if choice.registry is not None:
        check_address(choice.registry, _flag_or_source("--registry", choice.registry_source))
    return choice


def _flag_or_source(flag: str, source: str) -> str:
    return flag if source == "flag" else f"the registry address ({source})"


def require_chain(choice: ChainChoice, hint: str = "") -> tuple[str, str]:
    """``(rpc_url, registry)``, or a usage error naming every way to give them."""
    missing = [
        flag
        for flag, value in (("--rpc", choice.rpc_url), ("--registry", choice.registry))
        if not value
    ]
    if missing:
        raise CLIError(
            f"{' and '.join(missing)} required{hint}: give the flag, set SHANCHENG_RPC_URL / "
            "SHANCHENG_REGISTRY_ADDRESS, put rpc_url / registry_address in the config file "
            "(`shancheng init --rpc-url URL --registry ADDR`), or name the exchange with "
            "--exchange URL to read them from its /health",
            EXIT_UNUSABLE,
        )
    assert choice.rpc_url is not None and choice.registry is not None
    return choice.rpc_url, choice.registry
