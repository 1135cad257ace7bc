"""Moving dataset bytes, shared by both clients: the streamed upload body, the
resumable download, and opening a delivery. No HTTP is sent here; the clients
drive these objects with their own (sync or async) httpx calls.

Upload (``PUT /listings/{id}/versions/{v}/content``): the file is hashed with
SM3 in one streamed pass (:func:`hash_file`), then sent as a streamed body of
exactly that many bytes, with ``Content-Length`` and the precomputed
``Content-Digest: sm3=:…:`` (the request signer covers the header and never
reads the body). The exchange checks the digest while receiving, and that the
bytes are the listing version's committed content. Memory stays at one block.

Download (``GET /orders/{id}/content``, the SM4-GCM ciphertext): the bytes go
to ``<dest>.part``. A ``.part`` left by an interrupted download is resumed
with ``Range: bytes=N-``: a 206 answer must start at N (``Content-Range``
checked, its total against the expected size); a 200 means the server sent the
whole content again, so the ``.part`` is rewritten from the start; a 416 whose
``Content-Range: bytes */T`` equals the ``.part``'s size means it was already
complete. The ciphertext's ``ETag`` is kept beside the ``.part``
(``<dest>.part.etag``) and sent back as ``If-Range``, so a ``.part`` of another
ciphertext (content stored again under a fresh key) is never completed with
this one's bytes: the server then answers 200 with the whole new ciphertext.
A connection that breaks mid-way is retried (bounded, the count resetting
whenever bytes arrived), resuming from what was written. Only a complete file
is renamed to ``dest``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Final, ParamSpec

import anyio
import anyio.to_thread
import httpx

from clients.sdk.errors import DigestMismatchError, ResponseFormatError, TransferError
from clients.sdk.market_models import DecryptedFile, DeliveryEnvelope
from clients.signing import content_digest_of_sm3
from ledger import delivery, envelope
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import sm3_file

__all__ = [
    "BLOCK_SIZE",
    "Download",
    "Progress",
    "UploadBody",
    "hash_file",
    "open_delivery",
    "translate_digest_errors",
]

BLOCK_SIZE: Final = 1 << 16
Progress = Callable[[int, int], None]
"""``progress(bytes_done, bytes_total)``, called after each block (``bytes_total`` is 0
while a download's size is unknown)."""

P = ParamSpec("P")

_CONTENT_RANGE: Final = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_UNSATISFIED_RANGE: Final = re.compile(r"bytes \*/(\d+)")


def hash_file(path: Path) -> tuple[bytes, int]:
    """(SM3 digest, size) of a file, streamed in one pass (:func:`ledger.sm3.sm3_file`)."""
    sizes: list[int] = []
    digest = sm3_file(path, chunk_size=BLOCK_SIZE, progress=sizes.append)
    return digest, sum(sizes)


class UploadBody:
    """A file's bytes as a streamed request body (sync or async iteration), exactly
    ``size`` bytes: a file that shrank or grew since it was hashed is refused with
    :class:`TransferError` (the exchange would refuse its digest anyway)."""

    def __init__(self, path: Path, digest: bytes, size: int, progress: Progress | None) -> None:
        self.path = path
        self.digest = digest
        self.size = size
        self._progress = progress

    @classmethod
    def of_file(cls, path: str | Path, progress: Progress | None = None) -> UploadBody:
        path = Path(path)
        digest, size = hash_file(path)
        return cls(path, digest, size, progress)

    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(self.size),
            "Content-Digest": content_digest_of_sm3(self.digest),
        }

    def _block(self, handle: BinaryIO, done: int) -> bytes:
        block = handle.read(min(BLOCK_SIZE, self.size - done))
        if not block and done < self.size:
            raise TransferError(f"{self.path} shrank while it was uploaded ({done} bytes read)")
        return block

    def _after(self, handle: BinaryIO, done: int) -> None:
        if self._progress is not None:
            self._progress(done, self.size)
        if done == self.size and handle.read(1):
            raise TransferError(f"{self.path} grew while it was uploaded")

    def sync(self) -> Iterator[bytes]:
        done = 0
        with open(self.path, "rb") as handle:
            if self.size == 0:
                self._after(handle, 0)
            while done < self.size:
                block = self._block(handle, done)
                done += len(block)
                yield block
                self._after(handle, done)

    async def asynchronous(self) -> AsyncIterator[bytes]:
        done = 0
        with open(self.path, "rb") as handle:
            if self.size == 0:
                self._after(handle, 0)
            while done < self.size:
                block = await anyio.to_thread.run_sync(self._block, handle, done)
                done += len(block)
                yield block
                self._after(handle, done)


