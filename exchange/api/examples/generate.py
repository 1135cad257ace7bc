"""Write ``examples.json``: the OpenAPI examples, as one consistent story.

Run ``python -m exchange.api.examples.generate`` after a payload or response shape
changes (``tests/exchange/test_openapi.py`` fails until the examples fit again).

The story: a provider (with a co-provider holding 30 %) registers, is approved,
drafts, edits, submits and publishes a listing of Chongqing bus-stop ridership,
priced in tiers; a buyer is credited a deposit, quotes, orders, receives the
envelope, accepts (the exchange settles with a 5 % platform fee); a second order
is disputed and refunded; another listing is rejected; a version is added; a
participant is suspended; access to the first order is revoked; the listing is
delisted. Every request record is signed by its actor's key, every response's
``log`` block carries the index, leaf hash and promise that record got in a
log kept here (promises, checkpoints, proofs and the receipt are real).

Keys are *documentation keys*: derived from fixed labels (:func:`doc_key`), so
their ids stay the same across runs, and so their private halves are public by
construction: never configure one as an operator or trust it anywhere. SM2
signatures are randomised, so every run rewrites them.
"""

from __future__ import annotations

import base64
import datetime
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exchange.events.kinds import event_type_of
from exchange.listings.schemas import Declarations
from exchange.orders.settle import REMAINDER_RULE
from exchange.pricing import parse_pricing, price
from exchange.quotes import CURRENCY, Quote, QuoteTerms
from exchange.settlement import PLATFORM, split
from ledger.bundle import AnchorRef, Bundle, InclusionProof
from ledger.checkpoint import Checkpoint, Promise, sign_checkpoint, sign_promises
from ledger.merkle import consistency_proof, inclusion_proof, root_from_leaf_hashes
from ledger.records import SignedRecord, sign_record
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import sm3
from ledger.sm4 import DEFAULT_CHUNK_SIZE, STREAM_HEADER_SIZE, TAG_SIZE

OUTPUT = Path(__file__).with_name("examples.json")

_SM2_ORDER = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
_SM2_OID = bytes.fromhex("06082a811ccf5501822d")  # 1.2.156.10197.1.301
_CST = datetime.timezone(datetime.timedelta(hours=8))
_MINUTE = 60_000
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR


def doc_key(label: str) -> SM2PrivateKey:
    """A documentation key: the SM2 scalar is SM3(label) reduced into [1, n - 2]."""
    scalar = int.from_bytes(sm3(f"shancheng-docs/{label}".encode()), "big") % (_SM2_ORDER - 2) + 1

    def tlv(tag: int, body: bytes) -> bytes:
        return bytes([tag, len(body)]) + body

    der = tlv(
        0x30,
        tlv(0x02, b"\x01") + tlv(0x04, scalar.to_bytes(32, "big")) + tlv(0xA0, _SM2_OID),
    )
    pem = (
        b"-----BEGIN EC PRIVATE KEY-----\n"
        + base64.encodebytes(der)
        + b"-----END EC PRIVATE KEY-----\n"
    )
    return SM2PrivateKey.from_pem(pem)


def at(day: int, hour: int, minute: int = 0, second: int = 0, ms: int = 0) -> int:
    """Milliseconds since the epoch of 2026-03-<day> hour:minute (China Standard Time)."""
    moment = datetime.datetime(2026, 3, day, hour, minute, second, tzinfo=_CST)
    return int(moment.timestamp()) * 1000 + ms


def uuid_of(label: str) -> str:
    """A UUID (version 4 layout) derived from ``label``: stable across runs."""
    raw = bytearray(sm3(f"shancheng-docs/uuid/{label}".encode())[:16])
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def digest_of(label: str) -> str:
    return sm3(f"shancheng-docs/{label}".encode()).hex()


