"""The ``sm2-sm3`` HTTP signature algorithm and SM3 ``Content-Digest``, server side.

The same definitions as :mod:`clients.signing` (the SDK must not import the
server, nor the server the SDK); ``tests/exchange/test_auth.py`` checks that
the two agree. See ``docs/api-auth.md``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Final

import http_sf
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from http_message_signatures import HTTPMessageSignaturesException, HTTPSignatureAlgorithm

from ledger.sm2 import SM2PublicKey
from ledger.sm3 import SM3Hasher

ALGORITHM_ID: Final = "sm2-sm3"
REQUIRED_COMPONENTS: Final = ("@method", "@target-uri", "content-digest")
_COORDINATE_SIZE: Final = 32


class SM2_SM3(HTTPSignatureAlgorithm):
    """Verify-only ``sm2-sm3``: SM2 (default distinguishing ID) over SM3(Z || base),
    signature value ``r || s`` (64 bytes)."""

    algorithm_id = ALGORITHM_ID

    def __init__(self, public_key: Any = None, private_key: Any = None) -> None:
        if not isinstance(public_key, SM2PublicKey) or private_key is not None:
            raise HTTPMessageSignaturesException("the server only verifies, with an SM2 public key")
        self.public_key = public_key

    def sign(self, message: bytes) -> bytes:
        raise HTTPMessageSignaturesException("the exchange never signs requests")

    def verify(self, signature: bytes, message: bytes) -> None:
        if len(signature) != 2 * _COORDINATE_SIZE:
            raise HTTPMessageSignaturesException("an sm2-sm3 signature is 64 bytes (r || s)")
        r = int.from_bytes(signature[:_COORDINATE_SIZE], "big")
        s = int.from_bytes(signature[_COORDINATE_SIZE:], "big")
        self.public_key.verify(encode_dss_signature(r, s), message)


def _sm3(body: bytes) -> bytes:
    hasher = SM3Hasher()
    hasher.update(body)
    return hasher.digest()


def _sha256(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


DIGESTS: Final = {"sm3": _sm3, "sha-256": _sha256}
"""Content-Digest algorithms the server checks (clients send ``sm3``)."""


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
        if not isinstance(raw, bytes) or len(raw) != 32:
            raise DigestFormatError(f"Content-Digest {name} must be a 32-byte byte sequence")
        digests[name] = raw
    if not digests:
        raise DigestFormatError(f"Content-Digest needs one of: {', '.join(DIGESTS)}")
    return digests


def digest_matches(digests: dict[str, bytes], body: bytes) -> bool:
    """Whether every given digest is the body's."""
    return all(hmac.compare_digest(DIGESTS[name](body), value) for name, value in digests.items())


def content_digest(body: bytes) -> str:
    """``sm3=:<base64>:`` of ``body`` (what the SDK sends)."""
    return f"sm3=:{base64.b64encode(_sm3(body)).decode('ascii')}:"
