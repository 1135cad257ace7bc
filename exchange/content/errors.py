"""Errors of the content store; all render as ``{"code", "message"}`` through the API's handler."""

from __future__ import annotations

from exchange.errors import ConflictError, ExchangeError, NotFoundError

__all__ = [
    "ContentCorruptError",
    "ContentExistsError",
    "ContentNotFoundError",
    "ContentTooLargeError",
    "DigestMismatchError",
    "InvalidContentIdError",
    "RangeNotSatisfiableError",
]


class DigestMismatchError(ExchangeError):
    """The uploaded (or decrypted) bytes do not have the SM3 digest they were
    declared with. Nothing was kept."""

    status = 422
    code = "digest_mismatch"

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"SM3 of the content is {actual}, expected {expected}")


class ContentTooLargeError(ExchangeError):
    """The upload exceeded its byte limit. Nothing was kept."""

    status = 413
    code = "content_too_large"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the content exceeds the limit of {limit} bytes")


class InvalidContentIdError(ExchangeError):
    """A listing id, version or digest that cannot name stored content."""

    status = 422
    code = "invalid_content_id"


class ContentNotFoundError(NotFoundError):
    """No content is stored for this listing version."""

    code = "content_not_found"


class ContentExistsError(ConflictError):
    """Different content (another digest) is already stored for this listing version."""

    code = "content_exists"


class ContentCorruptError(ExchangeError):
    """Stored content fails its own integrity checks (size, metadata, key unwrap):
    a server-side fault, not a client error."""

    status = 500
    code = "content_corrupt"


class RangeNotSatisfiableError(ExchangeError):
    """A byte range outside the stored ciphertext (HTTP 416); ``size`` is the
    ciphertext length for the ``Content-Range: bytes */size`` header."""

    status = 416
    code = "range_not_satisfiable"

    def __init__(self, message: str, size: int) -> None:
        self.size = size
        super().__init__(message)
