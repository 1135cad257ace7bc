"""Helpers shared by the computation tests (no tests of its own): a listing with a
computation offer, a buyer's computation order, and the buyer's and the provider's
side of a computation over real HTTP (the provider's agent played by hand)."""

from __future__ import annotations

import base64
import io
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from test_auth_support import PROVIDER_CUSTODY, Exchange
from test_orders import deposit, order_body, publish, quote
from test_refusals import database_state

from ledger.computation.result import ResultTable
from ledger.envelope import wrap_key
from ledger.protocol.computation import result_aad
from ledger.records import sign_record
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import sm3
from ledger.sm4 import encrypt_stream

PRICE_FEN = 200


def offer(*, unit: str = "query", private: bool = True, k: int = 2) -> dict[str, Any]:
    """A bus ridership offer: district may be grouped and filtered, boardings
    aggregated, the stop never used."""
    return {
        "version": 1,
        "table": "ridership",
        "columns": [
            {"name": "stop", "control": ["never"], "aggregates": []},
            {"name": "district", "control": ["filter", "group_by"], "aggregates": []},
            {
                "name": "boardings",
                "control": ["aggregate", "filter"],
                "aggregates": ["avg", "count", "sum"] if private else ["avg", "count", "max"],
            },
        ],
        "min_group_size": k,
        "privacy": {
            "mechanism": "laplace",
            "epsilon_per_query": "0.5",
            "epsilon_budget": "1.5",
            "bounds": {"boardings": ["0", "5000"]},
        }
        if private
        else None,
        "price": {"unit": unit, "fen": PRICE_FEN},
    }


GOOD_SQL = "SELECT district, AVG(boardings) AS avg_boardings FROM ridership GROUP BY district"


@dataclass
class Bought:
    """A computation order and its parties."""

    ex: Exchange
    owner: SM2PrivateKey
    buyer: SM2PrivateKey
    listing_id: str
    order_id: str

    def ask(
        self, sql: str = GOOD_SQL, *, buyer: SM2PrivateKey | None = None, order_id: str = ""
    ) -> httpx.Response:
        key = buyer or self.buyer
        payload = {
            "computation_id": str(uuid.uuid4()),
            "order_id": order_id or self.order_id,
            "sql": sql,
        }
        return self.ex.act(key, "POST", "/computations", "computation.requested", payload)

    def asked(self, sql: str = GOOD_SQL) -> dict[str, Any]:
        response = self.ask(sql)
        assert response.status_code == 201, response.text
        computation: dict[str, Any] = response.json()["computation"]
        return computation

    def order(self) -> dict[str, Any]:
        response = self.ex.http(self.buyer).get(f"/orders/{self.order_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def state(self) -> dict[str, list[str]]:
        return database_state(self.ex)


def computation_listing(ex: Exchange, owner: SM2PrivateKey, **offer_kw: Any) -> str:
    return publish(ex, owner, computation=offer(**offer_kw), **PROVIDER_CUSTODY)


def buy_queries(
    ex: Exchange, *, queries: int | None = 3, fund: int | None = None, **offer_kw: Any
) -> Bought:
    """A provider's computation listing and a buyer's paid order on it."""
    owner, buyer = ex.provider(), ex.register("buyer")
    listing_id = computation_listing(ex, owner, **offer_kw)
    terms: dict[str, Any] = {"computation": True}
    if queries is not None:
        terms["queries"] = queries
    q = quote(ex, buyer, listing_id, **terms)
    assert deposit(ex, buyer, fund if fund is not None else q["amount"]).status_code == 201
    response = ex.http(buyer).post("/orders", json=order_body(buyer, q))
    assert response.status_code == 201, response.text
    return Bought(ex, owner, buyer, listing_id, response.json()["order"]["id"])


@dataclass(frozen=True)
class Sealed:
    ciphertext: bytes
    table: ResultTable
    key: bytes


def seal(computation: dict[str, Any], buyer: SM2PrivateKey) -> tuple[Sealed, dict[str, Any]]:
    """An encrypted result for ``computation`` and the matching completed payload."""
    table = ResultTable.of(["district", "avg_boardings"], [["渝中区", 1200.5]])
    key = secrets.token_bytes(16)
    sink = io.BytesIO()
    aad = result_aad(computation["id"], computation["order_id"])
    encrypt_stream(key, io.BytesIO(table.to_bytes()), sink, aad)
    ciphertext = sink.getvalue()
    payload = {
        "computation_id": computation["id"],
        "order_id": computation["order_id"],
        "query_sm3": sm3(computation["sql"].encode()).hex(),
        "result_sm3": table.sm3_hex(),
        "ciphertext_sm3": sm3(ciphertext).hex(),
        "ciphertext_size": len(ciphertext),
        "wrapped_key": base64.b64encode(wrap_key(buyer.public_key(), key)).decode(),
        "epsilon_spent": computation["epsilon_reserved"],
        "rows_scanned": 1000,
    }
    return Sealed(ciphertext, table, key), payload


def upload(ex: Exchange, key: SM2PrivateKey, computation_id: str, body: bytes) -> httpx.Response:
    return ex.http(key).put(
        f"/computations/{computation_id}/result",
        content=body,
        headers={"content-type": "application/octet-stream"},
    )


def answer(
    ex: Exchange, key: SM2PrivateKey, computation_id: str, record_type: str, payload: Any
) -> httpx.Response:
    return ex.act(key, "POST", f"/computations/{computation_id}/outcome", record_type, payload)


def complete(bought: Bought, computation: dict[str, Any]) -> httpx.Response:
    """The provider's agent, by hand: upload the result and answer completed."""
    sealed, payload = seal(computation, bought.buyer)
    uploaded = upload(bought.ex, bought.owner, computation["id"], sealed.ciphertext)
    assert uploaded.status_code == 200, uploaded.text
    return answer(bought.ex, bought.owner, computation["id"], "computation.completed", payload)


def refuse(bought: Bought, computation: dict[str, Any], reason: str = "timeout") -> httpx.Response:
    payload = {"computation_id": computation["id"], "order_id": bought.order_id, "reason": reason}
    return answer(bought.ex, bought.owner, computation["id"], "computation.refused", payload)


def signed_record(key: SM2PrivateKey, record_type: str, payload: Any) -> dict[str, Any]:
    return {"record": sign_record(key, record_type, payload).to_dict()}
