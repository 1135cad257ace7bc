"""Authentication and authorisation errors (401 / 403), each with its ``code``
(``ForbiddenError``, the base of every 403, is in :mod:`exchange.errors`)."""

from __future__ import annotations

from exchange.errors import ExchangeError, ForbiddenError

__all__ = [
    "AuthenticationError",
    "BadSignatureError",
    "DigestMismatchError",
    "ForbiddenError",
    "ReplayedNonceError",
    "RoleError",
    "StaleSignatureError",
    "SuspendedError",
    "UnknownKeyError",
]


class AuthenticationError(ExchangeError):
    """The request carries no usable signature: missing or malformed headers,
    an unsupported algorithm, a component it must cover and does not."""

    status = 401
    code = "unauthenticated"


class UnknownKeyError(AuthenticationError):
    """The signature's ``keyid`` is neither a registered participant nor an operator."""

    code = "unknown_key"


class BadSignatureError(AuthenticationError):
    """The SM2 signature over the signature base does not verify."""

    code = "signature_invalid"


class StaleSignatureError(AuthenticationError):
    """``created`` lies further from the server's clock than the allowed skew."""

    code = "stale_signature"


class ReplayedNonceError(AuthenticationError):
    """The (key id, nonce) pair was already used within the skew window."""

    code = "replayed_nonce"


class DigestMismatchError(AuthenticationError):
    """The body does not match its signed ``Content-Digest``."""

    code = "digest_mismatch"


class SuspendedError(ForbiddenError):
    code = "participant_suspended"


class RoleError(ForbiddenError):
    """The participant's role may not use this endpoint."""

    code = "role_forbidden"
