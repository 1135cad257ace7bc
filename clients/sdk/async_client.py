"""``AsyncExchangeClient``: the asyncio/trio SDK (httpx.AsyncClient), twin of
:class:`clients.sdk.ExchangeClient` with the same methods, awaited."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.to_thread
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

__all__ = ["AsyncExchangeClient"]

T = TypeVar("T")


class AsyncExchangeClient(BaseClient):
    """The async twin of :class:`clients.sdk.ExchangeClient` (same arguments, except
    ``transport`` is an ``httpx.AsyncBaseTransport``, e.g. ``httpx.ASGITransport``).
    Use ``async with``, or ``await client.aclose()``.

    The auditor helpers run the (blocking) chain reads in a worker thread;
    :meth:`audit_log` reaches the exchange over the network at ``base_url``
    with its own connection (not through ``transport``).
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
                    return self._decode(call, response)
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
        self, index: int, *, timeout: float = 120.0, interval: float = 0.5
    ) -> Bundle:
        deadline = anyio.current_time() + timeout
        while True:
            try:
                return await self.receipt(index)
            except ReceiptPendingError:
                if anyio.current_time() >= deadline:
                    raise
            await anyio.sleep(interval)

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
