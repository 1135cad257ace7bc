"""The authorisation matrix: every participants/listings/accounts/quotes/orders/
content/delivery/quality/events/webhooks/operator-queue/certificates endpoint × every
role (anonymous, the owner, another provider, a buyer, an auditor, an approved assessor,
an operator, a suspended participant) on someone's resource, with the exact status and
code.

Each cell gets a fresh resource in the state the endpoint needs; the record in
the body is signed by the same key that signs the request, so what is tested is
who may act, not whether the record matches the signer (see test_participants)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_auth_support import Exchange, listing_content, running_exchange
from test_computations_support import GOOD_SQL, Bought, complete, offer
from test_orders import BACKENDS, DECLARATION

from clients.quality import compute_report
from ledger.protocol.quality import QualityReport, TableSchema
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import sm3

ROLES = (
    "anonymous",
    "owner",
    "other_provider",
    "buyer",
    "auditor",
    "assessor",
    "operator",
    "suspended",
)


QUALITY_DATA = "stop,boardings\n解放碑,1200\n观音桥,980\n".encode()
QUALITY_SCHEMA = TableSchema.from_dict(
    {"fields": [{"name": "stop"}, {"name": "boardings", "type": "integer"}]}
)


@dataclass
class World:
    ex: Exchange
    keys: dict[str, SM2PrivateKey]
    tmp: Path

    @property
    def owner(self) -> SM2PrivateKey:
        return self.keys["owner"]

    def listing(self, state: str, **overrides: Any) -> str:
        listing_id = self.ex.draft(self.owner, **overrides)
        path = {
            "draft": [],
            "submitted": [(self.owner, "submit")],
            "under_review": [(self.owner, "submit"), (self.ex.operator, "review")],
            "published": [
                (self.owner, "submit"),
                (self.ex.operator, "review"),
                (self.ex.operator, "publish"),
            ],
        }[state]
        for key, action in path:
            assert self.ex.step(key, listing_id, action).status_code == 200
        return listing_id

    def deposit(self, who: SM2PrivateKey, amount: int) -> None:
        target = who.key_id()
        payload = {"participant": target, "amount": amount, "reference": "matrix"}
        body = self.ex.signed_body(self.ex.operator, "deposit.credited", payload)
        response = self.ex.http(self.ex.operator).post(f"/accounts/{target}/deposits", json=body)
        assert response.status_code == 201, response.text

    def withdrawal(self) -> str:
        """A pending withdrawal of the matrix's buyer (funded for it)."""
        buyer = self.keys["buyer"]
        self.deposit(buyer, 100)
        payload = {"withdrawal_id": str(uuid.uuid4()), "amount": 100, "destination": "matrix"}
        body = self.ex.signed_body(buyer, "withdrawal.requested", payload)
        response = self.ex.http(buyer).post("/withdrawals", json=body)
        assert response.status_code == 201, response.text
        return str(payload["withdrawal_id"])

    def quote(self, listing_id: str) -> dict[str, Any]:
        """A funded quote for the matrix's buyer on ``listing_id``."""
        buyer = self.keys["buyer"]
        response = self.ex.http(buyer).post(f"/listings/{listing_id}/quotes", json={"terms": {}})
        assert response.status_code == 201, response.text
        quote: dict[str, Any] = response.json()["quote"]
        self.deposit(buyer, quote["amount"])
        return quote

    def content_listing(self) -> tuple[str, bytes]:
        """A published listing of the owner's and the bytes it commits to (not uploaded)."""
        data = os.urandom(1000)
        return self.listing("published", content_digest=sm3(data).hex(), byte_size=1000), data

    def quality_report(self) -> QualityReport:
        """The report on the bytes of :meth:`quality_listing` (the same each time)."""
        path = self.tmp / "quality.csv"
        path.write_bytes(QUALITY_DATA)
        return compute_report(path, QUALITY_SCHEMA, update_frequency="monthly", as_of=0)

    def quality_listing(self) -> tuple[str, bytes]:
        """A published listing of the owner's whose bytes the quality report is about."""
        listing_id = self.listing(
            "published", content_digest=sm3(QUALITY_DATA).hex(), byte_size=len(QUALITY_DATA)
        )
        return listing_id, QUALITY_DATA

    def delivered_order(self, *, envelope: bool) -> str:
        """An order of the matrix's buyer whose content is uploaded, with an envelope
        issued (``envelope``) or not yet."""
        listing_id, data = self.content_listing()
        path = f"/listings/{listing_id}/versions/1/content"
        response = self.ex.http(self.owner).put(path, content=data)
        assert response.status_code == 201, response.text
        order_id = self.order(listing_id)
        if envelope:
            response = self.ex.http(self.keys["buyer"]).post(f"/orders/{order_id}/delivery")
            assert response.status_code == 200, response.text
        return order_id

    def provider_order(self, *, uploaded: bytes | None = None) -> str:
        """An order of the matrix's buyer on a listing in provider custody, with the
        owner's deliverable ``uploaded`` (or none)."""
        order_id = self.order(self.listing("published", custody="provider", row_root="cd" * 32))
        if uploaded is not None:
            response = self.ex.http(self.owner).put(
                f"/orders/{order_id}/deliverable", content=uploaded
            )
            assert response.status_code == 200, response.text
        return order_id

    def delivery_payload(self, order_id: str, ciphertext: bytes) -> dict[str, Any]:
        order = self.ex.http(self.ex.operator).get(f"/orders/{order_id}").json()
        return {
            "order_id": order_id,
            "listing_id": order["listing_id"],
            "version": 1,
            "buyer": order["buyer"],
            "format": "csv",
            "rows": None,
            "range_proof": None,
            "plaintext_sm3": order["content_digest"],
            "plaintext_size": 100,
            "ciphertext_sm3": sm3(ciphertext).hex(),
            "ciphertext_size": len(ciphertext),
            "wrapped_key": "a2V5",
        }

    def order(self, listing_id: str | None = None) -> str:
        """An order of the matrix's buyer on one of the owner's listings."""
        buyer = self.keys["buyer"]
        order_id = str(uuid.uuid4())
        listing_id = listing_id or self.listing("published")
        payload = {
            "order_id": order_id,
            "quote": self.quote(listing_id),
            "declaration": DECLARATION,
        }
        body = self.ex.signed_body(buyer, "order.placed", payload)
        response = self.ex.http(buyer).post("/orders", json=body)
        assert response.status_code == 201, response.text
        return order_id


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, live_server: Any
) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("authz")
    # the matrix quotes for many rows with one buyer key: the quote rate limit has its
    # own test (test_orders), here it would only refuse rows by how fast they ran
    with running_exchange(live_server, tmp, request.param, quote_burst=100_000) as ex:
        keys = {
            "owner": ex.provider("owner"),
            "other_provider": ex.provider("other"),
            "buyer": ex.register("buyer"),
            "auditor": ex.register("auditor"),
            "assessor": ex.register("assessor"),
            "operator": ex.operator,
            "suspended": ex.provider("suspended"),
        }
        ex.approve(keys["assessor"])
        suspended = keys["suspended"].key_id()
        response = ex.act(
            ex.operator,
            "POST",
            f"/participants/{suspended}/suspend",
            "participant.suspended",
            {"participant": suspended, "reason": "matrix"},
        )
        assert response.status_code == 200
        yield World(ex, keys, tmp)


