"""CLI configuration: precedence, the TOML file, ``shancheng init`` and ``config show``."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import pytest
from test_cli_support import invoke, make_runner
from typer.testing import CliRunner

from clients.cli.config import (
    CONFIG_KEYS,
    ConfigError,
    config_path,
    read_config_file,
    render_config,
    resolve_config,
    toml_string,
    write_config_file,
)
from ledger.sm2 import SM2PrivateKey


@pytest.fixture(scope="module")
def cli() -> CliRunner:
    return make_runner()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No configuration leaks in from the machine running the tests."""
    for key in CONFIG_KEYS:
        monkeypatch.delenv("SHANCHENG_" + key.upper(), raising=False)
    monkeypatch.delenv("SHANCHENG_CONFIG", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


# --------------------------------------------------------------------------- precedence


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'exchange_url = "http://file:1"\nrpc_url = "http://file-rpc"\n'
        'registry_address = "0xfile"\nkey_file = "keys/k.pem"\n',
        encoding="utf-8",
    )
    env = {
        "SHANCHENG_EXCHANGE_URL": "http://env:2",
        "SHANCHENG_RPC_URL": "http://env-rpc",
        "SHANCHENG_REGISTRY_ADDRESS": "",  # empty counts as unset
    }
    config = resolve_config({"exchange_url": "http://flag:3"}, env, path)
    assert config.exchange_url == "http://flag:3"
    assert config.settings["exchange_url"].source == "flag"
    assert config.rpc_url == "http://env-rpc"
    assert config.settings["rpc_url"].source == "env SHANCHENG_RPC_URL"
    assert config.registry_address == "0xfile"
    assert config.settings["registry_address"].source == f"file {path}"
    # relative paths in the file are relative to the file's directory
    assert config.key_file == str(tmp_path / "keys" / "k.pem")
    assert config.key_password_file is None
    assert config.settings["key_password_file"].source == "unset"

    defaults = resolve_config({}, {}, None)
    assert defaults.exchange_url == "http://127.0.0.1:8000"
    assert defaults.settings["exchange_url"].source == "default"
    assert not defaults.file_exists


def test_config_file_location(tmp_path: Path) -> None:
    home = {"HOME": "/h"}
    assert config_path(None, home) == (Path("/h/.config/shancheng/config.toml"), False)
    xdg = {"HOME": "/h", "XDG_CONFIG_HOME": "/x"}
    assert config_path(None, xdg) == (Path("/x/shancheng/config.toml"), False)
    named = {**xdg, "SHANCHENG_CONFIG": str(tmp_path / "e.toml")}
    assert config_path(None, named) == (tmp_path / "e.toml", True)
    assert config_path(tmp_path / "f.toml", named) == (tmp_path / "f.toml", True)


def test_explicit_config_must_exist_default_may_not(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        resolve_config({}, {}, tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="config file not found"):
        resolve_config({}, {"SHANCHENG_CONFIG": str(tmp_path / "missing.toml")})
    assert not resolve_config({}, {"HOME": str(tmp_path)}).file_exists


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('exchnage_url = "x"\n', "unknown key"),
        ("exchange_url = 5\n", "must be a string"),
        ("exchange_url = \n", "not valid TOML"),
        ('[section]\nexchange_url = "x"\n', "unknown key"),
    ],
    ids=["typo", "not a string", "broken", "a table"],
)
def test_bad_config_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        read_config_file(path)


# --------------------------------------------------------------------------- the writer


@pytest.mark.parametrize(
    "value",
    ["plain", 'quo"te', "back\\slash", "tab\tnew\nline", "\x00\x1f\x7f", "重庆 ✓", "C:\\keys\\k"],
)
def test_toml_strings_round_trip(value: str) -> None:
    assert tomllib.loads(f"k = {toml_string(value)}")["k"] == value


def test_render_and_write_round_trip(tmp_path: Path) -> None:
    values = {"exchange_url": "http://x:1", "key_file": "/k/key.pem", "rpc_url": ""}
    text = render_config(values)
    assert text.startswith("# ") and "rpc_url" not in text  # empty values are left out
    path = tmp_path / "deep" / "dir" / "config.toml"
    write_config_file(path, values)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_config_file(path) == {"exchange_url": "http://x:1", "key_file": "/k/key.pem"}
    with pytest.raises(ConfigError, match="already exists"):
        write_config_file(path, {"exchange_url": "http://y"})
    write_config_file(path, {"exchange_url": "http://y"}, force=True)
    assert read_config_file(path) == {"exchange_url": "http://y"}
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.toml"]  # no temp left
    with pytest.raises(ConfigError, match="unknown key"):
        render_config({"nope": "x"})


