"""Withdrawals (exchange.payouts, /withdrawals) on a real exchange, SQLite and (with
TEST_POSTGRES_URL) PostgreSQL: a request holds the amount, an operator's paid record
takes it out, a rejection releases it; every step is a signed record the books
replay; hostile requests are refused with ``{code, message}`` and leave every table
and the log as they were; a withdrawal is decided once, even by racing operators."""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col
from test_auth_support import Exchange, error, running_exchange
from test_lifecycle_support import mark_delivered
from test_order_lifecycle import accept, market
from test_orders import BACKENDS, balances, deposit
from test_refusals import Meanwhile, database_state

from exchange import records
from exchange.accounts.models import Account
from exchange.books import (
    Discrepancy,
    DiscrepancyKind,
    Reconciliation,
    assert_books_balance,
    audit_books,
    check_books,
)
from exchange.idempotency import IdempotencyKey
from exchange.payouts import service as payout_service
from exchange.payouts.models import Withdrawal
from ledger.records import RecordFormatError, sign_record
from ledger.sm2 import SM2PrivateKey


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(
        live_server, tmp_path, request.param, auto_accept_interval_s=3600
    ) as exchange:
        yield exchange


def request_body(
    who: SM2PrivateKey, amount: Any, *, withdrawal_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The body of a ``withdrawal.requested`` signed by ``who``. An amount no record
    may carry (a float, an unsafe integer) cannot be signed: it replaces a signed
    amount, as a hostile client would send it."""
    payload = {
        "withdrawal_id": withdrawal_id or str(uuid.uuid4()),
        "amount": amount,
        "destination": "中国工商银行 6222 0200 0000 1234",
        **extra,
    }
    try:
        return {"record": sign_record(who, "withdrawal.requested", payload).to_dict()}
    except RecordFormatError:
        body = {
            "record": sign_record(who, "withdrawal.requested", {**payload, "amount": 1}).to_dict()
        }
        body["record"]["record"]["payload"]["amount"] = amount
        return body


def withdraw(
    ex: Exchange, who: SM2PrivateKey, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return ex.http(who).post("/withdrawals", json=body, headers=headers)


def decide(
    ex: Exchange,
    withdrawal_id: str,
    outcome: str,
    *,
    signer: SM2PrivateKey | None = None,
    key: str | None = None,
    names: str | None = None,
    **payload: Any,
) -> httpx.Response:
    """``signer`` (default: the operator) posts its ``withdrawal.paid`` or
    ``withdrawal.rejected`` record of the withdrawal ``names`` (default: the one of
    the path)."""
    signer = signer or ex.operator
    record_type, field = {
        "paid": ("withdrawal.paid", "reference"),
        "rejected": ("withdrawal.rejected", "reason"),
    }[outcome]
    body = {"withdrawal_id": names or withdrawal_id, field: f"{outcome} by the test", **payload}
    headers = {"Idempotency-Key": key} if key else {}
    return ex.http(signer).post(
        f"/withdrawals/{withdrawal_id}/{outcome}",
        json=ex.signed_body(signer, record_type, body),
        headers=headers,
    )


def requested(ex: Exchange, who: SM2PrivateKey, amount: int) -> str:
    response = withdraw(ex, who, request_body(who, amount))
    assert response.status_code == 201, response.text
    withdrawal_id: str = response.json()["withdrawal"]["id"]
    return withdrawal_id


def movements(ex: Exchange, who: SM2PrivateKey) -> list[tuple[str, int, int]]:
    rows = ex.http(who).get("/accounts/me").json()["movements"]
    return [(m["kind"], m["available_delta"], m["held_delta"]) for m in reversed(rows)]


def test_request_holds_and_paid_takes_it_out(ex: Exchange) -> None:
    buyer = ex.register("buyer")
    assert deposit(ex, buyer, 10_000).status_code == 201
    body = request_body(buyer, 3_000)
    response = withdraw(ex, buyer, body)
    assert response.status_code == 201, response.text
    answer = response.json()
    withdrawal = answer["withdrawal"]
    assert withdrawal["participant"] == buyer.key_id()
    assert (withdrawal["amount"], withdrawal["state"]) == (3_000, "pending")
    assert withdrawal["destination"] == body["record"]["record"]["payload"]["destination"]
    assert answer["account"] == {"key_id": buyer.key_id(), "available": 7_000, "held": 3_000}
    assert withdrawal["requested_leaf_hash"] == answer["log"]["leaf_hash"]
    ex.assert_logged(response, buyer, "withdrawal.requested")
    assert balances(ex, buyer) == (7_000, 3_000)

    paid = decide(ex, withdrawal["id"], "paid", reference="ICBC transfer 20261207-0042")
    assert paid.status_code == 200, paid.text
    decided = paid.json()["withdrawal"]
    assert decided["state"] == "paid"
    assert decided["transfer_reference"] == "ICBC transfer 20261207-0042"
    assert decided["decided_by"] == ex.operator.key_id()
    assert decided["decision_leaf_hash"] == paid.json()["log"]["leaf_hash"]
    assert paid.json()["account"] == {"key_id": buyer.key_id(), "available": 7_000, "held": 0}
    ex.assert_logged(paid, ex.operator, "withdrawal.paid")
    assert balances(ex, buyer) == (7_000, 0)
    assert movements(ex, buyer) == [
        ("deposit", 10_000, 0),
        ("withdraw_hold", -3_000, 3_000),
        ("withdraw_paid", 0, -3_000),
    ]
    assert ex.http(buyer).get(f"/withdrawals/{withdrawal['id']}").json() == decided
    report = audit_books(ex.app.state.engine)
    assert report.discrepancies == []
    assert report.reconciliation == Reconciliation(10_000, 3_000, 7_000, 0)


def test_rejected_releases_the_amount(ex: Exchange) -> None:
    buyer = ex.register("buyer")
    assert deposit(ex, buyer, 10_000).status_code == 201
    withdrawal_id = requested(ex, buyer, 4_000)
    response = decide(ex, withdrawal_id, "rejected", reason="the account name does not match")
    assert response.status_code == 200, response.text
    assert response.json()["withdrawal"]["state"] == "rejected"
    assert response.json()["withdrawal"]["reason"] == "the account name does not match"
    assert response.json()["withdrawal"]["transfer_reference"] is None
    assert balances(ex, buyer) == (10_000, 0)
    assert movements(ex, buyer)[-1] == ("withdraw_release", 4_000, -4_000)
    ex.assert_logged(response, ex.operator, "withdrawal.rejected")
    report = audit_books(ex.app.state.engine)
    assert report.discrepancies == []
    assert report.reconciliation == Reconciliation(10_000, 0, 10_000, 0)


def test_a_provider_withdraws_its_earnings(ex: Exchange) -> None:
    """Settlement pays the providers; the owner withdraws its whole share, the
    platform fee and the partner's share stay; the whole reconciles."""
    m = market(ex)
    order_id = m.buy()
    mark_delivered(ex.app, order_id)
    assert accept(ex, m.buyer, order_id).status_code == 200
    earned, held = balances(ex, m.owner)
    assert earned > 0 and held == 0
    withdrawal_id = requested(ex, m.owner, earned)
    error(withdraw(ex, m.owner, request_body(m.owner, 1)), 402, "insufficient_funds")
    assert decide(ex, withdrawal_id, "paid").status_code == 200
    assert balances(ex, m.owner) == (0, 0)
    report = audit_books(ex.app.state.engine)
    assert report.discrepancies == []
    assert report.reconciliation.paid_withdrawals == earned
    assert report.reconciliation.deposits == 10_007
    assert report.reconciliation.available == 10_007 - earned


HOSTILE_AMOUNTS = [
    (0, 422, "invalid_payload"),
    (-1, 422, "invalid_payload"),
    (10**15 + 1, 422, "invalid_payload"),  # beyond MAX_AMOUNT_FEN
    (2**53, 400, "invalid_record"),  # beyond what a record may carry exactly
    (1.5, 400, "invalid_record"),  # records refuse floats
    (100.0, 400, "invalid_record"),
    ("100", 422, "invalid_payload"),
    (True, 422, "invalid_payload"),
    (None, 422, "invalid_payload"),
    ([100], 422, "invalid_payload"),
]


@pytest.mark.parametrize(("amount", "status", "code"), HOSTILE_AMOUNTS, ids=repr)
def test_hostile_amounts_are_refused_and_change_nothing(
    ex: Exchange, amount: Any, status: int, code: str
) -> None:
    buyer = ex.register("buyer")
    assert deposit(ex, buyer, 10_000).status_code == 201
    before, size = database_state(ex), ex.log_size()
    error(withdraw(ex, buyer, request_body(buyer, amount), key="hostile"), status, code)
    assert database_state(ex) == before
    assert ex.log_size() == size


def _hostile_payloads(who: SM2PrivateKey) -> list[tuple[str, dict[str, Any], int, str]]:
    good = {"withdrawal_id": str(uuid.uuid4()), "amount": 100, "destination": "bank"}
    return [
        (
            "no destination",
            {k: v for k, v in good.items() if k != "destination"},
            422,
            "invalid_payload",
        ),
        ("empty destination", {**good, "destination": ""}, 422, "invalid_payload"),
        ("long destination", {**good, "destination": "x" * 201}, 422, "invalid_payload"),
        ("extra field", {**good, "participant": who.key_id()}, 422, "invalid_payload"),
        ("not a uuid", {**good, "withdrawal_id": "../../etc"}, 422, "invalid_payload"),
        (
            "upper-case uuid",
            {**good, "withdrawal_id": str(uuid.uuid4()).upper()},
            422,
            "invalid_payload",
        ),
    ]


def test_hostile_payloads_are_refused_and_change_nothing(ex: Exchange) -> None:
    buyer, other = ex.register("buyer"), ex.register("buyer")
    assert deposit(ex, buyer, 10_000).status_code == 201
    before, size = database_state(ex), ex.log_size()
    http = ex.http(buyer)
    for name, payload, status, code in _hostile_payloads(buyer):
        body = ex.signed_body(buyer, "withdrawal.requested", payload)
        assert http.post("/withdrawals", json=body).status_code == status, name
        error(http.post("/withdrawals", json=body), status, code)
    # a record of another type, another actor's record, a stale record
    error(http.post("/withdrawals", json=request_body(other, 100)), 403, "actor_mismatch")
    deposit_like = ex.signed_body(buyer, "deposit.credited", {"participant": buyer.key_id()})
    error(http.post("/withdrawals", json=deposit_like), 422, "wrong_record_type")
    stale = {"withdrawal_id": str(uuid.uuid4()), "amount": 100, "destination": "bank"}
    old = {"record": sign_record(buyer, "withdrawal.requested", stale, timestamp=1).to_dict()}
    error(http.post("/withdrawals", json=old), 422, "stale_record")
    error(http.post("/withdrawals", json={"amount": 100}), 422, "invalid_request")
    assert database_state(ex) == before
    assert ex.log_size() == size


def test_more_than_available_is_refused_and_holds_nothing(ex: Exchange) -> None:
    buyer, penniless = ex.register("buyer"), ex.register("buyer")
    assert deposit(ex, buyer, 10_000).status_code == 201
    requested(ex, buyer, 6_000)
    before, size = database_state(ex), ex.log_size()
    error(withdraw(ex, buyer, request_body(buyer, 4_001)), 402, "insufficient_funds")
    # never had an account: refused, and no empty account is left behind
    error(withdraw(ex, penniless, request_body(penniless, 1)), 402, "insufficient_funds")
    assert database_state(ex) == before
    assert ex.log_size() == size
    assert not [row for row in before["account"] if penniless.key_id() in row]
    assert balances(ex, buyer) == (4_000, 6_000)
    requested(ex, buyer, 4_000)  # exactly what is available
    assert balances(ex, buyer) == (0, 10_000)
    assert_books_balance(ex.app.state.engine)


def test_a_withdrawal_is_decided_once(ex: Exchange) -> None:
    buyer = ex.register("buyer")
    assert deposit(ex, buyer, 10_000).status_code == 201
    paid_id, rejected_id = requested(ex, buyer, 1_000), requested(ex, buyer, 2_000)
    first_pay = ex.signed_body(
        ex.operator, "withdrawal.paid", {"withdrawal_id": paid_id, "reference": "wire 1"}
    )
    http = ex.http(ex.operator)
    assert http.post(f"/withdrawals/{paid_id}/paid", json=first_pay).status_code == 200
    assert decide(ex, rejected_id, "rejected").status_code == 200
    before, size = database_state(ex), ex.log_size()
    # the same record again: refused (decided already; a duplicate record besides)
    error(http.post(f"/withdrawals/{paid_id}/paid", json=first_pay), 409, "withdrawal_decided")
    for withdrawal_id in (paid_id, rejected_id):
        for outcome in ("paid", "rejected"):
            error(decide(ex, withdrawal_id, outcome), 409, "withdrawal_decided")
    assert database_state(ex) == before
    assert ex.log_size() == size
    assert balances(ex, buyer) == (9_000, 0)  # 1,000 paid out, 2,000 released
    assert_books_balance(ex.app.state.engine)


def test_only_operators_decide(ex: Exchange) -> None:
    buyer, provider = ex.register("buyer"), ex.provider()
    assert deposit(ex, buyer, 10_000).status_code == 201
    withdrawal_id = requested(ex, buyer, 1_000)
    before, size = database_state(ex), ex.log_size()
    for who in (buyer, provider):
        for outcome in ("paid", "rejected"):
            error(decide(ex, withdrawal_id, outcome, signer=who), 403, "role_forbidden")
    # an operator has no account of its own: it withdraws only the platform's fees
    error(withdraw(ex, ex.operator, request_body(ex.operator, 1)), 403, "platform_account")
    assert database_state(ex) == before
    assert ex.log_size() == size


def test_decision_refusals(ex: Exchange) -> None:
    buyer = ex.register("buyer")
    assert deposit(ex, buyer, 10_000).status_code == 201
    withdrawal_id, other_id = requested(ex, buyer, 1_000), requested(ex, buyer, 500)
    before, size = database_state(ex), ex.log_size()
    nobody = str(uuid.uuid4())
    error(decide(ex, nobody, "paid"), 404, "withdrawal_not_found")
    # the body names another withdrawal than the path
    error(decide(ex, withdrawal_id, "paid", names=other_id), 422, "target_mismatch")
    http = ex.http(ex.operator)
    empty = ex.signed_body(
        ex.operator, "withdrawal.paid", {"withdrawal_id": withdrawal_id, "reference": ""}
    )
    error(http.post(f"/withdrawals/{withdrawal_id}/paid", json=empty), 422, "invalid_payload")
    wrong = ex.signed_body(
        ex.operator, "withdrawal.rejected", {"withdrawal_id": withdrawal_id, "reason": "no"}
    )
    error(http.post(f"/withdrawals/{withdrawal_id}/paid", json=wrong), 422, "wrong_record_type")
    error(http.post("/withdrawals/not-a-uuid/paid", json=wrong), 422, "invalid_request")
    assert database_state(ex) == before
    assert ex.log_size() == size


def test_an_existing_withdrawal_id_is_refused(ex: Exchange) -> None:
    buyer = ex.register("buyer")
    assert deposit(ex, buyer, 10_000).status_code == 201
    withdrawal_id = requested(ex, buyer, 1_000)
    before = database_state(ex)
    again = request_body(buyer, 2_000, withdrawal_id=withdrawal_id)
    error(withdraw(ex, buyer, again), 409, "withdrawal_exists")
    assert database_state(ex) == before


def test_idempotency_key_replays_and_refuses_another_body(ex: Exchange) -> None:
    buyer = ex.register("buyer")
    assert deposit(ex, buyer, 10_000).status_code == 201
    body = request_body(buyer, 2_500)
    first = withdraw(ex, buyer, body, key="payout-7")
    assert first.status_code == 201, first.text
    size = ex.log_size()
    again = withdraw(ex, buyer, body, key="payout-7")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    before = database_state(ex)
    other = withdraw(ex, buyer, request_body(buyer, 2_500), key="payout-7")
    error(other, 422, "idempotency_key_reused")
    assert database_state(ex) == before
    assert ex.log_size() == size
    assert balances(ex, buyer) == (7_500, 2_500)
    # a decision under a key too
    withdrawal_id = first.json()["withdrawal"]["id"]
    record = {"withdrawal_id": withdrawal_id, "reference": "wire 7"}
    pay = ex.signed_body(ex.operator, "withdrawal.paid", record)
    http, path = ex.http(ex.operator), f"/withdrawals/{withdrawal_id}/paid"
    paid = http.post(path, json=pay, headers={"Idempotency-Key": "decide-7"})
    assert paid.status_code == 200, paid.text
    replayed = http.post(path, json=pay, headers={"Idempotency-Key": "decide-7"})
    assert replayed.status_code == 200
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == paid.json()
    assert balances(ex, buyer) == (7_500, 0)
    assert_books_balance(ex.app.state.engine)


def test_who_sees_which_withdrawals(ex: Exchange) -> None:
    alice, bob = ex.register("buyer"), ex.provider()
    for who in (alice, bob):
        assert deposit(ex, who, 5_000).status_code == 201
    alice_first, alice_second, bob_one = (
        requested(ex, alice, 100),
        requested(ex, alice, 200),
        requested(ex, bob, 300),
    )
    assert decide(ex, alice_first, "paid").status_code == 200

    def ids(who: SM2PrivateKey, query: str = "") -> list[str]:
        response = ex.http(who).get(f"/withdrawals{query}")
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert ids(alice) == [alice_second, alice_first]
    assert ids(alice, "?state=pending") == [alice_second]
    assert ids(bob) == [bob_one]
    assert set(ids(ex.operator)) == {alice_first, alice_second, bob_one}
    assert set(ids(ex.operator, "?state=pending")) == {alice_second, bob_one}
    assert ids(ex.operator, "?state=rejected") == []
    page = ex.http(ex.operator).get("/withdrawals?limit=2").json()
    assert len(page["items"]) == 2 and page["next_offset"] == 2
    error(ex.http(alice).get("/withdrawals?state=sent"), 422, "invalid_request")
    error(ex.http(alice).get("/withdrawals?limit=0"), 422, "invalid_request")
    error(ex.http(bob).get(f"/withdrawals/{alice_first}"), 404, "withdrawal_not_found")
    assert ex.http(ex.operator).get(f"/withdrawals/{bob_one}").status_code == 200
    error(ex.http().get("/withdrawals"), 401, "unauthenticated")


def _at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    results: list[httpx.Response | None] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i: int) -> None:
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def test_racing_requests_never_overdraw(ex: Exchange) -> None:
    buyer = ex.register("buyer")
    assert deposit(ex, buyer, 1_000).status_code == 201
    bodies = [request_body(buyer, 300) for _ in range(5)]
    results = _at_once([functools.partial(withdraw, ex, buyer, b) for b in bodies])
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201, 201, 201, 402, 402], [r.text for r in results]
    assert balances(ex, buyer) == (100, 900)
    assert_books_balance(ex.app.state.engine)