Request = tuple[str, str, str | None, Callable[[SM2PrivateKey], dict[str, Any] | bytes] | None]
"""method, path, record type (None: the payload, if any, is the plain body — JSON,
or raw bytes — and nothing is logged unless the endpoint is in EXCHANGE_LOGGED),
payload for the acting key."""


def _register(w: World) -> Request:
    def payload(key: SM2PrivateKey) -> dict[str, Any]:
        return {
            "display_name": "again",
            "role": "buyer",
            "public_key": key.public_key().to_pem().decode(),
        }

    return "POST", "/participants", "participant.registered", payload


def _participant_action(action: str) -> Callable[[World], Request]:
    def build(w: World) -> Request:
        target = w.ex.register("provider").key_id()
        record_type = f"participant.{'approved' if action == 'approve' else 'suspended'}"
        extra = {} if action == "approve" else {"reason": "matrix"}
        return (
            "POST",
            f"/participants/{target}/{action}",
            record_type,
            lambda _k: {"participant": target, **extra},
        )

    return build


def _draft(w: World) -> Request:
    def payload(key: SM2PrivateKey) -> dict[str, Any]:
        return {"listing_id": str(uuid.uuid4()), **listing_content(key.key_id())}

    return "POST", "/listings", "listing.drafted", payload


def _edit(w: World) -> Request:
    listing_id = w.listing("draft")
    content = listing_content(w.owner.key_id())
    return (
        "PUT",
        f"/listings/{listing_id}",
        "listing.edited",
        lambda _k: {"listing_id": listing_id, **content},
    )


def _step(state: str, action: str, record_type: str, **extra: Any) -> Callable[[World], Request]:
    def build(w: World) -> Request:
        listing_id = w.listing(state)
        return (
            "POST",
            f"/listings/{listing_id}/{action}",
            record_type,
            lambda _k: {"listing_id": listing_id, **extra},
        )

    return build