def ciphertext_size(plaintext: int) -> int:
    """Bytes of ledger.sm4.encrypt_stream output (header, data, a tag per chunk)."""
    chunks = max(1, -(-plaintext // DEFAULT_CHUNK_SIZE))
    return STREAM_HEADER_SIZE + plaintext + chunks * TAG_SIZE


class DocLog:
    """The story's log: indexes, leaf hashes and promises of the records appended."""

    def __init__(self, key: SM2PrivateKey) -> None:
        self.key = key
        self.leaves: list[bytes] = []
        self.records: list[SignedRecord] = []
        self.promises: list[dict[str, Any]] = []

    def append(self, records: Sequence[SignedRecord], timestamp: int) -> list[dict[str, Any]]:
        """Append ``records`` as one batch; their ``Appended`` JSON (index, leaf, promise)."""
        first = len(self.leaves)
        hashes = [record.leaf_hash() for record in records]
        promises = sign_promises(self.key, first, hashes, timestamp)
        out = []
        for record, leaf, promise in zip(records, hashes, promises, strict=True):
            self.records.append(record)
            self.leaves.append(leaf)
            body = promise.to_dict()
            self.promises.append(body)
            out.append({"index": promise.index, "leaf_hash": leaf.hex(), "promise": body})
        return out

    def checkpoint(self, tree_size: int, timestamp: int) -> Checkpoint:
        root = root_from_leaf_hashes(self.leaves[:tree_size])
        return sign_checkpoint(self.key, tree_size, root, timestamp)

    def inclusion(self, index: int, tree_size: int) -> list[bytes]:
        return inclusion_proof(index, self.leaves[:tree_size])

    def consistency(self, first: int, second: int) -> list[bytes]:
        return consistency_proof(first, second, self.leaves[:second])


class Story:
    """Builds the requests and responses; see the module docstring."""

    def __init__(self) -> None:
        self.provider = doc_key("provider")
        self.co_provider = doc_key("co-provider")
        self.buyer = doc_key("buyer")
        self.broker = doc_key("broker")
        self.operator = doc_key("operator")
        self.exchange = doc_key("exchange")
        self.log = DocLog(self.exchange)
        self.requests: dict[str, Any] = {}
        self.responses: dict[str, Any] = {}
        self.listing_id = uuid_of("listing/bus-ridership")
        self.rejected_id = uuid_of("listing/taxi-trips")
        self.order_id = uuid_of("order/1")
        self.disputed_order_id = uuid_of("order/2")
        self.webhook_id = uuid_of("webhook/1")
        self.fee_bp = 500
        self.names = {
            self.provider.key_id(): "重庆交通数据科技有限公司",
            self.co_provider.key_id(): "两江新区大数据中心",
            self.buyer.key_id(): "渝新物流研究院",
            self.broker.key_id(): "某数据经纪有限公司",
        }
        self.roles = {
            self.provider.key_id(): "provider",
            self.co_provider.key_id(): "provider",
            self.buyer.key_id(): "buyer",
            self.broker.key_id(): "buyer",
        }
        self.registered_at: dict[str, int] = {}

    # ------------------------------------------------------------------ helpers

    def signed(
        self, key: SM2PrivateKey, record_type: str, payload: dict[str, Any], timestamp: int
    ) -> SignedRecord:
        return sign_record(key, record_type, payload, timestamp=timestamp)

    def act(
        self,
        name: str,
        key: SM2PrivateKey,
        record_type: str,
        payload: dict[str, Any],
        timestamp: int,
    ) -> tuple[SignedRecord, dict[str, Any]]:
        """A client-signed action: store its request body; log it; its ``Appended``."""
        record = self.signed(key, record_type, payload, timestamp)
        self.requests[name] = {"record": record.to_dict()}
        [appended] = self.log.append([record], timestamp + 37)
        return record, appended

    def participant(self, key: SM2PrivateKey, status: str) -> dict[str, Any]:
        key_id = key.key_id()
        return {
            "key_id": key_id,
            "display_name": self.names[key_id],
            "role": self.roles[key_id],
            "status": status,
            "public_key": key.public_key().to_pem().decode("ascii"),
            "registered_at": self.registered_at[key_id],
        }

    # ------------------------------------------------------------------ content

    def listing_content(self) -> dict[str, Any]:
        rows = 6_412 * 365
        return {
            "title": "重庆主城区公交站点日客流 2025",
            "description": "主城九区 6,412 个公交站点 2025 年逐日上下车人次，由公交 IC 卡与"
            "移动支付刷卡记录汇总而成，不含任何个人标识。Daily boardings and alightings "
            "per bus stop in Chongqing's nine central districts, aggregated from fare-card "
            "and mobile-payment taps; no personal identifiers.",
            "category": "transport",
            "tags": ["公交", "客流", "chongqing", "mobility"],
            "providers": [
                {"key_id": self.provider.key_id(), "share_bps": 7_000},
                {"key_id": self.co_provider.key_id(), "share_bps": 3_000},
            ],
            "columns": [
                {"name": "stop_id", "type": "string"},
                {"name": "stop_name", "type": "string"},
                {"name": "district", "type": "string"},
                {"name": "date", "type": "date"},
                {"name": "boardings", "type": "integer"},
                {"name": "alightings", "type": "integer"},
            ],
            "sample_rows": [
                {
                    "stop_id": "YZ0412",
                    "stop_name": "解放碑",
                    "district": "渝中区",
                    "date": "2025-03-14",
                    "boardings": 18_342,
                    "alightings": 17_906,
                },
                {
                    "stop_id": "JB1187",
                    "stop_name": "观音桥",
                    "district": "江北区",
                    "date": "2025-03-14",
                    "boardings": 15_208,
                    "alightings": 15_871,
                },
            ],
            "row_count": rows,
            "byte_size": 131_061_280,
            "content_digest": digest_of("dataset/bus-ridership/v1"),
            "format": "csv",
            "update_frequency": "monthly",
            "licence": "山城数据标准许可 v1 (Shancheng standard data licence v1)",
            "usage_terms": "仅限交通规划与学术研究；不得尝试重新识别个人；不得转售原始数据。"
            "Transport planning and research only; no re-identification; no resale.",
            "pricing": {
                "model": "tiers",
                "tiers": [
                    {"up_to_rows": 1_000_000, "price_per_1000_rows": 50},
                    {"up_to_rows": None, "price_per_1000_rows": 20},
                ],
            },
            "declarations": {
                "classification": "一般",
                "personal_information": False,
                "source_legality": "由重庆市公交集团依据数据共享协议（渝交数〔2025〕17号）提供，"
                "已汇总脱敏。Supplied by the city bus group under data-sharing agreement "
                "2025-17, aggregated.",
                "permitted_purposes": ["交通规划", "学术研究"],
            },
        }

    def listing_public(
        self,
        listing_id: str,
        content: dict[str, Any],
        state: str,
        *,
        created_at: int,
        updated_at: int,
        published_at: int | None = None,
        version: int = 1,
        rejection_reason: str | None = None,
        delisting_reason: str | None = None,
    ) -> dict[str, Any]:
        return {
            "id": listing_id,
            "state": state,
            "owner": self.provider.key_id(),
            **{k: v for k, v in content.items() if k != "declarations"},
            "declarations": Declarations.model_validate(content["declarations"]).model_dump(),
            "version": version,
            "rejection_reason": rejection_reason,
            "delisting_reason": delisting_reason,
            "created_at": created_at,
            "updated_at": updated_at,
            "published_at": published_at,
        }

    # ------------------------------------------------------------------ the story

    def build(self) -> dict[str, Any]:
        self.participants()
        content = self.listings()
        self.money_and_orders(content)
        self.other_branches(content)
        self.reads(content)
        self.events_and_webhooks()
        return {
            "comment": "Generated by python -m exchange.api.examples.generate; do not edit. "
            "Documentation keys only: their private keys are derivable by design.",
            "ids": {
                "provider": self.provider.key_id(),
                "co_provider": self.co_provider.key_id(),
                "buyer": self.buyer.key_id(),
                "broker": self.broker.key_id(),
                "operator": self.operator.key_id(),
                "exchange": self.exchange.key_id(),
                "listing_id": self.listing_id,
                "rejected_listing_id": self.rejected_id,
                "order_id": self.order_id,
                "disputed_order_id": self.disputed_order_id,
                "webhook_id": self.webhook_id,
            },
            "keys": {
                key.key_id(): key.public_key().to_pem().decode("ascii")
                for key in (
                    self.provider,
                    self.co_provider,
                    self.buyer,
                    self.broker,
                    self.operator,
                    self.exchange,
                )
            },
            "requests": dict(sorted(self.requests.items())),
            "responses": dict(sorted(self.responses.items())),
        }

    def register(self, name: str, key: SM2PrivateKey, timestamp: int) -> dict[str, Any]:
        key_id = key.key_id()
        payload = {
            "display_name": self.names[key_id],
            "role": self.roles[key_id],
            "public_key": key.public_key().to_pem().decode("ascii"),
        }
        _, appended = self.act(name, key, "participant.registered", payload, timestamp)
        self.registered_at[key_id] = timestamp + 37
        return appended

    def participants(self) -> None:
        appended = self.register("register", self.provider, at(2, 9, 0))
        self.responses["register"] = {
            "participant": self.participant(self.provider, "unverified"),
            "log": appended,
        }
        self.register("register_co_provider", self.co_provider, at(2, 9, 2))
        self.register("register_buyer", self.buyer, at(2, 9, 5))
        del self.requests["register_co_provider"], self.requests["register_buyer"]
        _, appended = self.act(
            "approve",
            self.operator,
            "participant.approved",
            {"participant": self.provider.key_id()},
            at(2, 9, 30),
        )
        self.responses["approve"] = {
            "participant": self.participant(self.provider, "active"),
            "log": appended,
        }
        self.act(
            "approve_co_provider",
            self.operator,
            "participant.approved",
            {"participant": self.co_provider.key_id()},
            at(2, 9, 31),
        )
        del self.requests["approve_co_provider"]
        self.responses["me"] = self.participant(self.provider, "active")
        self.responses["get_participant"] = self.participant(self.provider, "active")

    def listings(self) -> dict[str, Any]:
        lid = self.listing_id
        drafted = at(2, 10, 0)
        first = self.listing_content()
        first["pricing"] = {"model": "fixed", "price": 80_000}
        _, appended = self.act(
            "create_listing",
            self.provider,
            "listing.drafted",
            {"listing_id": lid, **first},
            drafted,
        )
        self.responses["create_listing"] = {
            "listing": self.listing_public(
                lid, first, "draft", created_at=drafted + 37, updated_at=drafted + 37
            ),
            "log": appended,
        }
        content = self.listing_content()  # edited: tiered pricing instead of a fixed price
        edited = at(2, 10, 20)
        _, appended = self.act(
            "edit_listing", self.provider, "listing.edited", {"listing_id": lid, **content}, edited
        )
        self.responses["edit_listing"] = {
            "listing": self.listing_public(
                lid, content, "draft", created_at=drafted + 37, updated_at=edited + 37
            ),
            "log": appended,
        }
        steps = [
            ("submit_listing", self.provider, "listing.submitted", "submitted", at(2, 10, 25)),
            ("start_review", self.operator, "listing.review_started", "under_review", at(2, 11)),
            ("publish_listing", self.operator, "listing.published", "published", at(2, 14)),
        ]
        for name, key, record_type, state, timestamp in steps:
            _, appended = self.act(name, key, record_type, {"listing_id": lid}, timestamp)
            published = timestamp + 37 if state == "published" else None
            self.responses[name] = {
                "listing": self.listing_public(
                    lid,
                    content,
                    state,
                    created_at=drafted + 37,
                    updated_at=timestamp + 37,
                    published_at=published,
                ),
                "log": appended,
            }
        self.published_at = at(2, 14) + 37
        self.created_at = drafted + 37
        self.responses["upload_content"] = {
            "listing_id": lid,
            "version": 1,
            "sm3": content["content_digest"],
            "size": content["byte_size"],
        }
        return content

    def quote(self, quote_id_label: str, rows: int, content: dict[str, Any], now: int) -> Quote:
        amount = price(parse_pricing(content["pricing"]), rows=rows, periods=None)
        fields: dict[str, Any] = {
            "quote_id": sm3(f"shancheng-docs/quote/{quote_id_label}".encode())[:16].hex(),
            "listing_id": self.listing_id,
            "listing_version": 1,
            "content_digest": content["content_digest"],
            "buyer_key_id": self.buyer.key_id(),
            "terms": QuoteTerms(rows=rows, periods=None, licence=content["licence"]),
            "amount": amount,
            "currency": CURRENCY,
            "issued_at": now,
            "expires_at": now + 15 * _MINUTE,
            "log_key_id": self.exchange.key_id(),
        }
        unsigned = Quote(**fields, signature=b"\x00")
        return Quote(**fields, signature=self.exchange.sign(unsigned.signed_bytes()))

    def order_public(
        self, order_id: str, quote: Quote, state: str, created: int, updated: int, **more: Any
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": order_id,
            "buyer": self.buyer.key_id(),
            "listing_id": self.listing_id,
            "version": 1,
            "content_digest": quote.content_digest,
            "quote_id": quote.quote_id,
            "terms": quote.terms.to_dict(),
            "amount": quote.amount,
            "escrow": quote.amount,
            "state": state,
            "created_at": created,
            "updated_at": updated,
            "acceptance_deadline": None,
            "access_expires_at": None,
            "placed_leaf_hash": "",
            "delivered_at": None,
            "revoked_at": None,
            "revocation_reason": None,
            "renews_order_id": None,
            "settlement": None,
        }
        body.update(more)
        return body

    def deliver(self, order: dict[str, Any], now: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """The exchange's delivery.issued record and the DeliveryIssued response."""
        content_key = sm3(f"shancheng-docs/content-key/{order['id']}".encode())[:16]
        envelope = self.buyer.public_key().encrypt(content_key)
        payload = {
            "order_id": order["id"],
            "buyer": self.buyer.key_id(),
            "listing_id": self.listing_id,
            "version": 1,
            "content_digest": order["content_digest"],
            "envelope_sm3": sm3(envelope).hex(),
        }
        record = self.signed(self.exchange, "delivery.issued", payload, now)
        [appended] = self.log.append([record], now + 2)
        size = self.listing_content()["byte_size"]
        return appended, {
            "order_id": order["id"],
            "listing_id": self.listing_id,
            "version": 1,
            "content_digest": order["content_digest"],
            "size": size,
            "ciphertext_size": ciphertext_size(size),
            "envelope": base64.b64encode(envelope).decode("ascii"),
            "download_path": f"/orders/{order['id']}/content",
            "log": appended,
        }

    def money_and_orders(self, content: dict[str, Any]) -> None:
        buyer_id = self.buyer.key_id()
        credited = at(3, 9, 0)
        _, appended = self.act(
            "credit_deposit",
            self.operator,
            "deposit.credited",
            {
                "participant": buyer_id,
                "amount": 200_000,
                "reference": "中国银行转账 流水号 2026030309001842",
            },
            credited,
        )
        self.deposit_movement = {
            "id": 1,
            "kind": "deposit",
            "amount": 200_000,
            "available_delta": 200_000,
            "held_delta": 0,
            "order_id": None,
            "reference": "中国银行转账 流水号 2026030309001842",
            "leaf_hash": appended["leaf_hash"],
            "created_at": credited + 37,
        }
        self.responses["credit_deposit"] = {
            "account": {"key_id": buyer_id, "available": 200_000, "held": 0},
            "movement": self.deposit_movement,
            "log": appended,
        }

        rows = content["row_count"]
        self.requests["quote_listing"] = {"terms": {"rows": rows}}
        quote = self.quote("1", rows, content, at(3, 9, 8))
        self.responses["quote_listing"] = {"quote": quote.to_dict()}
        placed = at(3, 9, 10)
        _, appended = self.act(
            "place_order",
            self.buyer,
            "order.placed",
            {"order_id": self.order_id, "quote": quote.to_dict()},
            placed,
        )
        self.placed_index = appended["index"]
        amount = quote.amount
        order = self.order_public(
            self.order_id,
            quote,
            "placed",
            placed + 37,
            placed + 37,
            placed_leaf_hash=appended["leaf_hash"],
        )
        self.hold_movement = {
            "id": 2,
            "kind": "escrow_hold",
            "amount": amount,
            "available_delta": -amount,
            "held_delta": amount,
            "order_id": self.order_id,
            "reference": f"order {self.order_id}",
            "leaf_hash": appended["leaf_hash"],
            "created_at": placed + 37,
        }
        self.responses["place_order"] = {
            "order": order,
            "account": {"key_id": buyer_id, "available": 200_000 - amount, "held": amount},
            "log": appended,
        }

        delivered = at(3, 9, 12)
        self.requests["request_delivery"] = {}
        _, self.responses["request_delivery"] = self.deliver(order, delivered)
        deadline = delivered + 2 + 7 * _DAY
        order = {
            **order,
            "state": "delivered",
            "delivered_at": delivered + 2,
            "acceptance_deadline": deadline,
            "updated_at": delivered + 2,
        }

        accepted = at(3, 15, 0)
        record = self.signed(self.buyer, "order.accepted", {"order_id": self.order_id}, accepted)
        self.requests["accept_order"] = {"record": record.to_dict()}
        shares = {p["key_id"]: p["share_bps"] for p in content["providers"]}
        parts = split(amount, shares, self.fee_bp)
        fee = parts.pop(PLATFORM)
        payouts = dict(sorted(parts.items()))
        settlement_payload = {
            "order_id": self.order_id,
            "amount": amount,
            "platform_fee": fee,
            "payouts": payouts,
            "remainder_rule": REMAINDER_RULE,
        }
        paid = self.signed(self.exchange, "settlement.paid", settlement_payload, accepted + 31)
        accept_log, settle_log = self.log.append([record, paid], accepted + 37)
        self.settlement: dict[str, Any] = {
            "amount": amount,
            "platform_fee": fee,
            "payouts": payouts,
        }
        self.settled_order = {
            **order,
            "state": "settled",
            "escrow": 0,
            "updated_at": accepted + 31,
            "settlement": self.settlement,
        }
        self.responses["accept_order"] = {
            "order": self.settled_order,
            "log": accept_log,
            "settlement": {**self.settlement, "remainder_rule": REMAINDER_RULE, "log": settle_log},
            "refund": None,
        }
        self.release_movement = {
            "id": 3,
            "kind": "escrow_release",
            "amount": amount,
            "available_delta": 0,
            "held_delta": -amount,
            "order_id": self.order_id,
            "reference": f"settlement of order {self.order_id}",
            "leaf_hash": settle_log["leaf_hash"],
            "created_at": accepted + 31,
        }
        self.payouts_at = accepted + 31
        self.settle_leaf = settle_log["leaf_hash"]

        # a second order, disputed and refunded
        rows2 = 1_000_000
        quote2 = self.quote("2", rows2, content, at(4, 10, 0))
        placed2 = at(4, 10, 2)
        record2 = self.signed(
            self.buyer,
            "order.placed",
            {"order_id": self.disputed_order_id, "quote": quote2.to_dict()},
            placed2,
        )
        [placed_log2] = self.log.append([record2], placed2 + 37)
        order2 = self.order_public(
            self.disputed_order_id,
            quote2,
            "placed",
            placed2 + 37,
            placed2 + 37,
            placed_leaf_hash=placed_log2["leaf_hash"],
        )
        delivered2 = at(4, 10, 5)
        self.deliver(order2, delivered2)
        order2.update(
            state="delivered",
            delivered_at=delivered2 + 2,
            acceptance_deadline=delivered2 + 2 + 7 * _DAY,
        )
        disputed = at(5, 16, 40)
        _, appended = self.act(
            "dispute_order",
            self.buyer,
            "order.disputed",
            {
                "order_id": self.disputed_order_id,
                "reason": "交付文件缺少 2025 年 12 月的全部记录，行数与登记的不符。"
                "The delivered file lacks every December 2025 row.",
            },
            disputed,
        )
        order2.update(state="disputed", updated_at=disputed + 37)
        self.responses["dispute_order"] = {
            "order": dict(order2),
            "log": appended,
            "settlement": None,
            "refund": None,
        }
        resolved = at(6, 11, 0)
        _, appended = self.act(
            "resolve_dispute",
            self.operator,
            "dispute.resolved",
            {
                "order_id": self.disputed_order_id,
                "outcome": "refund",
                "note": "经核查，提供方上传的版本确缺 12 月数据；全额退款。"
                "Checked: the uploaded version lacks December; full refund.",
            },
            resolved,
        )
        order2.update(state="refunded", escrow=0, updated_at=resolved + 37)
        self.responses["resolve_dispute"] = {
            "order": order2,
            "log": appended,
            "settlement": None,
            "refund": {"amount": quote2.amount, "from_escrow": quote2.amount, "clawbacks": {}},
        }

    def other_branches(self, content: dict[str, Any]) -> None:
        # a second listing, rejected after review
        rid = self.rejected_id
        other = {
            **content,
            "title": "重庆主城区出租车行程 2025",
            "description": "出租车与网约车逐笔行程的起讫点网格、时长与里程。Origin and "
            "destination grid cells, duration and distance of every taxi trip.",
            "tags": ["出租车", "chongqing", "mobility"],
            "content_digest": digest_of("dataset/taxi-trips/v1"),
            "declarations": {
                **content["declarations"],
                "source_legality": "平台运营数据。Platform operating data.",
            },
        }
        drafted = at(6, 9, 0)
        for record_type, key, minute in (
            ("listing.drafted", self.provider, 0),
            ("listing.submitted", self.provider, 5),
            ("listing.review_started", self.operator, 30),
        ):
            payload = {"listing_id": rid, **(other if record_type == "listing.drafted" else {})}
            record = self.signed(key, record_type, payload, at(6, 9, minute))
            self.log.append([record], at(6, 9, minute) + 37)
        reason = (
            "来源合法性声明未附出租车企业的数据授权书；行程起讫点可能构成个人信息，"
            "需补充个人信息处理的合法性基础后重新提交。The source statement lacks the "
            "operators' authorisation, and trip endpoints may be personal information."
        )
        rejected = at(6, 15, 0)
        _, appended = self.act(
            "reject_listing",
            self.operator,
            "listing.rejected",
            {"listing_id": rid, "reason": reason},
            rejected,
        )
        self.responses["reject_listing"] = {
            "listing": self.listing_public(
                rid,
                other,
                "rejected",
                created_at=drafted + 37,
                updated_at=rejected + 37,
                rejection_reason=reason,
            ),
            "log": appended,
        }

        # version 2 of the first listing
        added = at(9, 10, 0)
        version = {
            "listing_id": self.listing_id,
            "version": 2,
            "content_digest": digest_of("dataset/bus-ridership/v2"),
            "row_count": 6_431 * 365,
            "byte_size": 131_455_012,
            "format": "csv",
        }
        _, appended = self.act(
            "add_version", self.provider, "listing.version_added", version, added
        )
        self.version_2 = {
            "version": 2,
            "content_digest": version["content_digest"],
            "row_count": version["row_count"],
            "byte_size": version["byte_size"],
            "format": "csv",
            "created_at": added + 37,
            "log_leaf_hash": appended["leaf_hash"],
        }
        self.version_1 = {
            "version": 1,
            "content_digest": content["content_digest"],
            "row_count": content["row_count"],
            "byte_size": content["byte_size"],
            "format": "csv",
            "created_at": self.created_at,
            "log_leaf_hash": self.responses["create_listing"]["log"]["leaf_hash"],
        }
        self.version_2_content = {
            **content,
            **{k: v for k, v in version.items() if k not in ("listing_id", "version")},
        }
        self.responses["add_version"] = {
            "listing": self.listing_public(
                self.listing_id,
                self.version_2_content,
                "published",
                created_at=self.created_at,
                updated_at=added + 37,
                published_at=self.published_at,
                version=2,
            ),
            "version": self.version_2,
            "log": appended,
        }

        # a participant suspended
        self.register("register_broker", self.broker, at(9, 13, 0))
        del self.requests["register_broker"]
        suspended = at(10, 9, 30)
        _, appended = self.act(
            "suspend",
            self.operator,
            "participant.suspended",
            {
                "participant": self.broker.key_id(),
                "reason": "账户涉嫌转售所购数据，暂停交易待调查。Suspected resale of "
                "purchased data; suspended pending investigation.",
            },
            suspended,
        )
        self.responses["suspend"] = {
            "participant": self.participant(self.broker, "suspended"),
            "log": appended,
        }

        # access to the first order revoked (settled one-off order: nothing to refund)
        revoked = at(11, 14, 0)
        reason = (
            "买方违反使用条款，将原始数据提供给第三方。"
            "The buyer passed the raw data to a third party."
        )
        _, appended = self.act(
            "revoke_access",
            self.provider,
            "access.revoked",
            {"order_id": self.order_id, "reason": reason},
            revoked,
        )
        self.responses["revoke_access"] = {
            "order": {
                **self.settled_order,
                "updated_at": revoked + 37,
                "revoked_at": revoked + 37,
                "revocation_reason": reason,
            },
            "log": appended,
            "settlement": None,
            "refund": {"amount": 0, "from_escrow": 0, "clawbacks": {}},
        }

        # the first listing delisted
        delisted = at(12, 10, 0)
        reason = "数据源协议到期，停止发布。The data-sharing agreement has ended."
        _, appended = self.act(
            "delist_listing",
            self.provider,
            "listing.delisted",
            {"listing_id": self.listing_id, "reason": reason},
            delisted,
        )
        self.responses["delist_listing"] = {
            "listing": self.listing_public(
                self.listing_id,
                self.version_2_content,
                "delisted",
                created_at=self.created_at,
                updated_at=delisted + 37,
                published_at=self.published_at,
                version=2,
                delisting_reason=reason,
            ),
            "log": appended,
        }

    def reads(self, content: dict[str, Any]) -> None:
        listing = self.responses["publish_listing"]["listing"]
        self.responses["get_listing"] = listing
        self.responses["list_listings"] = {"items": [listing], "next_offset": None}
        self.responses["list_versions"] = [self.version_1, self.version_2]
        self.responses["search_listings"] = {
            "items": [
                {
                    "id": self.listing_id,
                    "title": content["title"],
                    "summary": content["description"],  # shorter than the summary limit
                    "category": content["category"],
                    "tags": content["tags"],
                    "classification": content["declarations"]["classification"],
                    "owner": self.provider.key_id(),
                    "providers": [p["key_id"] for p in content["providers"]],
                    "pricing": content["pricing"],
                    # tiers: the price of the first 1,000 rows (the search's comparable price)
                    "price_fen": price(parse_pricing(content["pricing"]), rows=1000, periods=None),
                    "format": content["format"],
                    "row_count": content["row_count"],
                    "byte_size": content["byte_size"],
                    "version": 1,
                    "update_frequency": content["update_frequency"],
                    "published_at": self.published_at,
                    "score": 6,
                }
            ],
            "next_cursor": None,
            "total": 1,
            "facets": {
                "category": [{"value": "transport", "count": 1}],
                "classification": [{"value": "一般", "count": 1}],
                "pricing_model": [{"value": "tiers", "count": 1}],
                "tags": [{"value": tag, "count": 1} for tag in sorted(content["tags"])],
            },
        }
        buyer_id = self.buyer.key_id()
        self.responses["my_account"] = {
            "account": {
                "key_id": buyer_id,
                "available": 200_000 - self.settlement["amount"],
                "held": 0,
            },
            "movements": [self.release_movement, self.hold_movement, self.deposit_movement],
        }
        provider_id = self.provider.key_id()
        self.responses["participant_account"] = {
            "account": {
                "key_id": provider_id,
                "available": self.settlement["payouts"][provider_id],
                "held": 0,
            },
            "movements": [
                {
                    "id": 4,
                    "kind": "payout",
                    "amount": self.settlement["payouts"][provider_id],
                    "available_delta": self.settlement["payouts"][provider_id],
                    "held_delta": 0,
                    "order_id": self.order_id,
                    "reference": f"settlement of order {self.order_id}",
                    "leaf_hash": self.settle_leaf,
                    "created_at": self.payouts_at,
                }
            ],
        }
        self.responses["get_order"] = self.settled_order
        self.responses["list_orders"] = {"items": [self.settled_order], "next_offset": None}
        self.log_reads()
        self.operations()

    def log_reads(self) -> None:
        log = self.log
        size = len(log.leaves)
        early = self.placed_index + 5
        early_checkpoint = log.checkpoint(early, at(3, 15, 1))
        latest = log.checkpoint(size, at(12, 10, 1))
        self.responses["get_latest_checkpoint"] = latest.to_dict()
        self.responses["get_checkpoint"] = early_checkpoint.to_dict()
        index = self.placed_index
        self.responses["get_entry"] = {
            "index": index,
            "leaf_hash": log.leaves[index].hex(),
            "record": log.records[index].to_dict(),
            "public_key": self.buyer.public_key().to_pem().decode("ascii"),
            "promise": log.promises[index],
        }
        self.responses["get_inclusion_proof"] = {
            "index": index,
            "tree_size": size,
            "leaf_hash": log.leaves[index].hex(),
            "hashes": [h.hex() for h in log.inclusion(index, size)],
        }
        self.responses["get_consistency_proof"] = {
            "first": early,
            "second": size,
            "hashes": [h.hex() for h in log.consistency(early, size)],
        }
        registry = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
        chain_id = 31337
        anchors: list[dict[str, Any]] = []
        for checkpoint, block, state in (
            (early_checkpoint, 1_843, "final"),
            (latest, 2_967, "anchored"),
        ):
            anchors.append(
                {
                    "tree_size": checkpoint.tree_size,
                    "root": checkpoint.root.hex(),
                    "state": state,
                    "chain_id": chain_id,
                    "registry_address": registry,
                    "tx_hash": "0x" + sm3(f"shancheng-docs/tx/{block}".encode()).hex(),
                    "block_number": block,
                    "block_hash": "0x" + sm3(f"shancheng-docs/block/{block}".encode()).hex(),
                }
            )
        self.responses["get_anchors"] = anchors
        first = anchors[0]
        bundle = Bundle(
            record=log.records[index],
            actor_public_key=self.buyer.public_key(),
            promise=Promise.from_dict(log.promises[index]),
            log_public_key=self.exchange.public_key(),
            inclusion=InclusionProof(index, early, tuple(log.inclusion(index, early))),
            checkpoint=early_checkpoint,
            anchor=AnchorRef(chain_id, registry, first["tx_hash"], first["block_number"]),
        )
        self.responses["get_receipt"] = bundle.to_dict()
        self.responses["get_log_key"] = {
            "key_id": self.exchange.key_id(),
            "public_key": self.exchange.public_key().to_pem().decode("ascii"),
        }
        # the raw log API (a log of its own): the provider's statements, which change
        # nothing, alone and in a batch (exchange/raw_append.py)
        pem = self.provider.public_key().to_pem().decode("ascii")
        note = self.signed(
            self.provider,
            "note.added",
            {
                "listing_id": self.listing_id,
                "text": "2025 年 5 月数据已重新发布：YZ0412 站点客流更正",
            },
            at(2, 9, 2),
        )
        attestation = self.signed(
            self.provider,
            "attestation.published",
            {
                "listing_id": self.listing_id,
                "statement": "source contract 2025-17 renewed until 2027-12-31",
            },
            at(2, 9, 3),
        )
        correction = self.signed(
            self.provider,
            "note.added",
            {"listing_id": self.listing_id, "text": "YZ0412 的 2025-05-02 客流以本次为准"},
            at(2, 9, 3),
        )
        raw = DocLog(self.exchange)
        [single] = raw.append([note], at(2, 9, 2) + 37)
        self.requests["post_record"] = {"record": note.to_dict(), "public_key": pem}
        self.responses["post_record"] = single
        batch = [attestation, correction]
        self.requests["post_records"] = {
            "records": [{"record": r.to_dict(), "public_key": pem} for r in batch]
        }
        self.responses["post_records"] = {"appended": raw.append(batch, at(2, 9, 3) + 41)}

    def event_of(self, index: int) -> dict[str, Any] | None:
        """The feed's event for the story log's entry ``index`` (``None``: not an event)."""
        signed = self.log.records[index].to_dict()
        record = signed["record"]
        event_type = event_type_of(record["type"], record["payload"])
        if event_type is None:
            return None
        return {
            "id": str(index),
            "type": event_type,
            "created_at": record["timestamp"],
            "order_id": record["payload"]["order_id"],
            "listing_id": self.listing_id,
            "log": {"index": index, "leaf_hash": self.log.leaves[index].hex()},
            "record": signed,
            "anchor": None,
        }

    def events_and_webhooks(self) -> None:
        """The buyer's view of the feed from the first order on, with the anchor made
        final after the second order was placed; a webhook of the buyer's."""
        first = self.placed_index
        events = [e for i in range(first, first + 5) if (e := self.event_of(i)) is not None]
        final = self.responses["get_anchors"][0]
        events.append(
            {
                "id": f"anchor:{final['tree_size']}",
                "type": "anchor.final",
                "created_at": at(4, 10, 3),
                "order_id": None,
                "listing_id": None,
                "log": None,
                "record": None,
                "anchor": {
                    "tree_size": final["tree_size"],
                    "from_size": 0,
                    "root": final["root"],
                    "chain_id": final["chain_id"],
                    "registry_address": final["registry_address"],
                    "tx_hash": final["tx_hash"],
                    "block_number": final["block_number"],
                },
            }
        )
        self.responses["list_events"] = {"events": events, "next": events[-1]["id"]}

        types = ["order.delivered", "order.refunded", "settlement.paid"]
        url = "https://hooks.yuxin-logistics.example/shancheng/events"
        self.requests["create_webhook"] = {"url": url, "event_types": types}
        created = at(3, 9, 1)
        webhook = {
            "id": self.webhook_id,
            "url": url,
            "event_types": sorted(types),
            "created_at": created,
            "cursor": str(self.responses["credit_deposit"]["log"]["index"]),
            "delivered": 0,
            "attempts": 0,
            "next_attempt_at": None,
            "failing_since": None,
            "last_error": None,
            "last_delivered_at": None,
            "signing_key_id": self.exchange.key_id(),
        }
        self.responses["create_webhook"] = {"webhook": webhook}
        mine = [
            e
            for i in range(len(self.log.records))
            if (e := self.event_of(i)) is not None and e["type"] in types
        ]
        delivered_at = mine[-1]["created_at"] + 412
        later = {
            **webhook,
            "cursor": mine[-1]["id"],
            "delivered": len(mine),
            "last_delivered_at": delivered_at,
        }
        self.responses["list_webhooks"] = {"items": [later]}
        self.responses["delete_webhook"] = {"webhook": later}
        # the receiver was down for the first try of the last event, then took it
        last = mine[-1]["id"]
        self.responses["webhook_attempts"] = {
            "items": [
                {
                    "event_id": last,
                    "attempt": 2,
                    "at": delivered_at - 38,
                    "status": 200,
                    "error": None,
                    "duration_ms": 38,
                },
                {
                    "event_id": last,
                    "attempt": 1,
                    "at": delivered_at - 1_290,
                    "status": 503,
                    "error": "HTTP 503",
                    "duration_ms": 12,
                },
                {
                    "event_id": mine[-2]["id"],
                    "attempt": 1,
                    "at": mine[-2]["created_at"] + 305,
                    "status": 204,
                    "error": None,
                    "duration_ms": 41,
                },
            ]
        }

    def operations(self) -> None:
        database = {
            "ok": True,
            "backend": "postgresql",
            "url": "postgresql://shancheng:***@db.internal:5432/shancheng",
            "detail": None,
        }
        chain = {
            "ok": True,
            "configured": True,
            "rpc_url": "http://chain.internal:8545",
            "chain_id": 31337,
            "block_number": 2_981,
            "registry_address": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
            "registry_deployed": True,
            "detail": None,
        }
        self.responses["get_health"] = {"status": "ok", "database": database, "chain": chain}
        self.responses["get_health_degraded"] = {
            "status": "degraded",
            "database": database,
            "chain": {
                **chain,
                "ok": False,
                "chain_id": None,
                "block_number": None,
                "registry_deployed": None,
                "detail": "cannot reach http://chain.internal:8545: connection refused",
            },
        }
        self.requests["upload_content"] = (
            "stop_id,stop_name,district,date,boardings,alightings\n"
            "YZ0412,解放碑,渝中区,2025-01-01,16204,15873\n"
            "YZ0412,解放碑,渝中区,2025-01-02,17518,17220\n"
        )
        body = self.requests["upload_content"].encode("utf-8")
        self.requests["upload_content_digest"] = (
            f"sm3=:{base64.b64encode(sm3(body)).decode('ascii')}:"
        )
        self.responses["download_content"] = {
            "etag": '"' + sm3(b"shancheng-docs/etag").hex() + '"',
            "size": ciphertext_size(self.listing_content()["byte_size"]),
        }


def main(argv: Sequence[str] | None = None) -> int:
    """Write the examples file (or the path given)."""
    args = list(sys.argv[1:] if argv is None else argv)
    target = Path(args[0]) if args else OUTPUT
    story = Story().build()
    target.write_text(json.dumps(story, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
