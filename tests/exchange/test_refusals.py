"""A refused signed action leaves no trace: re-sending a record that is already
in the log (409) changes no balance, no row and not the log, for every action
type a client signs (SQLite; also PostgreSQL when ``TEST_POSTGRES_URL`` is set).

The exchange-originated records (``delivery.issued``, ``settlement.paid``,
``order.auto_accepted``, ``certificate.issued``) are signed afresh each time and
cannot be re-sent; they are stored by the same
:func:`exchange.records.commit_with_records`."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect, text
from test_auth_support import Exchange, error, listing_content, running_exchange
from test_lifecycle_support import mark_delivered
from test_order_lifecycle import SUBSCRIPTION, placed_body
from test_orders import BACKENDS, balances, deposit, publish, quote

from exchange import records
from exchange.books import assert_books_balance
from exchange.orders import lifecycle as order_lifecycle
from exchange.orders import service as order_service
from ledger.protocol.accounts import PLATFORM_ACCOUNT
from ledger.protocol.quality import Indicator, QualityReport, TableSchema, Timeliness
from ledger.sm2 import SM2PrivateKey

_NOT_STATE = {"auth_nonce", "alembic_version"}
"""Tables every authenticated request writes (its nonce) or that never change."""


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(
        live_server, tmp_path, request.param, auto_accept_interval_s=3600
    ) as exchange:
        yield exchange


def database_state(ex: Exchange) -> dict[str, list[str]]:
    """Every row of every table but the nonces', as sorted text: equal before and
    after a request means the request wrote nothing."""
    engine = ex.app.state.engine
    state: dict[str, list[str]] = {}
    with engine.connect() as connection:
        names = inspect(connection).get_table_names()
        for name in sorted(set(names) - _NOT_STATE):
            rows = connection.execute(text(f'SELECT * FROM "{name}"')).all()  # noqa: S608
            state[name] = sorted(repr(tuple(row)) for row in rows)
    return state


@dataclass(frozen=True)
class Sent:
    """A signed request as it was sent, to send again byte for byte."""

    record_type: str
    key: SM2PrivateKey | None  # who signs the HTTP request (None: unauthenticated)
    method: str
    path: str
    body: dict[str, Any]

    def send(self, ex: Exchange) -> httpx.Response:
        return ex.http(self.key).request(self.method, self.path, json=self.body)


class Recorder:
    """Sends signed actions, keeping the last request of each record type."""

    def __init__(self, ex: Exchange) -> None:
        self.ex = ex
        self.last: dict[str, Sent] = {}

    def send(
        self,
        key: SM2PrivateKey | None,
        method: str,
        path: str,
        signer: SM2PrivateKey,
        record_type: str,
        payload: dict[str, Any],
        status: int = 200,
    ) -> dict[str, Any]:
        sent = Sent(
            record_type, key, method, path, self.ex.signed_body(signer, record_type, payload)
        )
        response = sent.send(self.ex)
        assert response.status_code == status, response.text
        self.last[record_type] = sent
        body: dict[str, Any] = response.json()
        return body


def _story(ex: Exchange) -> Recorder:
    """At least one request of every record type a client signs."""
    rec = Recorder(ex)
    op = ex.operator

    def register(role: str) -> SM2PrivateKey:
        key = SM2PrivateKey.generate()
        pem = key.public_key().to_pem().decode()
        payload = {"display_name": role, "role": role, "public_key": pem}
        rec.send(None, "POST", "/participants", key, "participant.registered", payload, 201)
        return key

    def approve(key: SM2PrivateKey) -> None:
        path = f"/participants/{key.key_id()}/approve"
        rec.send(op, "POST", path, op, "participant.approved", {"participant": key.key_id()})

    owner, partner, buyer = register("provider"), register("provider"), register("buyer")
    approve(owner)
    approve(partner)
    rec.send(
        op,
        "POST",
        f"/participants/{partner.key_id()}/suspend",
        op,
        "participant.suspended",
        {"participant": partner.key_id(), "reason": "fraud"},
    )

    def listing(
        action: str, key: SM2PrivateKey, listing_id: str, record_type: str, **kw: Any
    ) -> dict[str, Any]:
        payload = {"listing_id": listing_id, **kw}
        return rec.send(key, "POST", f"/listings/{listing_id}/{action}", key, record_type, payload)

    # a subscription listing, published, with a second version, sold below
    sold = str(uuid.uuid4())
    content = listing_content(owner.key_id(), pricing=SUBSCRIPTION)
    rec.send(
        owner, "POST", "/listings", owner, "listing.drafted", {"listing_id": sold, **content}, 201
    )
    listing("submit", owner, sold, "listing.submitted")
    listing("review", op, sold, "listing.review_started")
    listing("publish", op, sold, "listing.published")

    # another one, rejected then edited (back to a draft), then rejected again
    other = str(uuid.uuid4())
    content = listing_content(owner.key_id(), title="first title")
    rec.send(
        owner, "POST", "/listings", owner, "listing.drafted", {"listing_id": other, **content}, 201
    )
    listing("submit", owner, other, "listing.submitted")
    listing("review", op, other, "listing.review_started")
    listing("reject", op, other, "listing.rejected", reason="no licence")
    edited = {"listing_id": other, **listing_content(owner.key_id(), title="second title")}
    rec.send(owner, "PUT", f"/listings/{other}", owner, "listing.edited", edited)
    listing("submit", owner, other, "listing.submitted")
    listing("review", op, other, "listing.review_started")
    listing("reject", op, other, "listing.rejected", reason="still no licence")

    # money: a deposit, orders accepted, disputed and resolved, renewed, revoked
    deposit_payload = {"participant": buyer.key_id(), "amount": 50_000, "reference": "bank"}
    path = f"/accounts/{buyer.key_id()}/deposits"
    rec.send(op, "POST", path, op, "deposit.credited", deposit_payload, 201)
    assessment = {
        "listing_id": sold,
        "buyer": buyer.key_id(),
        "approved": True,
        "reference": "CAC 2026-1",
        "valid_until": 4_102_444_800_000,
    }
    rec.send(op, "POST", "/crossborder-assessments", op, "crossborder.assessed", assessment, 201)

    def withdrawal(amount: int) -> str:
        withdrawal_id = str(uuid.uuid4())
        payload = {"withdrawal_id": withdrawal_id, "amount": amount, "destination": "bank"}
        rec.send(buyer, "POST", "/withdrawals", buyer, "withdrawal.requested", payload, 201)
        return withdrawal_id

    paid, rejected = withdrawal(1_000), withdrawal(2_000)
    for outcome, withdrawal_id, extra in (
        ("paid", paid, {"reference": "wire 7"}),
        ("rejected", rejected, {"reason": "name differs"}),
    ):
        path = f"/withdrawals/{withdrawal_id}/{outcome}"
        payload = {"withdrawal_id": withdrawal_id, **extra}
        rec.send(op, "POST", path, op, f"withdrawal.{outcome}", payload)

    def place(renews: str | None = None) -> str:
        body = placed_body(buyer, quote(ex, buyer, sold, periods=1), renews=renews)
        record = body["record"]
        sent = Sent("order.placed", buyer, "POST", "/orders", body)
        response = sent.send(ex)
        assert response.status_code == 201, response.text
        rec.last["order.placed"] = sent
        order_id: str = record["record"]["payload"]["order_id"]
        return order_id

    def order(
        action: str, key: SM2PrivateKey, order_id: str, record_type: str, **kw: Any
    ) -> dict[str, Any]:
        payload = {"order_id": order_id, **kw}
        return rec.send(key, "POST", f"/orders/{order_id}/{action}", key, record_type, payload)

    accepted, disputed = place(), place()
    for order_id in (accepted, disputed):
        mark_delivered(ex.app, order_id)
    order("accept", buyer, accepted, "order.accepted")
    order("dispute", buyer, disputed, "order.disputed", reason="rows missing")
    order("resolve", op, disputed, "dispute.resolved", outcome="refund", note="checked")
    place(renews=accepted)
    order("revoke", owner, accepted, "access.revoked", reason="licence breach")

    version = {
        "listing_id": sold,
        "version": 2,
        "content_digest": "cd" * 32,
        "row_count": 10,
        "byte_size": 100,
        "format": "csv",
    }
    rec.send(
        owner, "POST", f"/listings/{sold}/versions", owner, "listing.version_added", version, 201
    )
    listing("delist", owner, sold, "listing.delisted", reason="retired")
    # quality: the provider's report, an assessor's countersignature (docs/quality.md),
    # on a listing that stays published
    graded = str(uuid.uuid4())
    content = listing_content(owner.key_id())
    rec.send(
        owner, "POST", "/listings", owner, "listing.drafted", {"listing_id": graded, **content}, 201
    )
    listing("submit", owner, graded, "listing.submitted")
    listing("review", op, graded, "listing.review_started")
    listing("publish", op, graded, "listing.published")
    report = _quality_report()
    reported = {
        "listing_id": graded,
        "version": 1,
        "report": report.to_dict(),
        "report_sm3": report.digest(),
    }
    rec.send(
        owner,
        "POST",
        f"/listings/{graded}/quality-reports",
        owner,
        "quality.reported",
        reported,
        201,
    )
    assessor = register("assessor")
    approve(assessor)
    countersigned = {"listing_id": graded, "version": 1, "report_sm3": report.digest()}
    path = f"/listings/{graded}/quality-reports/{report.digest()}/countersignatures"
    rec.send(assessor, "POST", path, assessor, "quality.countersigned", countersigned, 201)

    # the current version's certificate through every lifecycle record
    [_, current] = ex.http().get("/certificates", params={"listing": sold}).json()["items"]
    number = current["number"]

    def certificate(key: SM2PrivateKey, record_type: str, **kw: Any) -> None:
        path = f"/certificates/{number}/records"
        rec.send(key, "POST", path, key, record_type, {"number": number, **kw})

    scope = {"category": "transport", "purposes": ["research"], "text": "research only"}
    certificate(owner, "certificate.change_requested", scope=scope, reason="narrower")
    certificate(op, "certificate.changed", decision="approve", reason="ok")
    transfer = {"right": "operation", "to": buyer.key_id()}
    certificate(owner, "certificate.transfer_offered", share_bps=1_000, **transfer)
    certificate(buyer, "certificate.transfer_accepted")
    certificate(op, "certificate.transfer_approved", reason="ok")
    certificate(owner, "certificate.transfer_offered", share_bps=500, **transfer)
    certificate(op, "certificate.transfer_rejected", reason="no agreement")
    until = current["valid_until"] + 1
    certificate(owner, "certificate.renewal_requested", valid_until=until)
    certificate(op, "certificate.renewed", decision="approve", valid_until=until, reason="ok")
    certificate(owner, "certificate.cancellation_requested", reason="retired")
    certificate(op, "certificate.cancelled", decision="approve", reason="注销")
    return rec


CLIENT_SIGNED = [
    "participant.registered",
    "participant.approved",
    "participant.suspended",
    "listing.drafted",
    "listing.edited",
    "listing.submitted",
    "listing.review_started",
    "listing.published",
    "listing.rejected",
    "listing.delisted",
    "listing.version_added",
    "deposit.credited",
    "crossborder.assessed",
    "order.placed",
    "order.accepted",
    "order.disputed",
    "dispute.resolved",
    "access.revoked",
    "quality.reported",
    "quality.countersigned",
    "certificate.change_requested",
    "certificate.changed",
    "certificate.transfer_offered",
    "certificate.transfer_accepted",
    "certificate.transfer_approved",
    "certificate.transfer_rejected",
    "certificate.renewal_requested",
    "certificate.renewed",
    "certificate.cancellation_requested",
    "certificate.cancelled",
    "withdrawal.requested",
    "withdrawal.paid",
    "withdrawal.rejected",
]


def _quality_report() -> QualityReport:
    """A report on listing_content's bytes (the exchange checks its shape, not its counts)."""
    ratio = Indicator(9, 10)
    return QualityReport(
        content_sm3=listing_content("00" * 32)["content_digest"],
        byte_size=listing_content("00" * 32)["byte_size"],
        rows=10,
        table_schema=TableSchema.from_dict(
            {"fields": [{"name": "stop"}, {"name": "boardings", "type": "integer"}]}
        ),
        update_frequency="monthly",
        as_of=0,
        conformity=ratio,
        completeness=ratio,
        accuracy=ratio,
        consistency=ratio,
        timeliness=Timeliness(None, 31 * 86_400_000, 0),
        accessibility=ratio,
    )