def test_racing_decisions_decide_once(ex: Exchange) -> None:
    buyer = ex.register("buyer")
    assert deposit(ex, buyer, 1_000).status_code == 201
    withdrawal_id = requested(ex, buyer, 600)
    results = _at_once(
        [
            lambda: decide(ex, withdrawal_id, "paid"),
            lambda: decide(ex, withdrawal_id, "rejected"),
            lambda: decide(ex, withdrawal_id, "paid"),
        ]
    )
    won = [r for r in results if r.status_code == 200]
    assert len(won) == 1, [r.text for r in results]
    for lost in results:
        if lost.status_code != 200:
            assert lost.status_code == 409, lost.text
            assert lost.json()["code"] in ("withdrawal_decided", "concurrent_update")
    state = won[0].json()["withdrawal"]["state"]
    assert balances(ex, buyer) == ((400, 0) if state == "paid" else (1_000, 0))
    assert_books_balance(ex.app.state.engine)


def test_the_books_report_a_tampered_withdrawal_and_the_reconciliation(ex: Exchange) -> None:
    buyer = ex.register("buyer")
    assert deposit(ex, buyer, 10_000).status_code == 201
    withdrawal_id = requested(ex, buyer, 1_000)
    engine = ex.app.state.engine
    with ex.app.state.session_factory() as session:
        # marked paid "by hand": no record says so
        session.execute(
            update(Withdrawal).where(col(Withdrawal.id) == withdrawal_id).values(state="paid")
        )
        session.commit()
    assert check_books(engine) == [
        Discrepancy(
            DiscrepancyKind.WITHDRAWAL,
            withdrawal_id,
            1_000,
            1_000,
            f"the log says pending for {buyer.key_id()}, stored paid for {buyer.key_id()}",
        )
    ]
    with ex.app.state.session_factory() as session:
        session.execute(
            update(Withdrawal).where(col(Withdrawal.id) == withdrawal_id).values(state="pending")
        )
        # money that vanished: held lowered as if paid, with no record
        session.execute(update(Account).where(col(Account.key_id) == buyer.key_id()).values(held=0))
        session.commit()
    report = audit_books(engine)
    assert report.reconciliation == Reconciliation(10_000, 0, 9_000, 0)
    assert not report.reconciliation.ok
    assert report.discrepancies == [
        Discrepancy(DiscrepancyKind.HELD, buyer.key_id(), 1_000, 0),
        Discrepancy(
            DiscrepancyKind.RECONCILIATION,
            "all",
            10_000,
            9_000,
            "deposits 10000 − paid withdrawals 0 ≠ Σ available 9000 + Σ held 0",
        ),
    ]


