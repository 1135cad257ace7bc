"""The exchange's own SM2 key: it signs the log's promises and checkpoints.

Configured with ``Settings.log_key_file`` (+ ``log_key_password_file``), or
else generated on first start into ``<data_dir>/exchange-key.pem`` with mode
0600. Several API workers may start at once on one data directory: each
writes a complete key to a private temporary file and links it into place
(``link`` fails if the name exists), so exactly one key wins and every worker
loads that one. A reader never sees a half-written key.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from exchange.settings import Settings
from ledger.errors import KeyFormatError
from ledger.sm2 import SM2PrivateKey

__all__ = [
    "LOG_KEY_FILENAME",
    "LogKeyError",
    "load_log_key",
    "load_or_create_key_file",
    "read_key_file",
]

LOG_KEY_FILENAME = "exchange-key.pem"
_PRIVATE_MODE = 0o600


class LogKeyError(Exception):
    """The log key (or another key file kept the same way, such as the dev operator key)
    cannot be loaded or created (missing file, wrong password, loose mode)."""


def load_log_key(settings: Settings) -> SM2PrivateKey:
    """The log key the settings name, generating the default one if it does not exist."""
    password = _read_password(settings.log_key_password_file)
    if settings.log_key_file is not None:
        return read_key_file(settings.log_key_file, password)
    return load_or_create_key_file(settings.data_dir / LOG_KEY_FILENAME, password)


def read_key_file(
    path: Path, password: bytes | None = None, *, what: str = "the log key"
) -> SM2PrivateKey:
    """Load an SM2 private key PEM; raises :class:`LogKeyError` naming the file (and
    ``what`` key it is, e.g. ``"the dev operator key"``)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LogKeyError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return SM2PrivateKey.from_pem(data, password)
    except KeyFormatError as exc:
        raise LogKeyError(f"{path} is not a usable SM2 private key: {exc}") from None


def load_or_create_key_file(
    path: Path, password: bytes | None = None, *, what: str = "the log key"
) -> SM2PrivateKey:
    """Load the key at ``path``, or generate it there (mode 0600) if there is none.

    An existing file readable by group or others is refused: fix its mode
    (``chmod 600``) rather than keep signing with a key that may have leaked.
    ``what`` names the key in error messages (the same helper keeps other keys).
    """
    if not path.exists():
        _create_key_file(path, password)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise LogKeyError(
            f"{what} {path} has mode {mode:04o}; it must be private (chmod 600 {path})"
        )
    return read_key_file(path, password, what=what)


def _create_key_file(path: Path, password: bytes | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = SM2PrivateKey.generate().to_pem(password)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        # Atomic and exclusive: fails if another worker's key is already there.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_password(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise LogKeyError(
            f"cannot read the log key password {path}: {exc.strerror or exc}"
        ) from None
    if not lines or not lines[0]:
        raise LogKeyError(f"the log key password file {path} is empty")
    return lines[0]