def test_every_resent_record_is_refused_and_changes_nothing(ex: Exchange) -> None:
    rec = _story(ex)
    assert sorted(rec.last) == sorted(CLIENT_SIGNED)
    assert_books_balance(ex.app.state.engine)
    before = database_state(ex)
    for record_type in CLIENT_SIGNED:
        response = rec.last[record_type].send(ex)
        assert response.status_code == 409, (record_type, response.text)
        assert set(response.json()) == {"code", "message"}
        assert database_state(ex) == before, record_type
    assert_books_balance(ex.app.state.engine)


def _deposit_body(ex: Exchange, who: SM2PrivateKey, amount: int) -> dict[str, Any]:
    payload = {"participant": who.key_id(), "amount": amount, "reference": "wire 42"}
    return ex.signed_body(ex.operator, "deposit.credited", payload)


def test_a_deposit_sent_three_times_credits_once(ex: Exchange) -> None:
    buyer = ex.register("buyer")
    body = _deposit_body(ex, buyer, 1_000)
    http = ex.http(ex.operator)
    path = f"/accounts/{buyer.key_id()}/deposits"
    assert http.post(path, json=body).status_code == 201
    size = ex.log_size()
    for _ in range(2):
        error(http.post(path, json=body), 409, "duplicate_record")
    assert balances(ex, buyer) == (1_000, 0)
    assert ex.log_size() == size
    movements = ex.http(buyer).get("/accounts/me").json()["movements"]
    assert [m["amount"] for m in movements] == [1_000]
    assert_books_balance(ex.app.state.engine)


