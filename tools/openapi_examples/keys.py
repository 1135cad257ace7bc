"""Documentation keys: SM2 keys derived from fixed labels, so their ids stay the same
across runs of the story, and their private halves are public by construction:
never configure one as an operator or trust it anywhere."""

from __future__ import annotations

import base64

from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import sm3

KEY_LABELS = (
    "provider",
    "co-provider",
    "buyer",
    "broker",
    "operator",
    "exchange",
    "assessor",
)

_SM2_ORDER = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
_SM2_OID = bytes.fromhex("06082a811ccf5501822d")  # 1.2.156.10197.1.301


def doc_key(label: str) -> SM2PrivateKey:
    """A documentation key: the SM2 scalar is SM3(label) reduced into [1, n - 2]."""
    scalar = int.from_bytes(sm3(f"shancheng-docs/{label}".encode()), "big") % (_SM2_ORDER - 2) + 1

    def tlv(tag: int, body: bytes) -> bytes:
        return bytes([tag, len(body)]) + body

    der = tlv(
        0x30,
        tlv(0x02, b"\x01") + tlv(0x04, scalar.to_bytes(32, "big")) + tlv(0xA0, _SM2_OID),
    )
    pem = (
        b"-----BEGIN EC PRIVATE KEY-----\n"
        + base64.encodebytes(der)
        + b"-----END EC PRIVATE KEY-----\n"
    )
    return SM2PrivateKey.from_pem(pem)