def test_db_check_prints_the_reconciliation(ex: Exchange) -> None:
    from json import loads

    from typer.testing import CliRunner

    from exchange.cli import app as shancheng

    buyer = ex.register("buyer")
    assert deposit(ex, buyer, 10_000).status_code == 201
    assert decide(ex, requested(ex, buyer, 2_000), "paid").status_code == 200
    requested(ex, buyer, 500)
    url = ex.app.state.settings.resolved_database_url
    runner = CliRunner()
    checked = runner.invoke(shancheng, ["db", "check", "--database-url", url])
    assert checked.exit_code == 0, checked.output
    assert (
        "reconciliation: deposits 10000 − paid withdrawals 2000 = Σ available 7500 + "
        "Σ held 500: OK" in checked.stdout
    )
    document = loads(
        runner.invoke(shancheng, ["db", "check", "--database-url", url, "--json"]).stdout
    )
    assert document["reconciliation"] == {
        "deposits": 10_000,
        "paid_withdrawals": 2_000,
        "available": 7_500,
        "held": 500,
        "ok": True,
    }
    with ex.app.state.session_factory() as session:
        session.execute(
            update(Account).where(col(Account.key_id) == buyer.key_id()).values(available=7_400)
        )
        session.commit()
    failed = runner.invoke(shancheng, ["db", "check", "--database-url", url])
    assert failed.exit_code == 1
    assert "≠ Σ available 7400 + Σ held 500: FAIL" in failed.stdout


