"""How a marketplace command runs: common options, configuration, the client, errors.

:func:`command` registers a function on a typer group and gives it the options
every marketplace command has — ``--config``, ``--exchange-url``,
``--key-file``, ``--key-password-file`` and ``--json`` — without repeating them
in each signature: the function takes an :class:`Invocation` first (resolved
configuration, output, a lazily made SDK client) and declares only its own
arguments.

Errors become one line on stderr (``main`` prints the :class:`CLIError`):

* the exchange refused: ``error: <code>: <message> (HTTP <status>)``, exit 1;
* no answer (connection refused, timeout), a malformed or unverifiable answer,
  a digest mismatch, a dataset that does not parse: exit 1;
* usage and configuration (missing key, unreadable config, missing input
  file, an argument the SDK refuses before sending): exit 2.

With ``shancheng --debug`` the original exception propagates (a traceback), and
each command ends by printing the request id of the exchange's last answer on
stderr (``debug: request id <id>``): the id the exchange's log lines carry.
"""

from __future__ import annotations

import inspect
import os
import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Concatenate, ParamSpec, TypeAlias

import typer

from clients.cli import _common
from clients.cli._common import CLIError
from clients.cli.config import CLIConfig, ConfigError, resolve_config
from clients.cli.output import Output

if TYPE_CHECKING:
    from clients.sdk import ExchangeClient

__all__ = ["EXIT_FAILED", "EXIT_USAGE", "Invocation", "command", "convert_errors"]

EXIT_FAILED = 1
EXIT_USAGE = 2

P = ParamSpec("P")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Config file (default: $SHANCHENG_CONFIG or ~/.config/shancheng/config.toml).",
        show_default=False,
    ),
]
ExchangeUrlOption = Annotated[
    str | None,
    typer.Option(
        "--exchange-url",
        help="Exchange base URL (env SHANCHENG_EXCHANGE_URL; default http://127.0.0.1:8000).",
        show_default=False,
    ),
]
KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--key-file", help="Your SM2 private key PEM (env SHANCHENG_KEY_FILE).", show_default=False
    ),
]
KeyPasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--key-password-file",
        help="File holding the key's password (env SHANCHENG_KEY_PASSWORD_FILE).",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (money in fen) instead.")
]

_COMMON: tuple[tuple[str, Any, Any], ...] = (
    ("config", ConfigOption, None),
    ("exchange_url", ExchangeUrlOption, None),
    ("key_file", KeyFileOption, None),
    ("key_password_file", KeyPasswordFileOption, None),
    ("as_json", JsonOption, False),
)


def _debug() -> bool:
    from clients import cli

    return bool(cli._DEBUG["on"])


_FLAG_NAMES = {
    "config": "--config",
    "exchange_url": "--exchange-url",
    "key_file": "--key-file",
    "key_password_file": "--key-password-file",
}


@dataclass
class Invocation:
    """One run of a command: its configuration, output, and (on demand) the client.
    ``flags`` are the common options as the user passed them (``--key-file a.pem``
    …), which :meth:`again` repeats in the ``next:`` hints."""

    config: CLIConfig
    out: Output
    flags: tuple[str, ...] = ()
    _clients: list[ExchangeClient] = field(default_factory=list)

    def again(self, *words: object) -> str:
        """``shancheng WORDS…`` with the flags this run was given, shell-quoted: a
        command the user can paste as it is."""
        parts = ["shancheng", *(str(w) for w in words), *self.flags]
        return " ".join(shlex.quote(part) for part in parts)

    @property
    def as_json(self) -> bool:
        return self.out.as_json

    def client(self, *, signed: bool = True) -> ExchangeClient:
        """The SDK client for the configured exchange; with ``signed`` it carries the
        configured key (a usage error when there is none)."""
        from clients.sdk import ExchangeClient, key_from_files

        key = None
        key_file = self.config.key_file
        if signed and not key_file:
            raise CLIError(
                "this command signs with your SM2 key: pass --key-file, set "
                "SHANCHENG_KEY_FILE, or run `shancheng init --generate-key`",
                EXIT_USAGE,
            )
        if key_file:
            key = key_from_files(key_file, self.config.key_password_file)
        try:
            client = ExchangeClient(self.config.exchange_url, key=key)
        except ValueError as exc:
            raise CLIError(f"bad exchange URL: {exc}", EXIT_USAGE) from None
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()
            if _debug() and client.last_request_id is not None:
                _common.stderr.print(f"debug: request id {client.last_request_id}", highlight=False)