# --------------------------------------------------------------------------- init / show


def test_init_generates_a_key_and_refuses_to_overwrite(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "conf" / "config.toml"
    result = invoke(
        cli,
        "init",
        "--config",
        path,
        "--exchange-url",
        "http://ex:9",
        "--generate-key",
        "--rpc-url",
        "http://rpc:8545",
        "--registry",
        "0x" + "ab" * 20,
        "--json",
    )
    assert result.exit_code == 0, result
    report = json.loads(result.stdout)
    key_path = tmp_path / "conf" / "key.pem"
    assert report["config"] == str(path) and report["key_generated"] is True
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = SM2PrivateKey.from_pem(key_path.read_bytes())
    assert report["key_id"] == key.key_id()
    assert read_config_file(path) == {
        "exchange_url": "http://ex:9",
        "key_file": str(key_path),
        "rpc_url": "http://rpc:8545",
        "registry_address": "0x" + "ab" * 20,
    }

    again = invoke(cli, "init", "--config", path)
    assert again.exit_code == 2 and "already exists (use --force" in (again.message or "")
    assert read_config_file(path)["exchange_url"] == "http://ex:9"  # untouched

    # --force replaces the config, but a generated key never replaces a key file
    clash = invoke(cli, "init", "--config", path, "--generate-key", "--force")
    assert clash.exit_code == 2 and "never overwritten" in (clash.message or "")
    assert SM2PrivateKey.from_pem(key_path.read_bytes()).key_id() == key.key_id()

    forced = invoke(cli, "init", "--config", path, "--force", "--key-file", key_path)
    assert forced.exit_code == 0, forced
    assert f"key id: {key.key_id()}" in forced.stdout
    assert read_config_file(path) == {
        "exchange_url": "http://127.0.0.1:8000",
        "key_file": str(key_path),
    }


def test_init_uses_shancheng_config_and_encrypts_the_key(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "env.toml"
    monkeypatch.setenv("SHANCHENG_CONFIG", str(path))
    password = tmp_path / "pw"
    password.write_text("s3cret\n")
    key_path = tmp_path / "enc.pem"
    result = invoke(
        cli, "init", "--generate-key", "--key-file", key_path, "--key-password-file", password
    )
    assert result.exit_code == 0, result
    assert b"ENCRYPTED" in key_path.read_bytes()
    SM2PrivateKey.from_pem(key_path.read_bytes(), b"s3cret")
    assert read_config_file(path)["key_password_file"] == str(password)


def test_config_show_reports_sources(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    write_config_file(path, {"exchange_url": "http://file:1", "rpc_url": "http://file-rpc"})
    monkeypatch.setenv("SHANCHENG_RPC_URL", "http://env-rpc")
    result = invoke(cli, "config", "show", "--config", path, "--registry", "0xflag", "--json")
    assert result.exit_code == 0, result
    shown = json.loads(result.stdout)
    assert shown["path"] == str(path) and shown["exists"] is True
    settings = shown["settings"]
    assert settings["exchange_url"] == {"value": "http://file:1", "source": f"file {path}"}
    assert settings["rpc_url"] == {"value": "http://env-rpc", "source": "env SHANCHENG_RPC_URL"}
    assert settings["registry_address"] == {"value": "0xflag", "source": "flag"}
    assert settings["key_file"] == {"value": None, "source": "unset"}

    human = invoke(cli, "config", "show", "--config", path)
    assert human.exit_code == 0 and "http://env-rpc" in human.stdout
    assert "env SHANCHENG_RPC_URL" in human.stdout

    missing = invoke(cli, "config", "show", "--config", tmp_path / "nope.toml")
    assert missing.exit_code == 2 and "config file not found" in (missing.message or "")


def test_default_config_file_is_used_by_commands(cli: CliRunner, tmp_path: Path) -> None:
    """``init`` without --config writes ~/.config/shancheng/config.toml; ``show`` reads it."""
    assert invoke(cli, "init", "--exchange-url", "http://home:7").exit_code == 0
    written = tmp_path / "home" / ".config" / "shancheng" / "config.toml"
    assert read_config_file(written) == {"exchange_url": "http://home:7"}
    shown = json.loads(invoke(cli, "config", "show", "--json").stdout)
    assert shown["settings"]["exchange_url"]["value"] == "http://home:7"
