"""The computation calls (docs/computations.md), built once for both clients like
:mod:`clients.sdk._marketplace`, and the buyer's checks of an answer.

A buyer's query is a ``computation.requested`` record it signs; the provider's
agent answers with a provider-signed ``computation.completed`` (the result is
encrypted to the buyer: SM4 chunks with associated data
:func:`ledger.protocol.computation.result_aad`, the key SM2-wrapped to the
buyer's key) or ``computation.refused``; the exchange refuses a computation
nobody answered in time itself (``agent_timeout``, signed by the log key).

:func:`open_answer` is what :meth:`~clients.sdk.ExchangeClient.query` checks
before anything reaches the caller, each failure a
:class:`~clients.sdk.errors.ComputationCheckError` naming the check:

* ``record``: the answer record is a well-formed ``computation.completed`` for this
  computation, this order and the SM3 of the SQL the buyer signed;
* ``signer``: it is signed (signature verified) by a provider of the listing;
* ``ciphertext``: the downloaded bytes have the SM3 and size the record states;
* ``decryption``: the key unwraps with the buyer's key and every chunk
  authenticates with this computation's associated data;
* ``result``: the plaintext has the record's ``result_sm3`` and is a canonical
  :class:`ledger.computation.result.ResultTable`.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Mapping
from typing import Any, Final

import httpx

from clients.sdk._base import Call, _json, _parsed
from clients.sdk._marketplace import MarketplaceCalls, _order_id
from clients.sdk._transfer import UploadBody
from clients.sdk.computation_models import (
    Computation,
    ComputationPage,
    LoggedRecord,
    QueryResult,
    ResultUploaded,
)
from clients.sdk.errors import (
    APIError,
    ComputationCheckError,
    QueryRefusedError,
    ResponseVerificationError,
)
from clients.sdk.market_models import Order
from ledger import envelope, sm4
from ledger.computation.result import ResultTable
from ledger.errors import DecryptionError, LedgerError
from ledger.protocol.computation import (
    COMPUTATION_COMPLETED,
    COMPUTATION_REFUSED,
    COMPUTATION_REQUESTED,
    ComputationCompleted,
    ComputationRefused,
    ComputationRequest,
    result_aad,
)
from ledger.records import RecordFormatError, thaw
from ledger.sm2 import SM2PrivateKey, SM2PublicKey
from ledger.sm3 import sm3

__all__ = [
    "EARLY_REFUSALS",
    "ComputationCalls",
    "checked_completion",
    "computation_order",
    "early_refusal",
    "open_answer",
    "refusal_of",
    "requested_sql",
]

EARLY_REFUSALS: Final = frozenset({"query_refused", "budget_exhausted"})
"""Error codes of ``POST /computations`` that are a refusal of the query itself."""
OPEN_STATES: Final = frozenset({"placed", "delivered"})
"""Orders that take queries."""


def _computation_id(computation_id: str) -> str:
    try:
        return str(uuid.UUID(computation_id))
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"{computation_id!r} is not a computation id (a UUID)") from None


def early_refusal(exc: APIError) -> QueryRefusedError | None:
    """The exchange refused a request before recording it: the refusal, or ``None``
    for errors that are not about the query (an unknown order, a closed one, …)."""
    if exc.code not in EARLY_REFUSALS:
        return None
    if exc.code == "budget_exhausted":
        return QueryRefusedError("budget_exhausted", exc.message)
    reason, _, message = exc.message.partition(": ")  # "returns_rows: SELECT * …"
    return QueryRefusedError(reason, message)


def computation_order(orders: list[Order], listing_id: str) -> Order:
    """The buyer's one open computation order on ``listing_id``; a ``ValueError``
    saying which to choose when there are none or several."""
    open_ones = [
        o
        for o in orders
        if o.listing_id == listing_id and o.terms.get("computation") and o.state in OPEN_STATES
    ]
    if not open_ones:
        raise ValueError(f"you have no open computation order on listing {listing_id}")
    if len(open_ones) > 1:
        ids = ", ".join(o.id for o in open_ones)
        raise ValueError(f"several computation orders on listing {listing_id}: pass one of {ids}")
    return open_ones[0]


def refusal_of(
    computation: Computation, providers: Mapping[str, SM2PublicKey], log_key: SM2PublicKey
) -> QueryRefusedError:
    """The checked refusal of a refused computation: signed by a provider of the
    listing (``providers``: key id → registered key) or, ``agent_timeout``, by the
    exchange's log key."""
    answer = _answer(computation)
    signed = answer.record
    if signed.record.type != COMPUTATION_REFUSED:
        raise ComputationCheckError("record", f"the answer is a {signed.record.type} record")
    signer = signed.record.actor
    key = log_key if signer == log_key.key_id() else providers.get(signer)
    if key is None:
        raise ComputationCheckError(
            "signer", f"the refusal is signed by {signer}, not a provider of the listing"
        )
    try:
        signed.verify(key)
        payload = ComputationRefused.from_dict(thaw(signed.record.payload))
    except RecordFormatError as exc:
        raise ComputationCheckError("record", str(exc)) from None
    except LedgerError as exc:
        raise ComputationCheckError("signer", str(exc)) from None
    if (payload.computation_id, payload.order_id) != (computation.id, computation.order_id):
        raise ComputationCheckError("record", "the refusal names another computation")
    return QueryRefusedError(payload.reason, "", computation.id)


