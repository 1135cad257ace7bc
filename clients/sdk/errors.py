"""What the SDK raises. Everything derives from :class:`ClientError`.

* :class:`APIError`: the exchange answered with an error status; ``status_code``,
  ``code`` and ``message`` are its ``{"code", "message"}`` body (an error
  without such a body, e.g. from a proxy, gets ``code="http_error"``).
  Some codes have subclasses (:class:`ReceiptPendingError`), so callers can
  catch the situation rather than compare strings.
* :class:`TransportError`: no answer at all (connection refused, timeout,
  broken connection); the httpx exception is ``cause`` (and ``__cause__``).
* :class:`ResponseFormatError`: a success status whose body is not what the
  API documents.
* :class:`ResponseVerificationError`: a signed answer (promise, checkpoint,
  entry) that does not verify against the log key, or does not belong to
  what was asked. Also a :class:`ledger.errors.VerificationError`.
* :class:`MissingKeyError`: the call needs the client's SM2 key and there is none.
* :class:`ClientConfigError`: :meth:`from_env` found an unusable configuration.
* :class:`DigestMismatchError`: a delivery decrypted, authenticated, but its plaintext
  is not the content the order's digest commits to (also a
  :class:`ledger.delivery.DigestMismatchError`). Tampered or truncated ciphertext
  is :class:`ledger.errors.DecryptionError` instead.
* :class:`TransferError`: an upload or download that cannot complete as such (the
  file changed while it was sent, the answer's ranges do not add up).
* :class:`DeliveryCheckError`: a provider-held delivery failed one of the buyer's
  checks (``check`` names it, ``evidence`` is what to attach to a dispute).
* :class:`QueryRefusedError`: a query was refused (by the exchange's early check,
  the provider's agent or the exchange's timeout); ``reason`` is its code.
* :class:`ComputationCheckError`: a query's answer failed one of the buyer's checks
  (``check`` names it); nothing of it is returned.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import httpx

from ledger import delivery
from ledger.errors import VerificationError

__all__ = [
    "APIError",
    "AccessExpiredError",
    "AccessRevokedError",
    "ClientConfigError",
    "ClientError",
    "ComputationCheckError",
    "DeliveryCheck",
    "DeliveryCheckError",
    "DigestMismatchError",
    "InsufficientFundsError",
    "MissingKeyError",
    "QueryRefusedError",
    "QuoteExpiredError",
    "ReceiptPendingError",
    "ResponseFormatError",
    "ResponseVerificationError",
    "TransferError",
    "TransportError",
    "api_error",
]


class ClientError(Exception):
    """Base of every error the SDK raises."""


class APIError(ClientError):
    """The exchange refused the request: HTTP ``status_code`` with ``{"code", "message"}``.
    ``request_id`` is the answer's ``X-Request-Id`` (the exchange's logs name the
    request by it), ``None`` when the answer carried none (e.g. from a proxy)."""

    def __init__(
        self, status_code: int, code: str, message: str, request_id: str | None = None
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.message = message
        self.request_id = request_id
        where = "" if request_id is None else f" (request id {request_id})"
        super().__init__(f"HTTP {status_code} {code}: {message}{where}")


class ReceiptPendingError(APIError):
    """No anchored checkpoint covers the entry yet (409 ``receipt_pending``): ask again
    in ``retry_after`` seconds (the exchange's estimate; ``None`` when it gave none), or
    use ``wait_for_receipt``."""

    retry_after: int | None = None


class InsufficientFundsError(APIError):
    """The available balance does not cover the order or the withdrawal (402
    ``insufficient_funds``), or a payee cannot return a clawback (409)."""


class QuoteExpiredError(APIError):
    """The quote's ``expires_at`` passed (409 ``quote_expired``): ask for a new quote."""


class AccessRevokedError(APIError):
    """The provider revoked the buyer's access to this order (403 ``access_revoked``)."""


class AccessExpiredError(APIError):
    """The subscription's paid period is over (403 ``access_expired``): renew it."""


class TransportError(ClientError):
    """The request got no HTTP answer; ``cause`` is httpx's exception."""

    def __init__(self, message: str, cause: httpx.TransportError) -> None:
        self.cause = cause
        super().__init__(message)


class ResponseFormatError(ClientError):
    """A success response whose body does not have the documented shape."""


class ResponseVerificationError(ClientError, VerificationError):
    """A signed response does not verify, or answers another question than the one asked."""


class MissingKeyError(ClientError):
    """The operation signs with the client's SM2 key, and the client was made without one."""


class ClientConfigError(ClientError):
    """The environment (or configuration) does not describe a usable client."""


class DigestMismatchError(ClientError, delivery.DigestMismatchError):
    """The decrypted plaintext's SM3 (``actual``) is not the digest the order commits
    to (``expected``); nothing is left at the output path."""


DeliveryCheck = Literal[
    "signature",
    "ciphertext_sm3",
    "decrypt",
    "plaintext_sm3",
    "content_digest",
    "range",
    "format",
    "row_count",
    "proof",
    "row_root",
]
"""The buyer's checks of a provider-held delivery, in the order ``receive`` makes them
(``range`` … ``row_root`` are :data:`clients.slices.SLICE_CHECKS`)."""


class DeliveryCheckError(ClientError, VerificationError):
    """A provider-held delivery failed the buyer's check ``check``; nothing was left
    at the output path. ``evidence`` (a small JSON object: the check, the order,
    the delivery record's log index, what was expected and found) is meant for
    ``dispute(order_id, reason, evidence=error.evidence)``."""

    def __init__(self, check: DeliveryCheck, message: str, evidence: dict[str, Any]) -> None:
        self.check = check
        self.message = message
        self.evidence = evidence
        super().__init__(f"delivery check {check!r} failed: {message}")


class QueryRefusedError(ClientError):
    """A query got no answer: ``reason`` is the refusal's code (the validator's, e.g.
    ``returns_rows``; the agent's ``timeout``; ``budget_exhausted``; the exchange's
    ``agent_timeout``). ``computation_id`` is ``None`` when the exchange refused the
    request itself (nothing was recorded)."""

    def __init__(self, reason: str, message: str, computation_id: str | None = None) -> None:
        self.reason = reason
        self.message = message
        self.computation_id = computation_id
        super().__init__(f"query_refused: {reason}" + (f": {message}" if message else ""))


class ComputationCheckError(ClientError, VerificationError):
    """A query's answer failed the buyer's check ``check`` (``signer``, ``record``,
    ``ciphertext``, ``decryption``, ``result``): it is not what the provider of the
    listing signed, and nothing of it was returned."""

    def __init__(self, check: str, message: str) -> None:
        self.check = check
        self.message = message
        super().__init__(f"computation check {check!r} failed: {message}")


class TransferError(ClientError):
    """An upload or download could not be carried out as asked (see the message)."""


_BY_CODE: Final[dict[str, type[APIError]]] = {
    "receipt_pending": ReceiptPendingError,
    "insufficient_funds": InsufficientFundsError,
    "quote_expired": QuoteExpiredError,
    "access_revoked": AccessRevokedError,
    "access_expired": AccessExpiredError,
}
"""Error codes with their own class (catch the situation rather than compare strings)."""


def api_error(status_code: int, code: str, message: str, request_id: str | None = None) -> APIError:
    """The :class:`APIError` (or subclass, by ``code``) for an error response."""
    return _BY_CODE.get(code, APIError)(status_code, code, message, request_id)