def _version(w: World) -> Request:
    listing_id = w.listing("published")
    body = {
        "listing_id": listing_id,
        "version": 2,
        "content_digest": "cd" * 32,
        "row_count": 5,
        "byte_size": 50,
        "format": "csv",
    }
    return "POST", f"/listings/{listing_id}/versions", "listing.version_added", lambda _k: body


def _deposit(w: World) -> Request:
    target = w.keys["buyer"].key_id()
    return (
        "POST",
        f"/accounts/{target}/deposits",
        "deposit.credited",
        lambda _k: {"participant": target, "amount": 100, "reference": "matrix"},
    )


def _request_withdrawal(w: World) -> Request:
    participants = {k.key_id() for name, k in w.keys.items() if name != "operator"}

    def payload(key: SM2PrivateKey) -> dict[str, Any]:
        if key.key_id() in participants:  # funded, so that only who may withdraw matters
            w.deposit(key, 1)
        return {"withdrawal_id": str(uuid.uuid4()), "amount": 1, "destination": "matrix"}

    return "POST", "/withdrawals", "withdrawal.requested", payload


def _decide_withdrawal(outcome: str, **extra: Any) -> Callable[[World], Request]:
    def build(w: World) -> Request:
        withdrawal_id = w.withdrawal()
        return (
            "POST",
            f"/withdrawals/{withdrawal_id}/{outcome}",
            f"withdrawal.{outcome}",
            lambda _k: {"withdrawal_id": withdrawal_id, **extra},
        )

    return build


def _quote(w: World) -> Request:
    listing_id = w.listing("published")
    return "POST", f"/listings/{listing_id}/quotes", None, lambda _k: {"terms": {}}


def _place_order(w: World) -> Request:
    quote = w.quote(w.listing("published"))  # issued to (and funded for) the buyer
    return (
        "POST",
        "/orders",
        "order.placed",
        lambda _k: {"order_id": str(uuid.uuid4()), "quote": quote, "declaration": DECLARATION},
    )


def _upload(w: World) -> Request:
    listing_id, data = w.content_listing()
    return "PUT", f"/listings/{listing_id}/versions/1/content", None, lambda _k: data


def _upload_deliverable(w: World) -> Request:
    order_id = w.provider_order()
    return "PUT", f"/orders/{order_id}/deliverable", None, lambda _k: os.urandom(500)


def _confirm_deliverable(w: World) -> Request:
    data = os.urandom(500)
    order_id = w.provider_order(uploaded=data)
    payload = w.delivery_payload(order_id, data)
    return "POST", f"/orders/{order_id}/deliverable", "delivery.issued", lambda _k: payload


def _delivery_record(w: World) -> str:
    data = os.urandom(500)
    order_id = w.provider_order(uploaded=data)
    body = w.ex.signed_body(w.owner, "delivery.issued", w.delivery_payload(order_id, data))
    response = w.ex.http(w.owner).post(f"/orders/{order_id}/deliverable", json=body)
    assert response.status_code == 201, response.text
    return f"/orders/{order_id}/delivery"


def _request_delivery(w: World) -> Request:
    return "POST", f"/orders/{w.delivered_order(envelope=False)}/delivery", None, lambda _k: {}


def _on_order(
    action: str, record_type: str, order: Callable[[World], str], **extra: Any
) -> Callable[[World], Request]:
    def build(w: World) -> Request:
        order_id = order(w)
        payload = {"order_id": order_id, **extra}
        return "POST", f"/orders/{order_id}/{action}", record_type, lambda _k: payload

    return build


def _disputed_order(w: World) -> str:
    order_id = w.delivered_order(envelope=True)
    buyer = w.keys["buyer"]
    payload = {"order_id": order_id, "reason": "matrix"}
    body = w.ex.signed_body(buyer, "order.disputed", payload)
    response = w.ex.http(buyer).post(f"/orders/{order_id}/dispute", json=body)
    assert response.status_code == 200, response.text
    return order_id


def _delivered(w: World) -> str:
    return w.delivered_order(envelope=True)


def _get(path: Callable[[World], str]) -> Callable[[World], Request]:
    return lambda w: ("GET", path(w), None, None)


def _webhook_of_owner(w: World) -> str:
    body = {"url": "http://127.0.0.1:9/matrix"}
    response = w.ex.http(w.owner).post("/webhooks", json=body)
    assert response.status_code == 201, response.text
    webhook_id: str = response.json()["webhook"]["id"]
    return webhook_id


def _register_webhook(w: World) -> Request:
    return "POST", "/webhooks", None, lambda _k: {"url": "http://127.0.0.1:9/matrix"}


def _delete_webhook(w: World) -> Request:
    return "DELETE", f"/webhooks/{_webhook_of_owner(w)}", None, None


