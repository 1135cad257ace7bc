"""The Python SDK of the Shancheng Data Exchange.

::

    from clients.sdk import ExchangeClient
    from ledger.sm2 import SM2PrivateKey

    with ExchangeClient("http://127.0.0.1:8000", key=SM2PrivateKey.generate()) as client:
        appended = client.append(client.sign("note.added", {"text": "hello"}))
        bundle = client.wait_for_receipt(appended.index)
        client.verify_receipt(bundle, rpc_url, registry)

:class:`ExchangeClient` and :class:`AsyncExchangeClient` are twins over one
base (:mod:`clients.sdk._base`); see ``docs/sdk.md``. The buyer-side
decryption of a delivered file is :mod:`ledger.delivery` (re-exported here).
"""

from __future__ import annotations

from clients.sdk._base import NO_RETRIES, RetryPolicy, key_from_files
from clients.sdk.async_client import AsyncExchangeClient
from clients.sdk.client import ExchangeClient
from clients.sdk.errors import (
    APIError,
    ClientConfigError,
    ClientError,
    MissingKeyError,
    ReceiptPendingError,
    ResponseFormatError,
    ResponseVerificationError,
    TransportError,
)
from clients.sdk.models import (
    Anchor,
    Appended,
    ChainStatus,
    ConsistencyProof,
    DatabaseStatus,
    Entry,
    Health,
    InclusionProof,
    LogKey,
)
from ledger.delivery import DigestMismatchError, decrypt_delivery, decrypt_file

__all__ = [
    "NO_RETRIES",
    "APIError",
    "Anchor",
    "Appended",
    "AsyncExchangeClient",
    "ChainStatus",
    "ClientConfigError",
    "ClientError",
    "ConsistencyProof",
    "DatabaseStatus",
    "DigestMismatchError",
    "Entry",
    "ExchangeClient",
    "Health",
    "InclusionProof",
    "LogKey",
    "MissingKeyError",
    "ReceiptPendingError",
    "ResponseFormatError",
    "ResponseVerificationError",
    "RetryPolicy",
    "TransportError",
    "decrypt_delivery",
    "decrypt_file",
    "key_from_files",
]
