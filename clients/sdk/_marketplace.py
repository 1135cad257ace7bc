"""The marketplace's calls (participants, listings, search, quotes, orders,
accounts, delivery), built once for both clients: each ``_x_call`` returns a
:class:`~clients.sdk._base.Call` that :class:`clients.sdk.ExchangeClient` and
:class:`clients.sdk.AsyncExchangeClient` only send.

A state change is a record the client signs with its own key
(``self.sign(type, payload)``) and posts as ``{"record": signed.to_dict()}``;
the request itself carries the RFC 9421 signature. The answer's ``"log"``
block is checked before it is returned: the promise must be for this
record's leaf hash and signed by the log key (records the exchange signs
itself, ``delivery.issued`` and ``settlement.paid``, get the promise check).
A quote is checked to be signed by the log key and issued to this client.

Money-moving POSTs (deposit, place_order, accept, resolve_dispute, revoke)
carry an ``Idempotency-Key`` (generated per call unless given), so the client
may retry them; see :mod:`clients.sdk._base`.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import httpx

from clients.sdk._base import (
    IDEMPOTENCY_HEADER,
    BaseClient,
    Call,
    _json,
    _parsed,
    _verify_statement,
    error_from_response,
)
from clients.sdk._receive import ReceiveJob
from clients.sdk._transfer import Download, Progress, UploadBody, open_delivery
from clients.sdk.errors import ResponseFormatError, ResponseVerificationError
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
    SearchPage,
)
from clients.sdk.models import Appended
from ledger.computation.offer import ComputationOffer
from ledger.errors import InvalidSignature
from ledger.protocol.delivery import DELIVERY_ISSUED, ProviderDelivery
from ledger.protocol.policy import Declaration
from ledger.records import RecordFormatError, SignedRecord
from ledger.sm2 import SM2PublicKey

__all__ = ["SEARCH_FILTERS", "MarketplaceCalls"]

SEARCH_FILTERS: Final = frozenset(
    {
        "category",
        "classification",
        "pricing_model",
        "min_price",
        "max_price",
        "provider",
        "tag",
        "custody",
        "computation",
        "sort",
        "cursor",
        "limit",
        "facets",
        "facet_limit",
    }
)
"""The query parameters of ``GET /listings/search`` besides ``q``."""

VERSION_FIELDS: Final = ("content_digest", "row_count", "byte_size", "format")
"""What ``listing.version_added`` declares besides the listing id and version number."""

DISPUTE_OUTCOMES: Final = frozenset({"refund", "release"})
ORDER_ROLES: Final = frozenset({"buyer", "provider"})
CUSTODIES: Final = frozenset({"provider", "exchange"})
NOT_INTEGRATED: Final = frozenset({"entry_not_found", "no_checkpoint"})
"""Error codes of a log read whose entry the sequencer has not integrated yet."""
LOG_WAIT: Final = 30.0
"""Seconds ``receive`` waits for a fresh record to be integrated (about one second)."""


class _Logged(Protocol):
    @property
    def log(self) -> Appended | None: ...


L = TypeVar("L", bound=_Logged)


def _idempotency_key(given: str | None) -> str:
    return given if given is not None else secrets.token_urlsafe(24)


def _order_id(order_id: str) -> str:
    if not isinstance(order_id, str) or not order_id:
        raise ValueError("an order id is a non-empty string")
    return order_id


def _query_value(name: str, value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if name == "tag" and not isinstance(value, str):
        return [str(tag) for tag in value]
    return value


def _check_promise(appended: Appended, log_key: SM2PublicKey, what: str) -> None:
    """The exchange's own record (no client record to compare): the promise must be
    for the answer's leaf and index and signed by the log key."""
    promise = appended.signed_promise
    if promise.leaf_hash != appended.leaf_hash_bytes or promise.index != appended.index:
        raise ResponseVerificationError(
            f"{what}: the promise is for leaf {promise.leaf_hash.hex()} at {promise.index}, "
            f"the answer says {appended.leaf_hash} at {appended.index}"
        )
    _verify_statement(promise, log_key, f"{what}: the promise")


