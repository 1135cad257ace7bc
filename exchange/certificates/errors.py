"""The refusals of the certificate records (docs/certificates.md)."""

from __future__ import annotations

from exchange.errors import ConflictError, ExchangeError, ForbiddenError, NotFoundError

__all__ = [
    "CertificateCancelledError",
    "CertificateExpiredError",
    "CertificateNotFoundError",
    "InvalidSharesError",
    "InvalidStateError",
    "InvalidTransferError",
    "InvalidValidityError",
    "NotHolderError",
    "NotReceiverError",
    "NotRightHolderError",
    "NumberTakenError",
    "OperatorOnlyError",
    "TargetMismatchError",
    "UnknownParticipantError",
    "WrongRecordTypeError",
]


class CertificateNotFoundError(NotFoundError):
    code = "certificate_not_found"


class InvalidStateError(ConflictError):
    code = "invalid_certificate_state"


class NumberTakenError(ConflictError):
    """Another certificate took the number first (retried by the issuer; surfaces
    only when publications keep racing)."""

    code = "certificate_number_taken"


class CertificateCancelledError(ConflictError):
    code = "certificate_cancelled"


class CertificateExpiredError(ConflictError):
    code = "certificate_expired"


class NotHolderError(ForbiddenError):
    code = "not_holder"


class NotRightHolderError(ForbiddenError):
    code = "not_right_holder"


class NotReceiverError(ForbiddenError):
    code = "not_receiver"


class OperatorOnlyError(ForbiddenError):
    code = "operator_only"


class WrongRecordTypeError(ExchangeError):
    status = 422
    code = "wrong_record_type"


class TargetMismatchError(ExchangeError):
    status = 422
    code = "target_mismatch"


class InvalidSharesError(ExchangeError):
    status = 422
    code = "invalid_shares"


class InvalidTransferError(ExchangeError):
    status = 422
    code = "invalid_transfer"


class InvalidValidityError(ExchangeError):
    status = 422
    code = "invalid_validity"


class UnknownParticipantError(ExchangeError):
    status = 422
    code = "unknown_participant"
