"""The buyer's checks of a query's answer (clients.sdk._computations), without a
server: a forged ``computation.completed`` (signed by someone who is not a provider
of the listing, or by the provider for another question), a tampered or swapped
ciphertext, a result that is not what the record states, a refusal signed by a
stranger. Each fails by name and nothing of the answer is returned."""

from __future__ import annotations

import base64
import io
import uuid
from decimal import Decimal
from typing import Any

import pytest

from clients.sdk import Computation, ComputationCheckError
from clients.sdk._computations import checked_completion, open_answer, refusal_of, requested_sql
from ledger.computation.result import ResultTable
from ledger.envelope import wrap_key
from ledger.protocol.computation import result_aad
from ledger.records import sign_record
from ledger.sm2 import SM2PrivateKey, SM2PublicKey
from ledger.sm3 import sm3
from ledger.sm4 import encrypt_stream

SQL = "SELECT district, AVG(t) AS avg_t FROM weather GROUP BY district"
BUYER, PROVIDER, STRANGER, LOG = (SM2PrivateKey.generate() for _ in range(4))
TABLE = ResultTable.of(["district", "avg_t"], [["渝中区", 18.5], ["北碚区", 17.25]])


def sealed(computation_id: str, order_id: str, table: ResultTable = TABLE) -> tuple[bytes, str]:
    key = bytes(range(16))
    sink = io.BytesIO()
    encrypt_stream(key, io.BytesIO(table.to_bytes()), sink, result_aad(computation_id, order_id))
    wrapped = base64.b64encode(wrap_key(BUYER.public_key(), key)).decode()
    return sink.getvalue(), wrapped


CIPHERTEXTS: dict[str, bytes] = {}
"""What each computation's provider uploaded (encryption is randomised: kept, not redone)."""


def _ciphertext_of(c: Computation) -> bytes:
    return CIPHERTEXTS[c.id]


def completed_payload(computation_id: str, order_id: str, **change: Any) -> dict[str, Any]:
    ciphertext, wrapped = sealed(computation_id, order_id)
    CIPHERTEXTS[computation_id] = ciphertext
    payload = {
        "computation_id": computation_id,
        "order_id": order_id,
        "query_sm3": sm3(SQL.encode()).hex(),
        "result_sm3": TABLE.sm3_hex(),
        "ciphertext_sm3": sm3(ciphertext).hex(),
        "ciphertext_size": len(ciphertext),
        "wrapped_key": wrapped,
        "epsilon_spent": "0.5",
        "rows_scanned": 1000,
    }
    return {**payload, **change}


def computation(answer: tuple[SM2PrivateKey, str, dict[str, Any]] | None) -> Computation:
    computation_id, order_id = str(uuid.uuid4()), str(uuid.uuid4())
    request = {"computation_id": computation_id, "order_id": order_id, "sql": SQL}
    records = [
        {"index": 7, "record": sign_record(BUYER, "computation.requested", request).to_dict()}
    ]
    if answer is not None:
        signer, record_type, payload = answer
        payload = {**payload, "computation_id": computation_id, "order_id": order_id}
        if record_type == "computation.completed":
            payload = completed_payload(computation_id, order_id, **change_of(payload))
        records.append({"index": 9, "record": sign_record(signer, record_type, payload).to_dict()})
    return Computation.from_dict(
        {
            "id": computation_id,
            "order_id": order_id,
            "listing_id": str(uuid.uuid4()),
            "version": 1,
            "buyer": BUYER.key_id(),
            "sql": SQL,
            "query_sm3": sm3(SQL.encode()).hex(),
            "state": "pending" if answer is None else "answered",
            "epsilon_reserved": "0.5",
            "requested_at": 1,
            "answered_at": None,
            "reason": None,
            "result_sm3": None,
            "ciphertext_sm3": None,
            "ciphertext_size": None,
            "rows_scanned": None,
            "records": records,
        }
    )


def change_of(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in ("computation_id", "order_id")}


PROVIDERS: dict[str, SM2PublicKey] = {PROVIDER.key_id(): PROVIDER.public_key()}


