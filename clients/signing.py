"""Signing HTTP requests for the exchange: RFC 9421 HTTP Message Signatures with
the ``sm2-sm3`` algorithm, and RFC 9530 ``Content-Digest`` with SM3.

Every request the exchange authenticates carries::

    Content-Digest: sm3=:<base64 SM3 of the body as sent>:
    Signature-Input: shancheng=("@method" "@target-uri" "content-digest");
        created=<unix seconds>;nonce="<random>";keyid="<key id>";alg="sm2-sm3"
    Signature: shancheng=:<base64 r||s>:

``sm2-sm3`` (not in the IANA registry of RFC 9421 algorithms; defined here and
in ``docs/api-auth.md``): the signature base is signed with SM2 over
SM3(Z || base) using the default distinguishing ID ``1234567812345678``
(GM/T 0009), exactly like :meth:`ledger.sm2.SM2PrivateKey.sign`; the
signature value is the two 32-byte big-endian integers ``r || s`` (64 bytes),
as RFC 9421 does for ECDSA, not DER.

:class:`SM2RequestSigner` is an :class:`httpx.Auth`: pass it as ``auth=`` to a
``httpx.Client``/``AsyncClient`` (or per request). It signs the exact bytes
httpx sends. A streamed body (an iterator or file) cannot be hashed before it
is sent without reading it twice, so for those set ``Content-Digest`` yourself
and the signer covers that header as given (it never recomputes it, nor reads
the body): :func:`content_digest_of_file` streams a file through SM3, and
:func:`content_digest_of_sm3` formats a digest already computed (the SDK's
upload hashes the file once and sends that digest, which the exchange checks
while it receives the bytes). A streamed request without a Content-Digest is
refused with :class:`SigningError` rather than sent unsigned.
"""

from __future__ import annotations

import base64
import datetime
import secrets
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any, ClassVar, Final

import httpx
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from http_message_signatures import (
    ContentDigest,
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPSignatureAlgorithm,
    HTTPSignatureKeyResolver,
)

from ledger.sm2 import SM2PrivateKey, SM2PublicKey
from ledger.sm3 import DIGEST_SIZE, SM3Hasher, sm3, sm3_file

__all__ = [
    "ALGORITHM_ID",
    "COVERED_COMPONENTS",
    "SIGNATURE_LABEL",
    "SM2_SM3",
    "SM2RequestSigner",
    "SigningError",
    "content_digest",
    "content_digest_of_file",
    "content_digest_of_sm3",
    "der_to_raw",
    "raw_to_der",
]

ALGORITHM_ID: Final = "sm2-sm3"
SIGNATURE_LABEL: Final = "shancheng"
COVERED_COMPONENTS: Final = ("@method", "@target-uri", "content-digest")
DIGEST_ALGORITHM: Final = "sm3"
_COORDINATE_SIZE: Final = 32


class SigningError(Exception):
    """A request cannot be signed (e.g. a streamed body without a Content-Digest)."""


def der_to_raw(signature: bytes) -> bytes:
    """DER SM2 signature → ``r || s`` (64 bytes). Raises :class:`ValueError`."""
    r, s = decode_dss_signature(signature)
    return r.to_bytes(_COORDINATE_SIZE, "big") + s.to_bytes(_COORDINATE_SIZE, "big")


def raw_to_der(signature: bytes) -> bytes:
    """``r || s`` (64 bytes) → DER. Raises :class:`ValueError` on a wrong length."""
    if len(signature) != 2 * _COORDINATE_SIZE:
        raise ValueError(f"an sm2-sm3 signature is {2 * _COORDINATE_SIZE} bytes r||s")
    r = int.from_bytes(signature[:_COORDINATE_SIZE], "big")
    s = int.from_bytes(signature[_COORDINATE_SIZE:], "big")
    return encode_dss_signature(r, s)


class SM2_SM3(HTTPSignatureAlgorithm):
    """The ``sm2-sm3`` algorithm for ``http-message-signatures``.

    Keys are :class:`ledger.sm2.SM2PrivateKey` / :class:`SM2PublicKey` objects
    (or PEM bytes). ``verify`` raises :class:`ledger.errors.InvalidSignature`
    (or :class:`ValueError` for a malformed value); the package turns either
    into its own ``InvalidSignature``.
    """

    algorithm_id = ALGORITHM_ID

    def __init__(self, public_key: Any = None, private_key: Any = None) -> None:
        if isinstance(private_key, bytes):
            private_key = SM2PrivateKey.from_pem(private_key)
        if isinstance(public_key, bytes):
            public_key = SM2PublicKey.from_pem(public_key)
        if private_key is not None and not isinstance(private_key, SM2PrivateKey):
            raise HTTPMessageSignaturesException("sm2-sm3 needs an SM2 private key")
        if public_key is not None and not isinstance(public_key, SM2PublicKey):
            raise HTTPMessageSignaturesException("sm2-sm3 needs an SM2 public key")
        self.private_key: SM2PrivateKey | None = private_key
        self.public_key: SM2PublicKey | None = public_key

    def sign(self, message: bytes) -> bytes:
        if self.private_key is None:
            raise HTTPMessageSignaturesException("no private key to sign with")
        return der_to_raw(self.private_key.sign(message))

    def verify(self, signature: bytes, message: bytes) -> None:
        if self.public_key is None:
            raise HTTPMessageSignaturesException("no public key to verify with")
        self.public_key.verify(raw_to_der(signature), message)


