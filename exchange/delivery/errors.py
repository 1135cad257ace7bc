"""Errors of uploads and deliveries (``{"code", "message"}`` through the API's handler)."""

from __future__ import annotations

from exchange.errors import ConflictError, ExchangeError, ForbiddenError, NotFoundError

__all__ = [
    "ContentDigestMismatchError",
    "ContentNotAvailableError",
    "ListingDelistedError",
    "NotDeliveredError",
    "NotProviderError",
    "UploadIncompleteError",
    "VersionNotFoundError",
]


class ContentDigestMismatchError(ExchangeError):
    """The uploaded bytes are not those the listing version committed to (their
    SM3 differs from its ``content_digest``). Nothing was kept."""

    status = 422
    code = "content_digest_mismatch"


class NotProviderError(ForbiddenError):
    """Only the listing's providers upload its content."""

    code = "not_a_provider"


class VersionNotFoundError(NotFoundError):
    code = "version_not_found"


class ListingDelistedError(ConflictError):
    code = "listing_delisted"


class UploadIncompleteError(ExchangeError):
    """The client went away before the whole body arrived. Nothing was kept."""

    code = "upload_incomplete"


class ContentNotAvailableError(ConflictError):
    """The order's listing version has no uploaded content yet."""

    code = "content_not_available"


class NotDeliveredError(ConflictError):
    """The ciphertext is served only after an envelope was issued for the order."""

    code = "not_delivered"