def _computation_buy(w: World) -> Bought:
    """A computation order of the matrix's buyer on one of the owner's listings."""
    listing_id = w.listing("published", computation=offer(), custody="provider", row_root="cd" * 32)
    buyer = w.keys["buyer"]
    terms = {"terms": {"computation": True, "queries": 5}}
    response = w.ex.http(buyer).post(f"/listings/{listing_id}/quotes", json=terms)
    assert response.status_code == 201, response.text
    quote = response.json()["quote"]
    w.deposit(buyer, quote["amount"])
    order_id = str(uuid.uuid4())
    placed = {"order_id": order_id, "quote": quote, "declaration": DECLARATION}
    body = w.ex.signed_body(buyer, "order.placed", placed)
    assert w.ex.http(buyer).post("/orders", json=body).status_code == 201
    return Bought(w.ex, w.owner, buyer, listing_id, order_id)


def _computation(w: World, *, completed: bool = False) -> str:
    bought = _computation_buy(w)
    computation = bought.asked()
    if completed:
        assert complete(bought, computation).status_code == 201
    return str(computation["id"])


def _request_computation(w: World) -> Request:
    order_id = _computation_buy(w).order_id

    def payload(_key: SM2PrivateKey) -> dict[str, Any]:
        return {"computation_id": str(uuid.uuid4()), "order_id": order_id, "sql": GOOD_SQL}

    return "POST", "/computations", "computation.requested", payload


def _refuse_computation(w: World) -> Request:
    bought = _computation_buy(w)
    computation_id = bought.asked()["id"]
    payload = {"computation_id": computation_id, "order_id": bought.order_id, "reason": "timeout"}
    path = f"/computations/{computation_id}/outcome"
    return "POST", path, "computation.refused", lambda _k: payload


def _assess_cross_border(w: World) -> Request:
    listing_id = w.listing("published")
    payload = {
        "listing_id": listing_id,
        "buyer": w.keys["buyer"].key_id(),
        "approved": False,
        "reference": "matrix",
        "valid_until": None,
    }
    return "POST", "/crossborder-assessments", "crossborder.assessed", lambda _k: payload


def _upload_result(w: World) -> Request:
    return "PUT", f"/computations/{_computation(w)}/result", None, lambda _k: b"sealed"


def _report_payload(w: World, listing_id: str) -> dict[str, Any]:
    report = w.quality_report()
    return {
        "listing_id": listing_id,
        "version": 1,
        "report": report.to_dict(),
        "report_sm3": report.digest(),
    }


def _report_quality(w: World) -> Request:
    listing_id, _ = w.quality_listing()
    payload = _report_payload(w, listing_id)
    return "POST", f"/listings/{listing_id}/quality-reports", "quality.reported", lambda _k: payload


def _countersign_quality(w: World) -> Request:
    listing_id, _ = w.quality_listing()
    body = w.ex.signed_body(w.owner, "quality.reported", _report_payload(w, listing_id))
    response = w.ex.http(w.owner).post(f"/listings/{listing_id}/quality-reports", json=body)
    assert response.status_code == 201, response.text
    digest = w.quality_report().digest()
    payload = {"listing_id": listing_id, "version": 1, "report_sm3": digest}
    path = f"/listings/{listing_id}/quality-reports/{digest}/countersignatures"
    return "POST", path, "quality.countersigned", lambda _k: payload


def _certificate(w: World, *, pending: str | None = None) -> str:
    """The certificate of a fresh published listing of the owner's, with a change
    request (``pending="change"``) or a transfer to the buyer (``"transfer"``) under
    review."""
    listing_id = w.listing("published")
    number: str = w.ex.http().get(f"/listings/{listing_id}").json()["certificate"]
    requests = {
        "change": ("certificate.change_requested", {"valid_until": 2**52, "reason": "m"}),
        "transfer": (
            "certificate.transfer_offered",
            {"right": "operation", "share_bps": 100, "to": w.keys["buyer"].key_id()},
        ),
    }
    if pending is not None:
        record_type, payload = requests[pending]
        response = w.ex.act(
            w.owner,
            "POST",
            f"/certificates/{number}/records",
            record_type,
            {"number": number, **payload},
        )
        assert response.status_code == 200, response.text
    return number


def _certificate_action(
    record_type: str, pending: str | None, **extra: Any
) -> Callable[[World], Request]:
    def build(w: World) -> Request:
        number = _certificate(w, pending=pending)
        payload = {"number": number, **extra}
        return "POST", f"/certificates/{number}/records", record_type, lambda _k: payload

    return build