class MarketplaceCalls(BaseClient):
    """Call builders and checks of the marketplace API (no I/O but local files)."""

    # ------------------------------------------------------------------ helpers

    def _action(
        self,
        method: str,
        path: str,
        record_type: str,
        payload: Mapping[str, Any],
        parse: Callable[[Any], L],
        *,
        ok: tuple[int, ...] = (200,),
        idempotency_key: str | None = None,
        keyed: bool = False,
        signed_request: bool = True,
    ) -> Call[L]:
        """A signed action: the record, the signed request, the answer's log checked."""
        signed = self.sign(record_type, payload)
        headers = {IDEMPOTENCY_HEADER: _idempotency_key(idempotency_key)} if keyed else {}
        return Call(
            method,
            path,
            _parsed(parse),
            json={"record": signed.to_dict()},
            ok=ok,
            signed=signed_request,
            headers=headers,
            verify=self._record_check(signed),
        )

    def _record_check(self, signed: SignedRecord) -> Callable[[L, SM2PublicKey], L]:
        def check(result: L, log_key: SM2PublicKey) -> L:
            assert result.log is not None  # the parsers require it on writing calls
            self._check_appended(signed, result.log, log_key, f"the {signed.record.type} record")
            settlement = getattr(result, "settlement", None)
            if settlement is not None and settlement.log is not None:
                _check_promise(settlement.log, log_key, "the settlement.paid record")
            return result

        return check

    def _optional_auth(self) -> bool:
        """Sign reads that show more to the signer (drafts to their providers)."""
        return self._auth is not None

    # ------------------------------------------------------------------ participants

    def _register_call(self, display_name: str, role: str) -> Call[Participant]:
        key = self._require_key("registering")
        payload = {
            "display_name": display_name,
            "role": role,
            "public_key": key.public_key().to_pem().decode("ascii"),
        }
        return self._action(
            "POST",
            "/participants",
            "participant.registered",
            payload,
            Participant.from_changed,
            ok=(201,),
            signed_request=False,  # proof of possession is the record's signature
        )

    def _me_call(self) -> Call[Participant]:
        return Call("GET", "/participants/me", _parsed(Participant.from_dict), signed=True)

    def _participant_call(self, key_id: str) -> Call[Participant]:
        return Call("GET", f"/participants/{key_id}", _parsed(Participant.from_dict))

    def _approve_participant_call(self, key_id: str) -> Call[Participant]:
        return self._action(
            "POST",
            f"/participants/{key_id}/approve",
            "participant.approved",
            {"participant": key_id},
            Participant.from_changed,
        )

    def _suspend_participant_call(self, key_id: str, reason: str) -> Call[Participant]:
        return self._action(
            "POST",
            f"/participants/{key_id}/suspend",
            "participant.suspended",
            {"participant": key_id, "reason": reason},
            Participant.from_changed,
        )

    # ------------------------------------------------------------------ listings

    def _create_listing_call(self, fields: Mapping[str, Any]) -> Call[Listing]:
        content = dict(fields)
        listing_id = content.pop("listing_id", None) or str(uuid.uuid4())
        return self._action(
            "POST",
            "/listings",
            "listing.drafted",
            {"listing_id": listing_id, **content},
            Listing.from_changed,
            ok=(201,),
        )

    def _update_listing_call(self, listing_id: str, fields: Mapping[str, Any]) -> Call[Listing]:
        content = {k: v for k, v in fields.items() if k != "listing_id"}
        return self._action(
            "PUT",
            f"/listings/{listing_id}",
            "listing.edited",
            {"listing_id": listing_id, **content},
            Listing.from_changed,
        )

    def _listing_step_call(
        self, listing_id: str, step: str, record_type: str, reason: str | None = None
    ) -> Call[Listing]:
        payload: dict[str, Any] = {"listing_id": listing_id}
        if reason is not None:
            payload["reason"] = reason
        return self._action(
            "POST", f"/listings/{listing_id}/{step}", record_type, payload, Listing.from_changed
        )

    def _submit_listing_call(self, listing_id: str) -> Call[Listing]:
        return self._listing_step_call(listing_id, "submit", "listing.submitted")

    def _review_listing_call(self, listing_id: str) -> Call[Listing]:
        return self._listing_step_call(listing_id, "review", "listing.review_started")

    def _publish_listing_call(self, listing_id: str) -> Call[Listing]:
        return self._listing_step_call(listing_id, "publish", "listing.published")

    def _reject_listing_call(self, listing_id: str, reason: str) -> Call[Listing]:
        return self._listing_step_call(listing_id, "reject", "listing.rejected", reason)

    def _delist_call(self, listing_id: str, reason: str) -> Call[Listing]:
        return self._listing_step_call(listing_id, "delist", "listing.delisted", reason)

    def _new_version_call(
        self, listing_id: str, version: int, fields: Mapping[str, Any]
    ) -> Call[Listing]:
        missing = [name for name in VERSION_FIELDS if name not in fields]
        if missing:
            raise ValueError(f"a new version declares {', '.join(missing)}")
        payload = {"listing_id": listing_id, "version": version}
        payload.update({name: fields[name] for name in VERSION_FIELDS})
        if fields.get("row_root") is not None:
            payload["row_root"] = fields["row_root"]
        if fields.get("policy") is not None:  # (none: the current version's policy)
            payload["policy"] = fields["policy"]
        return self._action(
            "POST",
            f"/listings/{listing_id}/versions",
            "listing.version_added",
            payload,
            Listing.from_changed,
            ok=(201,),
        )

    def _versions_call(self, listing_id: str) -> Call[list[ListingVersion]]:
        def parse(data: Any) -> list[ListingVersion]:
            if not isinstance(data, list):
                raise RecordFormatError("expected a JSON list")
            return [ListingVersion.from_dict(item, f"[{i}]") for i, item in enumerate(data)]

        return Call(
            "GET",
            f"/listings/{listing_id}/versions",
            _parsed(parse),
            signed=self._optional_auth(),
        )

    def _listing_call(self, listing_id: str) -> Call[Listing]:
        return Call(
            "GET",
            f"/listings/{listing_id}",
            _parsed(Listing.from_dict),
            signed=self._optional_auth(),
        )

    def _reference_price_call(self, listing_id: str) -> Call[dict[str, Any]]:
        """``GET /listings/{id}/reference-price`` (docs/pricing.md): the answer as the
        exchange computed it (``ledger.pricing_reference.reference_price``'s dict)."""
        return Call(
            "GET",
            f"/listings/{listing_id}/reference-price",
            _parsed(_json_object),
            signed=self._optional_auth(),
        )

    def _search_call(self, q: str | None, filters: Mapping[str, Any]) -> Call[SearchPage]:
        unknown = sorted(set(filters) - SEARCH_FILTERS)
        if unknown:
            raise TypeError(
                f"unknown search filter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(SEARCH_FILTERS))}"
            )
        params = {k: _query_value(k, v) for k, v in filters.items() if v is not None}
        if q is not None:
            params["q"] = q
        return Call("GET", "/listings/search", _parsed(SearchPage.from_dict), params=params)

    @staticmethod
    def _listing_fields_from_file(
        path: str | Path,
        file_format: str | None,
        sample_rows: int,
        custody: str,
        delivery_window_s: int | None,
        computation: ComputationOffer | None,
        overrides: Mapping[str, Any],
    ) -> dict[str, Any]:
        from clients.datasets import describe_file

        if custody not in CUSTODIES:
            raise ValueError(f"custody is one of {', '.join(sorted(CUSTODIES))}")
        description = describe_file(path, format=file_format, sample_rows=sample_rows)
        fields = {
            **description.to_listing_fields(),
            "custody": custody,
            "row_root": description.row_root,
        }
        if delivery_window_s is not None:
            fields["delivery_window_s"] = int(delivery_window_s)
        if computation is not None:
            fields["computation"] = computation.to_dict()
        return {**fields, **overrides}

    def _upload_content_call(
        self, listing_id: str, version: int, path: str | Path, progress: Progress | None
    ) -> Call[ContentUploaded]:
        body = UploadBody.of_file(path, progress)  # reads the file once (SM3)

        def parse(response: httpx.Response) -> ContentUploaded:
            uploaded = ContentUploaded.from_dict(
                _json(response), created=response.status_code == 201
            )
            if (uploaded.sm3, uploaded.size) != (body.digest.hex(), body.size):
                raise ResponseVerificationError(
                    f"uploaded {body.size} bytes with SM3 {body.digest.hex()}, the exchange "
                    f"stored {uploaded.size} bytes with SM3 {uploaded.sm3}"
                )
            return uploaded

        return Call(
            "PUT",
            f"/listings/{listing_id}/versions/{int(version)}/content",
            parse,
            ok=(200, 201),
            signed=True,
            headers=body.headers(),
            content=body,
        )

    # ------------------------------------------------------------------ quotes and orders

    def _quote_call(self, listing_id: str, terms: Mapping[str, Any]) -> Call[Quote]:
        buyer = self._require_key("quoting").key_id()

        def check(quote: Quote, log_key: SM2PublicKey) -> Quote:
            try:
                quote.verify(log_key)
            except InvalidSignature as exc:
                raise ResponseVerificationError(f"the quote is not the exchange's: {exc}") from None
            if quote.buyer_key_id != buyer or quote.listing_id != listing_id:
                raise ResponseVerificationError(
                    f"asked for a quote of {listing_id} for {buyer}, got one of "
                    f"{quote.listing_id} for {quote.buyer_key_id}"
                )
            return quote

        return Call(
            "POST",
            f"/listings/{listing_id}/quotes",
            _parsed(Quote.from_issued),
            json={"terms": {k: v for k, v in terms.items() if v is not None}},
            ok=(201,),
            signed=True,
            verify=check,
        )

    def _place_order_call(
        self,
        quote: Quote | Mapping[str, Any],
        declaration: Declaration,
        idempotency_key: str | None,
        renews: str | None,
        order_id: str | None,
    ) -> Call[Order]:
        payload: dict[str, Any] = {
            "order_id": order_id or str(uuid.uuid4()),
            "quote": quote.to_dict() if isinstance(quote, Quote) else dict(quote),
            "declaration": declaration.to_dict(),
        }
        if renews is not None:
            payload["renews"] = _order_id(renews)
        return self._action(
            "POST",
            "/orders",
            "order.placed",
            payload,
            Order.from_changed,
            ok=(201,),
            idempotency_key=idempotency_key,
            keyed=True,
        )

    def _order_call(self, order_id: str) -> Call[Order]:
        path = f"/orders/{_order_id(order_id)}"
        return Call("GET", path, _parsed(Order.from_dict), signed=True)

    def _orders_call(self, role: str, limit: int, offset: int) -> Call[OrderPage]:
        if role not in ORDER_ROLES:
            raise ValueError(f"role is one of {', '.join(sorted(ORDER_ROLES))}")
        params = {"role": role, "limit": int(limit), "offset": int(offset)}
        return Call("GET", "/orders", _parsed(OrderPage.from_dict), params=params, signed=True)

    def _order_action_call(
        self,
        order_id: str,
        step: str,
        record_type: str,
        extra: Mapping[str, Any],
        *,
        keyed: bool,
        idempotency_key: str | None = None,
    ) -> Call[Order]:
        order_id = _order_id(order_id)
        return self._action(
            "POST",
            f"/orders/{order_id}/{step}",
            record_type,
            {"order_id": order_id, **extra},
            Order.from_changed,
            idempotency_key=idempotency_key,
            keyed=keyed,
        )

    def _accept_call(self, order_id: str, idempotency_key: str | None) -> Call[Order]:
        return self._order_action_call(
            order_id, "accept", "order.accepted", {}, keyed=True, idempotency_key=idempotency_key
        )

    def _dispute_call(
        self, order_id: str, reason: str, evidence: Mapping[str, Any] | None
    ) -> Call[Order]:
        extra: dict[str, Any] = {"reason": reason}
        if evidence is not None:
            extra["evidence"] = dict(evidence)
        return self._order_action_call(order_id, "dispute", "order.disputed", extra, keyed=False)

    def _resolve_dispute_call(
        self, order_id: str, outcome: str, note: str, idempotency_key: str | None
    ) -> Call[Order]:
        if outcome not in DISPUTE_OUTCOMES:
            raise ValueError(f"outcome is one of {', '.join(sorted(DISPUTE_OUTCOMES))}")
        return self._order_action_call(
            order_id,
            "resolve",
            "dispute.resolved",
            {"outcome": outcome, "note": note},
            keyed=True,
            idempotency_key=idempotency_key,
        )

    def _revoke_call(self, order_id: str, reason: str, idempotency_key: str | None) -> Call[Order]:
        return self._order_action_call(
            order_id,
            "revoke",
            "access.revoked",
            {"reason": reason},
            keyed=True,
            idempotency_key=idempotency_key,
        )

    # ------------------------------------------------------------------ accounts

    def _account_call(self, key_id: str | None, limit: int) -> Call[Account]:
        path = "/accounts/me" if key_id is None else f"/accounts/{key_id}"
        params = {"limit": int(limit)}
        return Call("GET", path, _parsed(Account.from_view), params=params, signed=True)

    def _deposit_call(
        self, key_id: str, amount_fen: int, reference: str, idempotency_key: str | None
    ) -> Call[Account]:
        payload = {"participant": key_id, "amount": amount_fen, "reference": reference}
        return self._action(
            "POST",
            f"/accounts/{key_id}/deposits",
            "deposit.credited",
            payload,
            Account.from_deposit,
            ok=(201,),
            idempotency_key=idempotency_key,
            keyed=True,
        )

    # ------------------------------------------------------------------ cross-border

    def _assess_call(
        self,
        listing_id: str,
        buyer: str,
        approved: bool,
        reference: str,
        valid_until: int | None,
    ) -> Call[CrossBorderAssessment]:
        payload = {
            "listing_id": listing_id,
            "buyer": buyer,
            "approved": approved,
            "reference": reference,
            "valid_until": valid_until,
        }
        return self._action(
            "POST",
            "/crossborder-assessments",
            "crossborder.assessed",
            payload,
            CrossBorderAssessment.from_recorded,
            ok=(201,),
        )

    def _assessments_call(
        self, listing_id: str | None, buyer: str | None, limit: int, offset: int
    ) -> Call[list[CrossBorderAssessment]]:
        params: dict[str, Any] = {"limit": int(limit), "offset": int(offset)}
        if listing_id is not None:
            params["listing_id"] = listing_id
        if buyer is not None:
            params["buyer"] = buyer
        return Call(
            "GET",
            "/crossborder-assessments",
            _parsed(CrossBorderAssessment.page),
            params=params,
            signed=True,
        )

    # ------------------------------------------------------------------ delivery

    def _request_delivery_call(self, order_id: str) -> Call[DeliveryEnvelope]:
        order_id = _order_id(order_id)

        def check(delivered: DeliveryEnvelope, log_key: SM2PublicKey) -> DeliveryEnvelope:
            if delivered.order_id != order_id:
                raise ResponseVerificationError(
                    f"asked for the delivery of order {order_id}, got {delivered.order_id}'s"
                )
            assert delivered.log is not None  # required by the parser
            _check_promise(delivered.log, log_key, "the delivery.issued record")
            return delivered

        return Call(
            "POST",
            f"/orders/{order_id}/delivery",
            _parsed(DeliveryEnvelope.from_dict),
            json={},
            signed=True,
            verify=check,
        )

    def _download_job(
        self,
        order: str | DeliveryEnvelope,
        dest_path: str | Path,
        progress: Progress | None,
        resume: bool,
        expected_size: int | None = None,
    ) -> tuple[Download, Call[None]]:
        """The download's state and a stand-in call (for its signature and errors)."""
        expected: int | None
        if isinstance(order, DeliveryEnvelope):
            order_id, expected = order.order_id, order.ciphertext_size
        else:
            order_id, expected = _order_id(order), expected_size
        policy = self.retries
        job = Download(
            order_id,
            dest_path,
            progress=progress,
            resume=resume,
            expected_size=expected,
            max_retries=policy.max_retries,
            backoff=policy.delay,
            statuses=policy.statuses,
            transport_error=lambda exc: self._transport_error(call, exc),
            refusal=error_from_response,
        )
        call: Call[None] = Call("GET", job.path, lambda _response: None, signed=True)
        return job, call

    def _open_delivery(
        self,
        envelope: DeliveryEnvelope,
        ciphertext_path: str | Path,
        out_path: str | Path,
        progress: Callable[[int], None] | None = None,
    ) -> DecryptedFile:
        key = self._require_key("opening a delivery")
        return open_delivery(key, envelope, ciphertext_path, out_path, progress)

    # ------------------------------------------------------------------ provider-held delivery

    def _upload_deliverable_call(
        self, order_id: str, path: str | Path, progress: Progress | None
    ) -> Call[DeliverableUploaded]:
        order_id = _order_id(order_id)
        body = UploadBody.of_file(path, progress)  # reads the file once (SM3)

        def parse(response: httpx.Response) -> DeliverableUploaded:
            uploaded = DeliverableUploaded.from_dict(_json(response))
            stored = (uploaded.order_id, uploaded.ciphertext_sm3, uploaded.ciphertext_size)
            if stored != (order_id, body.digest.hex(), body.size):
                raise ResponseVerificationError(
                    f"uploaded {body.size} bytes with SM3 {body.digest.hex()} for order "
                    f"{order_id}, the exchange stored {uploaded.ciphertext_size} bytes with "
                    f"SM3 {uploaded.ciphertext_sm3} for order {uploaded.order_id}"
                )
            return uploaded

        return Call(
            "PUT",
            f"/orders/{order_id}/deliverable",
            parse,
            signed=True,
            headers=body.headers(),
            content=body,
        )

    def _issue_delivery_call(
        self, order_id: str, delivery: ProviderDelivery, idempotency_key: str | None
    ) -> Call[Order]:
        order_id = _order_id(order_id)
        if delivery.order_id != order_id:
            raise ValueError(f"the delivery is for order {delivery.order_id}, not {order_id}")
        return self._action(
            "POST",
            f"/orders/{order_id}/deliverable",
            DELIVERY_ISSUED,
            delivery.to_dict(),
            Order.from_changed,
            ok=(201,),
            idempotency_key=idempotency_key,
            keyed=True,
        )

    def _delivery_call(self, order_id: str) -> Call[Delivery]:
        path = f"/orders/{_order_id(order_id)}/delivery"
        return Call("GET", path, _parsed(Delivery.from_dict), signed=True)

    def _receive_job(self, order: Order, listing: Listing, out_path: str | Path) -> ReceiveJob:
        return ReceiveJob(self._require_key("receiving a delivery"), order, listing, out_path)

    @staticmethod
    def _version_of(versions: list[ListingVersion], order: Order) -> ListingVersion:
        for version in versions:
            if version.version == order.version:
                return version
        raise ResponseVerificationError(
            f"listing {order.listing_id} shows no version {order.version} (order {order.id})"
        )


def _json_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ResponseFormatError(f"expected a JSON object, got {type(data).__name__}")
    return data
