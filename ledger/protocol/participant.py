"""A participant's public profile, defined once: the exchange serves these classes
(``GET /participants/{key_id}``, ``/participants/me``, registration, approval,
suspension) and the SDK parses them.

``public_key`` holds the wire form (SubjectPublicKeyInfo PEM), checked on parsing
to be the SM2 key of ``key_id``; :attr:`Participant.sm2_public_key` gives the key.
No class docstrings: they would become OpenAPI descriptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

from ledger.errors import KeyFormatError
from ledger.protocol.log import Appended
from ledger.protocol.reader import JSONObject
from ledger.records import RecordFormatError
from ledger.sm2 import SM2PublicKey

__all__ = ["Participant", "ParticipantChanged"]


def _public_key(pem: str, path: str) -> SM2PublicKey:
    try:
        return SM2PublicKey.from_pem(pem)
    except KeyFormatError as exc:
        raise RecordFormatError(f"not an SM2 public key: {exc}", path=path) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Participant:
    key_id: str
    display_name: str
    role: str = field(metadata={"examples": ["provider"]})
    status: str = field(
        metadata={"examples": ["active"], "description": "unverified, active or suspended."}
    )
    public_key: str
    registered_at: int | None = field(
        metadata={"description": "ms since the epoch; null for operators."}
    )

    @property
    def sm2_public_key(self) -> SM2PublicKey:
        """The participant's SM2 key (checked on parsing to be the key of ``key_id``)."""
        return _public_key(self.public_key, "public_key")

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "") -> Self:
        o = JSONObject(data, path)
        key_id = o.hex64("key_id")
        public_key = o.text("public_key")
        if _public_key(public_key, o.path("public_key")).key_id() != key_id:
            raise RecordFormatError(
                "the public key is not the key of key_id", path=o.path("key_id")
            )
        return cls(
            key_id=key_id,
            display_name=o.text("display_name"),
            role=o.text("role"),
            status=o.text("status"),
            public_key=public_key,
            registered_at=o.opt_integer("registered_at"),
        )


@dataclass(frozen=True, slots=True)
class ParticipantChanged:
    participant: Participant
    log: Appended = field(
        metadata={"description": "Where the signed record went in the log, and its promise."}
    )
