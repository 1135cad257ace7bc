"""Typed errors of the ledger's cryptography.

Every failure the caller can act on is one of these, never a raw backend
(cffi / OpenSSL) exception. Two families:

* :class:`VerificationError`: a check ran and the data did not pass it (a bad
  signature, a tampered proof). Verification functions *raise* it; they never
  return a bool. Other ledger modules (the Merkle log, bundles) add their own
  subclasses in their own modules.
* :class:`CryptoError`: the input could not be used at all (a malformed key,
  a wrong password, a ciphertext that does not decrypt).
"""

from __future__ import annotations

__all__ = [
    "CryptoError",
    "DecryptionError",
    "EnvelopeFormatError",
    "InvalidSignature",
    "KeyFormatError",
    "KeyPasswordError",
    "LedgerError",
    "UnsupportedKeyError",
    "VerificationError",
]


class LedgerError(Exception):
    """Base of every error raised by :mod:`ledger`."""


class VerificationError(LedgerError):
    """Data failed a cryptographic check (signature, proof, checkpoint, …)."""


class InvalidSignature(VerificationError):
    """An SM2 signature does not verify: wrong key, altered message, or a
    malformed / truncated signature."""


class CryptoError(LedgerError):
    """Key material, ciphertext or an encoding could not be used."""


class KeyFormatError(CryptoError):
    """The bytes are not a well-formed key in the expected encoding (PEM/DER)."""


class UnsupportedKeyError(KeyFormatError):
    """A well-formed key of the wrong kind, e.g. RSA or an EC P-256 key where
    SM2 is required."""


class KeyPasswordError(KeyFormatError):
    """An encrypted private key with a missing or wrong password, or a password
    given for a key that is not encrypted."""


class DecryptionError(CryptoError):
    """A ciphertext did not decrypt: tampered, truncated, wrong key or wrong
    associated data. Deliberately says no more than that."""


class EnvelopeFormatError(CryptoError):
    """A serialised digital envelope is malformed or of an unknown version."""