def test_a_deposit_sent_ten_times_at_once_credits_once(ex: Exchange) -> None:
    buyer = ex.register("buyer")
    body = _deposit_body(ex, buyer, 1_000)
    path = f"/accounts/{buyer.key_id()}/deposits"
    clients = [ex.http(ex.operator) for _ in range(10)]
    results: list[httpx.Response | None] = [None] * len(clients)
    barrier = threading.Barrier(len(clients))

    def send(i: int) -> None:
        barrier.wait()
        results[i] = clients[i].post(path, json=body, timeout=60)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in results if r is not None)
    assert statuses == [201] + [409] * 9, statuses
    for r in results:
        assert r is not None
        if r.status_code == 409:
            assert r.json()["code"] in ("duplicate_record", "concurrent_update"), r.text
    assert balances(ex, buyer) == (1_000, 0)
    movements = ex.http(buyer).get("/accounts/me").json()["movements"]
    assert [m["amount"] for m in movements] == [1_000]
    assert_books_balance(ex.app.state.engine)


def test_an_old_listing_edit_sent_again_changes_nothing(ex: Exchange) -> None:
    owner = ex.provider()
    listing_id = ex.draft(owner)
    http = ex.http(owner)
    path = f"/listings/{listing_id}"
    old = ex.signed_body(
        owner,
        "listing.edited",
        {"listing_id": listing_id, **listing_content(owner.key_id(), title="old title")},
    )
    assert http.put(path, json=old).status_code == 200
    new = ex.signed_body(
        owner,
        "listing.edited",
        {"listing_id": listing_id, **listing_content(owner.key_id(), title="new title")},
    )
    assert http.put(path, json=new).status_code == 200
    size, before = ex.log_size(), database_state(ex)

    error(http.put(path, json=old), 409, "duplicate_record")
    assert http.get(path).json()["title"] == "new title"
    assert ex.log_size() == size
    assert database_state(ex) == before