def completed_by(signer: SM2PrivateKey, **change: Any) -> Computation:
    return computation((signer, "computation.completed", change))


def test_a_genuine_answer_opens() -> None:
    c = completed_by(PROVIDER)
    payload, logged = checked_completion(c, SQL, PROVIDERS)
    answer = open_answer(BUYER, c, payload, logged, _ciphertext_of(c))
    assert answer.rows == TABLE.rows and answer.columns == TABLE.columns
    assert answer.epsilon_spent == Decimal("0.5") and answer.rows_scanned == 1000
    assert answer.provider == PROVIDER.key_id() and answer.log_index == 9


def test_an_answer_signed_by_a_stranger_is_refused() -> None:
    c = completed_by(STRANGER)
    with pytest.raises(ComputationCheckError) as failed:
        checked_completion(c, SQL, PROVIDERS)
    assert failed.value.check == "signer"


def test_an_answer_whose_signature_is_not_the_providers_is_refused() -> None:
    c = completed_by(PROVIDER)
    forged = {PROVIDER.key_id(): STRANGER.public_key()}  # the key on record is not the signer's
    with pytest.raises(ComputationCheckError) as failed:
        checked_completion(c, SQL, forged)
    assert failed.value.check == "signer"


def test_an_answer_to_another_question_is_refused() -> None:
    c = completed_by(PROVIDER, query_sm3=sm3(b"SELECT COUNT(*) FROM weather").hex())
    with pytest.raises(ComputationCheckError) as failed:
        checked_completion(c, SQL, PROVIDERS)
    assert failed.value.check == "record"


def test_a_request_the_buyer_did_not_sign_is_refused() -> None:
    c = completed_by(PROVIDER)
    with pytest.raises(ComputationCheckError) as failed:
        requested_sql(c, STRANGER.public_key())
    assert failed.value.check == "record"


@pytest.mark.parametrize(
    ("tamper", "check"),
    [
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "ciphertext"),
        (lambda b: b + b"\x00", "ciphertext"),
    ],
)
def test_tampered_ciphertext_is_refused(tamper: Any, check: str) -> None:
    c = completed_by(PROVIDER)
    payload, logged = checked_completion(c, SQL, PROVIDERS)
    with pytest.raises(ComputationCheckError) as failed:
        open_answer(BUYER, c, payload, logged, tamper(_ciphertext_of(c)))
    assert failed.value.check == check


def test_another_computations_result_does_not_decrypt() -> None:
    # the same key, but sealed for another computation (its associated data)
    other, _ = sealed(str(uuid.uuid4()), str(uuid.uuid4()))
    c = completed_by(PROVIDER, ciphertext_sm3=sm3(other).hex(), ciphertext_size=len(other))
    payload, logged = checked_completion(c, SQL, PROVIDERS)
    with pytest.raises(ComputationCheckError) as failed:
        open_answer(BUYER, c, payload, logged, other)
    assert failed.value.check == "decryption"


def test_a_result_that_is_not_what_the_record_states_is_refused() -> None:
    c = completed_by(PROVIDER, result_sm3="ab" * 32)
    payload, logged = checked_completion(c, SQL, PROVIDERS)
    with pytest.raises(ComputationCheckError) as failed:
        open_answer(BUYER, c, payload, logged, _ciphertext_of(c))
    assert failed.value.check == "result"


def test_refusals_are_checked_too() -> None:
    genuine = computation((PROVIDER, "computation.refused", {"reason": "timeout"}))
    assert refusal_of(genuine, PROVIDERS, LOG.public_key()).reason == "timeout"
    by_exchange = computation((LOG, "computation.refused", {"reason": "agent_timeout"}))
    assert refusal_of(by_exchange, {}, LOG.public_key()).reason == "agent_timeout"
    forged = computation((STRANGER, "computation.refused", {"reason": "timeout"}))
    with pytest.raises(ComputationCheckError) as failed:
        refusal_of(forged, PROVIDERS, LOG.public_key())
    assert failed.value.check == "signer"