def test_a_withdrawal_refused_inside_its_transaction_leaves_nothing(
    ex: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a withdrawal is requested (its checks passed, its transaction not begun),
    another withdrawal of the same participant takes the money: the first is refused
    inside its transaction (402), and every table is as the other left it."""
    buyer = ex.register("buyer")
    assert deposit(ex, buyer, 1_000).status_code == 201
    late, first = request_body(buyer, 800), request_body(buyer, 700)
    real = records.commit_with_record
    meanwhile = Meanwhile()

    def paused(*args: Any, **kwargs: Any) -> Any:
        if meanwhile.before is None:
            meanwhile.before = database_state(ex)
            assert withdraw(ex, buyer, first).status_code == 201
            meanwhile.after = database_state(ex)
        return real(*args, **kwargs)

    monkeypatch.setattr(payout_service, "commit_with_record", paused)
    before, size = database_state(ex), ex.log_size()
    error(withdraw(ex, buyer, late, key="late-1"), 402, "insufficient_funds")
    assert database_state(ex) == meanwhile.applied_to(before)
    assert ex.log_size() == size + 1  # the other withdrawal's record only
    assert balances(ex, buyer) == (300, 700)
    assert_books_balance(ex.app.state.engine)


def test_a_replay_whose_response_was_not_stored_is_rebuilt(ex: Exchange) -> None:
    """The key's response is written after the commit; a crash in between leaves the
    key without it: a replay rebuilds the same answer (the balances as they were
    right after the record, not as they are now) from the withdrawal and the log."""
    buyer = ex.register("buyer")
    assert deposit(ex, buyer, 10_000).status_code == 201
    body = request_body(buyer, 1_500)
    first = withdraw(ex, buyer, body, key="crash-1")
    assert first.status_code == 201, first.text
    pay = {"withdrawal_id": first.json()["withdrawal"]["id"], "reference": "wire 9"}
    path = f"/withdrawals/{pay['withdrawal_id']}/paid"
    signed_pay = ex.signed_body(ex.operator, "withdrawal.paid", pay)
    paid = ex.http(ex.operator).post(path, json=signed_pay, headers={"Idempotency-Key": "crash-2"})
    assert paid.status_code == 200, paid.text
    assert deposit(ex, buyer, 500).status_code == 201  # balances move on meanwhile
    with ex.app.state.session_factory() as session:
        session.execute(update(IdempotencyKey).values(response=None))
        session.commit()
    again = withdraw(ex, buyer, body, key="crash-1")
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    expected = first.json()
    expected["withdrawal"] = paid.json()["withdrawal"]  # the withdrawal as it is now
    assert again.json() == expected
    replayed = ex.http(ex.operator).post(
        path, json=signed_pay, headers={"Idempotency-Key": "crash-2"}
    )
    assert replayed.status_code == 200 and replayed.json() == paid.json()


# -- the platform's fees ----------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def two_operators(
    request: pytest.FixtureRequest, live_server: Any, tmp_path: Path
) -> Iterator[tuple[Exchange, SM2PrivateKey]]:
    """An exchange with two operators: ``Exchange.operator`` and the one returned."""
    second = SM2PrivateKey.generate()
    with running_exchange(
        live_server,
        tmp_path,
        request.param,
        other_operators=(second,),
        auto_accept_interval_s=3600,
        platform_fee_bp=500,
    ) as exchange:
        yield exchange, second


def platform_balance(ex: Exchange) -> tuple[int, int]:
    account = ex.http(ex.operator).get("/accounts/platform").json()["account"]
    return account["available"], account["held"]


def test_an_operator_withdraws_the_fees_and_another_pays_them_out(
    two_operators: tuple[Exchange, SM2PrivateKey],
) -> None:
    ex, second = two_operators
    m = market(ex)
    mark_delivered(ex.app, (order_id := m.buy()))
    assert accept(ex, m.buyer, order_id).status_code == 200
    fee, held = platform_balance(ex)
    assert fee > 0 and held == 0, order_id

    response = withdraw(ex, ex.operator, request_body(ex.operator, fee, account="platform"))
    assert response.status_code == 201, response.text
    withdrawal = response.json()["withdrawal"]
    assert withdrawal["participant"] == "platform"
    assert response.json()["account"] == {"key_id": "platform", "available": 0, "held": fee}
    ex.assert_logged(response, ex.operator, "withdrawal.requested")
    # a participant does not see it; operators do
    assert ex.http(m.buyer).get(f"/withdrawals/{withdrawal['id']}").status_code == 404
    listed = ex.http(second).get("/withdrawals").json()["items"]
    assert [w["id"] for w in listed] == [withdrawal["id"]]

    before, size = database_state(ex), ex.log_size()
    error(decide(ex, withdrawal["id"], "paid"), 403, "same_operator")  # four eyes
    assert database_state(ex) == before and ex.log_size() == size

    paid = decide(ex, withdrawal["id"], "paid", signer=second, reference="fees 2026-12")
    assert paid.status_code == 200, paid.text
    assert paid.json()["withdrawal"]["decided_by"] == second.key_id()
    assert paid.json()["account"] == {"key_id": "platform", "available": 0, "held": 0}
    assert platform_balance(ex) == (0, 0)
    report = audit_books(ex.app.state.engine)
    assert report.discrepancies == []
    assert report.reconciliation.paid_withdrawals == fee


def test_platform_withdrawals_refused_change_nothing(
    two_operators: tuple[Exchange, SM2PrivateKey],
) -> None:
    ex, second = two_operators
    buyer = ex.register("buyer")
    assert deposit(ex, buyer, 10_000).status_code == 201
    before, size = database_state(ex), ex.log_size()
    # only operators withdraw from the platform account, and nothing else
    error(withdraw(ex, buyer, request_body(buyer, 1, account="platform")), 403, "platform_account")
    error(withdraw(ex, second, request_body(second, 1)), 403, "platform_account")
    # no fees yet: nothing to withdraw
    error(
        withdraw(ex, second, request_body(second, 1, account="platform")), 402, "insufficient_funds"
    )
    # only "platform" names another account
    error(
        withdraw(ex, second, request_body(second, 1, account=buyer.key_id())),
        422,
        "invalid_payload",
    )
    assert database_state(ex) == before
    assert ex.log_size() == size


def test_the_requesting_operator_may_reject_its_own_fee_withdrawal(
    two_operators: tuple[Exchange, SM2PrivateKey],
) -> None:
    ex, _ = two_operators
    m = market(ex)
    mark_delivered(ex.app, (order_id := m.buy()))
    assert accept(ex, m.buyer, order_id).status_code == 200
    fee, _ = platform_balance(ex)
    withdrawal_id = withdraw(
        ex, ex.operator, request_body(ex.operator, fee, account="platform")
    ).json()["withdrawal"]["id"]
    response = decide(ex, withdrawal_id, "rejected", reason="wrong destination")
    assert response.status_code == 200, response.text
    assert platform_balance(ex) == (fee, 0)
    assert audit_books(ex.app.state.engine).discrepancies == []
