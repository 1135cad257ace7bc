"""The ``sm2-sm3`` HTTP message signature algorithm (RFC 9421) and the SM3
``Content-Digest`` (RFC 9530): the one definition the SDK signs with
(:mod:`clients.signing`) and the exchange verifies with (:mod:`exchange.auth`).

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

``Content-Digest``: clients send ``sm3``; the exchange also accepts ``sha-256``
(:data:`DIGESTS`). :func:`parse_content_digest` reads the field,
:class:`BodyDigest` checks a body against it as the body is read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Final, Protocol

import http_sf
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
    "DIGESTS",
    "DIGEST_ALGORITHM",
    "SIGNATURE_LABEL",
    "SM2_SM3",
    "BodyDigest",
    "DigestFormatError",
    "OneKeyResolver",
    "SM3ContentDigest",
    "SM3MessageSigner",
    "content_digest",
    "content_digest_of_file",
    "content_digest_of_sm3",
    "der_to_raw",
    "digest_matches",
    "parse_content_digest",
    "raw_to_der",
]

ALGORITHM_ID: Final = "sm2-sm3"
SIGNATURE_LABEL: Final = "shancheng"
COVERED_COMPONENTS: Final = ("@method", "@target-uri", "content-digest")
"""What a signature covers: the SDK signs exactly these, the exchange requires them."""
DIGEST_ALGORITHM: Final = "sm3"
_COORDINATE_SIZE: Final = 32


# --------------------------------------------------------------------------- the algorithm


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


# --------------------------------------------------------------------------- Content-Digest


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


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


DIGESTS: Final[dict[str, Callable[[], _Hasher]]] = {
    DIGEST_ALGORITHM: SM3Hasher,
    "sha-256": hashlib.sha256,
}
"""Content-Digest algorithms the exchange checks (clients send ``sm3``): name → a
fresh incremental hasher."""


class DigestFormatError(ValueError):
    pass


def parse_content_digest(value: str) -> dict[str, bytes]:
    """The supported members of a ``Content-Digest`` field (RFC 9530: a Structured
    Field Dictionary of byte sequences). Unknown algorithms are ignored, but at
    least one supported one must be present. Raises :class:`DigestFormatError`."""
    try:
        parsed = http_sf.parse(value.encode("ascii"), tltype="dictionary")
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise DigestFormatError(f"malformed Content-Digest: {exc}") from None
    if not isinstance(parsed, dict):  # pragma: no cover - tltype guarantees a dict
        raise DigestFormatError("Content-Digest must be a dictionary")
    digests: dict[str, bytes] = {}
    for name, member in parsed.items():
        if name not in DIGESTS:
            continue
        raw = member[0] if isinstance(member, tuple) else None
        if not isinstance(raw, bytes) or len(raw) != DIGEST_SIZE:
            raise DigestFormatError(f"Content-Digest {name} must be a 32-byte byte sequence")
        digests[name] = raw
    if not digests:
        raise DigestFormatError(f"Content-Digest needs one of: {', '.join(DIGESTS)}")
    return digests


class BodyDigest:
    """The body's digests, computed as it is read, to check against the members of
    its ``Content-Digest`` (from :func:`parse_content_digest`).

    The one digest check of the exchange: :func:`digest_matches` feeds a whole
    body at once, a streamed upload feeds each chunk as it arrives.
    """

    def __init__(self, expected: dict[str, bytes]) -> None:
        self._expected = dict(expected)
        self._hashers = {name: DIGESTS[name]() for name in self._expected}

    def update(self, data: bytes) -> None:
        for hasher in self._hashers.values():
            hasher.update(data)

    def matches(self) -> bool:
        """Whether every expected digest is that of the bytes fed so far (call once, at the end)."""
        return all(
            hmac.compare_digest(self._hashers[name].digest(), value)
            for name, value in self._expected.items()
        )


def digest_matches(digests: dict[str, bytes], body: bytes) -> bool:
    """Whether every given digest is the body's."""
    check = BodyDigest(digests)
    check.update(body)
    return check.matches()


class _SM3:
    """A hashlib-style SM3 (``SM3(data).digest()``), as ``http-message-signatures`` calls it."""

    digest_size = DIGEST_SIZE

    def __init__(self, data: bytes = b"") -> None:
        self._hasher = SM3Hasher()
        self._hasher.update(data)

    def digest(self) -> bytes:
        return self._hasher.digest()


class SM3ContentDigest(ContentDigest):
    """RFC 9530 Content-Digest with ``sm3`` for ``http-message-signatures`` (besides
    the package's own sha-256/sha-512)."""

    algorithm = DIGEST_ALGORITHM
    _hashers: ClassVar[dict[str, Any]] = {**ContentDigest._hashers, DIGEST_ALGORITHM: _SM3}


class SM3MessageSigner(HTTPMessageSigner):
    """``http-message-signatures``' signer with the ``sm3`` Content-Digest."""

    content_digest_class = SM3ContentDigest


class OneKeyResolver(HTTPSignatureKeyResolver):
    """Resolves exactly one key id, to ``key`` (a signer holds one key)."""

    def __init__(self, key: SM2PrivateKey) -> None:
        self._key = key

    def resolve_private_key(self, key_id: str) -> SM2PrivateKey:
        if key_id != self._key.key_id():
            raise KeyError(key_id)
        return self._key

    def resolve_public_key(self, key_id: str) -> SM2PublicKey | None:
        return self._key.public_key() if key_id == self._key.key_id() else None