def content_digest_of_sm3(digest: bytes) -> str:
    """The RFC 9530 ``Content-Digest`` value for a body whose SM3 ``digest`` (32 bytes)
    was computed elsewhere, e.g. while streaming the file once: ``sm3=:<base64>:``.
    Raises :class:`ValueError` for anything but 32 bytes."""
    if not isinstance(digest, bytes) or len(digest) != DIGEST_SIZE:
        raise ValueError(f"an SM3 digest is {DIGEST_SIZE} bytes")
    return f"{DIGEST_ALGORITHM}=:{base64.b64encode(digest).decode('ascii')}:"


def content_digest(body: bytes) -> str:
    """The RFC 9530 ``Content-Digest`` value of ``body``: ``sm3=:<base64>:``."""
    return content_digest_of_sm3(sm3(body))


def content_digest_of_file(path: str | Path) -> str:
    """``Content-Digest`` of a file's bytes, streamed through SM3 (never whole in memory)."""
    return content_digest_of_sm3(sm3_file(path))


class _SM3:
    """A hashlib-style SM3 for the package's Content-Digest checks."""

    digest_size = 32

    def __init__(self, data: bytes = b"") -> None:
        self._hasher = SM3Hasher()
        self._hasher.update(data)

    def digest(self) -> bytes:
        return self._hasher.digest()


class SM3ContentDigest(ContentDigest):
    """RFC 9530 Content-Digest with ``sm3`` (besides the package's sha-256/sha-512)."""

    algorithm = DIGEST_ALGORITHM
    _hashers: ClassVar[dict[str, Any]] = {**ContentDigest._hashers, DIGEST_ALGORITHM: _SM3}


class _Signer(HTTPMessageSigner):
    content_digest_class = SM3ContentDigest


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(self, key: SM2PrivateKey) -> None:
        self._key = key

    def resolve_private_key(self, key_id: str) -> SM2PrivateKey:
        if key_id != self._key.key_id():
            raise KeyError(key_id)
        return self._key

    def resolve_public_key(self, key_id: str) -> SM2PublicKey | None:
        return self._key.public_key() if key_id == self._key.key_id() else None


class SM2RequestSigner(httpx.Auth):
    """Signs each request with ``key`` (RFC 9421, ``sm2-sm3``; see the module docstring).

    ``clock`` (seconds since the epoch) and ``nonce`` (a factory) exist for
    tests; by default the current time and 128 random bits are used.
    """

    requires_request_body = False  # streamed bodies stay streamed; see sign()

    def __init__(
        self,
        key: SM2PrivateKey,
        *,
        clock: Any = None,
        nonce: Any = None,
    ) -> None:
        self.key = key
        self.key_id = key.key_id()
        self._clock = clock or time.time
        self._nonce = nonce or (lambda: secrets.token_urlsafe(16))
        self._signer = _Signer(signature_algorithm=SM2_SM3, key_resolver=_OneKey(key))

    def sign(self, request: httpx.Request) -> None:
        """Add ``Content-Digest`` (unless present), ``Signature-Input`` and ``Signature``.

        A ``Content-Digest`` already on the request is covered as given: the body
        is not read or hashed again (the precomputed path for streamed uploads;
        the server checks the digest against the bytes it receives)."""
        if "content-digest" not in request.headers:
            try:
                body = request.content
            except httpx.RequestNotRead:
                raise SigningError(
                    "a streamed request body cannot be signed: set its Content-Digest header "
                    "first (clients.signing.content_digest_of_file)"
                ) from None
            request.headers["Content-Digest"] = content_digest(body)
        created = int(self._clock())
        self._signer.sign(
            request,
            key_id=self.key_id,
            created=_utc(created),
            nonce=str(self._nonce()),
            label=SIGNATURE_LABEL,
            include_alg=True,
            covered_component_ids=COVERED_COMPONENTS,
            use_existing_digest=True,
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request


def _utc(seconds: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
