"""The content store's master key: an SM4 key that wraps every content key at rest.

Kept in a file (default ``<data_dir>/content-master.key``: 32 hex digits and
a newline, mode 0600), generated on first use. Several workers may start at
once: each writes a complete key to a private temporary file and links it
into place (``link`` fails if the name exists), so exactly one key wins.
Whoever can read this file and the content directory can decrypt every
stored dataset: see ``docs/custody.md``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from ledger import sm4
from ledger.sm3 import sm3

__all__ = ["MASTER_KEY_FILENAME", "MasterKeyError", "load_or_create_master_key", "master_key_id"]

MASTER_KEY_FILENAME: Final = "content-master.key"
_PRIVATE_MODE: Final = 0o600


class MasterKeyError(Exception):
    """The master key file is unreadable, malformed or readable by others."""


def master_key_id(key: bytes) -> str:
    """A short public name of a master key (recorded beside each wrapped key)."""
    return sm3(b"shancheng.content-master.v1\x00" + key).hex()[:16]


def load_or_create_master_key(path: Path) -> bytes:
    """The 16-byte SM4 master key at ``path``, generated there (0600) if absent.

    Refuses a file readable by group or others (``chmod 600`` it) and a file
    not holding exactly 32 hex digits.
    """
    if not path.exists():
        _create(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise MasterKeyError(f"the content master key {path} has mode {mode:04o}; chmod 600 it")
    try:
        text = path.read_text("ascii").strip()
        key = bytes.fromhex(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MasterKeyError(f"cannot read the content master key {path}: {exc}") from None
    if len(key) != sm4.KEY_SIZE:
        raise MasterKeyError(f"{path} must hold a {sm4.KEY_SIZE}-byte key as hex")
    return key


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(sm4.generate_key().hex() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