def load_config(
    config: Path | None,
    exchange_url: str | None = None,
    key_file: Path | None = None,
    key_password_file: Path | None = None,
    **more: str | None,
) -> CLIConfig:
    flags = {
        "exchange_url": exchange_url,
        "key_file": key_file,
        "key_password_file": key_password_file,
        **more,
    }
    try:
        return resolve_config(flags, os.environ, config)
    except ConfigError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from None


CommandFunction: TypeAlias = Callable[Concatenate[Invocation, P], None]
"""A command's body: the invocation first, then its own typer parameters."""


def command(app: typer.Typer, name: str) -> Callable[[CommandFunction[P]], CommandFunction[P]]:
    """Register ``func(invocation, *own_args)`` as ``name`` on ``app`` with the common
    options added; errors are converted as the module doc says."""

    def decorate(func: CommandFunction[P]) -> CommandFunction[P]:
        own = list(inspect.signature(func, eval_str=True).parameters.values())[1:]
        common = [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
            for n, a, d in _COMMON
        ]

        def run(*args: Any, **kwargs: Any) -> None:
            options = {n: kwargs.pop(n) for n, _, _ in _COMMON}
            as_json = options.pop("as_json")
            flags = tuple(
                part
                for name, value in options.items()
                if value is not None
                for part in (_FLAG_NAMES[name], str(value))
            )
            with convert_errors():
                invocation = Invocation(
                    config=load_config(**options), out=Output(as_json), flags=flags
                )
                try:
                    func(invocation, *args, **kwargs)
                finally:
                    invocation.close()

        run.__signature__ = inspect.Signature([*own, *common])  # type: ignore[attr-defined]
        run.__doc__ = func.__doc__
        run.__name__ = func.__name__
        run.__qualname__ = func.__qualname__
        run.__module__ = func.__module__
        app.command(name)(run)
        return func

    return decorate


@contextmanager
def convert_errors() -> Iterator[None]:
    """Turn the SDK's, the dataset reader's and the file system's errors into one-line
    :class:`CLIError`s (or let them through under ``--debug``)."""
    from clients.datasets import DatasetError, DatasetFormatError
    from clients.sdk.errors import (
        APIError,
        ClientConfigError,
        ClientError,
        MissingKeyError,
        TransportError,
    )
    from ledger.errors import LedgerError
    from ledger.records import RecordFormatError

    try:
        yield
    except (CLIError, typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        if _debug():
            raise
        if isinstance(exc, APIError):
            message = f"{exc.code}: {exc.message} (HTTP {exc.status_code})"
            raise CLIError(message, EXIT_FAILED) from None
        if isinstance(exc, TransportError):
            raise CLIError(f"cannot reach the exchange: {exc}", EXIT_FAILED) from None
        if isinstance(exc, (MissingKeyError, ClientConfigError, ConfigError)):
            raise CLIError(str(exc), EXIT_USAGE) from None
        if isinstance(exc, ClientError):
            raise CLIError(str(exc), EXIT_FAILED) from None
        if isinstance(exc, RecordFormatError):
            raise CLIError(f"invalid input: {exc}", EXIT_USAGE) from None
        if isinstance(exc, LedgerError):  # a verification or crypto failure
            raise CLIError(str(exc), EXIT_FAILED) from None
        if isinstance(exc, DatasetFormatError):
            raise CLIError(f"the dataset does not parse: {exc}", EXIT_FAILED) from None
        if isinstance(exc, DatasetError):
            raise CLIError(str(exc), EXIT_USAGE) from None
        if isinstance(exc, FileNotFoundError):
            raise CLIError(f"file not found: {exc.filename}", EXIT_USAGE) from None
        if isinstance(exc, IsADirectoryError):
            raise CLIError(f"is a directory: {exc.filename}", EXIT_USAGE) from None
        if isinstance(exc, OSError):
            where = f" {exc.filename}" if exc.filename else ""
            raise CLIError(f"I/O error{where}: {exc.strerror or exc}", EXIT_FAILED) from None
        if isinstance(exc, ValueError):  # an argument the SDK refused before sending
            raise CLIError(f"invalid argument: {exc}", EXIT_USAGE) from None
        raise
