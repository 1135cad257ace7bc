"""Errors of uploads and deliveries (``{"code", "message"}`` through the API's handler)."""

from __future__ import annotations

from exchange.errors import ConflictError, ExchangeError, ForbiddenError, NotFoundError

__all__ = [
    "AlreadyDeliveredError",
    "ContentDigestMismatchError",
    "ContentNotAvailableError",
    "DeliverableMissingError",
    "DeliveryMismatchError",
    "ExchangeCustodyError",
    "ListingDelistedError",
    "NotDeliveredError",
    "NotProviderError",
    "OrderClosedError",
    "ProviderCustodyError",
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


class ProviderCustodyError(ConflictError):
    """The listing's data stays with its provider: the exchange takes no content for it
    and issues no envelope (the provider's agent delivers)."""

    code = "provider_custody"


class ExchangeCustodyError(ConflictError):
    """The listing is in exchange custody: its orders are delivered by the exchange."""

    code = "exchange_custody"


class OrderClosedError(ConflictError):
    """The order was refunded (or its access revoked): nothing more is delivered."""

    code = "order_closed"


class AlreadyDeliveredError(ConflictError):
    """The order was delivered already: its deliverable is final."""

    code = "already_delivered"


class DeliverableMissingError(ConflictError):
    """No ciphertext was uploaded for the order (``PUT /orders/{id}/deliverable``)."""

    code = "deliverable_missing"


class DeliveryMismatchError(ExchangeError):
    """The provider's delivery record does not describe this order (or its upload)."""

    status = 422
    code = "delivery_mismatch"
