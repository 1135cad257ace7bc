"""The encrypted content store: streamed SM3-verified ingest, SM4-GCM at rest,
ciphertext delivery with byte ranges, key envelopes for buyers.

Exchange side: :class:`ContentStore` (``ingest`` / ``ingest_async``,
``open_for_delivery`` → :class:`Delivery` with ``read_range``,
``envelope_for``). Buyer side: :func:`decrypt_file`. Formats in
:mod:`exchange.content.format`, custody in ``docs/custody.md``.
"""

from __future__ import annotations

from exchange.content.errors import (
    ContentCorruptError,
    ContentExistsError,
    ContentNotFoundError,
    ContentTooLargeError,
    DigestMismatchError,
    InvalidContentIdError,
    RangeNotSatisfiableError,
)
from exchange.content.format import content_aad, decrypt_file, decrypt_stream
from exchange.content.master_key import (
    MASTER_KEY_FILENAME,
    MasterKeyError,
    load_or_create_master_key,
)
from exchange.content.ranges import content_range, parse_range
from exchange.content.store import (
    ContentStore,
    Delivery,
    StoredContent,
    content_store_from_settings,
)

__all__ = [
    "MASTER_KEY_FILENAME",
    "ContentCorruptError",
    "ContentExistsError",
    "ContentNotFoundError",
    "ContentStore",
    "ContentTooLargeError",
    "Delivery",
    "DigestMismatchError",
    "InvalidContentIdError",
    "MasterKeyError",
    "RangeNotSatisfiableError",
    "StoredContent",
    "content_aad",
    "content_range",
    "content_store_from_settings",
    "decrypt_file",
    "decrypt_stream",
    "load_or_create_master_key",
    "parse_range",
]
