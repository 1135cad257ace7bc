"""The SDK's marketplace methods against the real app: the sync client over a real
uvicorn (``live_server``), the async client in-process (``httpx.ASGITransport``).
Registration, approval, the listing flow, search, quotes, deposits, orders,
content upload, delivery, download (with resume), decryption, acceptance with
settlement, disputes, revocation and renewal; refusals arrive as ``APIError``
with the server's status and code."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from test_sdk_support import listing_content, running_exchange, write_dataset

from clients.sdk import (
    APIError,
    AsyncExchangeClient,
    DigestMismatchError,
    ExchangeClient,
    InsufficientFundsError,
    Listing,
)
from clients.sdk.policies import declare
from exchange.app import create_app
from exchange.log.testing import isolated_database
from exchange.settings import Settings
from ledger.errors import DecryptionError
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import sm3_file

SUBSCRIPTION = {
    "model": "subscription",
    "price_per_period": 3_000,
    "period_days": 30,
    "max_periods": 12,
}


def refused(call: Any, status: int, code: str) -> APIError:
    with pytest.raises(APIError) as caught:
        call()
    error = caught.value
    assert (error.status_code, error.code) == (status, code), error
    assert error.message
    return error


def content_fields(
    client: ExchangeClient | AsyncExchangeClient, **overrides: Any
) -> dict[str, Any]:
    """The listing content of test_auth_support without what a file determines."""
    assert client.key_id is not None
    fields: dict[str, Any] = listing_content(client.key_id, **overrides)
    for inferred in ("content_digest", "byte_size", "row_count", "format", "columns"):
        fields.pop(inferred)
    fields.pop("sample_rows")
    fields["custody"] = "exchange"  # these tests upload the content
    return fields


class Recording(httpx.HTTPTransport):
    """A real transport that remembers each request's method, path and headers."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, httpx.Headers]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path, request.headers))
        return super().handle_request(request)


@dataclasses.dataclass
class Market:
    url: str
    app: FastAPI
    operator: ExchangeClient
    clients: list[ExchangeClient]

    def client(self, key: SM2PrivateKey | None = None, **kwargs: Any) -> ExchangeClient:
        client = ExchangeClient(self.url, key=key or SM2PrivateKey.generate(), **kwargs)
        self.clients.append(client)
        return client

    def provider(self, name: str = "重庆数据有限公司") -> ExchangeClient:
        provider = self.client()
        provider.register(name, "provider")
        self.operator.approve_participant(provider.key_id or "")
        return provider

    def buyer(self, deposit: int = 0, **kwargs: Any) -> ExchangeClient:
        buyer = self.client(**kwargs)
        buyer.register("买家", "buyer")
        if deposit:
            self.operator.deposit(buyer.key_id or "", deposit, "bank transfer")
        return buyer

    def ready_listing(self, provider: ExchangeClient, data: Path, **overrides: Any) -> Listing:
        fields = provider.listing_from_file(data, **content_fields(provider, **overrides))
        listing = provider.create_listing(fields)
        provider.upload_content(listing.id, 1, data)
        provider.submit_listing(listing.id)
        self.operator.review_listing(listing.id)
        return self.operator.publish_listing(listing.id)


@pytest.fixture
def market(live_server: Any, tmp_path: Path) -> Iterator[Market]:
    with running_exchange(live_server, tmp_path) as ex:
        operator = ExchangeClient(ex.url, key=ex.operator)
        market = Market(ex.url, ex.app, operator, [operator])
        try:
            yield market
        finally:
            for client in market.clients:
                client.close()


# --------------------------------------------------------------------------- sync, end to end