OK = (200, None)
CREATED = (201, None)
UNAUTH = (401, "unauthenticated")
ROLE = (403, "role_forbidden")
SUSPENDED = (403, "participant_suspended")
HIDDEN = (404, "listing_not_found")
NOT_OWNER = (403, "not_owner")
TAKEN = (409, "already_registered")
NO_ORDER = (404, "order_not_found")
NO_WEBHOOK = (404, "webhook_not_found")
NO_WITHDRAWAL = (404, "withdrawal_not_found")


def _row(**cells: tuple[int, str | None]) -> dict[str, tuple[int, str | None]]:
    """A row; an assessor may do what an auditor may (the same cell) unless the row
    says otherwise: its own rights are its assessment orders and quality reports."""
    cells.setdefault("assessor", cells["auditor"])
    assert set(cells) == set(ROLES), cells
    return cells


ANY_PARTICIPANT = _row(
    anonymous=UNAUTH,
    owner=OK,
    other_provider=OK,
    buyer=OK,
    auditor=OK,
    operator=OK,
    suspended=SUSPENDED,
)

BUYER_ONLY = _row(
    anonymous=UNAUTH,
    owner=ROLE,
    other_provider=ROLE,
    buyer=OK,
    auditor=ROLE,
    operator=ROLE,
    suspended=SUSPENDED,
)

BUYERS_ORDER = {**BUYER_ONLY, "assessor": NO_ORDER}
"""The buyer's order: an assessor may act on its own (assessment) orders, not on this one."""

ASSESSMENT_ONLY = (403, "assessment_forbidden")

ANY_PARTICIPANT_CREATES = _row(
    anonymous=UNAUTH,
    owner=CREATED,
    other_provider=CREATED,
    buyer=CREATED,
    auditor=CREATED,
    operator=CREATED,
    suspended=SUSPENDED,
)

OWNER_OR_OPERATOR = _row(
    anonymous=UNAUTH,
    owner=OK,
    other_provider=NO_WEBHOOK,
    buyer=NO_WEBHOOK,
    auditor=NO_WEBHOOK,
    operator=OK,
    suspended=SUSPENDED,
)

OPERATORS_ONLY = _row(
    anonymous=UNAUTH,
    owner=ROLE,
    other_provider=ROLE,
    buyer=ROLE,
    auditor=ROLE,
    operator=OK,
    suspended=SUSPENDED,
)

