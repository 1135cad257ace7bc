"""The log service's domain errors: each carries its HTTP status and ``code``."""

from __future__ import annotations

from exchange.errors import ConflictError, ExchangeError, NotFoundError


class InvalidRecordError(ExchangeError):
    """The signed record is malformed (envelope schema, JSON values, base64)."""

    code = "invalid_record"


class InvalidPublicKeyError(ExchangeError):
    """The public key offered with a record is not an SM2 SubjectPublicKeyInfo PEM."""

    code = "invalid_public_key"


class RecordSignatureError(ExchangeError):
    """The actor's SM2 signature over the record does not verify."""

    code = "invalid_signature"


class ActorMismatchError(ExchangeError):
    """The public key offered is not the record's actor."""

    code = "actor_mismatch"


class BatchTooLargeError(ExchangeError):
    code = "batch_too_large"


class DuplicateRecordError(ConflictError):
    """The same signed record (same leaf hash) is already in the log."""

    code = "duplicate_record"


class NoCheckpointError(NotFoundError):
    """Nothing has been integrated yet."""

    code = "no_checkpoint"


class CheckpointNotFoundError(NotFoundError):
    code = "checkpoint_not_found"


class EntryNotFoundError(NotFoundError):
    """No integrated entry at that index (or with that leaf hash)."""

    code = "entry_not_found"


class InvalidIndexError(ExchangeError):
    code = "invalid_index"


class InvalidTreeSizeError(ExchangeError):
    """A tree size below 1, or beyond the latest checkpoint."""

    code = "invalid_tree_size"


class InvalidRangeError(ExchangeError):
    """A consistency proof asked from a larger size to a smaller one."""

    code = "invalid_range"


class ReceiptPendingError(ConflictError):
    """The entry exists but no anchored checkpoint covers it yet."""

    code = "receipt_pending"


class CorruptEntryError(ExchangeError):
    """A stored entry cannot be read back (the database was altered)."""

    status = 500
    code = "corrupt_entry"


class CorruptCheckpointError(ExchangeError):
    """A stored checkpoint cannot be read back (the database was altered)."""

    status = 500
    code = "corrupt_checkpoint"


class CorruptTreeError(ExchangeError):
    """A tree node a proof needs is missing (the database was altered)."""

    status = 500
    code = "corrupt_tree"