def test_provider_operator_buyer_round_trip(market: Market, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "boardings.csv")
    provider = market.client()
    registered = provider.register("重庆数据有限公司", "provider")
    assert (registered.key_id, registered.status) == (provider.key_id, "unverified")
    assert registered.log is not None and registered.sm2_public_key == provider.key.public_key()  # type: ignore[union-attr]
    approved = market.operator.approve_participant(registered.key_id)
    assert approved.status == "active" and approved.log is not None
    assert approved.log.index > registered.log.index
    assert provider.me().status == "active"
    assert market.client().participant(registered.key_id).display_name == "重庆数据有限公司"

    fields = provider.listing_from_file(data, **content_fields(provider))
    assert fields["content_digest"] == sm3_file(data).hex() and fields["row_count"] == 8000
    assert [c["name"] for c in fields["columns"]] == ["stop", "hour", "boardings"]
    draft = provider.create_listing(fields)
    assert draft.state == "draft" and draft.owner == provider.key_id and draft.log is not None
    assert draft.content_digest == fields["content_digest"] and draft.row_count == 8000
    edited = provider.update_listing(draft.id, {**draft.content_fields(), "title": "公交客流"})
    assert edited.title == "公交客流" and edited.state == "draft"

    seen: list[tuple[int, int]] = []
    uploaded = provider.upload_content(draft.id, 1, data, progress=lambda d, t: seen.append((d, t)))
    size = data.stat().st_size
    assert (uploaded.sm3, uploaded.size, uploaded.created) == (draft.content_digest, size, True)
    assert seen[-1] == (size, size) and len(seen) > 1
    assert not provider.upload_content(draft.id, 1, data).created  # the same bytes: 200

    assert provider.submit_listing(draft.id).state == "submitted"
    assert market.operator.review_listing(draft.id).state == "under_review"
    published = market.operator.publish_listing(draft.id)
    assert published.state == "published" and published.published_at is not None
    refused(lambda: market.operator.publish_listing(draft.id), 409, "invalid_state")

    buyer = market.client()
    assert buyer.register("买家", "buyer").status == "active"
    page = buyer.search("公交", category="transport", tag=["bus"], limit=5)
    assert [hit.id for hit in page.items] == [draft.id] and page.total == 1
    assert page.facets is not None and page.facets.category[0].value == "transport"
    assert page.items[0].price_fen == 19_900 and page.next_cursor is None
    assert buyer.search("no such thing").items == ()
    assert buyer.listing(draft.id).state == "published"

    quote = buyer.quote(draft.id)
    assert (quote.amount, quote.buyer_key_id, quote.listing_version) == (19_900, buyer.key_id, 1)
    refused(lambda: buyer.place_order(quote), 402, "insufficient_funds")
    with pytest.raises(InsufficientFundsError):
        buyer.place_order(quote)

    credited = market.operator.deposit(buyer.key_id or "", 50_000, "bank transfer 42")
    assert (credited.available, credited.held) == (50_000, 0) and credited.log is not None
    assert credited.movements[0].kind == "deposit"
    call = buyer._place_order_call(quote, declare(), "order-1", None, None)
    order = buyer._send(call)
    assert order.state == "placed" and order.escrow == 19_900 and order.log is not None
    assert order.account is not None
    assert (order.account.available, order.account.held) == (30_100, 19_900)
    # what a retry after a lost answer sends (same key, same record): the same order
    assert buyer._send(call) == order
    refused(lambda: buyer.place_order(quote), 409, "quote_used")  # a quote buys once
    assert [o.id for o in buyer.orders().items] == [order.id]
    assert [o.id for o in provider.sales().items] == [order.id]
    assert buyer.order(order.id).content_digest == draft.content_digest

    envelope = buyer.request_delivery(order.id)
    assert (envelope.order_id, envelope.size) == (order.id, size)
    assert envelope.content_digest == draft.content_digest and envelope.log is not None
    assert buyer.order(order.id).state == "delivered"
    progress: list[tuple[int, int]] = []
    ciphertext = buyer.download(
        envelope, tmp_path / "boardings.sm4s", progress=lambda d, t: progress.append((d, t))
    )
    assert ciphertext.stat().st_size == envelope.ciphertext_size
    assert progress[-1] == (envelope.ciphertext_size, envelope.ciphertext_size)
    assert not (tmp_path / "boardings.sm4s.part").exists()
    opened = buyer.open_delivery(envelope, ciphertext, tmp_path / "out.csv")
    assert opened.path.read_bytes() == data.read_bytes() and opened.sm3 == draft.content_digest

    accepted = buyer.accept(order.id)
    assert accepted.state == "settled" and accepted.log is not None
    settlement = accepted.settlement
    assert settlement is not None and settlement.log is not None
    assert settlement.amount == 19_900
    assert settlement.platform_fee + sum(settlement.payouts.values()) == 19_900
    earned = provider.account()
    assert earned.available == settlement.payouts[provider.key_id or ""]
    assert [m.kind for m in earned.movements] == ["payout"]
    assert (buyer.account().available, buyer.account().held) == (30_100, 0)
    assert buyer.order(order.id).settlement is not None
    refused(lambda: buyer.accept(order.id), 409, "order_not_open")


