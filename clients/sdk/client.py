"""``ExchangeClient``: the blocking SDK (httpx.Client). Its twin is
:class:`clients.sdk.AsyncExchangeClient`; both build calls in :mod:`clients.sdk._base`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

import httpx

from clients.sdk._base import DEFAULT_TIMEOUT, USER_AGENT, BaseClient, Call, RetryPolicy
from clients.sdk.errors import ReceiptPendingError
from clients.sdk.models import (
    Anchor,
    Appended,
    ConsistencyProof,
    Entry,
    Health,
    InclusionProof,
    LogKey,
)
from ledger.bundle import Bundle
from ledger.checkpoint import Checkpoint
from ledger.records import SignedRecord
from ledger.sm2 import SM2PrivateKey, SM2PublicKey

if TYPE_CHECKING:
    from clients.audit import LogAuditReport
    from ledger.audit import AuditReport

__all__ = ["ExchangeClient"]

T = TypeVar("T")


class ExchangeClient(BaseClient):
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
                    return self._decode(call, response)
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
        """Append a signed record to the log with its actor's ``public_key`` (default:
        the client's). Returns its index and the log's promise, verified against the
        log key. Never retried. A 409 ``duplicate_record`` means it is already there."""
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
        self, index: int, *, timeout: float = 120.0, interval: float = 0.5
    ) -> Bundle:
        """:meth:`receipt`, asking again every ``interval`` seconds while it is pending;
        re-raises :class:`~clients.sdk.errors.ReceiptPendingError` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.receipt(index)
            except ReceiptPendingError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(interval)

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