class Download:
    """The state of one resumable download; see the module docstring.

    A client drives it::

        with Download(...) as job:
            while not job.done:
                try:
                    <GET job.path with job.headers(), streamed>:
                        if job.start(response): feed job.write(chunk) for each chunk
                        else: read the (error) body
                        job.end(response)   # raises APIError for a refusal
                except httpx.TransportError as exc:
                    job.failed(exc)         # raises TransportError when out of retries
                sleep(job.delay)
            return job.finish()
    """

    def __init__(
        self,
        order_id: str,
        dest: str | Path,
        *,
        progress: Progress | None,
        resume: bool,
        expected_size: int | None,
        max_retries: int,
        backoff: Callable[[int], float],
        statuses: frozenset[int],
        transport_error: Callable[[httpx.TransportError], Exception],
        refusal: Callable[[httpx.Response], Exception],
    ) -> None:
        self.path = f"/orders/{order_id}/content"
        self.dest = Path(dest)
        self.part = self.dest.with_name(self.dest.name + ".part")
        self.etag_file = self.dest.with_name(self.dest.name + ".part.etag")
        self._progress = progress
        self._expected = expected_size
        self._max_retries = max_retries
        self._backoff = backoff
        self._statuses = statuses
        self._transport_error = transport_error
        self._refusal = refusal
        self._failures = 0
        self._file: BinaryIO | None = None
        self._offset = 0  # bytes in .part when the current attempt started
        self._received = 0  # bytes of this attempt
        self._total: int | None = expected_size
        self._state = "idle"  # idle | streaming | refused | retry
        self.done = False
        self.delay = 0.0
        if not resume:
            self._discard()

    def __enter__(self) -> Download:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    # -- one attempt

    def _part_size(self) -> int:
        try:
            return self.part.stat().st_size
        except FileNotFoundError:
            return 0

    def _discard(self) -> None:
        self.part.unlink(missing_ok=True)
        self.etag_file.unlink(missing_ok=True)

    def _etag(self) -> str | None:
        try:
            return self.etag_file.read_text("ascii").strip() or None
        except (FileNotFoundError, UnicodeDecodeError):
            return None

    def _remember_etag(self, response: httpx.Response) -> None:
        etag = response.headers.get("etag")
        if etag is None or not etag.isascii():
            self.etag_file.unlink(missing_ok=True)
        elif etag != self._etag():
            self.etag_file.write_text(etag, "ascii")

    def headers(self) -> dict[str, str]:
        self.delay = 0.0
        self._offset = self._part_size()
        if self._expected is not None and self._offset > self._expected:
            self._discard()  # not a prefix of this content
            self._offset = 0
        headers = {"Accept": "application/octet-stream"}
        if self._offset:
            headers["Range"] = f"bytes={self._offset}-"
            etag = self._etag()
            if etag is not None:
                headers["If-Range"] = etag
        return headers

    def start(self, response: httpx.Response) -> bool:
        """Whether the response's body is content to :meth:`write`."""
        self._received = 0
        status = response.status_code
        if status == 206:
            if not self._offset:
                raise ResponseFormatError(f"GET {self.path}: 206 to a request without Range")
            self._total = self._check_range(response)
            self._remember_etag(response)
            self._open(append=True)
            return True
        if status == 200:
            self._total = self._check_length(response)
            self._offset = 0  # the whole content (again, or another one): start over
            self._remember_etag(response)
            self._open(append=False)
            return True
        if status == 416 and self._offset:
            self._unsatisfiable(response)
            return False
        if status in self._statuses and self._failures < self._max_retries:
            self._failures += 1
            self._state = "retry"
            self.delay = self._backoff(self._failures - 1)
            return False
        self._state = "refused"
        return False

    def write(self, chunk: bytes) -> None:
        assert self._file is not None
        if self._total is not None and self._offset + self._received + len(chunk) > self._total:
            self._close()
            raise ResponseFormatError(
                f"GET {self.path}: more bytes than the announced {self._total}"
            )
        self._file.write(chunk)
        self._received += len(chunk)
        if chunk:
            self._failures = 0  # progress: a later break gets its retries afresh
        if self._progress is not None:
            self._progress(self._offset + self._received, self._total or 0)

    def end(self, response: httpx.Response) -> None:
        state, self._state = self._state, "idle"
        if state == "refused":
            raise self._refusal(response)
        if state != "streaming":
            return
        self._close()
        size = self._offset + self._received
        if self._total is None:
            self._total = size  # no length announced: the server ended the body
        if size == self._total:
            self.done = True
        else:  # a short body without a transport error: resume it
            self.failed(None)

    def failed(self, error: httpx.TransportError | None) -> None:
        """An attempt broke off; resume after :attr:`delay`, or raise when out of retries."""
        self._close()
        self._state = "idle"
        if self._failures >= self._max_retries:
            if error is not None:
                raise self._transport_error(error)
            raise TransferError(
                f"GET {self.path}: the body ended at byte {self._part_size()} of {self._total}"
            )
        self._failures += 1
        self.delay = self._backoff(self._failures - 1)

    def finish(self) -> Path:
        """Rename the complete ``.part`` to the destination; return it."""
        size = self._part_size()
        if self._expected is not None and size != self._expected:
            raise TransferError(f"downloaded {size} bytes, the delivery announced {self._expected}")
        os.replace(self.part, self.dest)
        self.etag_file.unlink(missing_ok=True)
        return self.dest

    # -- checks

    def _check_range(self, response: httpx.Response) -> int:
        header = response.headers.get("content-range", "")
        match = _CONTENT_RANGE.fullmatch(header.strip())
        if match is None:
            raise ResponseFormatError(f"GET {self.path}: 206 with Content-Range {header!r}")
        first, last, total = (int(g) for g in match.groups())
        if first != self._offset or last != total - 1 or last < first:
            raise ResponseFormatError(
                f"GET {self.path}: asked for bytes {self._offset}- and got {header!r}"
            )
        self._check_total(total, header)
        self._check_content_length(response, last - first + 1)
        return total

    def _check_length(self, response: httpx.Response) -> int | None:
        length = response.headers.get("content-length")
        if length is None:
            return self._expected
        try:
            total = int(length)
        except ValueError:
            raise ResponseFormatError(f"GET {self.path}: Content-Length {length!r}") from None
        self._check_total(total, f"Content-Length: {length}")
        return total

    def _check_content_length(self, response: httpx.Response, expected: int) -> None:
        length = response.headers.get("content-length")
        if length is not None and length.strip() != str(expected):
            raise ResponseFormatError(
                f"GET {self.path}: Content-Length {length} for a range of {expected} bytes"
            )

    def _check_total(self, total: int, header: str) -> None:
        if self._expected is not None and total != self._expected:
            raise ResponseFormatError(
                f"GET {self.path}: {header!r}, but the delivery announced {self._expected} bytes"
            )

    def _unsatisfiable(self, response: httpx.Response) -> None:
        header = response.headers.get("content-range", "")
        match = _UNSATISFIED_RANGE.fullmatch(header.strip())
        total = int(match.group(1)) if match else None
        if total is not None and total == self._offset:
            self._check_total(total, header)
            self._total = total
            self.done = True  # the .part was already complete
            return
        # the .part is not a prefix of this content (longer, or the server has no
        # size to offer): start over with a plain GET
        self._discard()

    def _open(self, *, append: bool) -> None:
        self._close()
        # closed by end(), failed() or __exit__
        self._file = open(self.part, "ab") if append else open(self.part, "wb")  # noqa: SIM115
        self._state = "streaming"

    def _close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


