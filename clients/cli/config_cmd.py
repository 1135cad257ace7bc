"""``shancheng init`` and ``shancheng config show``: the CLI's configuration file.

``init`` writes the file (see :mod:`clients.cli.config` for where it lives and
the precedence of flags, environment and file); ``--generate-key`` also creates
an SM2 key (mode 0600) next to it, never replacing an existing key file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from clients.cli._common import CLIError
from clients.cli._runtime import (
    EXIT_USAGE,
    ConfigOption,
    ExchangeUrlOption,
    JsonOption,
    KeyFileOption,
    KeyPasswordFileOption,
    convert_errors,
    load_config,
)
from clients.cli.config import (
    CONFIG_KEYS,
    DEFAULTS,
    config_path,
    write_config_file,
    write_private_key,
)
from clients.cli.output import Output

config_app = typer.Typer(
    name="config", help="Show the CLI's resolved configuration.", no_args_is_help=True
)

RpcUrlOption = Annotated[
    str | None,
    typer.Option(
        "--rpc-url", help="JSON-RPC URL of the chain (env SHANCHENG_RPC_URL).", show_default=False
    ),
]
RegistryOption = Annotated[
    str | None,
    typer.Option(
        "--registry",
        help="AnchorRegistry address (env SHANCHENG_REGISTRY_ADDRESS).",
        show_default=False,
    ),
]


def init_command(
    config: ConfigOption = None,
    exchange_url: ExchangeUrlOption = None,
    key_file: KeyFileOption = None,
    key_password_file: KeyPasswordFileOption = None,
    generate_key: Annotated[
        bool,
        typer.Option(
            "--generate-key",
            help="Create a new SM2 key at --key-file (default: key.pem beside the config).",
        ),
    ] = False,
    rpc_url: RpcUrlOption = None,
    registry: RegistryOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing config file.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Write the config file: exchange URL, key file, chain. Refuses to overwrite it
    without --force; a generated key never replaces an existing file."""
    out = Output(as_json)
    with convert_errors():
        path, _ = config_path(config, os.environ)
        if path.exists() and not force:
            raise CLIError(f"{path} already exists (use --force to overwrite)", EXIT_USAGE)
        if key_file is None and generate_key:
            key_file = path.parent / "key.pem"
        key_path = None if key_file is None else key_file.expanduser().absolute()
        password_path = (
            None if key_password_file is None else key_password_file.expanduser().absolute()
        )
        key_id = None
        if generate_key:
            assert key_path is not None
            key_id = _generate_key(key_path, password_path)
        elif key_path is not None:
            key_id = _key_id(key_path, password_path)
        values = {
            "exchange_url": exchange_url or DEFAULTS["exchange_url"],
            "key_file": str(key_path) if key_path else "",
            "key_password_file": str(password_path) if password_path else "",
            "rpc_url": rpc_url or "",
            "registry_address": registry or "",
        }
        write_config_file(path, {k: v for k, v in values.items() if v}, force=force)
    result = {
        "config": str(path),
        "settings": {k: values[k] or None for k in CONFIG_KEYS},
        "key_generated": generate_key,
        "key_id": key_id,
    }
    if out.as_json:
        out.json(result)
        return
    out.line(f"wrote {path} (mode 0600)")
    if generate_key:
        out.line(f"generated SM2 key {key_path} (mode 0600)")
    if key_id:
        out.line(f"key id: [bold]{key_id}[/]")
    out.line("check it with `shancheng config show`")


def _generate_key(path: Path, password_file: Path | None) -> str:
    from ledger.sm2 import SM2PrivateKey

    password = _password(password_file)
    key = SM2PrivateKey.generate()
    write_private_key(path, key.to_pem(password))
    return key.key_id()


def _key_id(path: Path, password_file: Path | None) -> str | None:
    """The id of an existing key file, or ``None`` when it cannot be read (yet)."""
    from clients.sdk import ClientConfigError, key_from_files

    try:
        return key_from_files(path, password_file).key_id()
    except ClientConfigError:
        return None


def _password(path: Path | None) -> bytes | None:
    if path is None:
        return None
    secret = path.read_bytes()
    secret = secret[:-1] if secret.endswith(b"\n") else secret
    if not secret:
        raise CLIError(f"the key password file {path} is empty", EXIT_USAGE)
    return secret


@config_app.command("show")
def show_command(
    config: ConfigOption = None,
    exchange_url: ExchangeUrlOption = None,
    key_file: KeyFileOption = None,
    key_password_file: KeyPasswordFileOption = None,
    rpc_url: RpcUrlOption = None,
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show each setting, its value and where it came from (flag, environment, file,
    default)."""
    out = Output(as_json)
    resolved = load_config(
        config,
        exchange_url,
        key_file,
        key_password_file,
        rpc_url=rpc_url,
        registry_address=registry,
    )
    data = resolved.to_dict()
    if out.as_json:
        out.json(data)
        return
    state = "" if resolved.file_exists else " (not found: defaults and environment only)"
    out.line(f"config file: {resolved.path}{state}")
    out.table(
        "Settings",
        ["setting", "value", "from"],
        [[key, s.value, s.source] for key, s in resolved.settings.items()],
    )


def register(app: typer.Typer) -> None:
    app.command("init")(init_command)
    app.add_typer(config_app, name="config")
