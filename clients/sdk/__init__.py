"""The Python SDK of the Shancheng Data Exchange.

::

    from clients.sdk import ExchangeClient
    from ledger.sm2 import SM2PrivateKey

    with ExchangeClient("http://127.0.0.1:8000", key=SM2PrivateKey.generate()) as client:
        appended = client.append(client.sign("note.added", {"text": "hello"}))
        bundle = client.wait_for_receipt(appended.index)
        client.verify_receipt(bundle, rpc_url, registry)

:class:`ExchangeClient` and :class:`AsyncExchangeClient` are twins over one
base (:mod:`clients.sdk._base`, :mod:`clients.sdk._marketplace`); see
``docs/sdk.md``. The buyer-side decryption of a delivered file is
:mod:`ledger.delivery`, re-exported here raising the SDK's
:class:`DigestMismatchError`.
"""

from __future__ import annotations

from clients.sdk._base import NO_RETRIES, RetryPolicy, key_from_files
from clients.sdk._quality import NotReportedError
from clients.sdk._transfer import translate_digest_errors
from clients.sdk.async_client import AsyncExchangeClient
from clients.sdk.client import ExchangeClient
from clients.sdk.computation_models import (
    Computation,
    ComputationPage,
    QueryResult,
    ResultUploaded,
)
from clients.sdk.errors import (
    AccessExpiredError,
    AccessRevokedError,
    APIError,
    ClientConfigError,
    ClientError,
    ComputationCheckError,
    DeliveryCheckError,
    DigestMismatchError,
    InsufficientFundsError,
    MissingKeyError,
    QueryRefusedError,
    QuoteExpiredError,
    ReceiptPendingError,
    ResponseFormatError,
    ResponseVerificationError,
    TransferError,
    TransportError,
)
from clients.sdk.event_models import AnchorFinal, Event, EventPage, Webhook, WebhookAttempt
from clients.sdk.market_models import (
    PLATFORM_ACCOUNT,
    Account,
    Balance,
    Column,
    ContentUploaded,
    DecryptedFile,
    DeliverableUploaded,
    Delivery,
    DeliveryEnvelope,
    FacetCount,
    Facets,
    Listing,
    ListingVersion,
    Movement,
    Order,
    OrderPage,
    Participant,
    ProviderShare,
    Quote,
    Received,
    Refund,
    SearchHit,
    SearchPage,
    Settlement,
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
from clients.sdk.payout_models import Withdrawal, WithdrawalPage
from clients.sdk.quality_models import (
    Assessment,
    ListingQuality,
    QualityCountersignature,
    QualityReportInfo,
    QualitySummary,
)
from clients.sdk.webhooks import WebhookVerificationError, verify_webhook
from clients.sdk.workflow_models import ListingPage, OrderRecord, OrderRecords, ReviewQueue
from ledger import delivery as _delivery

decrypt_delivery = translate_digest_errors(_delivery.decrypt_delivery)
decrypt_file = translate_digest_errors(_delivery.decrypt_file)

__all__ = [
    "NO_RETRIES",
    "PLATFORM_ACCOUNT",
    "APIError",
    "AccessExpiredError",
    "AccessRevokedError",
    "Account",
    "Anchor",
    "AnchorFinal",
    "Appended",
    "Assessment",
    "AsyncExchangeClient",
    "Balance",
    "ChainStatus",
    "ClientConfigError",
    "ClientError",
    "Column",
    "Computation",
    "ComputationCheckError",
    "ComputationPage",
    "ConsistencyProof",
    "ContentUploaded",
    "DatabaseStatus",
    "DecryptedFile",
    "DeliverableUploaded",
    "Delivery",
    "DeliveryCheckError",
    "DeliveryEnvelope",
    "DigestMismatchError",
    "Entry",
    "Event",
    "EventPage",
    "ExchangeClient",
    "FacetCount",
    "Facets",
    "Health",
    "InclusionProof",
    "InsufficientFundsError",
    "Listing",
    "ListingPage",
    "ListingQuality",
    "ListingVersion",
    "LogKey",
    "MissingKeyError",
    "Movement",
    "NotReportedError",
    "Order",
    "OrderPage",
    "OrderRecord",
    "OrderRecords",
    "Participant",
    "ProviderShare",
    "QualityCountersignature",
    "QualityReportInfo",
    "QualitySummary",
    "QueryRefusedError",
    "QueryResult",
    "Quote",
    "QuoteExpiredError",
    "ReceiptPendingError",
    "Received",
    "Refund",
    "ResponseFormatError",
    "ResponseVerificationError",
    "ResultUploaded",
    "RetryPolicy",
    "ReviewQueue",
    "SearchHit",
    "SearchPage",
    "Settlement",
    "TransferError",
    "TransportError",
    "Webhook",
    "WebhookAttempt",
    "WebhookVerificationError",
    "Withdrawal",
    "WithdrawalPage",
    "decrypt_delivery",
    "decrypt_file",
    "key_from_files",
    "verify_webhook",
]