def _answer(computation: Computation) -> LoggedRecord:
    answer = computation.answer_record()
    if answer is None:
        raise ComputationCheckError("record", f"computation {computation.id} has no answer record")
    return answer


def requested_sql(computation: Computation, buyer: SM2PublicKey) -> str:
    """The SQL of the computation's ``computation.requested`` record, signed by
    ``buyer`` (the ``record`` check: the exchange cannot change the question)."""
    for logged in computation.records:
        signed = logged.record
        if signed.record.type != COMPUTATION_REQUESTED:
            continue
        try:
            signed.verify(buyer)
            request = ComputationRequest.from_dict(thaw(signed.record.payload))
        except (LedgerError, RecordFormatError) as exc:
            raise ComputationCheckError("record", f"the request record: {exc}") from None
        if request.computation_id != computation.id:
            raise ComputationCheckError("record", "the request record names another computation")
        return request.sql
    raise ComputationCheckError("record", f"computation {computation.id} shows no request record")


def checked_completion(
    computation: Computation, sql: str, providers: Mapping[str, SM2PublicKey]
) -> tuple[ComputationCompleted, LoggedRecord]:
    """The ``record`` and ``signer`` checks of a completed computation; ``providers``
    maps the listing's provider key ids to their registered keys."""
    answer = _answer(computation)
    record = answer.record.record
    if record.type != COMPUTATION_COMPLETED:
        raise ComputationCheckError("record", f"the answer is a {record.type} record")
    key = providers.get(record.actor)
    if key is None:
        raise ComputationCheckError(
            "signer", f"the answer is signed by {record.actor}, not a provider of the listing"
        )
    try:
        answer.record.verify(key)
    except LedgerError as exc:
        raise ComputationCheckError("signer", f"the provider's signature fails: {exc}") from None
    try:
        payload = ComputationCompleted.from_dict(thaw(record.payload))
    except RecordFormatError as exc:
        raise ComputationCheckError("record", str(exc)) from None
    expected = (computation.id, computation.order_id, sm3(sql.encode("utf-8")).hex())
    stated = (payload.computation_id, payload.order_id, payload.query_sm3)
    if stated != expected:
        raise ComputationCheckError(
            "record",
            f"the answer is for computation {stated[0]} of order {stated[1]} with query SM3 "
            f"{stated[2]}; asked {expected[0]} of order {expected[1]} with {expected[2]}",
        )
    return payload, answer