def open_delivery(
    key: SM2PrivateKey,
    envelope_: DeliveryEnvelope,
    ciphertext_path: str | Path,
    out_path: str | Path,
    progress: Callable[[int], None] | None = None,
) -> DecryptedFile:
    """Unwrap the content key with ``key``, decrypt ``ciphertext_path`` into
    ``out_path`` (streamed) and check the plaintext's SM3 against the envelope's
    ``content_digest``. The plaintext reaches ``out_path`` only when every chunk
    authenticated and the digest matched; otherwise nothing of this call is left
    there. Raises :class:`ledger.errors.DecryptionError` (tampered or truncated
    ciphertext, an envelope for another key) or :class:`DigestMismatchError`."""
    content_key = envelope.unwrap_key(key, envelope_.envelope)
    try:
        digest = delivery.decrypt_file(
            content_key,
            ciphertext_path,
            out_path,
            listing_id=envelope_.listing_id,
            version=envelope_.version,
            expected_sm3_hex=envelope_.content_digest,
            progress=progress,
        )
    except delivery.DigestMismatchError as exc:
        raise DigestMismatchError(exc.expected, exc.actual) from None
    out = Path(out_path)
    return DecryptedFile(path=out, sm3=digest, size=out.stat().st_size)


def translate_digest_errors(function: Callable[P, str]) -> Callable[P, str]:
    """``function`` (a :mod:`ledger.delivery` call) raising the SDK's
    :class:`DigestMismatchError` instead of the ledger's."""

    @functools.wraps(function)
    def translated(*args: P.args, **kwargs: P.kwargs) -> str:
        try:
            return function(*args, **kwargs)
        except delivery.DigestMismatchError as exc:
            if isinstance(exc, DigestMismatchError):
                raise
            raise DigestMismatchError(exc.expected, exc.actual) from None

    return translated
