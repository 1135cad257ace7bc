"""``ExchangeClient``: the blocking SDK (httpx.Client). Its twin is
:class:`clients.sdk.AsyncExchangeClient`; both build calls in :mod:`clients.sdk._base`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from clients.sdk._base import DEFAULT_TIMEOUT, USER_AGENT, Call, RetryPolicy, error_from_response
from clients.sdk._certificates import CertificateCalls, change_payload, review_payload, review_type
from clients.sdk._computations import (
    checked_completion,
    computation_order,
    early_refusal,
    open_answer,
    refusal_of,
    requested_sql,
)
from clients.sdk._marketplace import LOG_WAIT, NOT_INTEGRATED
from clients.sdk._payouts import PayoutCalls
from clients.sdk._quality import (
    ASSESSMENT_TERMS,
    NotReportedError,
    QualityCalls,
    recompute,
    still_undelivered,
)
from clients.sdk._receive import ReceiveJob, SignedVersion
from clients.sdk._sse import SSEParser
from clients.sdk._transfer import Progress
from clients.sdk._workflows import WorkflowCalls
from clients.sdk.certificate_models import Certificate
from clients.sdk.computation_models import (
    Computation,
    ComputationPage,
    QueryResult,
    ResultUploaded,
)
from clients.sdk.errors import APIError, ReceiptPendingError
from clients.sdk.event_models import Event, EventPage, Webhook, WebhookAttempt
from clients.sdk.market_models import (
    Account,
    ContentUploaded,
    CrossBorderAssessment,
    DecryptedFile,
    DeliverableUploaded,
    Delivery,
    DeliveryEnvelope,
    Listing,
    ListingVersion,
    Order,
    OrderPage,
    Participant,
    Quote,
    Received,
    SearchPage,
)
from clients.sdk.models import (
    Anchor,
    Appended,
    ConsistencyProof,
    Entry,
    Health,
    InclusionProof,
    LogKey,
)
from clients.sdk.payout_models import Withdrawal, WithdrawalPage
from clients.sdk.policies import DEFAULT_PURPOSE, DEFAULT_REGION, check, declare
from clients.sdk.quality_models import (
    Assessment,
    ListingQuality,
    QualityCountersignature,
    QualityReportInfo,
)
from clients.sdk.workflow_models import ListingPage, OrderRecords, ReviewQueue
from ledger.bundle import Bundle
from ledger.checkpoint import Checkpoint
from ledger.computation.offer import ComputationOffer
from ledger.protocol.computation import ComputationCompleted, ComputationRefused
from ledger.protocol.delivery import ProviderDelivery
from ledger.protocol.policy import Violation
from ledger.protocol.quality import QualityReport
from ledger.records import SignedRecord
from ledger.sm2 import SM2PrivateKey, SM2PublicKey

if TYPE_CHECKING:
    from clients.audit import LogAuditReport
    from ledger.audit import AuditReport

__all__ = ["ExchangeClient"]

T = TypeVar("T")


class ExchangeClient(PayoutCalls, CertificateCalls, WorkflowCalls, QualityCalls):
    """A participant's (or an auditor's) connection to the exchange.

    ``key`` is the participant's SM2 private key: it signs records
    (:meth:`sign`) and, for authenticated endpoints, requests (RFC 9421,
    ``sm2-sm3``; or pass ``auth=`` yourself). Without it the client only
    reads. ``trusted_log_key`` pins the log's public key; without it the key
    the exchange publishes is fetched once and trusted from then on.
    ``transport`` is handed to httpx (``httpx.MockTransport`` in tests).
    Use as a context manager, or call :meth:`close`.

    Errors: :class:`~clients.sdk.errors.APIError` (the exchange refused),
    :class:`~clients.sdk.errors.TransportError` (no answer),
    :class:`~clients.sdk.errors.ResponseFormatError`,
    :class:`~clients.sdk.errors.ResponseVerificationError` (a signed answer
    does not verify).
    """

    def __init__(
        self,
        base_url: str,
        *,
        key: SM2PrivateKey | None = None,
        auth: httpx.Auth | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: RetryPolicy | None = None,
        trusted_log_key: SM2PublicKey | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url,
            key=key,
            auth=auth,
            timeout=timeout,
            retries=retries,
            trusted_log_key=trusted_log_key,
        )
        self._transport = transport
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ExchangeClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, call: Call[T]) -> T:
        auth = self._auth_for(call)
        # before writing: a failure to get the log key changes nothing
        log_key = self._verification_key() if call.verify is not None else None
        attempt = 0
        while True:
            request = self._http.build_request(**self._request_args(call))
            try:
                response = self._http.send(request, auth=auth)
            except httpx.TransportError as exc:
                delay = self._retry_delay(call, attempt, error=exc)
                if delay is None:
                    raise self._transport_error(call, exc) from exc
            else:
                delay = self._retry_delay(call, attempt, response=response)
                if delay is None:
                    return self._checked(call, self._decode(call, response), log_key)
                response.close()
            time.sleep(delay)
            attempt += 1

    def _verification_key(self) -> SM2PublicKey:
        if self._log_key is not None:
            return self._log_key
        return self._remember_log_key(self.log_key())

    # ------------------------------------------------------------------ operations

    def health(self) -> Health:
        """Database and chain status (a degraded exchange answers too: ``Health.ok`` is False)."""
        return self._send(self._health_call())

    def log_key(self) -> LogKey:
        """The log's public key as the exchange publishes it (not checked against a pin)."""
        return self._send(self._log_key_call())

    def append(self, signed: SignedRecord, *, public_key: SM2PublicKey | None = None) -> Appended:
        """Append a ``note.*`` or ``attestation.*`` record signed by the client's key
        (a registered, active participant) to the log, in a signed request. Returns
        its index and the log's promise, verified against the log key. Never
        retried. A 409 ``duplicate_record`` means it is already there."""
        call = self._append_call(signed, public_key)
        log_key = self._verification_key()  # before writing: a failure here changes nothing
        return self._check_appended(signed, self._send(call), log_key, "the appended record")

    def append_many(
        self, records: Sequence[SignedRecord], *, public_key: SM2PublicKey | None = None
    ) -> list[Appended]:
        """Append records by one actor at once (all or nothing; consecutive indexes)."""
        call = self._append_many_call(records, public_key)
        log_key = self._verification_key()
        return self._check_batch(records, self._send(call), log_key)

    def checkpoint(self, tree_size: int | None = None) -> Checkpoint:
        """The latest checkpoint (or that of ``tree_size``), its signature verified."""
        checkpoint = self._send(self._checkpoint_call(tree_size))
        return self._check_checkpoint(checkpoint, self._verification_key(), tree_size)

    def entry(self, index: int) -> Entry:
        """An integrated entry; the actor's signature, leaf hash and promise verified."""
        entry = self._send(self._entry_call(index))
        return self._check_entry(entry, index, self._verification_key())

    def inclusion_proof(
        self,
        index: int | None = None,
        *,
        leaf_hash: bytes | None = None,
        tree_size: int | None = None,
    ) -> InclusionProof:
        """The audit path of an entry (by ``index`` or ``leaf_hash``) in the checkpointed
        tree of ``tree_size`` (default: the latest); check it with ``.verify(root)``."""
        return self._send(self._inclusion_call(index, leaf_hash, tree_size))

    def consistency_proof(self, first: int, second: int) -> ConsistencyProof:
        """Proof that tree ``first`` is a prefix of tree ``second``; ``.verify(root1, root2)``."""
        return self._send(self._consistency_call(first, second))

    def anchors(self, *, start: int = 0, limit: int = 1000) -> list[Anchor]:
        """The exchange's anchoring state, from tree size ``start`` up."""
        return self._send(self._anchors_call(start, limit))

    def receipt(self, index: int) -> Bundle:
        """The receipt bundle of entry ``index``. Raises
        :class:`~clients.sdk.errors.ReceiptPendingError` while no anchored checkpoint
        covers it. The bundle is not verified here: see :meth:`verify_receipt`."""
        return self._check_bundle(self._send(self._receipt_call(index)), index)

    def wait_for_receipt(
        self, index: int, *, timeout: float = 120.0, interval: float | None = 0.5
    ) -> Bundle:
        """:meth:`receipt`, asking again every ``interval`` seconds while it is pending
        (``None``: when the exchange's ``Retry-After`` says); re-raises
        :class:`~clients.sdk.errors.ReceiptPendingError` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.receipt(index)
            except ReceiptPendingError as pending:
                delay = self._pending_delay(pending, deadline - time.monotonic(), interval)
                if delay is None:
                    raise
            time.sleep(delay)

    def order_records(self, order_id: str) -> OrderRecords:
        """The order's records in the log (its buyer, the listing's providers,
        operators): each one's index, type, actor and anchor state (``pending`` until
        its receipt is ready)."""
        return self._send(self._order_records_call(order_id))

    # ------------------------------------------------------------------ participants

    def register(self, display_name: str, role: str) -> Participant:
        """Register the client's key as a ``provider``, ``buyer`` or ``auditor`` (the
        record signed by the key is the proof of possession). Providers start
        ``unverified`` until an operator approves them."""
        return self._send(self._register_call(display_name, role))

    def me(self) -> Participant:
        return self._send(self._me_call())

    def participant(self, key_id: str) -> Participant:
        """Anyone's public profile."""
        return self._send(self._participant_call(key_id))

    def approve_participant(self, key_id: str) -> Participant:
        """Operators: approve an unverified provider."""
        return self._send(self._approve_participant_call(key_id))

    def suspend_participant(self, key_id: str, reason: str) -> Participant:
        """Operators: suspend a participant (refused everywhere from then on)."""
        return self._send(self._suspend_participant_call(key_id, reason))

    # ------------------------------------------------------------------ provider

    def create_listing(self, fields: Mapping[str, Any]) -> Listing:
        """Draft a listing from its content ``fields`` (title, category, providers,
        columns, content_digest, pricing, declarations, …; see docs/sdk.md);
        ``listing_id`` is generated unless given."""
        return self._send(self._create_listing_call(fields))

    def update_listing(self, listing_id: str, fields: Mapping[str, Any]) -> Listing:
        """Replace a draft's (or rejected listing's) whole content; start from
        ``listing(listing_id).content_fields()``."""
        return self._send(self._update_listing_call(listing_id, fields))

    def submit_listing(self, listing_id: str) -> Listing:
        """Submit a draft for review; refused (422 ``declarations_incomplete``) unless
        its declarations are complete (the check publication makes)."""
        return self._send(self._submit_listing_call(listing_id))

    def listings(
        self,
        *,
        provider: str | None = None,
        state: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> ListingPage:
        """Listings you may see, newest first: published and delisted ones, and (signed)
        your own in any state (operators: all). ``provider``: a key id, or ``"me"``;
        ``state``: draft, submitted, under_review, published, rejected or delisted."""
        return self._send(self._listings_call(provider, state, limit, offset))

    def new_version(self, listing_id: str, fields: Mapping[str, Any]) -> Listing:
        """Declare the next content version of a published listing: ``fields`` gives
        content_digest, row_count, byte_size, format, optionally ``row_root``,
        ``policy`` (the new version's usage policy; absent: the current one's) and
        ``version`` (default: the current one + 1); other keys are ignored. The
        answer's ``added_version`` is the new version."""
        version = fields.get("version") or self.listing(listing_id).version + 1
        return self._send(self._new_version_call(listing_id, version, fields))

    def delist(self, listing_id: str, reason: str) -> Listing:
        return self._send(self._delist_call(listing_id, reason))

    def listing_from_file(
        self,
        path: str | Path,
        *,
        file_format: str | None = None,
        sample_rows: int = 5,
        custody: str = "provider",
        delivery_window_s: int | None = None,
        computation: ComputationOffer | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """Listing fields inferred from a dataset file in one streamed pass
        (content_digest, byte_size, row_count, row_root, format, columns,
        sample_rows; see :func:`clients.datasets.describe_file`) with ``custody``
        (``provider``: your agent delivers; ``exchange``: you upload the content)
        and ``delivery_window_s`` (server default when ``None``), offering
        ``computation`` (docs/computations.md; provider custody only), updated with
        ``overrides``."""
        return self._listing_fields_from_file(
            path, file_format, sample_rows, custody, delivery_window_s, computation, overrides
        )

    def upload_content(
        self,
        listing_id: str,
        version: int,
        path: str | Path,
        progress: Progress | None = None,
    ) -> ContentUploaded:
        """Upload a listing version's dataset, streamed: SM3 in one pass, then the
        bytes with that Content-Digest; ``progress(bytes_sent, total)``. Never
        retried automatically (call it again: the same bytes answer 200)."""
        return self._send(self._upload_content_call(listing_id, version, path, progress))

    def upload_deliverable(
        self, order_id: str, path: str | Path, progress: Progress | None = None
    ) -> DeliverableUploaded:
        """Provider custody: upload an order's encrypted deliverable, streamed with its
        Content-Digest (as :meth:`upload_content`); a re-upload replaces it until the
        order is delivered. Never retried automatically."""
        return self._send(self._upload_deliverable_call(order_id, path, progress))

    def issue_delivery(
        self,
        order_id: str,
        delivery: ProviderDelivery,
        *,
        idempotency_key: str | None = None,
    ) -> Order:
        """Provider custody: sign and post the ``delivery.issued`` record of an order
        whose deliverable is uploaded; the order becomes ``delivered``."""
        return self._send(self._issue_delivery_call(order_id, delivery, idempotency_key))

    def revoke(self, order_id: str, reason: str, *, idempotency_key: str | None = None) -> Order:
        """Revoke a buyer's access to an order on your listing (refund rule in
        docs/money.md)."""
        return self._send(self._revoke_call(order_id, reason, idempotency_key))

    def sales(self, *, limit: int = 50, offset: int = 0) -> OrderPage:
        """Orders on your listings, newest first."""
        return self._send(self._orders_call("provider", limit, offset))

    def account(self, key_id: str | None = None, *, limit: int = 50) -> Account:
        """Your balances and latest ``limit`` movements (deposits, escrow, payouts,
        fees, refunds); operators may name another ``key_id``."""
        return self._send(self._account_call(key_id, limit))

    # ------------------------------------------------------------------ operator

    def review_listing(self, listing_id: str) -> Listing:
        return self._send(self._review_listing_call(listing_id))

    def publish_listing(self, listing_id: str) -> Listing:
        """Publish after review; refused (422 ``declarations_incomplete``) unless the
        listing declares classification, personal information, source legality,
        licence and permitted purposes."""
        return self._send(self._publish_listing_call(listing_id))

    def reject_listing(self, listing_id: str, reason: str) -> Listing:
        return self._send(self._reject_listing_call(listing_id, reason))

    def operator_queue(self, *, limit: int = 50) -> ReviewQueue:
        """Operators: listings awaiting review (submitted, under review) and providers
        awaiting approval, at most ``limit`` of each, longest waiting first."""
        return self._send(self._operator_queue_call(limit))

    def deposit(
        self,
        key_id: str,
        amount_fen: int,
        reference: str,
        *,
        idempotency_key: str | None = None,
    ) -> Account:
        """Credit ``amount_fen`` to ``key_id``'s account (``reference``: the outside
        payment). Retried safely with its Idempotency-Key."""
        return self._send(self._deposit_call(key_id, amount_fen, reference, idempotency_key))

    def assess_cross_border(
        self,
        listing_id: str,
        buyer: str,
        *,
        approved: bool,
        reference: str,
        valid_until: int | None = None,
    ) -> CrossBorderAssessment:
        """Record a cross-border assessment (operators): ``approved`` with its
        validity end ``valid_until`` (ms), or rejected (no validity). It replaces the
        previous decision for the listing and buyer."""
        return self._send(self._assess_call(listing_id, buyer, approved, reference, valid_until))

    def crossborder_assessments(
        self,
        *,
        listing_id: str | None = None,
        buyer: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[CrossBorderAssessment]:
        """Cross-border assessments: all (operators), yours (buyers), your listings'
        (providers); newest first."""
        return self._send(self._assessments_call(listing_id, buyer, limit, offset))

    def resolve_dispute(
        self, order_id: str, outcome: str, note: str, *, idempotency_key: str | None = None
    ) -> Order:
        """``outcome``: ``refund`` (escrow back to the buyer) or ``release`` (settle)."""
        return self._send(self._resolve_dispute_call(order_id, outcome, note, idempotency_key))

    # ------------------------------------------------------------------ payouts

    def withdraw(
        self,
        amount_fen: int,
        destination: str,
        *,
        withdrawal_id: str | None = None,
        idempotency_key: str | None = None,
        platform: bool = False,
    ) -> Withdrawal:
        """Withdraw ``amount_fen`` of your available balance to ``destination`` (where
        the money goes: your bank account reference); it is held until an operator
        pays or rejects it. Retried safely with its Idempotency-Key. Operators withdraw
        the exchange's fees (``platform=True``), which another operator pays out."""
        call = self._withdraw_call(
            amount_fen, destination, withdrawal_id, idempotency_key, platform=platform
        )
        return self._send(call)

    def withdrawals(
        self, *, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> WithdrawalPage:
        """Your withdrawals (an operator's: everyone's), newest first; ``state``:
        ``pending``, ``paid`` or ``rejected``."""
        return self._send(self._withdrawals_call(state, limit, offset))

    def withdrawal(self, withdrawal_id: str) -> Withdrawal:
        return self._send(self._withdrawal_call(withdrawal_id))

    def pay_withdrawal(
        self, withdrawal_id: str, reference: str, *, idempotency_key: str | None = None
    ) -> Withdrawal:
        """Operators: record a pending withdrawal paid, with the outside transfer's
        ``reference``; the held amount leaves the participant's account."""
        call = self._decide_withdrawal_call(withdrawal_id, "paid", reference, idempotency_key)
        return self._send(call)

    def reject_withdrawal(
        self, withdrawal_id: str, reason: str, *, idempotency_key: str | None = None
    ) -> Withdrawal:
        """Operators: reject a pending withdrawal; its amount is available again."""
        call = self._decide_withdrawal_call(withdrawal_id, "rejected", reason, idempotency_key)
        return self._send(call)

    # ------------------------------------------------------------------ buyer

    def search(self, q: str | None = None, **filters: Any) -> SearchPage:
        """Published listings: ``q`` terms, filters ``category``, ``classification``,
        ``pricing_model``, ``min_price``/``max_price`` (fen), ``provider``, ``tag``
        (a string or a list), ``custody``, ``computation`` (a bool), ``sort``,
        ``cursor``, ``limit``, ``facets``, ``facet_limit``."""
        return self._send(self._search_call(q, filters))

    def listing(self, listing_id: str) -> Listing:
        return self._send(self._listing_call(listing_id))

    def reference_price(self, listing_id: str) -> dict[str, Any]:
        """A listing's reference price (cost and market methods, the asking price's
        position; docs/pricing.md). ``clients.reference_audit`` recomputes it."""
        return self._send(self._reference_price_call(listing_id))

    def versions(self, listing_id: str) -> list[ListingVersion]:
        """A listing's content versions (each with the leaf hash of its signed record)."""
        return self._send(self._versions_call(listing_id))

    def quote(self, listing_id: str, **terms: Any) -> Quote:
        """A quote for you: terms ``rows`` (tiered pricing), ``periods``
        (subscription), ``licence``. Checked to be signed by the log key."""
        return self._send(self._quote_call(listing_id, terms))

    def place_order(
        self,
        quote: Quote | Mapping[str, Any],
        *,
        purpose: str = DEFAULT_PURPOSE,
        region: str = DEFAULT_REGION,
        legal_basis: str | None = None,
        idempotency_key: str | None = None,
        renews: str | None = None,
        order_id: str | None = None,
    ) -> Order:
        """Order from a quote; its amount moves into escrow (the answer's ``account``
        is your balance after the hold). The order declares its use: ``purpose``
        (ledger.protocol.policy.PURPOSES), processing ``region`` (ISO 3166-1 alpha-2)
        and, for personal information, ``legal_basis`` (PIPL Art. 13); the exchange
        refuses one the listing's usage policy does not allow (422 policy_violation).
        ``renews``: the subscription order this one extends. Retried safely with its
        Idempotency-Key."""
        declaration = declare(purpose, region, legal_basis)
        return self._send(
            self._place_order_call(quote, declaration, idempotency_key, renews, order_id)
        )

    def check_policy(
        self,
        listing_id: str,
        *,
        purpose: str = DEFAULT_PURPOSE,
        region: str = DEFAULT_REGION,
        legal_basis: str | None = None,
        days: int | None = None,
    ) -> list[Violation]:
        """The clauses of the listing's usage policy an order with this declaration
        would break (empty: none), checked here before ordering; the cross-border
        assessment is the exchange's to check (clients.sdk.policies)."""
        listing = self.listing(listing_id)
        return check(listing, declare(purpose, region, legal_basis), days=days)

    def orders(self, *, limit: int = 50, offset: int = 0) -> OrderPage:
        """Your orders as a buyer, newest first."""
        return self._send(self._orders_call("buyer", limit, offset))

    def order(self, order_id: str) -> Order:
        return self._send(self._order_call(order_id))

    def request_delivery(self, order_id: str) -> DeliveryEnvelope:
        """The content key wrapped to your key, sizes and digest (the first request
        moves the order to ``delivered`` and starts the acceptance window)."""
        return self._send(self._request_delivery_call(order_id))

    def download(
        self,
        order: str | DeliveryEnvelope,
        dest_path: str | Path,
        progress: Progress | None = None,
        resume: bool = True,
        *,
        expected_size: int | None = None,
    ) -> Path:
        """Download the order's ciphertext to ``dest_path`` through ``dest_path.part``,
        resuming a ``.part`` left before (``resume=False`` starts over) and retrying
        broken connections; ``progress(bytes_done, total)``. Given the
        :class:`DeliveryEnvelope` (or ``expected_size``), the size is checked."""
        job, call = self._download_job(order, dest_path, progress, resume, expected_size)
        auth = self._auth_for(call)
        with job:
            while not job.done:
                try:
                    request = self._http.build_request("GET", job.path, headers=job.headers())
                    response = self._http.send(request, auth=auth, stream=True)
                    try:
                        if job.start(response):
                            for chunk in response.iter_bytes():
                                job.write(chunk)
                        else:
                            response.read()
                        job.end(response)
                    finally:
                        response.close()
                except httpx.TransportError as exc:
                    job.failed(exc)
                time.sleep(job.delay)
            return job.finish()

    def open_delivery(
        self,
        envelope: DeliveryEnvelope,
        ciphertext_path: str | Path,
        out_path: str | Path,
        progress: Callable[[int], None] | None = None,
    ) -> DecryptedFile:
        """Decrypt a downloaded ciphertext with the envelope's key (unwrapped with the
        client's key) into ``out_path`` and check the SM3 digest the order commits
        to. Raises :class:`ledger.errors.DecryptionError` (tampered, truncated, not
        for this key) or :class:`~clients.sdk.errors.DigestMismatchError`; nothing is
        left at ``out_path`` then."""
        return self._open_delivery(envelope, ciphertext_path, out_path, progress)

    def delivery(self, order_id: str) -> Delivery:
        """The order's latest ``delivery.issued`` record as logged (unchecked: see
        :meth:`receive`). 409 ``not_delivered`` before the delivery."""
        return self._send(self._delivery_call(order_id))

    def receive(
        self,
        order_id: str,
        out_path: str | Path,
        progress: Progress | None = None,
        *,
        log_wait: float = LOG_WAIT,
    ) -> Received:
        """Receive a provider-held delivery into ``out_path``, checking everything the
        provider signed (see :mod:`clients.sdk._receive`): nothing reaches
        ``out_path`` unless every check passed. Raises
        :class:`~clients.sdk.errors.DeliveryCheckError` naming the failed check, with
        ``evidence`` for :meth:`dispute`. Waits up to ``log_wait`` s for the records
        to be integrated in the log."""
        order = self.order(order_id)
        listing = self.listing(order.listing_id)
        job = self._receive_job(order, listing, out_path)
        delivery = self.delivery(order_id)
        signer = self.participant(job.signer_key_id(delivery))
        entry = self._integrated_entry(delivery.log_index, log_wait)
        version = self._signed_version(job, log_wait)
        payload = job.check_record(delivery, entry.signed_record, signer.sm2_public_key, version)
        self.download(order_id, job.ciphertext, progress, expected_size=payload.ciphertext_size)
        return job.open(payload, version)

    def _integrated_entry(self, index: int, log_wait: float) -> Entry:
        deadline = time.monotonic() + log_wait
        while True:
            try:
                return self.entry(index)
            except APIError as exc:
                if exc.code not in NOT_INTEGRATED or time.monotonic() >= deadline:
                    raise
            time.sleep(0.25)

    def _signed_version(self, job: ReceiveJob, log_wait: float) -> SignedVersion:
        version = self._version_of(self.versions(job.order.listing_id), job.order)
        leaf = bytes.fromhex(version.log_leaf_hash)
        deadline = time.monotonic() + log_wait
        while True:
            try:
                index = self.inclusion_proof(leaf_hash=leaf).index
                break
            except APIError as exc:
                if exc.code not in NOT_INTEGRATED or time.monotonic() >= deadline:
                    raise
            time.sleep(0.25)
        return job.signed_version(version, index, self.entry(index).signed_record)

    # ------------------------------------------------------------------ quality

    def report_quality(
        self, listing_id: str, report: QualityReport, *, version: int | None = None
    ) -> QualityReportInfo:
        """Sign and publish ``report`` (:func:`clients.quality.compute_report`) on the
        listing's ``version`` (default: its current one): as a provider of the listing,
        or as an assessor whose recomputation differs."""
        if version is None:
            version = self.listing(listing_id).version
        return self._send(self._report_quality_call(listing_id, version, report))

    def countersign_quality(
        self, listing_id: str, version: int, report_sm3: str
    ) -> QualityCountersignature:
        """As an approved assessor, countersign a provider's report you recomputed."""
        return self._send(self._countersign_call(listing_id, version, report_sm3))

    def listing_quality(self, listing_id: str) -> ListingQuality:
        """A listing's quality: its grade, every report, signers and countersigners."""
        return self._send(self._listing_quality_call(listing_id))

    def assess(
        self,
        listing_id: str,
        workdir: str | Path,
        *,
        delivery_wait: float = 120.0,
        log_wait: float = LOG_WAIT,
    ) -> Assessment:
        """As an approved assessor: order the listing at 0 fen (an assessment), receive
        it (every delivery check), recompute its provider report and countersign it if
        the bytes are the same, else sign your own (see :mod:`clients.sdk._quality`).
        Raises :class:`~clients.sdk._quality.NotReportedError` without a report."""
        current = self.listing_quality(listing_id).current_report()
        if current is None:
            raise NotReportedError(f"listing {listing_id} has no provider report to assess")
        listing = self.listing(listing_id)
        order = self.place_order(self.quote(listing_id, **ASSESSMENT_TERMS))
        deadline = time.monotonic() + delivery_wait
        while True:
            try:
                self.delivery(order.id)
                break
            except APIError as exc:
                if not still_undelivered(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(0.5)
        Path(workdir).mkdir(parents=True, exist_ok=True)
        received = Path(workdir) / f"{order.id}.{listing.format}"
        self.receive(order.id, received, log_wait=log_wait)
        recomputed = recompute(received, current.report, listing.format)
        agreed = recomputed.digest() == current.report_sm3
        if agreed:
            signed = self.countersign_quality(listing_id, current.version, current.report_sm3)
            log = signed.log
        else:
            log = self.report_quality(listing_id, recomputed, version=current.version).log
        assert log is not None  # (the parsers require it on writing calls)
        return Assessment(order.id, current, recomputed, agreed, log)

    # ------------------------------------------------------------------ computations

    def request_computation(
        self, order_id: str, sql: str, *, computation_id: str | None = None
    ) -> Computation:
        """Sign and post a ``computation.requested`` on your computation order: one
        query (and its ε) is reserved. 422 ``query_refused`` (the message starts with
        the reason), 409 ``budget_exhausted``; see :meth:`query`."""
        return self._send(self._request_computation_call(order_id, sql, computation_id))

    def computation(self, computation_id: str) -> Computation:
        """A computation with its records (its buyer, the listing's providers, operators)."""
        return self._send(self._computation_call(computation_id))

    def computations(self, order_id: str, *, limit: int = 50, offset: int = 0) -> ComputationPage:
        """An order's computations, newest first."""
        return self._send(self._computations_call(order_id, limit, offset))

    def computation_result(self, computation_id: str) -> bytes:
        """A completed computation's encrypted result, as uploaded (unchecked: see
        :meth:`query`)."""
        return self._send(self._computation_result_call(computation_id))

    def upload_computation_result(self, computation_id: str, path: str | Path) -> ResultUploaded:
        """Provider: upload a computation's encrypted result (replaced until answered)."""
        return self._send(self._upload_result_call(computation_id, path))

    def answer_computation(self, outcome: ComputationCompleted | ComputationRefused) -> Computation:
        """Provider: sign and post ``computation.completed`` (its result uploaded
        first) or ``computation.refused``."""
        return self._send(self._answer_call(outcome))

    def computation_order_of(self, listing_or_order_id: str) -> Order:
        """``listing_or_order_id`` as your computation order: the order itself, or your
        one open computation order on that listing (``ValueError`` naming the
        candidates when there are none or several)."""
        try:
            return self.order(listing_or_order_id)
        except APIError as exc:
            if exc.status_code != 404:
                raise
        orders: list[Order] = []
        offset: int | None = 0
        while offset is not None:
            page = self.orders(limit=200, offset=offset)
            orders.extend(page.items)
            offset = page.next_offset
        return computation_order(orders, listing_or_order_id)

    def query(
        self,
        listing_or_order_id: str,
        sql: str,
        *,
        timeout: float = 120.0,
        poll_interval: float = 0.25,
    ) -> QueryResult:
        """Ask ``sql`` on your computation order (or your one open computation order
        on a listing), wait up to ``timeout`` s for the provider's answer, download,
        check and decrypt it (see :mod:`clients.sdk._computations`).

        Raises :class:`~clients.sdk.errors.QueryRefusedError` (``reason``) when the
        query is refused, :class:`~clients.sdk.errors.ComputationCheckError` when the
        answer fails a check, :class:`TimeoutError` when no answer came in time (the
        computation stays pending: :meth:`query_answer` later)."""
        order = self.computation_order_of(listing_or_order_id)
        try:
            asked = self.request_computation(order.id, sql)
        except APIError as exc:
            refused = early_refusal(exc)
            if refused is None:
                raise
            raise refused from None
        return self.query_answer(asked.id, timeout=timeout, poll_interval=poll_interval)

    def query_answer(
        self, computation_id: str, *, timeout: float = 120.0, poll_interval: float = 0.25
    ) -> QueryResult:
        """Wait for a computation's answer and return it checked (as :meth:`query`)."""
        deadline = time.monotonic() + timeout
        computation = self.computation(computation_id)
        while computation.state == "pending":
            if time.monotonic() >= deadline:
                raise TimeoutError(f"computation {computation_id} is still pending")
            time.sleep(poll_interval)
            poll_interval = min(poll_interval * 1.5, 2.0)
            computation = self.computation(computation_id)
        key = self._require_key("opening a query's answer")
        listing = self.listing(computation.listing_id)
        answer = computation.answer_record()
        signer = answer.record.record.actor if answer is not None else ""
        providers = (
            {signer: self.participant(signer).sm2_public_key}
            if signer in listing.provider_keys()
            else {}
        )
        if computation.state != "completed":
            raise refusal_of(computation, providers, self._verification_key())
        sql = requested_sql(computation, key.public_key())
        payload, logged = checked_completion(computation, sql, providers)
        ciphertext = self.computation_result(computation.id)
        return open_answer(key, computation, payload, logged, ciphertext)

    def accept(self, order_id: str, *, idempotency_key: str | None = None) -> Order:
        """Accept a delivered order: the exchange settles it at once (``settlement``)."""
        return self._send(self._accept_call(order_id, idempotency_key))

    def dispute(
        self, order_id: str, reason: str, *, evidence: Mapping[str, Any] | None = None
    ) -> Order:
        """Dispute a delivered order within its acceptance window (escrow frozen);
        ``evidence``: a JSON object (≤ 16 KiB), e.g. a
        :class:`~clients.sdk.errors.DeliveryCheckError`'s."""
        return self._send(self._dispute_call(order_id, reason, evidence))

    def renew(self, order_id: str, *, idempotency_key: str | None = None, **terms: Any) -> Order:
        """Extend a subscription: quote its listing with ``terms`` (e.g. ``periods=1``)
        and order with ``renews=order_id``; the new period starts where it ends."""
        previous = self.order(order_id)
        quote = self.quote(previous.listing_id, **terms)
        declared = previous.declaration or declare()
        return self.place_order(
            quote,
            purpose=declared.purpose,
            region=declared.processing_region,
            legal_basis=declared.legal_basis,
            idempotency_key=idempotency_key,
            renews=order_id,
        )

    # ------------------------------------------------------------------ events

    def events(
        self,
        *,
        after: str | None = None,
        limit: int = 100,
        types: Iterable[str] | None = None,
    ) -> EventPage:
        """One page of the events you may see after event id ``after`` (default: from
        the start); continue with ``after=page.next``. ``types``: only these."""
        return self._send(self._events_call(after, limit, types))

    def iter_events(
        self,
        *,
        after: str | None = None,
        types: Iterable[str] | None = None,
        reconnect_delay: float = 1.0,
    ) -> Iterator[Event]:
        """The events you may see after ``after``, as they happen (Server-Sent
        Events), without end: when the stream ends or breaks it is reopened after
        ``reconnect_delay`` s with ``Last-Event-ID``, so no event is skipped or
        repeated. Leave the loop to stop. A refusal (401, 400 ``invalid_cursor``) is
        raised as :class:`~clients.sdk.errors.APIError`; a 5xx is retried."""
        auth = self._stream_auth()
        last = after
        while True:
            request = self._stream_request(self._http, last, types)
            try:
                response = self._http.send(request, auth=auth, stream=True)
            except httpx.TransportError:
                response = None
            if response is not None:
                try:
                    if response.status_code != 200:
                        response.read()
                        if response.status_code < 500:
                            raise error_from_response(response)
                    else:
                        parser = SSEParser()
                        for line in response.iter_lines():
                            message = parser.feed(line)
                            if message is not None:
                                event = self._event_of(message)
                                last = event.id
                                yield event
                except httpx.TransportError:
                    pass  # the stream broke: reopen it after the last event received
                finally:
                    response.close()
            time.sleep(reconnect_delay)

    def register_webhook(
        self,
        url: str,
        *,
        event_types: Iterable[str] | None = None,
        after: str | None = None,
    ) -> Webhook:
        """POST each event you may see (of ``event_types``) to ``url``, signed by the
        exchange; from the event after ``after`` (default: from now on). Check each
        delivery with :func:`clients.sdk.verify_webhook`."""
        return self._send(self._register_webhook_call(url, event_types, after))

    def webhooks(self) -> list[Webhook]:
        """Your webhooks and their delivery state."""
        return self._send(self._webhooks_call())

    def delete_webhook(self, webhook_id: str) -> Webhook:
        return self._send(self._delete_webhook_call(webhook_id))

    def webhook_attempts(self, webhook_id: str, *, limit: int = 100) -> list[WebhookAttempt]:
        """A webhook's delivery attempts, newest first."""
        return self._send(self._webhook_attempts_call(webhook_id, limit))

    # ------------------------------------------------------------------ certificates

    def certificate(self, number: str) -> Certificate:
        """A registration certificate and its history (public)."""
        return self._send(self._certificate_call(number))

    def certificates(self, *, listing: str) -> list[Certificate]:
        """The certificates of a listing's versions, oldest first (public)."""
        return self._send(self._certificates_call(listing))

    def certificate_record(
        self, number: str, record_type: str, payload: Mapping[str, Any]
    ) -> Certificate:
        """Sign and post any lifecycle record of certificate ``number`` (the methods
        below name each one)."""
        return self._send(self._certificate_record_call(number, record_type, payload))

    def request_certificate_change(
        self,
        number: str,
        reason: str,
        *,
        scope: Mapping[str, Any] | None = None,
        valid_until: int | None = None,
        rights: Mapping[str, Any] | None = None,
    ) -> Certificate:
        """Holders: ask the operator to change the scope, validity or the division of
        shares among the present holders."""
        payload = change_payload(reason, scope, valid_until, rights)
        return self.certificate_record(number, "certificate.change_requested", payload)

    def offer_transfer(self, number: str, *, right: str, share_bps: int, to: str) -> Certificate:
        """A holder of ``right``: offer ``share_bps`` of it to participant ``to``."""
        payload = {"right": right, "share_bps": share_bps, "to": to}
        return self.certificate_record(number, "certificate.transfer_offered", payload)

    def accept_transfer(self, number: str) -> Certificate:
        """The receiver of the offered transfer accepts it (the operator reviews next)."""
        return self.certificate_record(number, "certificate.transfer_accepted", {})

    def request_renewal(self, number: str, valid_until: int) -> Certificate:
        """Holders: ask for validity until ``valid_until`` (ms)."""
        payload = {"valid_until": valid_until}
        return self.certificate_record(number, "certificate.renewal_requested", payload)

    def request_cancellation(self, number: str, reason: str) -> Certificate:
        """Holders: ask for the certificate's cancellation (注销)."""
        payload = {"reason": reason}
        return self.certificate_record(number, "certificate.cancellation_requested", payload)

    def review_certificate(
        self, number: str, decision: str, reason: str, *, valid_until: int | None = None
    ) -> Certificate:
        """Operators: approve or reject the request under review (``valid_until``
        grants a renewal)."""
        state = self.certificate(number).state
        record_type = review_type(state, decision)
        payload = review_payload(number, record_type, decision, reason, valid_until)
        return self.certificate_record(number, record_type, payload)

    def cancel_certificate(self, number: str, reason: str) -> Certificate:
        """Operators: cancel (注销) the certificate outright."""
        payload = {"decision": "approve", "reason": reason}
        return self.certificate_record(number, "certificate.cancelled", payload)

    # ------------------------------------------------------------------ auditing

    def verify_receipt(
        self,
        bundle: Bundle,
        rpc_url: str | None = None,
        registry: str | None = None,
        *,
        offline: bool = False,
        trusted_log_key: SM2PublicKey | None = None,
        min_confirmations: int = 1,
    ) -> AuditReport:
        """Audit ``bundle`` exactly as ``shancheng audit verify`` does
        (:func:`clients.audit.audit_bundle`): against ``registry`` on the chain at
        ``rpc_url``, or ``offline``. Needs nothing from the exchange.
        ``trusted_log_key`` defaults to the client's pinned one (if any). Raises
        :class:`ledger.audit.AuditError` naming the failing step."""
        from clients.audit import audit_bundle

        return audit_bundle(
            bundle,
            rpc_url,
            registry,
            offline=offline,
            trusted_log_key=trusted_log_key or self.trusted_log_key,
            min_confirmations=min_confirmations,
        )

    def audit_log(
        self,
        rpc_url: str,
        registry: str,
        *,
        spot_checks: int | None = None,
        spot_indices: Sequence[int] | None = None,
        trusted_log_key: SM2PublicKey | None = None,
        from_block: int = 0,
    ) -> LogAuditReport:
        """Walk this exchange's log against the anchors in ``registry``, exactly as
        ``shancheng audit log`` does (:func:`clients.audit.walk_log`). Raises
        :class:`ledger.audit.AuditError` naming the failing step."""
        from clients.audit import DEFAULT_SPOT_CHECKS, walk_log

        return walk_log(
            self.base_url,
            rpc_url,
            registry,
            spot_checks=DEFAULT_SPOT_CHECKS if spot_checks is None else spot_checks,
            trusted_log_key=trusted_log_key or self.trusted_log_key,
            transport=self._transport,
            spot_indices=spot_indices,
            from_block=from_block,
        )