MATRIX: dict[str, tuple[Callable[[World], Request], dict[str, tuple[int, str | None]]]] = {
    "register": (
        _register,
        _row(
            anonymous=CREATED,
            owner=TAKEN,
            other_provider=TAKEN,
            buyer=TAKEN,
            auditor=TAKEN,
            operator=TAKEN,
            suspended=TAKEN,
        ),
    ),
    "me": (
        _get(lambda w: "/participants/me"),
        _row(
            anonymous=UNAUTH,
            owner=OK,
            other_provider=OK,
            buyer=OK,
            auditor=OK,
            operator=OK,
            suspended=SUSPENDED,
        ),
    ),
    "public profile": (
        _get(lambda w: f"/participants/{w.owner.key_id()}"),
        _row(
            anonymous=OK,
            owner=OK,
            other_provider=OK,
            buyer=OK,
            auditor=OK,
            operator=OK,
            suspended=OK,  # public and unauthenticated: a signature is not even read
        ),
    ),
    "approve": (_participant_action("approve"), OPERATORS_ONLY),
    "suspend": (_participant_action("suspend"), OPERATORS_ONLY),
    "draft": (
        _draft,
        _row(
            anonymous=UNAUTH,
            owner=CREATED,
            other_provider=CREATED,
            buyer=ROLE,
            auditor=ROLE,
            operator=ROLE,
            suspended=SUSPENDED,
        ),
    ),
    "edit someone's draft": (
        _edit,
        _row(
            anonymous=UNAUTH,
            owner=OK,
            other_provider=HIDDEN,
            buyer=ROLE,
            auditor=ROLE,
            operator=ROLE,
            suspended=SUSPENDED,
        ),
    ),
    "submit": (
        _step("draft", "submit", "listing.submitted"),
        _row(
            anonymous=UNAUTH,
            owner=OK,
            other_provider=HIDDEN,
            buyer=ROLE,
            auditor=ROLE,
            operator=ROLE,
            suspended=SUSPENDED,
        ),
    ),
    "start review": (_step("submitted", "review", "listing.review_started"), OPERATORS_ONLY),
    "publish": (_step("under_review", "publish", "listing.published"), OPERATORS_ONLY),
    "reject": (_step("under_review", "reject", "listing.rejected", reason="no"), OPERATORS_ONLY),
    "delist": (
        _step("published", "delist", "listing.delisted", reason="done"),
        _row(
            anonymous=UNAUTH,
            owner=OK,
            other_provider=NOT_OWNER,
            buyer=ROLE,
            auditor=ROLE,
            operator=OK,
            suspended=SUSPENDED,
        ),
    ),
    "add version": (
        _version,
        _row(
            anonymous=UNAUTH,
            owner=CREATED,
            other_provider=NOT_OWNER,
            buyer=ROLE,
            auditor=ROLE,
            operator=ROLE,
            suspended=SUSPENDED,
        ),
    ),
    "read a draft": (
        _get(lambda w: f"/listings/{w.listing('draft')}"),
        _row(
            anonymous=HIDDEN,
            owner=OK,
            other_provider=HIDDEN,
            buyer=HIDDEN,
            auditor=HIDDEN,
            operator=OK,
            suspended=SUSPENDED,
        ),
    ),
    "read a draft's versions": (
        _get(lambda w: f"/listings/{w.listing('draft')}/versions"),
        _row(
            anonymous=HIDDEN,
            owner=OK,
            other_provider=HIDDEN,
            buyer=HIDDEN,
            auditor=HIDDEN,
            operator=OK,
            suspended=SUSPENDED,
        ),
    ),
    "read a published listing": (
        _get(lambda w: f"/listings/{w.listing('published')}"),
        _row(
            anonymous=OK,
            owner=OK,
            other_provider=OK,
            buyer=OK,
            auditor=OK,
            operator=OK,
            suspended=SUSPENDED,
        ),
    ),
    "reference price of a draft": (
        _get(lambda w: f"/listings/{w.listing('draft')}/reference-price"),
        _row(
            anonymous=HIDDEN,
            owner=OK,
            other_provider=HIDDEN,
            buyer=HIDDEN,
            auditor=HIDDEN,
            operator=OK,
            suspended=SUSPENDED,
        ),
    ),
    "reference price of a published listing": (
        _get(lambda w: f"/listings/{w.listing('published')}/reference-price"),
        _row(
            anonymous=OK,
            owner=OK,
            other_provider=OK,
            buyer=OK,
            auditor=OK,
            operator=OK,
            suspended=SUSPENDED,
        ),
    ),
    "list listings": (
        _get(lambda w: "/listings"),
        _row(
            anonymous=OK,
            owner=OK,
            other_provider=OK,
            buyer=OK,
            auditor=OK,
            operator=OK,
            suspended=SUSPENDED,
        ),
    ),
    "credit a deposit": (_deposit, {**OPERATORS_ONLY, "operator": CREATED}),
    "record a cross-border assessment": (
        _assess_cross_border,
        {**OPERATORS_ONLY, "operator": CREATED},
    ),
    "list cross-border assessments": (_get(lambda w: "/crossborder-assessments"), ANY_PARTICIPANT),
    "my account": (_get(lambda w: "/accounts/me"), ANY_PARTICIPANT),
    "someone's account": (
        _get(lambda w: f"/accounts/{w.keys['buyer'].key_id()}"),
        OPERATORS_ONLY,
    ),
    "request a withdrawal": (
        _request_withdrawal,
        # operators hold no account: they withdraw only the platform's fees
        {**ANY_PARTICIPANT_CREATES, "operator": (403, "platform_account")},
    ),
    "pay a withdrawal": (_decide_withdrawal("paid", reference="matrix"), OPERATORS_ONLY),
    "reject a withdrawal": (_decide_withdrawal("rejected", reason="matrix"), OPERATORS_ONLY),
    "read someone's withdrawal": (
        _get(lambda w: f"/withdrawals/{w.withdrawal()}"),
        _row(
            anonymous=UNAUTH,
            owner=NO_WITHDRAWAL,
            other_provider=NO_WITHDRAWAL,
            buyer=OK,  # the participant who withdraws
            auditor=NO_WITHDRAWAL,
            operator=OK,
            suspended=SUSPENDED,
        ),
    ),
    "list withdrawals": (_get(lambda w: "/withdrawals"), ANY_PARTICIPANT),
    "quote": (
        _quote,
        _row(
            anonymous=UNAUTH,
            owner=ROLE,
            other_provider=ROLE,
            buyer=CREATED,
            auditor=ROLE,
            assessor=ASSESSMENT_ONLY,
            operator=ROLE,
            suspended=SUSPENDED,
        ),
    ),
    "place an order": (
        _place_order,
        _row(
            anonymous=UNAUTH,
            owner=ROLE,
            other_provider=ROLE,
            buyer=CREATED,
            auditor=ROLE,
            assessor=ASSESSMENT_ONLY,
            operator=ROLE,
            suspended=SUSPENDED,
        ),
    ),
    "read someone's order": (
        _get(lambda w: f"/orders/{w.order()}"),
        _row(
            anonymous=UNAUTH,
            owner=OK,  # the listing's provider
            other_provider=NO_ORDER,
            buyer=OK,
            auditor=NO_ORDER,
            operator=OK,
            suspended=SUSPENDED,
        ),
    ),
    "list orders": (_get(lambda w: "/orders"), ANY_PARTICIPANT),
    "read someone's order records": (
        _get(lambda w: f"/orders/{w.order()}/records"),
        _row(
            anonymous=UNAUTH,
            owner=OK,  # the listing's provider
            other_provider=NO_ORDER,
            buyer=OK,
            auditor=NO_ORDER,
            operator=OK,
            suspended=SUSPENDED,
        ),
    ),
    "operator queue": (_get(lambda w: "/operator/queue"), OPERATORS_ONLY),
    "upload content": (
        _upload,
        _row(
            anonymous=UNAUTH,
            owner=CREATED,
            other_provider=(403, "not_a_provider"),
            buyer=ROLE,
            auditor=ROLE,
            operator=ROLE,
            suspended=SUSPENDED,
        ),
    ),
    "request delivery": (_request_delivery, BUYERS_ORDER),  # (another buyer: test_delivery)
    "upload a deliverable": (
        _upload_deliverable,
        _row(
            anonymous=UNAUTH,
            owner=OK,
            other_provider=NO_ORDER,  # as if there were no such order
            buyer=ROLE,
            auditor=ROLE,
            operator=ROLE,
            suspended=SUSPENDED,
        ),
    ),
    "deliver an order": (
        _confirm_deliverable,
        _row(
            anonymous=UNAUTH,
            owner=CREATED,
            other_provider=(403, "not_a_provider"),
            buyer=ROLE,
            auditor=ROLE,
            operator=ROLE,
            suspended=SUSPENDED,
        ),
    ),
    "read an order's delivery": (_get(_delivery_record), BUYERS_ORDER),
    "accept an order": (_on_order("accept", "order.accepted", _delivered), BUYERS_ORDER),
    "dispute an order": (
        _on_order("dispute", "order.disputed", _delivered, reason="matrix"),
        BUYERS_ORDER,
    ),
    "resolve a dispute": (
        _on_order("resolve", "dispute.resolved", _disputed_order, outcome="refund", note="m"),
        OPERATORS_ONLY,
    ),
    "revoke access": (
        _on_order("revoke", "access.revoked", lambda w: w.order(), reason="matrix"),
        _row(
            anonymous=UNAUTH,
            owner=OK,  # a provider of the order's listing
            other_provider=(403, "not_provider"),
            buyer=ROLE,
            auditor=ROLE,
            operator=ROLE,
            suspended=SUSPENDED,
        ),
    ),
    "download content": (
        _get(lambda w: f"/orders/{w.delivered_order(envelope=True)}/content"),
        BUYERS_ORDER,
    ),
    "request a computation": (
        _request_computation,
        _row(
            anonymous=UNAUTH,
            owner=ROLE,
            other_provider=ROLE,
            buyer=CREATED,
            auditor=ROLE,
            operator=ROLE,
            suspended=SUSPENDED,
        ),
    ),
    "read someone's computation": (
        _get(lambda w: f"/computations/{_computation(w)}"),
        _row(
            anonymous=UNAUTH,
            owner=OK,  # the listing's provider
            other_provider=(404, "computation_not_found"),
            buyer=OK,
            auditor=(404, "computation_not_found"),
            operator=OK,
            suspended=SUSPENDED,
        ),
    ),
    "list an order's computations": (
        _get(lambda w: f"/computations?order_id={_computation_buy(w).order_id}"),
        _row(
            anonymous=UNAUTH,
            owner=OK,
            other_provider=NO_ORDER,
            buyer=OK,
            auditor=NO_ORDER,
            operator=OK,
            suspended=SUSPENDED,
        ),
    ),
    "upload a computation result": (
        _upload_result,
        _row(
            anonymous=UNAUTH,
            owner=OK,
            other_provider=(404, "computation_not_found"),
            buyer=ROLE,
            auditor=ROLE,
            operator=ROLE,
            suspended=SUSPENDED,
        ),
    ),
    "answer a computation": (
        _refuse_computation,
        _row(
            anonymous=UNAUTH,
            owner=CREATED,  # a provider of the listing
            other_provider=(403, "not_a_provider"),
            buyer=ROLE,
            auditor=ROLE,
            operator=ROLE,
            suspended=SUSPENDED,
        ),
    ),
    "download a computation result": (
        _get(lambda w: f"/computations/{_computation(w, completed=True)}/result"),
        BUYER_ONLY,
    ),
    "report quality": (
        _report_quality,
        _row(
            anonymous=UNAUTH,
            owner=CREATED,  # a provider of the listing
            other_provider=(403, "not_a_provider"),
            buyer=ROLE,
            auditor=ROLE,
            assessor=CREATED,  # an assessor's own (differing) report
            operator=ROLE,
            suspended=SUSPENDED,
        ),
    ),
    "countersign a quality report": (
        _countersign_quality,
        _row(
            anonymous=UNAUTH,
            owner=ROLE,
            other_provider=ROLE,
            buyer=ROLE,
            auditor=ROLE,
            assessor=CREATED,
            operator=ROLE,
            suspended=SUSPENDED,
        ),
    ),
    "read a listing's quality": (
        _get(lambda w: f"/listings/{w.quality_listing()[0]}/quality"),
        _row(
            anonymous=OK,
            owner=OK,
            other_provider=OK,
            buyer=OK,
            auditor=OK,
            operator=OK,
            suspended=SUSPENDED,
        ),
    ),
    "events": (_get(lambda w: "/events"), ANY_PARTICIPANT),
    "register a webhook": (_register_webhook, ANY_PARTICIPANT_CREATES),
    "list webhooks": (_get(lambda w: "/webhooks"), ANY_PARTICIPANT),
    "someone's webhook attempts": (
        _get(lambda w: f"/webhooks/{_webhook_of_owner(w)}/attempts"),
        OWNER_OR_OPERATOR,
    ),
    "delete someone's webhook": (_delete_webhook, OWNER_OR_OPERATOR),
    "read a certificate": (
        _get(lambda w: f"/certificates/{_certificate(w)}"),
        {**ANY_PARTICIPANT, "anonymous": OK},
    ),
    "list a listing's certificates": (
        _get(lambda w: f"/certificates?listing={w.listing('published')}"),
        {**ANY_PARTICIPANT, "anonymous": OK},
    ),
    "request a certificate change": (
        _certificate_action("certificate.renewal_requested", None, valid_until=2**52),
        _row(
            anonymous=UNAUTH,
            owner=OK,
            other_provider=(403, "not_holder"),
            buyer=(403, "not_holder"),
            auditor=ROLE,
            assessor=ROLE,
            operator=(403, "not_holder"),
            suspended=SUSPENDED,
        ),
    ),
    "accept a certificate transfer": (
        _certificate_action("certificate.transfer_accepted", "transfer"),
        _row(
            anonymous=UNAUTH,
            owner=(403, "not_receiver"),
            other_provider=(403, "not_receiver"),
            buyer=OK,
            auditor=ROLE,
            assessor=ROLE,
            operator=(403, "not_receiver"),
            suspended=SUSPENDED,
        ),
    ),
    "review a certificate change": (
        _certificate_action("certificate.changed", "change", decision="approve", reason="m"),
        {
            **OPERATORS_ONLY,
            "owner": (403, "operator_only"),
            "other_provider": (403, "operator_only"),
            "buyer": (403, "operator_only"),
        },
    ),
}

