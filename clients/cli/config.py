"""The CLI's configuration: which exchange, which key, which chain.

Each setting is taken from the first source that has it:

1. a command-line flag (``--exchange-url``, ``--key-file``, …);
2. the environment, ``SHANCHENG_<KEY>`` (``SHANCHENG_EXCHANGE_URL``,
   ``SHANCHENG_KEY_FILE``, ``SHANCHENG_KEY_PASSWORD_FILE``, ``SHANCHENG_RPC_URL``,
   ``SHANCHENG_REGISTRY_ADDRESS``: the names the SDK's ``from_env`` and the
   server use); an empty variable counts as unset;
3. the config file: ``--config PATH``, else ``$SHANCHENG_CONFIG``, else
   ``$XDG_CONFIG_HOME/shancheng/config.toml`` (``~/.config/shancheng/config.toml``).
   A flat TOML table of strings, read with :mod:`tomllib` and written by
   :func:`write_config_file` (no TOML library to install for five strings).
   Relative paths in it are relative to the file's directory;
4. the defaults (only ``exchange_url``: ``http://127.0.0.1:8000``).

A config file named explicitly (flag or ``$SHANCHENG_CONFIG``) must exist; the
default one may be missing. Unknown keys in the file are refused: a typo would
otherwise be silently ignored and the wrong exchange used.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "CONFIG_KEYS",
    "DEFAULTS",
    "ENV_CONFIG",
    "CLIConfig",
    "ConfigError",
    "Setting",
    "config_path",
    "env_name",
    "read_config_file",
    "resolve_config",
    "toml_string",
    "write_config_file",
]

CONFIG_KEYS: Final = (
    "exchange_url",
    "key_file",
    "key_password_file",
    "rpc_url",
    "registry_address",
)
PATH_KEYS: Final = frozenset({"key_file", "key_password_file"})
DEFAULTS: Final[Mapping[str, str]] = {"exchange_url": "http://127.0.0.1:8000"}
ENV_CONFIG: Final = "SHANCHENG_CONFIG"
ENV_PREFIX: Final = "SHANCHENG_"
FILE_HEADER: Final = "# Shancheng CLI configuration (written by `shancheng init`).\n"


class ConfigError(Exception):
    """The configuration cannot be read or written (the message names the file)."""


def env_name(key: str) -> str:
    """The environment variable of a setting: ``SHANCHENG_`` + its upper-case name."""
    return ENV_PREFIX + key.upper()


@dataclass(frozen=True, slots=True)
class Setting:
    """A setting's value and where it came from: ``flag``, ``env SHANCHENG_…``,
    ``file <path>``, ``default`` or ``unset``."""

    value: str | None
    source: str


@dataclass(frozen=True, slots=True)
class CLIConfig:
    """The resolved configuration; ``path`` is the config file consulted."""

    path: Path
    file_exists: bool
    settings: Mapping[str, Setting]

    def get(self, key: str) -> str | None:
        return self.settings[key].value

    @property
    def exchange_url(self) -> str:
        return self.get("exchange_url") or DEFAULTS["exchange_url"]

    @property
    def key_file(self) -> str | None:
        return self.get("key_file")

    @property
    def key_password_file(self) -> str | None:
        return self.get("key_password_file")

    @property
    def rpc_url(self) -> str | None:
        return self.get("rpc_url")

    @property
    def registry_address(self) -> str | None:
        return self.get("registry_address")

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "exists": self.file_exists,
            "settings": {
                key: {"value": s.value, "source": s.source} for key, s in self.settings.items()
            },
        }


def config_path(flag: Path | None, environ: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file to use and whether it was named explicitly (flag or environment)."""
    if flag is not None:
        return flag.expanduser(), True
    named = environ.get(ENV_CONFIG)
    if named:
        return Path(named).expanduser(), True
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or "~") / ".config")
    return Path(base).expanduser() / "shancheng" / "config.toml", False


def read_config_file(path: Path) -> dict[str, str]:
    """The settings in ``path`` (relative paths made relative to its directory).
    Raises :class:`FileNotFoundError` when it does not exist, :class:`ConfigError`
    when it cannot be read or is not a flat table of known string keys."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key(s) {', '.join(unknown)} "
            f"(known: {', '.join(CONFIG_KEYS)})"
        )
    values: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(value, str):
            raise ConfigError(f"config file {path}: {key} must be a string")
        if key in PATH_KEYS and value:
            value = str(path.parent / Path(value).expanduser())
        if value:
            values[key] = value
    return values


def resolve_config(
    flags: Mapping[str, str | Path | None],
    environ: Mapping[str, str],
    config_flag: Path | None = None,
) -> CLIConfig:
    """Merge flags > environment > config file > defaults (see the module doc)."""
    path, explicit = config_path(config_flag, environ)
    try:
        from_file = read_config_file(path)
        exists = True
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file not found: {path}") from None
        from_file, exists = {}, False
    settings: dict[str, Setting] = {}
    for key in CONFIG_KEYS:
        flag = flags.get(key)
        env = environ.get(env_name(key))
        if flag is not None and str(flag) != "":
            settings[key] = Setting(_expand(key, str(flag)), "flag")
        elif env:
            settings[key] = Setting(_expand(key, env), f"env {env_name(key)}")
        elif key in from_file:
            settings[key] = Setting(from_file[key], f"file {path}")
        elif key in DEFAULTS:
            settings[key] = Setting(DEFAULTS[key], "default")
        else:
            settings[key] = Setting(None, "unset")
    return CLIConfig(path=path, file_exists=exists, settings=settings)


def _expand(key: str, value: str) -> str:
    return str(Path(value).expanduser()) if key in PATH_KEYS else value


# --------------------------------------------------------------------------- writing

_ESCAPES: Final = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}
_NEEDS_ESCAPE: Final = re.compile(r'["\\\x00-\x1f\x7f]')


def toml_string(value: str) -> str:
    """``value`` as a TOML basic string (quotes, backslashes and control characters
    escaped), which :mod:`tomllib` reads back unchanged."""

    def escape(match: re.Match[str]) -> str:
        char = match.group(0)
        return _ESCAPES.get(char) or f"\\u{ord(char):04x}"

    return '"' + _NEEDS_ESCAPE.sub(escape, value) + '"'


def render_config(values: Mapping[str, str]) -> str:
    """The config file for ``values`` (known keys only, in :data:`CONFIG_KEYS` order)."""
    unknown = sorted(set(values) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)}")
    lines = [f"{key} = {toml_string(values[key])}" for key in CONFIG_KEYS if values.get(key)]
    return FILE_HEADER + "\n".join(lines) + "\n"


def write_config_file(path: Path, values: Mapping[str, str], *, force: bool = False) -> None:
    """Write the config file (mode 0600, its directory created 0700). Refuses to replace
    an existing file unless ``force``; the replacement is atomic (a temporary file, then
    a rename), so a crash never leaves half a configuration."""
    text = render_config(values)
    if path.is_dir():
        raise ConfigError(f"{path} is a directory")
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists (use --force to overwrite)")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(text)
            if not force and path.exists():  # appeared meanwhile
                raise ConfigError(f"{path} already exists (use --force to overwrite)")
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_private_key(path: Path, pem: bytes) -> None:
    """Create ``path`` with ``pem``, mode 0600; never replaces an existing file (a key
    is an identity: overwriting one loses it)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(
            f"key file {path} already exists; it is never overwritten: use it "
            "(--key-file without --generate-key) or name a new one"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(pem)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