def test_a_duplicate_order_holds_nothing(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    listing_id = publish(ex, owner)
    assert deposit(ex, buyer, 100_000).status_code == 201
    body = placed_body(buyer, quote(ex, buyer, listing_id))
    assert ex.http(buyer).post("/orders", json=body).status_code == 201
    before = database_state(ex)
    response = ex.http(buyer).post("/orders", json=body)
    assert response.status_code == 409, response.text
    assert database_state(ex) == before
    assert balances(ex, buyer) == (80_100, 19_900)


# ------------------------------------------------- refusals inside the order's transaction


State = dict[str, list[str]]


@dataclass
class Meanwhile:
    """What another request changed while an order was being placed: the database
    right before and right after it."""

    before: State | None = None
    after: State | None = None

    def applied_to(self, state: State) -> State:
        """``state`` with this change made to it (rows removed and rows added)."""
        assert self.before is not None and self.after is not None, "it never ran"
        changed: State = {}
        for table in sorted(set(state) | set(self.before) | set(self.after)):
            before, after = Counter(self.before.get(table, [])), Counter(self.after.get(table, []))
            rows = Counter(state.get(table, [])) - (before - after) + (after - before)
            changed[table] = sorted(rows.elements())
        return changed


def place_meanwhile(
    monkeypatch: pytest.MonkeyPatch, ex: Exchange, other: Callable[[], None]
) -> Meanwhile:
    """Make the next order placed run ``other`` (another request, served to the end)
    once its checks passed and before its own transaction: whatever ``other``
    commits, the order's transaction then finds (as when two requests race)."""
    real = records.commit_with_record
    seen = Meanwhile()

    def paused(*args: Any, **kwargs: Any) -> Any:
        if seen.before is None:
            seen.before = database_state(ex)
            other()
            seen.after = database_state(ex)
        return real(*args, **kwargs)

    monkeypatch.setattr(order_service, "commit_with_record", paused)
    return seen


def test_a_buyer_without_an_account_refused_the_last_seat_keeps_no_account(
    ex: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A free offer of one seat: while a buyer who never had an account orders it,
    another buyer takes the seat; the first is refused inside its transaction."""
    owner, late, first = ex.provider(), ex.register("buyer"), ex.register("buyer")
    listing_id = publish(ex, owner, pricing={"model": "free", "seats": 1})
    late_body = placed_body(late, quote(ex, late, listing_id))
    first_body = placed_body(first, quote(ex, first, listing_id))

    def first_buys() -> None:
        assert ex.http(first).post("/orders", json=first_body).status_code == 201

    meanwhile = place_meanwhile(monkeypatch, ex, first_buys)
    before = database_state(ex)
    assert "account" in before and "offer_seats" in before
    error(ex.http(late).post("/orders", json=late_body), 409, "sold_out")
    after = database_state(ex)
    assert after == meanwhile.applied_to(before)
    assert not [row for row in after["account"] if late.key_id() in row]
    assert_books_balance(ex.app.state.engine)


def test_a_refused_first_order_of_a_limited_offer_leaves_no_seat_counter(
    ex: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first order of an offer of three seats: while it is placed, the buyer
    spends the money on another listing; it is refused inside its transaction."""
    owner, buyer = ex.provider(), ex.register("buyer")
    limited = publish(ex, owner, pricing={"model": "fixed", "price": 19_900, "seats": 3})
    other = publish(ex, owner)  # 19,900 fen too, no limit
    assert deposit(ex, buyer, 19_900).status_code == 201
    limited_body = placed_body(buyer, quote(ex, buyer, limited))
    other_body = placed_body(buyer, quote(ex, buyer, other))

    def spend_it_all() -> None:
        assert ex.http(buyer).post("/orders", json=other_body).status_code == 201

    meanwhile = place_meanwhile(monkeypatch, ex, spend_it_all)
    before = database_state(ex)
    error(ex.http(buyer).post("/orders", json=limited_body), 402, "insufficient_funds")
    after = database_state(ex)
    assert after == meanwhile.applied_to(before)
    assert not [row for row in after["offer_seats"] if limited in row]
    assert balances(ex, buyer) == (0, 19_900)
    assert_books_balance(ex.app.state.engine)


def test_an_accept_refused_in_its_transaction_opens_no_payee_account(
    ex: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Providers never paid before (no accounts): while the buyer's acceptance is
    settled, the buyer disputes the order; the acceptance is refused inside its
    transaction and leaves no account for the providers or the platform."""
    owner, buyer = ex.provider(), ex.register("buyer")
    listing_id = publish(ex, owner)
    assert deposit(ex, buyer, 19_900).status_code == 201
    placed = ex.http(buyer).post("/orders", json=placed_body(buyer, quote(ex, buyer, listing_id)))
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["order"]["id"]
    mark_delivered(ex.app, order_id)
    accepted = ex.signed_body(buyer, "order.accepted", {"order_id": order_id})
    disputed = ex.signed_body(buyer, "order.disputed", {"order_id": order_id, "reason": "bad"})

    def buyer_disputes() -> None:
        response = ex.http(buyer).post(f"/orders/{order_id}/dispute", json=disputed)
        assert response.status_code == 200, response.text

    real = records.commit_with_records
    meanwhile = Meanwhile()

    def paused(*args: Any, **kwargs: Any) -> Any:
        if meanwhile.before is None:
            meanwhile.before = database_state(ex)
            buyer_disputes()
            meanwhile.after = database_state(ex)
        return real(*args, **kwargs)

    monkeypatch.setattr(order_lifecycle, "commit_with_records", paused)
    before = database_state(ex)
    response = ex.http(buyer).post(f"/orders/{order_id}/accept", json=accepted)
    assert response.status_code == 409, response.text
    after = database_state(ex)
    assert after == meanwhile.applied_to(before)
    for key_id in (owner.key_id(), PLATFORM_ACCOUNT):
        assert not [row for row in after["account"] if key_id in row]
    assert_books_balance(ex.app.state.engine)