def test_refusals_arrive_as_api_errors(market: Market) -> None:
    provider = market.provider()
    buyer = market.buyer()
    listing = provider.create_listing(listing_content(provider.key_id or ""))
    refused(lambda: buyer.publish_listing(listing.id), 403, "role_forbidden")
    refused(lambda: buyer.listing(listing.id), 404, "listing_not_found")  # a draft
    refused(lambda: buyer.quote(str(uuid.uuid4())), 404, "listing_not_found")
    refused(lambda: market.operator.review_listing(listing.id), 409, "invalid_state")
    refused(lambda: buyer.register("again", "buyer"), 409, "already_registered")
    refused(lambda: buyer.order(str(uuid.uuid4())), 404, "order_not_found")
    refused(lambda: buyer.search(sort="relevance"), 422, "invalid_query")
    outsider = market.client()  # never registered
    refused(lambda: outsider.me(), 401, "unknown_key")
    suspended = market.operator.suspend_participant(buyer.key_id or "", "fraud")
    assert suspended.status == "suspended"
    refused(lambda: buyer.account(), 403, "participant_suspended")


def test_a_deposit_retried_with_its_key_credits_once(market: Market) -> None:
    buyer = market.buyer()
    call = market.operator._deposit_call(buyer.key_id or "", 1_000, "wire 7", "dep-7")
    first = market.operator._send(call)
    replayed = market.operator._send(call)  # what a retry after a lost answer sends
    assert replayed.movements == first.movements and replayed.log == first.log
    assert buyer.account().available == 1_000
    other = market.operator._deposit_call(buyer.key_id or "", 1_000, "wire 8", "dep-7")
    refused(lambda: market.operator._send(other), 422, "idempotency_key_reused")


# --------------------------------------------------------------------------- downloads


def _delivered(market: Market, tmp_path: Path, **listing: Any) -> tuple[ExchangeClient, Any]:
    provider = market.provider()
    listed = market.ready_listing(provider, write_dataset(tmp_path / "data.csv"), **listing)
    buyer = market.buyer(deposit=100_000, transport=Recording())
    order = buyer.place_order(buyer.quote(listed.id))
    return buyer, buyer.request_delivery(order.id)


def test_a_download_resumes_from_a_truncated_part(market: Market, tmp_path: Path) -> None:
    buyer, envelope = _delivered(market, tmp_path)
    whole = buyer.download(envelope, tmp_path / "full.sm4s").read_bytes()
    recording = buyer._http._transport
    assert isinstance(recording, Recording)

    cut = len(whole) // 3
    part = tmp_path / "resumed.sm4s.part"
    part.write_bytes(whole[:cut])
    recording.seen.clear()
    resumed = buyer.download(envelope.order_id, tmp_path / "resumed.sm4s")
    assert resumed.read_bytes() == whole and not part.exists()
    [(method, path, headers)] = recording.seen
    assert (method, path, headers["range"]) == ("GET", envelope.download_path, f"bytes={cut}-")

    # a .part already complete: 416 with the size, nothing downloaded again
    part.write_bytes(whole)
    assert buyer.download(envelope, tmp_path / "resumed.sm4s").read_bytes() == whole

    # a .part of another ciphertext (its ETag differs): the server sends it whole
    part.write_bytes(b"\x00" * cut)
    (tmp_path / "resumed.sm4s.part.etag").write_text('"another"')
    recording.seen.clear()
    assert buyer.download(envelope, tmp_path / "resumed.sm4s").read_bytes() == whole
    assert recording.seen[0][2]["if-range"] == '"another"'
    assert not (tmp_path / "resumed.sm4s.part.etag").exists()

    # resume=False ignores what is there
    part.write_bytes(b"junk")
    assert buyer.download(envelope, tmp_path / "x.sm4s", resume=False).read_bytes() == whole