def open_answer(
    key: SM2PrivateKey,
    computation: Computation,
    payload: ComputationCompleted,
    answer: LoggedRecord,
    ciphertext: bytes,
) -> QueryResult:
    """The ``ciphertext``, ``decryption`` and ``result`` checks; the answer."""
    if (len(ciphertext), sm3(ciphertext).hex()) != (
        payload.ciphertext_size,
        payload.ciphertext_sm3,
    ):
        raise ComputationCheckError(
            "ciphertext",
            f"downloaded {len(ciphertext)} bytes with SM3 {sm3(ciphertext).hex()}; the record "
            f"states {payload.ciphertext_size} bytes with SM3 {payload.ciphertext_sm3}",
        )
    plain = io.BytesIO()
    try:
        content_key = envelope.unwrap_key(key, payload.wrapped_key_bytes())
        sm4.decrypt_stream(
            content_key,
            io.BytesIO(ciphertext),
            plain,
            result_aad(payload.computation_id, payload.order_id),
        )
    except (DecryptionError, ValueError) as exc:
        raise ComputationCheckError("decryption", str(exc)) from None
    data = plain.getvalue()
    digest = sm3(data).hex()
    if digest != payload.result_sm3:
        raise ComputationCheckError(
            "result", f"the result's SM3 is {digest}, the record states {payload.result_sm3}"
        )
    try:
        table = ResultTable.from_bytes(data)
    except RecordFormatError as exc:
        raise ComputationCheckError("result", str(exc)) from None
    return QueryResult.of(
        computation,
        table,
        epsilon_spent=payload.epsilon,
        rows_scanned=payload.rows_scanned,
        provider=answer.record.record.actor,
        log_index=answer.index,
    )


class ComputationCalls(MarketplaceCalls):
    """Call builders of ``/computations`` (no I/O but local files)."""

    def _request_computation_call(
        self, order_id: str, sql: str, computation_id: str | None
    ) -> Call[Computation]:
        payload = {
            "computation_id": _computation_id(computation_id or str(uuid.uuid4())),
            "order_id": _order_id(order_id),
            "sql": sql,
        }
        return self._action(
            "POST",
            "/computations",
            COMPUTATION_REQUESTED,
            payload,
            Computation.from_changed,
            ok=(201,),
        )

    def _computation_call(self, computation_id: str) -> Call[Computation]:
        path = f"/computations/{_computation_id(computation_id)}"
        return Call("GET", path, _parsed(Computation.from_dict), signed=True)

    def _computations_call(self, order_id: str, limit: int, offset: int) -> Call[ComputationPage]:
        params = {"order_id": _order_id(order_id), "limit": int(limit), "offset": int(offset)}
        return Call(
            "GET", "/computations", _parsed(ComputationPage.from_dict), params=params, signed=True
        )

    def _computation_result_call(self, computation_id: str) -> Call[bytes]:
        path = f"/computations/{_computation_id(computation_id)}/result"
        return Call("GET", path, lambda response: response.content, signed=True)

    def _upload_result_call(self, computation_id: str, path: Any) -> Call[ResultUploaded]:
        computation_id = _computation_id(computation_id)
        body = UploadBody.of_file(path)

        def parse(response: httpx.Response) -> ResultUploaded:
            uploaded = ResultUploaded.from_dict(_json(response))
            stored = (uploaded.computation_id, uploaded.ciphertext_sm3, uploaded.ciphertext_size)
            if stored != (computation_id, body.digest.hex(), body.size):
                raise ResponseVerificationError(
                    f"uploaded {body.size} bytes with SM3 {body.digest.hex()} for computation "
                    f"{computation_id}, the exchange stored {uploaded.ciphertext_size} bytes "
                    f"with SM3 {uploaded.ciphertext_sm3} for {uploaded.computation_id}"
                )
            return uploaded

        return Call(
            "PUT",
            f"/computations/{computation_id}/result",
            parse,
            signed=True,
            headers=body.headers(),
            content=body,
        )

    def _answer_call(self, outcome: ComputationCompleted | ComputationRefused) -> Call[Computation]:
        record_type = (
            COMPUTATION_COMPLETED
            if isinstance(outcome, ComputationCompleted)
            else COMPUTATION_REFUSED
        )
        computation_id = _computation_id(outcome.computation_id)
        return self._action(
            "POST",
            f"/computations/{computation_id}/outcome",
            record_type,
            outcome.to_dict(),
            Computation.from_changed,
            ok=(201,),
        )