EXCHANGE_LOGGED = {"request delivery"}
"""Endpoints whose success the exchange itself logs (a record signed by its log key)."""
RECORDS_LOGGED = {"accept an order": 2, "publish": 2, "add version": 2}
"""Records a success logs when not one (acceptance: the buyer's and settlement.paid;
a publication or a new version: its record and the exchange's certificate.issued)."""

CELLS = [(endpoint, role) for endpoint in MATRIX for role in ROLES]


@pytest.mark.parametrize(("endpoint", "role"), CELLS, ids=[f"{e}-{r}" for e, r in CELLS])
def test_authz_matrix(world: World, endpoint: str, role: str) -> None:
    build, expected = MATRIX[endpoint]
    method, path, record_type, payload = build(world)
    key = None if role == "anonymous" else world.keys[role]
    # The anonymous caller registers a fresh key; everyone else signs as themselves.
    signer = key or SM2PrivateKey.generate()
    body: dict[str, Any] | bytes | None = None
    if record_type is not None and payload is not None:
        content = payload(signer)
        assert isinstance(content, dict)
        body = world.ex.signed_body(signer, record_type, content)
    elif payload is not None:
        body = payload(signer)
    before = world.ex.log_size()
    if isinstance(body, bytes):
        response = world.ex.http(key).request(method, path, content=body)
    else:
        response = world.ex.http(key).request(method, path, json=body)
    status, code = expected[role]
    assert response.status_code == status, response.text
    if code is not None:
        assert response.json() == {"code": code, "message": response.json()["message"]}
    changed = (record_type is not None or endpoint in EXCHANGE_LOGGED) and status < 300
    assert world.ex.log_size() == before + (RECORDS_LOGGED.get(endpoint, 1) if changed else 0)
