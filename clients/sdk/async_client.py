"""``AsyncExchangeClient``: the asyncio/trio SDK (httpx.AsyncClient), twin of
:class:`clients.sdk.ExchangeClient` with the same methods, awaited."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.to_thread
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

__all__ = ["AsyncExchangeClient"]

T = TypeVar("T")


class AsyncExchangeClient(PayoutCalls, CertificateCalls, WorkflowCalls, QualityCalls):
    """The async twin of :class:`clients.sdk.ExchangeClient` (same arguments, except
    ``transport`` is an ``httpx.AsyncBaseTransport``, e.g. ``httpx.ASGITransport``).
    Use ``async with``, or ``await client.aclose()``.

    The auditor helpers run the (blocking) chain reads in a worker thread;
    :meth:`audit_log` reaches the exchange over the network at ``base_url``
    with its own connection (not through ``transport``).
    """

    _asynchronous = True

    def __init__(
        self,
        base_url: str,
        *,
        key: SM2PrivateKey | None = None,
        auth: httpx.Auth | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: RetryPolicy | None = None,
        trusted_log_key: SM2PublicKey | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url,
            key=key,
            auth=auth,
            timeout=timeout,
            retries=retries,
            trusted_log_key=trusted_log_key,
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )

    # ------------------------------------------------------------------ plumbing

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncExchangeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, call: Call[T]) -> T:
        auth = self._auth_for(call)
        log_key = await self._verification_key() if call.verify is not None else None
        attempt = 0
        while True:
            request = self._http.build_request(**self._request_args(call))
            try:
                response = await self._http.send(request, auth=auth)
            except httpx.TransportError as exc:
                delay = self._retry_delay(call, attempt, error=exc)
                if delay is None:
                    raise self._transport_error(call, exc) from exc
            else:
                delay = self._retry_delay(call, attempt, response=response)
                if delay is None:
                    return self._checked(call, self._decode(call, response), log_key)
                await response.aclose()
            await anyio.sleep(delay)
            attempt += 1

    async def _verification_key(self) -> SM2PublicKey:
        if self._log_key is not None:
            return self._log_key
        return self._remember_log_key(await self.log_key())

    # ------------------------------------------------------------------ operations

    async def health(self) -> Health:
        return await self._send(self._health_call())

    async def log_key(self) -> LogKey:
        return await self._send(self._log_key_call())

    async def append(
        self, signed: SignedRecord, *, public_key: SM2PublicKey | None = None
    ) -> Appended:
        call = self._append_call(signed, public_key)
        log_key = await self._verification_key()
        appended = await self._send(call)
        return self._check_appended(signed, appended, log_key, "the appended record")

    async def append_many(
        self, records: Sequence[SignedRecord], *, public_key: SM2PublicKey | None = None
    ) -> list[Appended]:
        call = self._append_many_call(records, public_key)
        log_key = await self._verification_key()
        return self._check_batch(records, await self._send(call), log_key)

    async def checkpoint(self, tree_size: int | None = None) -> Checkpoint:
        checkpoint = await self._send(self._checkpoint_call(tree_size))
        return self._check_checkpoint(checkpoint, await self._verification_key(), tree_size)

    async def entry(self, index: int) -> Entry:
        entry = await self._send(self._entry_call(index))
        return self._check_entry(entry, index, await self._verification_key())

    async def inclusion_proof(
        self,
        index: int | None = None,
        *,
        leaf_hash: bytes | None = None,
        tree_size: int | None = None,
    ) -> InclusionProof:
        return await self._send(self._inclusion_call(index, leaf_hash, tree_size))

    async def consistency_proof(self, first: int, second: int) -> ConsistencyProof:
        return await self._send(self._consistency_call(first, second))

    async def anchors(self, *, start: int = 0, limit: int = 1000) -> list[Anchor]:
        return await self._send(self._anchors_call(start, limit))

    async def receipt(self, index: int) -> Bundle:
        return self._check_bundle(await self._send(self._receipt_call(index)), index)

    async def wait_for_receipt(
        self, index: int, *, timeout: float = 120.0, interval: float | None = 0.5
    ) -> Bundle:
        deadline = anyio.current_time() + timeout
        while True:
            try:
                return await self.receipt(index)
            except ReceiptPendingError as pending:
                delay = self._pending_delay(pending, deadline - anyio.current_time(), interval)
                if delay is None:
                    raise
            await anyio.sleep(delay)

    async def order_records(self, order_id: str) -> OrderRecords:
        return await self._send(self._order_records_call(order_id))

    # ------------------------------------------------------------------ participants

    async def register(self, display_name: str, role: str) -> Participant:
        return await self._send(self._register_call(display_name, role))

    async def me(self) -> Participant:
        return await self._send(self._me_call())

    async def participant(self, key_id: str) -> Participant:
        return await self._send(self._participant_call(key_id))

    async def approve_participant(self, key_id: str) -> Participant:
        return await self._send(self._approve_participant_call(key_id))

    async def suspend_participant(self, key_id: str, reason: str) -> Participant:
        return await self._send(self._suspend_participant_call(key_id, reason))

    # ------------------------------------------------------------------ provider

    async def create_listing(self, fields: Mapping[str, Any]) -> Listing:
        return await self._send(self._create_listing_call(fields))

    async def update_listing(self, listing_id: str, fields: Mapping[str, Any]) -> Listing:
        return await self._send(self._update_listing_call(listing_id, fields))

    async def submit_listing(self, listing_id: str) -> Listing:
        return await self._send(self._submit_listing_call(listing_id))

    async def listings(
        self,
        *,
        provider: str | None = None,
        state: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> ListingPage:
        return await self._send(self._listings_call(provider, state, limit, offset))

    async def new_version(self, listing_id: str, fields: Mapping[str, Any]) -> Listing:
        version = fields.get("version") or (await self.listing(listing_id)).version + 1
        return await self._send(self._new_version_call(listing_id, version, fields))

    async def delist(self, listing_id: str, reason: str) -> Listing:
        return await self._send(self._delist_call(listing_id, reason))

    async def listing_from_file(
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
        return await anyio.to_thread.run_sync(
            self._listing_fields_from_file,
            path,
            file_format,
            sample_rows,
            custody,
            delivery_window_s,
            computation,
            overrides,
        )

    async def upload_content(
        self,
        listing_id: str,
        version: int,
        path: str | Path,
        progress: Progress | None = None,
    ) -> ContentUploaded:
        build = functools.partial(self._upload_content_call, listing_id, version, path, progress)
        return await self._send(await anyio.to_thread.run_sync(build))

    async def upload_deliverable(
        self, order_id: str, path: str | Path, progress: Progress | None = None
    ) -> DeliverableUploaded:
        build = functools.partial(self._upload_deliverable_call, order_id, path, progress)
        return await self._send(await anyio.to_thread.run_sync(build))

    async def issue_delivery(
        self,
        order_id: str,
        delivery: ProviderDelivery,
        *,
        idempotency_key: str | None = None,
    ) -> Order:
        return await self._send(self._issue_delivery_call(order_id, delivery, idempotency_key))

    async def revoke(
        self, order_id: str, reason: str, *, idempotency_key: str | None = None
    ) -> Order:
        return await self._send(self._revoke_call(order_id, reason, idempotency_key))

    async def sales(self, *, limit: int = 50, offset: int = 0) -> OrderPage:
        return await self._send(self._orders_call("provider", limit, offset))

    async def account(self, key_id: str | None = None, *, limit: int = 50) -> Account:
        return await self._send(self._account_call(key_id, limit))

    # ------------------------------------------------------------------ operator

    async def review_listing(self, listing_id: str) -> Listing:
        return await self._send(self._review_listing_call(listing_id))

    async def publish_listing(self, listing_id: str) -> Listing:
        return await self._send(self._publish_listing_call(listing_id))

    async def reject_listing(self, listing_id: str, reason: str) -> Listing:
        return await self._send(self._reject_listing_call(listing_id, reason))

    async def operator_queue(self, *, limit: int = 50) -> ReviewQueue:
        return await self._send(self._operator_queue_call(limit))

    async def deposit(
        self,
        key_id: str,
        amount_fen: int,
        reference: str,
        *,
        idempotency_key: str | None = None,
    ) -> Account:
        return await self._send(self._deposit_call(key_id, amount_fen, reference, idempotency_key))

    async def assess_cross_border(
        self,
        listing_id: str,
        buyer: str,
        *,
        approved: bool,
        reference: str,
        valid_until: int | None = None,
    ) -> CrossBorderAssessment:
        return await self._send(
            self._assess_call(listing_id, buyer, approved, reference, valid_until)
        )

    async def crossborder_assessments(
        self,
        *,
        listing_id: str | None = None,
        buyer: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[CrossBorderAssessment]:
        return await self._send(self._assessments_call(listing_id, buyer, limit, offset))

    async def resolve_dispute(
        self, order_id: str, outcome: str, note: str, *, idempotency_key: str | None = None
    ) -> Order:
        call = self._resolve_dispute_call(order_id, outcome, note, idempotency_key)
        return await self._send(call)

    # ------------------------------------------------------------------ payouts

    async def withdraw(
        self,
        amount_fen: int,
        destination: str,
        *,
        withdrawal_id: str | None = None,
        idempotency_key: str | None = None,
        platform: bool = False,
    ) -> Withdrawal:
        call = self._withdraw_call(
            amount_fen, destination, withdrawal_id, idempotency_key, platform=platform
        )
        return await self._send(call)

    async def withdrawals(
        self, *, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> WithdrawalPage:
        return await self._send(self._withdrawals_call(state, limit, offset))

    async def withdrawal(self, withdrawal_id: str) -> Withdrawal:
        return await self._send(self._withdrawal_call(withdrawal_id))

    async def pay_withdrawal(
        self, withdrawal_id: str, reference: str, *, idempotency_key: str | None = None
    ) -> Withdrawal:
        call = self._decide_withdrawal_call(withdrawal_id, "paid", reference, idempotency_key)
        return await self._send(call)

    async def reject_withdrawal(
        self, withdrawal_id: str, reason: str, *, idempotency_key: str | None = None
    ) -> Withdrawal:
        call = self._decide_withdrawal_call(withdrawal_id, "rejected", reason, idempotency_key)
        return await self._send(call)

    # ------------------------------------------------------------------ buyer

    async def search(self, q: str | None = None, **filters: Any) -> SearchPage:
        return await self._send(self._search_call(q, filters))

    async def listing(self, listing_id: str) -> Listing:
        return await self._send(self._listing_call(listing_id))

    async def reference_price(self, listing_id: str) -> dict[str, Any]:
        return await self._send(self._reference_price_call(listing_id))

    async def versions(self, listing_id: str) -> list[ListingVersion]:
        return await self._send(self._versions_call(listing_id))

    async def quote(self, listing_id: str, **terms: Any) -> Quote:
        return await self._send(self._quote_call(listing_id, terms))

    async def place_order(
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
        declaration = declare(purpose, region, legal_basis)
        return await self._send(
            self._place_order_call(quote, declaration, idempotency_key, renews, order_id)
        )

    async def check_policy(
        self,
        listing_id: str,
        *,
        purpose: str = DEFAULT_PURPOSE,
        region: str = DEFAULT_REGION,
        legal_basis: str | None = None,
        days: int | None = None,
    ) -> list[Violation]:
        listing = await self.listing(listing_id)
        return check(listing, declare(purpose, region, legal_basis), days=days)

    async def orders(self, *, limit: int = 50, offset: int = 0) -> OrderPage:
        return await self._send(self._orders_call("buyer", limit, offset))

    async def order(self, order_id: str) -> Order:
        return await self._send(self._order_call(order_id))

    async def request_delivery(self, order_id: str) -> DeliveryEnvelope:
        return await self._send(self._request_delivery_call(order_id))

    async def download(
        self,
        order: str | DeliveryEnvelope,
        dest_path: str | Path,
        progress: Progress | None = None,
        resume: bool = True,
        *,
        expected_size: int | None = None,
    ) -> Path:
        job, call = self._download_job(order, dest_path, progress, resume, expected_size)
        auth = self._auth_for(call)
        with job:
            while not job.done:
                try:
                    request = self._http.build_request("GET", job.path, headers=job.headers())
                    response = await self._http.send(request, auth=auth, stream=True)
                    try:
                        if job.start(response):
                            async for chunk in response.aiter_bytes():
                                job.write(chunk)
                        else:
                            await response.aread()
                        job.end(response)
                    finally:
                        await response.aclose()
                except httpx.TransportError as exc:
                    job.failed(exc)
                await anyio.sleep(job.delay)
            return job.finish()

    async def open_delivery(
        self,
        envelope: DeliveryEnvelope,
        ciphertext_path: str | Path,
        out_path: str | Path,
        progress: Callable[[int], None] | None = None,
    ) -> DecryptedFile:
        return await anyio.to_thread.run_sync(
            self._open_delivery, envelope, ciphertext_path, out_path, progress
        )

    async def accept(self, order_id: str, *, idempotency_key: str | None = None) -> Order:
        return await self._send(self._accept_call(order_id, idempotency_key))

    async def dispute(
        self, order_id: str, reason: str, *, evidence: Mapping[str, Any] | None = None
    ) -> Order:
        return await self._send(self._dispute_call(order_id, reason, evidence))

    async def delivery(self, order_id: str) -> Delivery:
        return await self._send(self._delivery_call(order_id))

    async def receive(
        self,
        order_id: str,
        out_path: str | Path,
        progress: Progress | None = None,
        *,
        log_wait: float = LOG_WAIT,
    ) -> Received:
        order = await self.order(order_id)
        listing = await self.listing(order.listing_id)
        job = self._receive_job(order, listing, out_path)
        delivery = await self.delivery(order_id)
        signer = await self.participant(job.signer_key_id(delivery))
        entry = await self._integrated_entry(delivery.log_index, log_wait)
        version = await self._signed_version(job, log_wait)
        payload = job.check_record(delivery, entry.signed_record, signer.sm2_public_key, version)
        await self.download(
            order_id, job.ciphertext, progress, expected_size=payload.ciphertext_size
        )
        return await anyio.to_thread.run_sync(job.open, payload, version)

    # ------------------------------------------------------------------ quality

    async def report_quality(
        self, listing_id: str, report: QualityReport, *, version: int | None = None
    ) -> QualityReportInfo:
        """Sign and publish ``report`` (:func:`clients.quality.compute_report`) on the
        listing's ``version`` (default: its current one): as a provider of the listing,
        or as an assessor whose recomputation differs."""
        if version is None:
            version = (await self.listing(listing_id)).version
        return await self._send(self._report_quality_call(listing_id, version, report))

    async def countersign_quality(
        self, listing_id: str, version: int, report_sm3: str
    ) -> QualityCountersignature:
        """As an approved assessor, countersign a provider's report you recomputed."""
        return await self._send(self._countersign_call(listing_id, version, report_sm3))

    async def listing_quality(self, listing_id: str) -> ListingQuality:
        """A listing's quality: its grade, every report, signers and countersigners."""
        return await self._send(self._listing_quality_call(listing_id))

    async def assess(
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
        current = (await self.listing_quality(listing_id)).current_report()
        if current is None:
            raise NotReportedError(f"listing {listing_id} has no provider report to assess")
        listing = await self.listing(listing_id)
        order = await self.place_order(await self.quote(listing_id, **ASSESSMENT_TERMS))
        deadline = anyio.current_time() + delivery_wait
        while True:
            try:
                await self.delivery(order.id)
                break
            except APIError as exc:
                if not still_undelivered(exc) or anyio.current_time() >= deadline:
                    raise
            await anyio.sleep(0.5)
        Path(workdir).mkdir(parents=True, exist_ok=True)
        received = Path(workdir) / f"{order.id}.{listing.format}"
        await self.receive(order.id, received, log_wait=log_wait)
        recomputed = await anyio.to_thread.run_sync(
            recompute, received, current.report, listing.format
        )
        agreed = recomputed.digest() == current.report_sm3
        if agreed:
            signed = await self.countersign_quality(listing_id, current.version, current.report_sm3)
            log = signed.log
        else:
            log = (await self.report_quality(listing_id, recomputed, version=current.version)).log
        assert log is not None  # (the parsers require it on writing calls)
        return Assessment(order.id, current, recomputed, agreed, log)

    # ------------------------------------------------------------------ computations

    async def request_computation(
        self, order_id: str, sql: str, *, computation_id: str | None = None
    ) -> Computation:
        return await self._send(self._request_computation_call(order_id, sql, computation_id))

    async def computation(self, computation_id: str) -> Computation:
        return await self._send(self._computation_call(computation_id))

    async def computations(
        self, order_id: str, *, limit: int = 50, offset: int = 0
    ) -> ComputationPage:
        return await self._send(self._computations_call(order_id, limit, offset))

    async def computation_result(self, computation_id: str) -> bytes:
        return await self._send(self._computation_result_call(computation_id))

    async def upload_computation_result(
        self, computation_id: str, path: str | Path
    ) -> ResultUploaded:
        return await self._send(self._upload_result_call(computation_id, path))

    async def answer_computation(
        self, outcome: ComputationCompleted | ComputationRefused
    ) -> Computation:
        return await self._send(self._answer_call(outcome))

    async def computation_order_of(self, listing_or_order_id: str) -> Order:
        try:
            return await self.order(listing_or_order_id)
        except APIError as exc:
            if exc.status_code != 404:
                raise
        orders: list[Order] = []
        offset: int | None = 0
        while offset is not None:
            page = await self.orders(limit=200, offset=offset)
            orders.extend(page.items)
            offset = page.next_offset
        return computation_order(orders, listing_or_order_id)

    async def query(
        self,
        listing_or_order_id: str,
        sql: str,
        *,
        timeout: float = 120.0,
        poll_interval: float = 0.25,
    ) -> QueryResult:
        order = await self.computation_order_of(listing_or_order_id)
        try:
            asked = await self.request_computation(order.id, sql)
        except APIError as exc:
            refused = early_refusal(exc)
            if refused is None:
                raise
            raise refused from None
        return await self.query_answer(asked.id, timeout=timeout, poll_interval=poll_interval)

    async def query_answer(
        self, computation_id: str, *, timeout: float = 120.0, poll_interval: float = 0.25
    ) -> QueryResult:
        deadline = anyio.current_time() + timeout
        computation = await self.computation(computation_id)
        while computation.state == "pending":
            if anyio.current_time() >= deadline:
                raise TimeoutError(f"computation {computation_id} is still pending")
            await anyio.sleep(poll_interval)
            poll_interval = min(poll_interval * 1.5, 2.0)
            computation = await self.computation(computation_id)
        key = self._require_key("opening a query's answer")
        listing = await self.listing(computation.listing_id)
        answer = computation.answer_record()
        signer = answer.record.record.actor if answer is not None else ""
        providers = (
            {signer: (await self.participant(signer)).sm2_public_key}
            if signer in listing.provider_keys()
            else {}
        )
        if computation.state != "completed":
            raise refusal_of(computation, providers, await self._verification_key())
        sql = requested_sql(computation, key.public_key())
        payload, logged = checked_completion(computation, sql, providers)
        ciphertext = await self.computation_result(computation.id)
        return open_answer(key, computation, payload, logged, ciphertext)

    async def _integrated_entry(self, index: int, log_wait: float) -> Entry:
        deadline = anyio.current_time() + log_wait
        while True:
            try:
                return await self.entry(index)
            except APIError as exc:
                if exc.code not in NOT_INTEGRATED or anyio.current_time() >= deadline:
                    raise
            await anyio.sleep(0.25)

    async def _signed_version(self, job: ReceiveJob, log_wait: float) -> SignedVersion:
        version = self._version_of(await self.versions(job.order.listing_id), job.order)
        leaf = bytes.fromhex(version.log_leaf_hash)
        deadline = anyio.current_time() + log_wait
        while True:
            try:
                index = (await self.inclusion_proof(leaf_hash=leaf)).index
                break
            except APIError as exc:
                if exc.code not in NOT_INTEGRATED or anyio.current_time() >= deadline:
                    raise
            await anyio.sleep(0.25)
        return job.signed_version(version, index, (await self.entry(index)).signed_record)

    async def renew(
        self, order_id: str, *, idempotency_key: str | None = None, **terms: Any
    ) -> Order:
        previous = await self.order(order_id)
        quote = await self.quote(previous.listing_id, **terms)
        declared = previous.declaration or declare()
        return await self.place_order(
            quote,
            purpose=declared.purpose,
            region=declared.processing_region,
            legal_basis=declared.legal_basis,
            idempotency_key=idempotency_key,
            renews=order_id,
        )

    # ------------------------------------------------------------------ events

    async def events(
        self,
        *,
        after: str | None = None,
        limit: int = 100,
        types: Iterable[str] | None = None,
    ) -> EventPage:
        return await self._send(self._events_call(after, limit, types))

    async def iter_events(
        self,
        *,
        after: str | None = None,
        types: Iterable[str] | None = None,
        reconnect_delay: float = 1.0,
    ) -> AsyncIterator[Event]:
        """Like :meth:`clients.sdk.ExchangeClient.iter_events`, asynchronously."""
        auth = self._stream_auth()
        last = after
        while True:
            request = self._stream_request(self._http, last, types)
            try:
                response = await self._http.send(request, auth=auth, stream=True)
            except httpx.TransportError:
                response = None
            if response is not None:
                try:
                    if response.status_code != 200:
                        await response.aread()
                        if response.status_code < 500:
                            raise error_from_response(response)
                    else:
                        parser = SSEParser()
                        async for line in response.aiter_lines():
                            message = parser.feed(line)
                            if message is not None:
                                event = self._event_of(message)
                                last = event.id
                                yield event
                except httpx.TransportError:
                    pass  # the stream broke: reopen it after the last event received
                finally:
                    await response.aclose()
            await anyio.sleep(reconnect_delay)

    async def register_webhook(
        self,
        url: str,
        *,
        event_types: Iterable[str] | None = None,
        after: str | None = None,
    ) -> Webhook:
        return await self._send(self._register_webhook_call(url, event_types, after))

    async def webhooks(self) -> list[Webhook]:
        return await self._send(self._webhooks_call())

    async def delete_webhook(self, webhook_id: str) -> Webhook:
        return await self._send(self._delete_webhook_call(webhook_id))

    async def webhook_attempts(self, webhook_id: str, *, limit: int = 100) -> list[WebhookAttempt]:
        return await self._send(self._webhook_attempts_call(webhook_id, limit))

    # ------------------------------------------------------------------ certificates

    async def certificate(self, number: str) -> Certificate:
        """A registration certificate and its history (public)."""
        return await self._send(self._certificate_call(number))

    async def certificates(self, *, listing: str) -> list[Certificate]:
        """The certificates of a listing's versions, oldest first (public)."""
        return await self._send(self._certificates_call(listing))

    async def certificate_record(
        self, number: str, record_type: str, payload: Mapping[str, Any]
    ) -> Certificate:
        """Sign and post any lifecycle record of certificate ``number`` (the methods
        below name each one)."""
        return await self._send(self._certificate_record_call(number, record_type, payload))

    async def request_certificate_change(
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
        return await self.certificate_record(number, "certificate.change_requested", payload)

    async def offer_transfer(
        self, number: str, *, right: str, share_bps: int, to: str
    ) -> Certificate:
        """A holder of ``right``: offer ``share_bps`` of it to participant ``to``."""
        payload = {"right": right, "share_bps": share_bps, "to": to}
        return await self.certificate_record(number, "certificate.transfer_offered", payload)

    async def accept_transfer(self, number: str) -> Certificate:
        """The receiver of the offered transfer accepts it (the operator reviews next)."""
        return await self.certificate_record(number, "certificate.transfer_accepted", {})

    async def request_renewal(self, number: str, valid_until: int) -> Certificate:
        """Holders: ask for validity until ``valid_until`` (ms)."""
        payload = {"valid_until": valid_until}
        return await self.certificate_record(number, "certificate.renewal_requested", payload)

    async def request_cancellation(self, number: str, reason: str) -> Certificate:
        """Holders: ask for the certificate's cancellation (注销)."""
        payload = {"reason": reason}
        return await self.certificate_record(number, "certificate.cancellation_requested", payload)

    async def review_certificate(
        self, number: str, decision: str, reason: str, *, valid_until: int | None = None
    ) -> Certificate:
        """Operators: approve or reject the request under review (``valid_until``
        grants a renewal)."""
        state = (await self.certificate(number)).state
        record_type = review_type(state, decision)
        payload = review_payload(number, record_type, decision, reason, valid_until)
        return await self.certificate_record(number, record_type, payload)

    async def cancel_certificate(self, number: str, reason: str) -> Certificate:
        """Operators: cancel (注销) the certificate outright."""
        payload = {"decision": "approve", "reason": reason}
        return await self.certificate_record(number, "certificate.cancelled", payload)

    # ------------------------------------------------------------------ auditing

    async def verify_receipt(
        self,
        bundle: Bundle,
        rpc_url: str | None = None,
        registry: str | None = None,
        *,
        offline: bool = False,
        trusted_log_key: SM2PublicKey | None = None,
        min_confirmations: int = 1,
    ) -> AuditReport:
        from clients.audit import audit_bundle

        return await anyio.to_thread.run_sync(
            functools.partial(
                audit_bundle,
                bundle,
                rpc_url,
                registry,
                offline=offline,
                trusted_log_key=trusted_log_key or self.trusted_log_key,
                min_confirmations=min_confirmations,
            )
        )

    async def audit_log(
        self,
        rpc_url: str,
        registry: str,
        *,
        spot_checks: int | None = None,
        spot_indices: Sequence[int] | None = None,
        trusted_log_key: SM2PublicKey | None = None,
        from_block: int = 0,
    ) -> LogAuditReport:
        from clients.audit import DEFAULT_SPOT_CHECKS, walk_log

        return await anyio.to_thread.run_sync(
            functools.partial(
                walk_log,
                self.base_url,
                rpc_url,
                registry,
                spot_checks=DEFAULT_SPOT_CHECKS if spot_checks is None else spot_checks,
                spot_indices=spot_indices,
                trusted_log_key=trusted_log_key or self.trusted_log_key,
                from_block=from_block,
            )
        )
