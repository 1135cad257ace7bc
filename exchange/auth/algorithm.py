"""The ``sm2-sm3`` HTTP signature algorithm and SM3 ``Content-Digest``, server side.

The same definitions as :mod:`clients.signing` (the SDK must not import the
server, nor the server the SDK); ``tests/exchange/test_auth.py`` checks that
the two agree. See ``docs/api-auth.md``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any, Final, Protocol

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


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


DIGESTS: Final[dict[str, Callable[[], _Hasher]]] = {"sm3": SM3Hasher, "sha-256": hashlib.sha256}
"""Content-Digest algorithms the server checks (clients send ``sm3``): name → a
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
        if not isinstance(raw, bytes) or len(raw) != 32:
            raise DigestFormatError(f"Content-Digest {name} must be a 32-byte byte sequence")
        digests[name] = raw
    if not digests:
        raise DigestFormatError(f"Content-Digest needs one of: {', '.join(DIGESTS)}")
    return digests


class BodyDigest:
    """The body's digests, computed as it is read, to check against the members of
    its ``Content-Digest`` (from :func:`parse_content_digest`).

    The one digest check of the server: :func:`digest_matches` feeds a whole
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


def content_digest(body: bytes) -> str:
    """``sm3=:<base64>:`` of ``body`` (what the SDK sends)."""
    hasher = SM3Hasher()
    hasher.update(body)
    return f"sm3=:{base64.b64encode(hasher.digest()).decode('ascii')}:"