def test_tampered_ciphertext_and_a_wrong_digest_leave_nothing(
    market: Market, tmp_path: Path
) -> None:
    buyer, envelope = _delivered(market, tmp_path)
    ciphertext = buyer.download(envelope, tmp_path / "c.sm4s")
    out = tmp_path / "plain.csv"

    tampered = bytearray(ciphertext.read_bytes())
    tampered[len(tampered) // 2] ^= 0x01
    (tmp_path / "t.sm4s").write_bytes(bytes(tampered))
    with pytest.raises(DecryptionError):
        buyer.open_delivery(envelope, tmp_path / "t.sm4s", out)
    assert not out.exists()

    lying = dataclasses.replace(envelope, content_digest="00" * 32)
    with pytest.raises(DigestMismatchError) as caught:
        buyer.open_delivery(lying, ciphertext, out)
    assert caught.value.actual == envelope.content_digest and not out.exists()

    with pytest.raises(DecryptionError):  # another buyer's key cannot open the envelope
        market.buyer().open_delivery(envelope, ciphertext, out)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("plain")) == []


def test_access_refusals_for_downloads(market: Market, tmp_path: Path) -> None:
    provider = market.provider()
    listed = market.ready_listing(provider, write_dataset(tmp_path / "d.csv", rows=10))
    buyer = market.buyer(deposit=100_000)
    order = buyer.place_order(buyer.quote(listed.id))
    refused(lambda: buyer.download(order.id, tmp_path / "early.sm4s"), 409, "not_delivered")
    assert not (tmp_path / "early.sm4s").exists()
    buyer.request_delivery(order.id)
    revoked = provider.revoke(order.id, "licence breach")
    assert revoked.revoked_at is not None and revoked.revocation_reason == "licence breach"
    assert revoked.refund is not None and revoked.refund.amount == order.amount
    refused(lambda: buyer.download(order.id, tmp_path / "late.sm4s"), 403, "access_revoked")
    refused(lambda: buyer.request_delivery(order.id), 403, "access_revoked")
    refused(lambda: provider.revoke(order.id, "again"), 409, "already_revoked")


# --------------------------------------------------------------------------- lifecycle


def test_dispute_resolution_and_renewal(market: Market, tmp_path: Path) -> None:
    provider = market.provider()
    one_off = market.ready_listing(provider, write_dataset(tmp_path / "a.csv", rows=10))
    buyer = market.buyer(deposit=1_000_000)

    refunded = buyer.place_order(buyer.quote(one_off.id))
    buyer.request_delivery(refunded.id)
    disputed = buyer.dispute(refunded.id, "the rows are not what the sample shows")
    assert disputed.state == "disputed" and disputed.log is not None
    refused(lambda: buyer.accept(refunded.id), 409, "order_not_open")
    resolved = market.operator.resolve_dispute(refunded.id, "refund", "sample mismatch")
    assert resolved.state == "refunded" and resolved.refund is not None
    assert resolved.refund.amount == refunded.amount
    refused(lambda: buyer.request_delivery(refunded.id), 409, "order_closed")

    released = buyer.place_order(buyer.quote(one_off.id))
    buyer.request_delivery(released.id)
    buyer.dispute(released.id, "late")
    settled = market.operator.resolve_dispute(released.id, "release", "delivered in time")
    assert settled.state == "settled" and settled.settlement is not None
    assert settled.settlement.log is not None
    with pytest.raises(ValueError, match="outcome"):
        market.operator.resolve_dispute(released.id, "maybe", "?")

    data = write_dataset(tmp_path / "s.csv", rows=10)
    subscription = market.ready_listing(provider, data, pricing=SUBSCRIPTION)
    first = buyer.place_order(buyer.quote(subscription.id, periods=1))
    assert first.amount == 3_000 and first.access_expires_at is not None
    renewal = buyer.renew(first.id, periods=2)
    assert renewal.renews_order_id == first.id and renewal.amount == 6_000
    assert renewal.access_expires_at is not None
    assert renewal.access_expires_at > first.access_expires_at
    refused(lambda: buyer.renew(first.id, periods=1), 409, "not_renewable")  # renewed already


