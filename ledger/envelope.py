"""GM digital envelope: SM4-GCM content under a fresh key, the key SM2-encrypted.

:func:`seal` draws a fresh 16-byte SM4 key, encrypts the content with SM4-GCM
(:func:`ledger.sm4.encrypt`: ``iv || ciphertext || tag``, with the caller's
associated data) and wraps the key with SM2 public-key encryption to the
recipient (GM/T 0009 ASN.1 ciphertext, as OpenSSL emits). :func:`open` reverses
it. The associated data is not stored in the envelope: both sides derive it
from context (say, the order id), so an envelope cannot be replayed under
another context.

For content too large for memory, wrap only the key (:func:`wrap_key` /
:func:`unwrap_key`) and stream the content with
:func:`ledger.sm4.encrypt_stream`.

JSON form (``to_json``), all binary fields standard base64::

    {"algorithm": "SM2-SM4-GCM", "ciphertext": "...", "recipient": "<key id>",
     "version": 1, "wrapped_key": "..."}
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ledger import sm4
from ledger.errors import DecryptionError, EnvelopeFormatError
from ledger.sm2 import SM2PrivateKey, SM2PublicKey

__all__ = [
    "ALGORITHM",
    "ENVELOPE_VERSION",
    "Envelope",
    "open",
    "seal",
    "unwrap_key",
    "wrap_key",
]

ENVELOPE_VERSION: Final = 1
ALGORITHM: Final = "SM2-SM4-GCM"
_KEY_ID = re.compile(r"[0-9a-f]{64}")
_FIELDS: Final = frozenset({"algorithm", "ciphertext", "recipient", "version", "wrapped_key"})


@dataclass(frozen=True, slots=True)
class Envelope:
    """A sealed message for one recipient. Immutable; see :func:`seal` / :func:`open`."""

    recipient: str
    """Key id (hex SM3 of the SubjectPublicKeyInfo) of the recipient's public key."""
    wrapped_key: bytes
    """The SM4 content key, SM2-encrypted to the recipient (GM/T 0009 ASN.1)."""
    ciphertext: bytes
    """SM4-GCM ``iv || ciphertext || tag`` of the content."""
    version: int = ENVELOPE_VERSION
    algorithm: str = ALGORITHM

    def __post_init__(self) -> None:
        if self.version != ENVELOPE_VERSION or type(self.version) is not int:
            raise EnvelopeFormatError(f"unsupported envelope version {self.version!r}")
        if self.algorithm != ALGORITHM:
            raise EnvelopeFormatError(f"unsupported envelope algorithm {self.algorithm!r}")
        if not isinstance(self.recipient, str) or not _KEY_ID.fullmatch(self.recipient):
            raise EnvelopeFormatError("recipient must be a key id (64 lowercase hex digits)")
        if not isinstance(self.wrapped_key, bytes) or not self.wrapped_key:
            raise EnvelopeFormatError("wrapped_key must be non-empty bytes")
        if not isinstance(self.ciphertext, bytes) or len(self.ciphertext) < sm4.OVERHEAD:
            raise EnvelopeFormatError("ciphertext must be bytes holding at least an iv and a tag")

    def to_dict(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "ciphertext": base64.b64encode(self.ciphertext).decode("ascii"),
            "recipient": self.recipient,
            "version": self.version,
            "wrapped_key": base64.b64encode(self.wrapped_key).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Envelope:
        """Inverse of :meth:`to_dict`; raises :class:`EnvelopeFormatError`."""
        if not isinstance(data, Mapping):
            raise EnvelopeFormatError("an envelope must be a JSON object")
        keys = set(data)
        if keys != _FIELDS:
            missing = sorted(_FIELDS - keys)
            extra = sorted(keys - _FIELDS)
            raise EnvelopeFormatError(f"envelope fields: missing {missing}, unexpected {extra}")
        return cls(
            recipient=data["recipient"],
            wrapped_key=_b64decode(data["wrapped_key"], "wrapped_key"),
            ciphertext=_b64decode(data["ciphertext"], "ciphertext"),
            version=data["version"],
            algorithm=data["algorithm"],
        )

    def to_json(self) -> str:
        """Compact JSON with sorted keys (deterministic for a given envelope)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: str | bytes) -> Envelope:
        """Parse :meth:`to_json` output; raises :class:`EnvelopeFormatError`."""
        try:
            parsed = json.loads(data)
        except (ValueError, TypeError) as exc:
            raise EnvelopeFormatError(f"envelope is not valid JSON: {exc}") from None
        return cls.from_dict(parsed)


def _b64decode(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise EnvelopeFormatError(f"{field} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeFormatError(f"{field} is not valid base64") from None


def wrap_key(recipient: SM2PublicKey, key: bytes) -> bytes:
    """SM2-encrypt a 16-byte SM4 content key to ``recipient``."""
    if not isinstance(key, bytes) or len(key) != sm4.KEY_SIZE:
        raise ValueError(f"a content key is {sm4.KEY_SIZE} bytes")
    return recipient.encrypt(key)


def unwrap_key(recipient: SM2PrivateKey, wrapped: bytes) -> bytes:
    """Recover a content key from :func:`wrap_key`; raises :class:`DecryptionError`."""
    key = recipient.decrypt(wrapped)
    if len(key) != sm4.KEY_SIZE:
        raise DecryptionError("the wrapped key is not an SM4 content key")
    return key


def seal(recipient: SM2PublicKey, plaintext: bytes, aad: bytes = b"") -> Envelope:
    """Encrypt ``plaintext`` for ``recipient`` under a fresh content key."""
    key = sm4.generate_key()
    return Envelope(
        recipient=recipient.key_id(),
        wrapped_key=wrap_key(recipient, key),
        ciphertext=sm4.encrypt(key, plaintext, aad),
    )


def open(recipient: SM2PrivateKey, envelope: Envelope, aad: bytes = b"") -> bytes:
    """Decrypt ``envelope`` with the recipient's private key and the same ``aad``.

    Raises :class:`DecryptionError` if the envelope is for another key, or if
    the wrapped key or the content was tampered with, or ``aad`` differs.
    """
    if envelope.recipient != recipient.key_id():
        raise DecryptionError(f"envelope is for key {envelope.recipient}, not {recipient.key_id()}")
    key = unwrap_key(recipient, envelope.wrapped_key)
    return sm4.decrypt(key, envelope.ciphertext, aad)
