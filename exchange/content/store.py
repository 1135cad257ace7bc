"""The encrypted content store: one SM4-GCM ciphertext per listing version.

Layout under ``root_dir``::

    objects/<listing_id>/<version>/content.sm4s   ciphertext (see exchange.content.format)
    objects/<listing_id>/<version>/meta.json      digest, sizes, wrapped content key
    tmp/<random>/                                 ingests in progress

:meth:`ContentStore.ingest` streams the upload once: the bytes are SM3-hashed
as they are read and encrypted chunk by chunk under a fresh content key into
a temporary directory; memory stays at about two chunks whatever the size.
Only if the digest matches the declared one is the directory renamed into
``objects/`` (one atomic ``rename``); on a mismatch, an exceeded limit, an
exception from the source (a client that disconnected) or any other error
the temporary directory is removed and nothing is kept.

The content key is stored wrapped under the store's master key
(``sm4.encrypt`` with the listing id, version and digest as associated data,
so a wrapped key cannot be moved to another object). In this mode the
exchange can decrypt every dataset it holds — see ``docs/custody.md``.

Content is immutable: a listing version holds one digest. Ingesting the same
digest again returns the stored content (an idempotent retry); another digest
for a stored version is a :class:`ContentExistsError` (a new content is a new
version).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import functools
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

import anyio
import anyio.from_thread
import anyio.to_thread

from exchange.content.errors import (
    ContentCorruptError,
    ContentExistsError,
    ContentNotFoundError,
    ContentTooLargeError,
    DigestMismatchError,
    InvalidContentIdError,
    RangeNotSatisfiableError,
)
from exchange.content.format import CONTENT_KIND, check_digest, content_aad
from exchange.content.master_key import (
    MASTER_KEY_FILENAME,
    load_or_create_master_key,
    master_key_id,
)
from exchange.settings import Settings
from ledger import envelope, sm4
from ledger.errors import DecryptionError
from ledger.records import canonical_json
from ledger.sm2 import SM2PublicKey
from ledger.sm3 import SM3Hasher, sm3

__all__ = [
    "CIPHERTEXT_NAME",
    "DEFAULT_CHUNK_SIZE",
    "META_NAME",
    "ContentStore",
    "Delivery",
    "StoredContent",
    "blocking_chunks",
    "content_store_from_settings",
    "read_file_range",
]

CIPHERTEXT_NAME: Final = "content.sm4s"
META_NAME: Final = "meta.json"
DEFAULT_CHUNK_SIZE: Final = 1 << 16
READ_BLOCK: Final = 1 << 16
_LISTING_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_MAX_VERSION: Final = 2**31 - 1
_KEY_KIND: Final = "shancheng.content-key.v1"


def _check_ids(listing_id: object, version: object) -> tuple[str, int]:
    if not isinstance(listing_id, str) or not _LISTING_ID.fullmatch(listing_id):
        raise InvalidContentIdError(
            "a listing id is 1-128 characters of A-Z a-z 0-9 _ . - (not starting with . _ -)"
        )
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or not 1 <= version <= _MAX_VERSION
    ):
        raise InvalidContentIdError(f"a version is an integer in [1, {_MAX_VERSION}]")
    return listing_id, version


def _key_aad(listing_id: str, version: int, sm3_hex: str) -> bytes:
    return canonical_json(
        {"kind": _KEY_KIND, "listing_id": listing_id, "version": version, "sm3": sm3_hex}
    )


@dataclass(frozen=True, slots=True)
class StoredContent:
    """What the store knows of one listing version's content (its ``meta.json``)."""

    listing_id: str
    version: int
    sm3_hex: str
    """SM3 of the plaintext, lowercase hex: the digest the listing commits to."""
    plaintext_size: int
    ciphertext_size: int
    chunk_size: int
    wrapped_key: bytes
    """The content key, SM4-GCM-sealed under the master key ``master_key_id``."""
    master_key_id: str
    created_at: int
    """Milliseconds since the epoch."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CONTENT_KIND,
            "listing_id": self.listing_id,
            "version": self.version,
            "sm3": self.sm3_hex,
            "plaintext_size": self.plaintext_size,
            "ciphertext_size": self.ciphertext_size,
            "chunk_size": self.chunk_size,
            "wrapped_key": base64.b64encode(self.wrapped_key).decode("ascii"),
            "master_key_id": self.master_key_id,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: Any) -> StoredContent:
        """Parse ``meta.json``; raises :class:`ContentCorruptError`."""
        try:
            if data["format"] != CONTENT_KIND:
                raise ContentCorruptError(f"unknown content format {data['format']!r}")
            content = cls(
                listing_id=data["listing_id"],
                version=data["version"],
                sm3_hex=check_digest(data["sm3"]),
                plaintext_size=int(data["plaintext_size"]),
                ciphertext_size=int(data["ciphertext_size"]),
                chunk_size=int(data["chunk_size"]),
                wrapped_key=base64.b64decode(data["wrapped_key"], validate=True),
                master_key_id=str(data["master_key_id"]),
                created_at=int(data["created_at"]),
            )
            _check_ids(content.listing_id, content.version)
        except (KeyError, TypeError, ValueError, binascii.Error, InvalidContentIdError) as exc:
            raise ContentCorruptError(f"stored content metadata is malformed: {exc}") from None
        return content


class _Source:
    """``read(n)`` over a binary file or an iterable of byte chunks, hashing what
    it returns with SM3 and refusing more than ``limit`` bytes."""

    def __init__(self, stream: BinaryIO | Iterable[bytes], limit: int | None) -> None:
        self._file: BinaryIO | None = None
        self._chunks: Iterator[bytes] | None = None
        if hasattr(stream, "read"):
            self._file = stream  # type: ignore[assignment]
        else:
            self._chunks = iter(stream)
        self._buffer = bytearray()
        self._limit = limit
        self.size = 0
        self.hasher = SM3Hasher()

    def _pull(self, size: int) -> bytes:
        if self._file is not None:
            data = self._file.read(size)
            if not isinstance(data, bytes | bytearray | memoryview):
                raise TypeError(f"the upload stream yielded {type(data).__name__}, not bytes")
            return bytes(data)
        assert self._chunks is not None
        while len(self._buffer) < size:
            item = next(self._chunks, None)
            if item is None:
                break
            if not isinstance(item, bytes | bytearray | memoryview):
                raise TypeError(f"the upload stream yielded {type(item).__name__}, not bytes")
            self._buffer += item
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read(self, size: int) -> bytes:
        data = self._pull(size)
        self.size += len(data)
        if self._limit is not None and self.size > self._limit:
            raise ContentTooLargeError(self._limit)
        self.hasher.update(data)
        return data


class _FromAsync:
    """A blocking iterator over an async iterable, for a worker thread started by
    :func:`anyio.to_thread.run_sync` (each item is awaited on the event loop)."""

    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._iterator = stream.__aiter__()

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            return anyio.from_thread.run(self._anext)
        except StopAsyncIteration:
            raise StopIteration from None

    async def _anext(self) -> bytes:
        return await self._iterator.__anext__()


def blocking_chunks(stream: AsyncIterable[bytes]) -> Iterator[bytes]:
    """A blocking iterator over an async byte stream, for code running in a worker
    thread started by :func:`anyio.to_thread.run_sync` (each chunk is awaited on
    the event loop): what :meth:`ContentStore.ingest_async` feeds :meth:`ContentStore.ingest`,
    for callers that filter the chunks in the worker thread first."""
    return _FromAsync(stream)


@dataclass(frozen=True, slots=True)
class Delivery:
    """The stored ciphertext of one content, for download (HTTP Range included)."""

    content: StoredContent
    path: Path

    @property
    def size(self) -> int:
        """Ciphertext length in bytes (the ``Content-Length`` of a full download)."""
        return self.content.ciphertext_size

    @property
    def etag(self) -> str:
        """Names the stored ciphertext, not just the plaintext: content stored again
        (a fresh key) gets a new tag, so a resumed download never mixes two."""
        content = self.content
        tag = sm3(b"shancheng.ciphertext.v1\x00" + content.sm3_hex.encode() + content.wrapped_key)
        return f'"{tag.hex()}"'

    def read_range(
        self, start: int = 0, end: int | None = None, *, block_size: int = READ_BLOCK
    ) -> Iterator[bytes]:
        """The ciphertext bytes ``[start, end)``: :func:`read_file_range`."""
        return read_file_range(self.path, self.size, start, end, block_size=block_size)


def read_file_range(
    path: Path, size: int, start: int = 0, end: int | None = None, *, block_size: int = READ_BLOCK
) -> Iterator[bytes]:
    """Yield the bytes ``[start, end)`` (``end`` defaults to ``size``) of the file at
    ``path`` of ``size`` bytes, in blocks of at most ``block_size``.

    Raises :class:`RangeNotSatisfiableError` unless ``0 <= start <= end <= size``
    (checked before the first block). Stitching consecutive ranges gives the
    whole file, so a download resumes at any offset.
    """
    stop = size if end is None else end
    for value in (start, stop):
        if isinstance(value, bool) or not isinstance(value, int):
            raise RangeNotSatisfiableError("range bounds must be integers", size)
    if not 0 <= start <= stop <= size:
        raise RangeNotSatisfiableError(f"range [{start}, {stop}) is outside [0, {size})", size)
    if block_size < 1:
        raise ValueError("block_size must be positive")
    return _blocks(path, start, stop, block_size)


def _blocks(path: Path, start: int, stop: int, block_size: int) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        handle.seek(start)
        left = stop - start
        while left:
            data = handle.read(min(block_size, left))
            if not data:
                raise ContentCorruptError("the stored ciphertext is shorter than recorded")
            left -= len(data)
            yield data


class ContentStore:
    """Encrypted content under ``root_dir``, content keys wrapped by ``master_key``.

    Thread- and process-safe for concurrent ingests and reads on one
    directory (temporary directories are private; commits are one rename).
    """

    def __init__(self, root_dir: str | Path, master_key: bytes) -> None:
        if not isinstance(master_key, bytes) or len(master_key) != sm4.KEY_SIZE:
            raise ValueError(f"the master key is {sm4.KEY_SIZE} bytes")
        self.root = Path(root_dir)
        self._objects = self.root / "objects"
        self._tmp = self.root / "tmp"
        self._master_key = master_key
        self._master_key_id = master_key_id(master_key)
        self._objects.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)

    # -- paths and metadata

    def _dir(self, listing_id: str, version: int) -> Path:
        listing_id, version = _check_ids(listing_id, version)
        return self._objects / listing_id / str(version)

    def _load(self, directory: Path) -> StoredContent | None:
        try:
            raw = (directory / META_NAME).read_bytes()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            raise ContentCorruptError(f"{directory / META_NAME} is not JSON") from None
        return StoredContent.from_dict(data)

    def get(self, listing_id: str, version: int) -> StoredContent:
        """The stored content of a listing version; :class:`ContentNotFoundError` if none."""
        content = self._load(self._dir(listing_id, version))
        if content is None:
            raise ContentNotFoundError(f"no content stored for {listing_id} version {version}")
        if (content.listing_id, content.version) != (listing_id, version):
            raise ContentCorruptError("stored metadata names another listing version")
        return content

    def exists(self, listing_id: str, version: int) -> bool:
        return (self._dir(listing_id, version) / META_NAME).exists()

    # -- ingest

    def ingest(
        self,
        listing_id: str,
        version: int,
        stream: BinaryIO | Iterable[bytes],
        expected_sm3_hex: str,
        max_bytes: int | None = None,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> StoredContent:
        """Stream ``stream`` into the store if its SM3 digest is ``expected_sm3_hex``.

        ``stream`` is a binary file (``read(n)``) or an iterable of byte
        chunks of any sizes. Raises :class:`DigestMismatchError`,
        :class:`ContentTooLargeError` (more than ``max_bytes``),
        :class:`ContentExistsError` (another digest stored for this version),
        :class:`InvalidContentIdError`, or whatever the stream raises; in every
        such case nothing is kept. Re-ingesting the stored digest returns the
        stored content without reading the stream.
        """
        final = self._dir(listing_id, version)
        expected = check_digest(expected_sm3_hex)
        if max_bytes is not None and (isinstance(max_bytes, bool) or max_bytes < 0):
            raise ValueError("max_bytes must be a non-negative integer")
        existing = self._load(final)
        if existing is not None:
            return self._same_or_conflict(existing, expected)
        temporary = Path(self._tmp / f"{secrets.token_hex(12)}")
        temporary.mkdir(mode=0o700)
        try:
            content = self._write(
                temporary, listing_id, version, stream, expected, max_bytes, chunk_size
            )
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(temporary, final)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                raced = self._load(final)
                if raced is None:
                    raise
                return self._same_or_conflict(raced, expected)
            _fsync_directory(final.parent)
            return content
        finally:
            shutil.rmtree(temporary, ignore_errors=True)

    async def ingest_async(
        self,
        listing_id: str,
        version: int,
        stream: AsyncIterable[bytes],
        expected_sm3_hex: str,
        max_bytes: int | None = None,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> StoredContent:
        """:meth:`ingest` from an async byte stream (e.g. Starlette's
        ``request.stream()``): hashing, encryption and disk writes run in a
        worker thread, the stream is awaited on the event loop."""
        return await anyio.to_thread.run_sync(
            functools.partial(
                self.ingest,
                listing_id,
                version,
                _FromAsync(stream),
                expected_sm3_hex,
                max_bytes,
                chunk_size=chunk_size,
            )
        )

    def _same_or_conflict(self, existing: StoredContent, expected: str) -> StoredContent:
        if existing.sm3_hex == expected:
            return existing
        raise ContentExistsError(
            f"{existing.listing_id} version {existing.version} already holds content "
            f"{existing.sm3_hex}; a new content needs a new version"
        )

    def _write(
        self,
        directory: Path,
        listing_id: str,
        version: int,
        stream: BinaryIO | Iterable[bytes],
        expected: str,
        max_bytes: int | None,
        chunk_size: int,
    ) -> StoredContent:
        key = sm4.generate_key()
        source = _Source(stream, max_bytes)
        ciphertext = directory / CIPHERTEXT_NAME
        with _private_file(ciphertext) as out:
            sm4.encrypt_stream(
                key,
                source,  # type: ignore[arg-type]
                out,
                content_aad(listing_id, version),
                chunk_size=chunk_size,
            )
            out.flush()
            os.fsync(out.fileno())
            ciphertext_size = out.tell()
        actual = source.hasher.hexdigest()
        if actual != expected:
            raise DigestMismatchError(expected, actual)
        content = StoredContent(
            listing_id=listing_id,
            version=version,
            sm3_hex=actual,
            plaintext_size=source.size,
            ciphertext_size=ciphertext_size,
            chunk_size=chunk_size,
            wrapped_key=sm4.encrypt(self._master_key, key, _key_aad(listing_id, version, actual)),
            master_key_id=self._master_key_id,
            created_at=time.time_ns() // 1_000_000,
        )
        with _private_file(directory / META_NAME) as out:
            out.write(json.dumps(content.to_dict(), sort_keys=True).encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        _fsync_directory(directory)
        return content

    # -- delivery

    def content_key(self, content: StoredContent) -> bytes:
        """Unwrap the content key (the exchange holds it in this custody mode)."""
        if content.master_key_id != self._master_key_id:
            raise ContentCorruptError(
                f"content is wrapped under master key {content.master_key_id}, "
                f"this store has {self._master_key_id}"
            )
        try:
            return sm4.decrypt(
                self._master_key,
                content.wrapped_key,
                _key_aad(content.listing_id, content.version, content.sm3_hex),
            )
        except DecryptionError:
            raise ContentCorruptError("the wrapped content key does not unwrap") from None

    def envelope_for(self, buyer_public_key: SM2PublicKey, content: StoredContent) -> bytes:
        """The content key SM2-encrypted to the buyer (:func:`ledger.envelope.wrap_key`)."""
        return envelope.wrap_key(buyer_public_key, self.content_key(content))

    def open_for_delivery(self, listing_id: str, version: int) -> Delivery:
        """The stored ciphertext for download; checks its length against the metadata."""
        content = self.get(listing_id, version)
        path = self._dir(listing_id, version) / CIPHERTEXT_NAME
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise ContentCorruptError("the stored ciphertext is missing") from None
        if size != content.ciphertext_size:
            raise ContentCorruptError(
                f"the stored ciphertext has {size} bytes, {content.ciphertext_size} recorded"
            )
        return Delivery(content, path)

    # -- housekeeping

    def delete(self, listing_id: str, version: int) -> None:
        """Remove a listing version's content (no error if there is none)."""
        directory = self._dir(listing_id, version)
        if not directory.exists():
            return
        doomed = self._tmp / f"deleted-{secrets.token_hex(12)}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(directory, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def sweep_temporary(self, older_than_s: float = 24 * 3600) -> int:
        """Remove temporary directories left by crashed processes; return how many.

        Only those older than ``older_than_s``: a younger one may be an ingest
        still running in another worker.
        """
        cutoff = time.time() - older_than_s
        removed = 0
        for entry in self._tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if entry.stat().st_mtime < cutoff:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed += 1
        return removed


def content_store_from_settings(settings: Settings) -> ContentStore:
    """The store the settings name: ``content_dir`` (default ``data_dir/content``)
    and ``content_master_key_file`` (default ``data_dir/content-master.key``,
    generated on first use with mode 0600)."""
    key_file = settings.content_master_key_file or settings.data_dir / MASTER_KEY_FILENAME
    root = settings.content_dir or settings.data_dir / "content"
    return ContentStore(root, load_or_create_master_key(key_file))


@contextlib.contextmanager
def _private_file(path: Path) -> Iterator[BinaryIO]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        yield handle


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