def test_new_version_and_delisting(market: Market, tmp_path: Path) -> None:
    provider = market.provider()
    listed = market.ready_listing(provider, write_dataset(tmp_path / "v1.csv", rows=10))
    newer = provider.listing_from_file(
        write_dataset(tmp_path / "v2.csv", rows=20), custody="exchange"
    )
    changed = provider.new_version(listed.id, newer)
    assert changed.added_version is not None and changed.added_version.version == 2
    assert changed.version == 2 and changed.content_digest == newer["content_digest"]
    assert provider.upload_content(listed.id, 2, tmp_path / "v2.csv").created
    refused(
        lambda: provider.upload_content(listed.id, 1, tmp_path / "v2.csv"),
        422,
        "content_digest_mismatch",
    )
    delisted = provider.delist(listed.id, "superseded")
    assert delisted.state == "delisted" and delisted.delisting_reason == "superseded"


# --------------------------------------------------------------------------- async twin


@contextmanager
def exchange_app(tmp_path: Path) -> Iterator[tuple[FastAPI, SM2PrivateKey]]:
    operator = SM2PrivateKey.generate()
    with isolated_database(None, tmp_path) as db:
        yield (
            create_app(
                Settings(
                    data_dir=tmp_path / "data",
                    database_url=db.url,
                    sequencer_enabled=False,
                    operator_public_keys=[operator.public_key().to_pem().decode()],
                )
            ),
            operator,
        )


def test_the_async_twin_end_to_end(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "boardings.csv")

    async def scenario(app: FastAPI, operator_key: SM2PrivateKey) -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)

            def client(key: SM2PrivateKey | None = None) -> AsyncExchangeClient:
                key = key or SM2PrivateKey.generate()
                return AsyncExchangeClient("http://exchange.test", key=key, transport=transport)

            async with client(operator_key) as operator, client() as provider, client() as buyer:
                await provider.register("重庆数据有限公司", "provider")
                await operator.approve_participant(provider.key_id or "")
                fields = await provider.listing_from_file(data, **content_fields(provider))
                listing = await provider.create_listing(fields)
                uploaded = await provider.upload_content(listing.id, 1, data)
                assert uploaded.created and uploaded.sm3 == listing.content_digest
                assert (await provider.submit_listing(listing.id)).state == "submitted"
                assert (await operator.review_listing(listing.id)).state == "under_review"
                assert (await operator.publish_listing(listing.id)).state == "published"
                with pytest.raises(APIError) as twice:
                    await operator.publish_listing(listing.id)
                assert (twice.value.status_code, twice.value.code) == (409, "invalid_state")

                await buyer.register("买家", "buyer")
                page = await buyer.search("公交")
                assert [hit.id for hit in page.items] == [listing.id]
                quote = await buyer.quote(listing.id)
                with pytest.raises(InsufficientFundsError):
                    await buyer.place_order(quote)
                await operator.deposit(buyer.key_id or "", 20_000, "bank transfer")
                order = await buyer.place_order(quote)
                assert order.state == "placed" and order.account is not None
                assert [o.id for o in (await buyer.orders()).items] == [order.id]
                assert [o.id for o in (await provider.sales()).items] == [order.id]

                envelope = await buyer.request_delivery(order.id)
                part = tmp_path / "async.sm4s.part"
                whole = await buyer.download(envelope, tmp_path / "full.sm4s")
                part.write_bytes(whole.read_bytes()[:1000])
                resumed = await buyer.download(envelope, tmp_path / "async.sm4s")
                assert resumed.read_bytes() == whole.read_bytes()
                opened = await buyer.open_delivery(envelope, resumed, tmp_path / "out.csv")
                assert opened.path.read_bytes() == data.read_bytes()

                accepted = await buyer.accept(order.id)
                assert accepted.state == "settled" and accepted.settlement is not None
                account = await provider.account()
                assert account.available == accepted.settlement.payouts[provider.key_id or ""]
                assert (await buyer.order(order.id)).state == "settled"

    with exchange_app(tmp_path) as (app, operator_key):
        asyncio.run(scenario(app, operator_key))
