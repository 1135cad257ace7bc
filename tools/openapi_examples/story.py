"""The story the examples are recorded from (see the package docstring), played
through the SDK as its participants would."""

from __future__ import annotations

import base64
import io
import secrets
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from clients.datasets import describe_file
from clients.quality import compute_report
from clients.sdk import ExchangeClient
from clients.signing import SM2RequestSigner
from clients.slices import write_slice
from ledger import envelope, sm4
from ledger.computation.result import ResultTable
from ledger.protocol.computation import result_aad
from ledger.protocol.delivery import (
    DELIVERY_ISSUED,
    ProviderDelivery,
    RangeProof,
    RowRange,
    deliverable_aad,
)
from ledger.protocol.quality import TableSchema
from ledger.records import sign_record
from ledger.sm3 import sm3
from tools.openapi_examples.keys import KEY_LABELS, doc_key
from tools.openapi_examples.recording import WAIT_S, Receiver, Recorder, wait_for

WEBHOOK_TYPES = ("order.delivered", "order.refunded", "settlement.paid")


def write_ridership(path: Path, days: range, stops: Sequence[tuple[str, str, str]]) -> Path:
    """A small CSV of daily boardings per bus stop (deterministic)."""
    lines = ["stop_id,stop_name,district,date,boardings,alightings"]
    for day in days:
        for n, (stop_id, name, district) in enumerate(stops):
            boardings = 15_000 + (day * 937 + n * 2_311) % 4_000
            alightings = boardings - 400 + (day * 131 + n * 577) % 800
            lines.append(f"{stop_id},{name},{district},2025-03-{day:02d},{boardings},{alightings}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


STOPS = (
    ("YZ0412", "解放碑", "渝中区"),
    ("JB1187", "观音桥", "江北区"),
    ("SP0233", "沙坪坝", "沙坪坝区"),
)

LISTING_TERMS: dict[str, Any] = {
    "title": "重庆主城区公交站点日客流 2025",
    "description": "主城区公交站点逐日上下车人次，由公交 IC 卡与移动支付刷卡记录汇总而成，"
    "不含任何个人标识。Daily boardings and alightings per bus stop in Chongqing's "
    "central districts, aggregated from fare-card and mobile-payment taps; no personal "
    "identifiers.",
    "category": "transport",
    "tags": ["公交", "客流", "chongqing", "mobility"],
    "update_frequency": "monthly",
    "licence": "山城数据标准许可 v1 (Shancheng standard data licence v1)",
    "usage_terms": "仅限交通规划与学术研究；不得尝试重新识别个人；不得转售原始数据。"
    "Transport planning and research only; no re-identification; no resale.",
    "declarations": {
        "classification": "一般",
        "personal_information": False,
        "source_legality": "由重庆市公交集团依据数据共享协议（渝交数〔2025〕17号）提供，"
        "已汇总脱敏。Supplied by the city bus group under data-sharing agreement "
        "2025-17, aggregated.",
        "permitted_purposes": ["交通规划", "学术研究"],
    },
    "policy": {
        "version": 1,
        "permitted_purposes": [
            "academic_research",
            "commercial_research",
            "internal_analytics",
            "public_service",
        ],
        "prohibited_purposes": ["marketing", "personalised_advertising"],
        "processing_regions": ["CN"],
        "access_days": 365,
        "onward_transfer": False,
        "attribution": "数据来源：重庆交通数据科技有限公司 (Source: Chongqing Transport Data)",
    },
}
FIXED_PRICE = {"model": "fixed", "price": 80_000}
TIERED_PRICE = {
    "model": "tiers",
    "tiers": [
        {"up_to_rows": 20, "price_per_1000_rows": 5_000_000},
        {"up_to_rows": None, "price_per_1000_rows": 2_000_000},
    ],
}
"""Fen per 1000 rows: the story's file is small, so a row is dear (¥50 each, ¥20
beyond the first 20)."""


COMPUTATION_OFFER: dict[str, Any] = {
    "version": 1,
    "table": "ridership",
    "columns": [
        {"name": "stop_id", "control": ["never"], "aggregates": []},
        {"name": "stop_name", "control": ["never"], "aggregates": []},
        {"name": "district", "control": ["filter", "group_by"], "aggregates": []},
        {"name": "date", "control": ["filter", "group_by"], "aggregates": []},
        {"name": "boardings", "control": ["aggregate"], "aggregates": ["avg", "count", "sum"]},
        {"name": "alightings", "control": ["aggregate"], "aggregates": ["avg", "sum"]},
    ],
    "min_group_size": 5,
    "privacy": {
        "mechanism": "laplace",
        "epsilon_per_query": "0.5",
        "epsilon_budget": "5",
        "bounds": {"alightings": ["0", "40000"], "boardings": ["0", "40000"]},
    },
    "price": {"unit": "query", "fen": 500},
}
"""What the ridership's computation listing lets buyers compute: averages and sums per
district and day, never a stop's own rows; ε 0.5 a query out of 5 per order."""


RIDERSHIP_SCHEMA = TableSchema.from_dict(
    {
        "fields": [
            {
                "name": "stop_id",
                "type": "string",
                "constraints": {"required": True, "pattern": "[A-Z]{2}[0-9]{4}"},
            },
            {"name": "stop_name", "type": "string", "constraints": {"required": True}},
            {"name": "district", "type": "string", "constraints": {"enum": ["渝中区", "江北区"]}},
            {"name": "date", "type": "date", "constraints": {"required": True}},
            {"name": "boardings", "type": "integer", "constraints": {"minimum": 0}},
            {"name": "alightings", "type": "integer", "constraints": {"minimum": 0}},
        ],
        "primaryKey": ["stop_id", "date"],
    }
)
"""The ridership's declared schema (沙坪坝区 is not in the district enum: accuracy < 1)."""
QUALITY_AS_OF = 1_741_478_400_000  # 2025-03-09T00:00:00Z, the day after the last day


class Story:
    """Plays the story of the module docstring against the exchange at ``url``."""

    def __init__(self, url: str, work: Path, recorder: Recorder) -> None:
        self.work = work
        self.url = url
        self.rec = recorder
        self.keys = {label: doc_key(label) for label in KEY_LABELS}
        self.clients = {
            label: ExchangeClient(url, key=key, transport=recorder)
            for label, key in self.keys.items()
        }
        self.public = httpx.Client(base_url=url, transport=recorder)
        self.ids: dict[str, str] = {
            label.replace("-", "_"): key.key_id() for label, key in self.keys.items()
        }

    def client(self, who: str) -> ExchangeClient:
        return self.clients[who]

    def key_id(self, who: str) -> str:
        return self.keys[who].key_id()

    def get(self, name: str, path: str, **params: Any) -> Any:
        """An unsigned read of a public endpoint, filed as ``name``."""
        with self.rec.step(name, "GET", path):
            self.public.get(path, params=params).raise_for_status()
        return self.rec.responses[name]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.public.close()

    def run(self, receiver: Receiver) -> None:
        self.participants()
        self.listing()
        self.money(receiver)
        self.cross_border()
        self.orders()
        self.payouts()
        self.provider_custody()
        self.computations()
        self.quality()
        self.receipt()
        self.other_branches()
        self.certificates()
        self.reads()
        self.log_statements()
        self.revoke_and_delist()
        self.proofs()
        self.events_and_webhooks(receiver)

    def participants(self) -> None:
        names = {
            "provider": ("重庆交通数据科技有限公司", "provider"),
            "co-provider": ("两江新区大数据中心", "provider"),
            "buyer": ("渝新物流研究院", "buyer"),
            "broker": ("某数据经纪有限公司", "buyer"),
        }
        with self.rec.step("register", "POST", "/participants"):
            self.client("provider").register(*names.pop("provider"))
        for who, (display_name, role) in names.items():
            self.client(who).register(display_name, role)
        operator = self.client("operator")
        provider = self.key_id("provider")
        with self.rec.step("approve", "POST", f"/participants/{provider}/approve"):
            operator.approve_participant(provider)
        operator.approve_participant(self.key_id("co-provider"))
        with self.rec.step("me", "GET", "/participants/me"):
            self.client("provider").me()
        with self.rec.step("get_participant", "GET", f"/participants/{provider}"):
            self.client("buyer").participant(provider)

    def listing(self) -> None:
        provider, operator = self.client("provider"), self.client("operator")
        self.csv = write_ridership(self.work / "ridership-v1.csv", range(1, 9), STOPS)
        described = describe_file(self.csv, sample_rows=2).to_listing_fields()
        fields = {
            **LISTING_TERMS,
            **described,
            "custody": "exchange",
            "cost_basis": {
                "acquisition_fen": 3_000_000,
                "processing_fen": 1_200_000,
                "storage_fen": 300_000,
                "compliance_fen": 500_000,
                "expected_units": 400,
                "margin_bp": 2_000,
            },
            "providers": [
                {"key_id": self.key_id("provider"), "share_bps": 7_000},
                {"key_id": self.key_id("co-provider"), "share_bps": 3_000},
            ],
        }
        with self.rec.step("create_listing", "POST", "/listings"):
            listing = provider.create_listing({**fields, "pricing": FIXED_PRICE})
        self.listing_id = lid = listing.id
        self.fields = {**fields, "pricing": {**FIXED_PRICE, "price": 60_000}}
        with self.rec.step("edit_listing", "PUT", f"/listings/{lid}"):
            provider.update_listing(lid, self.fields)
        with self.rec.step("submit_listing", "POST", f"/listings/{lid}/submit"):
            provider.submit_listing(lid)
        with self.rec.step("start_review", "POST", f"/listings/{lid}/review"):
            operator.review_listing(lid)
        with self.rec.step("publish_listing", "POST", f"/listings/{lid}/publish"):
            operator.publish_listing(lid)
        path = f"/listings/{lid}/versions/1/content"
        with self.rec.step("upload_content", "PUT", path, request=False):
            provider.upload_content(lid, 1, self.csv)
        body = self.csv.read_bytes()
        self.rec.requests["upload_content"] = body.decode("utf-8")
        digest = base64.b64encode(sm3(body)).decode("ascii")
        self.rec.requests["upload_content_digest"] = f"sm3=:{digest}:"
        self.ids["listing_id"] = lid

    def cross_border(self) -> None:
        """The operator approves the broker's cross-border assessment for the listing
        (a year); the listing's data is 一般 and its policy keeps processing in CN, so
        it is the record that is shown here, not an order that needs it."""
        operator, lid = self.client("operator"), self.listing_id
        valid_until = int(time.time() * 1000) + 365 * 86_400_000
        with self.rec.step("record_crossborder_assessment", "POST", "/crossborder-assessments"):
            operator.assess_cross_border(
                lid,
                self.key_id("broker"),
                approved=True,
                reference="渝网信数出评〔2026〕0042号",
                valid_until=valid_until,
            )
        with self.rec.step("list_crossborder_assessments", "GET", "/crossborder-assessments"):
            operator.crossborder_assessments(listing_id=lid)

    def money(self, receiver: Receiver) -> None:
        buyer = self.key_id("buyer")
        with self.rec.step("credit_deposit", "POST", f"/accounts/{buyer}/deposits"):
            self.client("operator").deposit(
                buyer, 200_000, "中国银行转账 流水号 2026030309001842", idempotency_key="deposit-1"
            )
        with self.rec.step("create_webhook", "POST", "/webhooks"):
            webhook = self.client("buyer").register_webhook(receiver.url, event_types=WEBHOOK_TYPES)
        self.ids["webhook_id"] = webhook.id

    def orders(self) -> None:
        buyer, operator = self.client("buyer"), self.client("operator")
        lid = self.listing_id
        with self.rec.step("quote_listing", "POST", f"/listings/{lid}/quotes"):
            quote = buyer.quote(lid)
        with self.rec.step("place_order", "POST", "/orders") as placed:
            order = buyer.place_order(
                quote, purpose="public_service", region="CN", idempotency_key="order-1"
            )
        self.order_id = order.id
        self.placed_index = int(placed[0].response["log"]["index"])
        with self.rec.step("request_delivery", "POST", f"/orders/{order.id}/delivery"):
            envelope = buyer.request_delivery(order.id)
        with self.rec.step("download_content", "GET", f"/orders/{order.id}/content") as got:
            buyer.download(envelope, self.work / "download.bin")
        headers = got[0].headers
        self.rec.responses["download_content"] = {
            "etag": headers["etag"],
            "size": int(headers.get("content-length") or envelope.ciphertext_size),
        }
        with self.rec.step("accept_order", "POST", f"/orders/{order.id}/accept"):
            buyer.accept(order.id, idempotency_key="accept-1")
        self.ids["order_id"] = order.id

        second = buyer.quote(lid)
        disputed = buyer.place_order(second, idempotency_key="order-2")
        buyer.request_delivery(disputed.id)
        with self.rec.step("dispute_order", "POST", f"/orders/{disputed.id}/dispute"):
            buyer.dispute(
                disputed.id,
                "交付文件缺少 3 月 8 日的沙坪坝站记录，行数与登记的不符。"
                "The delivered file lacks a stop's rows of 8 March.",
            )
        with self.rec.step("resolve_dispute", "POST", f"/orders/{disputed.id}/resolve"):
            operator.resolve_dispute(
                disputed.id,
                "refund",
                "经核查，提供方上传的版本确缺该站数据；全额退款。"
                "Checked: the uploaded version lacks that stop; full refund.",
                idempotency_key="resolve-1",
            )
        self.ids["disputed_order_id"] = disputed.id

    def payouts(self) -> None:
        """The provider withdraws part of its share of the settled order and the
        operator pays it; the buyer withdraws unspent funds and the operator rejects it."""
        provider, buyer, operator = (self.client(w) for w in ("provider", "buyer", "operator"))
        with self.rec.step("request_withdrawal", "POST", "/withdrawals"):
            withdrawal = provider.withdraw(
                30_000,
                "中国建设银行 重庆分行 账号尾号 0427 (CCB Chongqing, account ending 0427)",
                idempotency_key="withdrawal-1",
            )
        with self.rec.step("list_withdrawals", "GET", "/withdrawals"):
            operator.withdrawals(state="pending")
        path = f"/withdrawals/{withdrawal.id}"
        with self.rec.step("pay_withdrawal", "POST", f"{path}/paid"):
            operator.pay_withdrawal(
                withdrawal.id, "建行网银转账 流水号 2026030310004417", idempotency_key="payout-1"
            )
        with self.rec.step("get_withdrawal", "GET", path):
            provider.withdrawal(withdrawal.id)
        unspent = buyer.withdraw(10_000, "中国银行 账号尾号 1188 (Bank of China)")
        with self.rec.step("reject_withdrawal", "POST", f"/withdrawals/{unspent.id}/rejected"):
            operator.reject_withdrawal(
                unspent.id,
                "收款账户户名与注册名称不一致。The account holder's name differs from the "
                "registered name.",
                idempotency_key="payout-2",
            )

    def provider_custody(self) -> None:
        """A listing in provider custody sold by the row: the provider's agent cuts
        rows [2, 12), encrypts them to the buyer, uploads and signs the delivery."""
        provider, operator, buyer = (self.client(w) for w in ("provider", "operator", "buyer"))
        described = describe_file(self.csv, sample_rows=2)
        fields = {
            **self.fields,
            "title": "重庆主城区公交站点日客流 2025（按行计价）",
            "custody": "provider",
            "row_root": described.row_root,
            "pricing": TIERED_PRICE,
        }
        lid = provider.create_listing(fields).id
        provider.submit_listing(lid)
        operator.review_listing(lid)
        operator.publish_listing(lid)
        # the quote and order examples are this one's: a quote names the rows it buys
        with self.rec.step("quote_listing", "POST", f"/listings/{lid}/quotes"):
            quote = buyer.quote(lid, rows=10, row_offset=2)
        with self.rec.step("place_order", "POST", "/orders"):
            order = buyer.place_order(quote, idempotency_key="order-3")
        sliced = write_slice(self.csv, self.work / "slice.csv", 2, 10)
        plaintext = (self.work / "slice.csv").read_bytes()
        key = sm4.generate_key()
        sealed = io.BytesIO()
        sm4.encrypt_stream(key, io.BytesIO(plaintext), sealed, deliverable_aad(order.id, lid, 1))
        ciphertext = sealed.getvalue()
        signed = self.signed_http("provider")
        path = f"/orders/{order.id}/deliverable"
        with self.rec.step("upload_deliverable", "PUT", path, request=False):
            signed.put(path, content=ciphertext).raise_for_status()
        self.rec.requests["upload_deliverable"] = base64.b64encode(ciphertext).decode("ascii")
        digest = base64.b64encode(sm3(ciphertext)).decode("ascii")
        self.rec.requests["upload_deliverable_digest"] = f"sm3=:{digest}:"
        buyer_key = self.keys["buyer"].public_key()
        payload = ProviderDelivery(
            order_id=order.id,
            listing_id=lid,
            version=1,
            buyer=self.key_id("buyer"),
            format="csv",
            rows=RowRange(sliced.offset, sliced.count),
            range_proof=RangeProof(
                sliced.tree_size, sliced.row_root.hex(), tuple(n.hex() for n in sliced.proof)
            ),
            plaintext_sm3=sm3(plaintext).hex(),
            plaintext_size=len(plaintext),
            ciphertext_sm3=sm3(ciphertext).hex(),
            ciphertext_size=len(ciphertext),
            wrapped_key=base64.b64encode(envelope.wrap_key(buyer_key, key)).decode("ascii"),
        ).to_dict()
        record = sign_record(self.keys["provider"], DELIVERY_ISSUED, payload)
        with self.rec.step("confirm_deliverable", "POST", path):
            signed.post(path, json={"record": record.to_dict()}).raise_for_status()
        signed.close()
        reader = self.signed_http("buyer")
        with self.rec.step("get_delivery", "GET", f"/orders/{order.id}/delivery"):
            reader.get(f"/orders/{order.id}/delivery").raise_for_status()
        reader.close()

    def computations(self) -> None:
        """A computation listing on the same data: the buyer buys 5 queries and asks the
        average boardings per district; the provider answers with an encrypted result."""
        provider, operator = self.client("provider"), self.client("operator")
        fields = {
            **self.fields,
            "custody": "provider",
            "row_root": describe_file(self.csv).row_root,
            "pricing": FIXED_PRICE,
            "computation": COMPUTATION_OFFER,
        }
        fields["title"] = "重庆主城区公交客流 · 可算不可见 (computation only)"
        lid = provider.create_listing(fields).id
        provider.submit_listing(lid)
        operator.review_listing(lid)
        operator.publish_listing(lid)
        buyer_key = self.keys["buyer"]
        buyer = self.signed_http("buyer")
        terms = {"computation": True, "queries": 5}
        quoted = buyer.post(f"/listings/{lid}/quotes", json={"terms": terms})
        quoted.raise_for_status()
        order_id = str(uuid.uuid4())
        placed = {
            "order_id": order_id,
            "quote": quoted.json()["quote"],
            "declaration": {
                "purpose": "public_service",
                "processing_region": "CN",
                "legal_basis": None,
            },
        }
        record = sign_record(buyer_key, "order.placed", placed).to_dict()
        buyer.post("/orders", json={"record": record}).raise_for_status()
        sql = (
            "SELECT district, AVG(boardings) AS avg_boardings FROM ridership "
            "GROUP BY district ORDER BY district"
        )
        computation_id = str(uuid.uuid4())
        asked = {"computation_id": computation_id, "order_id": order_id, "sql": sql}
        with self.rec.step("request_computation", "POST", "/computations"):
            record = sign_record(buyer_key, "computation.requested", asked).to_dict()
            buyer.post("/computations", json={"record": record}).raise_for_status()

        # the provider's agent: answered here by hand, with the figures of the story's file
        table = ResultTable.of(
            ["district", "avg_boardings"],
            [["江北区", 17029.4], ["沙坪坝区", 16805.1], ["渝中区", 16980.6]],
        )
        key = secrets.token_bytes(16)
        sealed = io.BytesIO()
        plain = io.BytesIO(table.to_bytes())
        sm4.encrypt_stream(key, plain, sealed, result_aad(computation_id, order_id))
        ciphertext = sealed.getvalue()
        path = f"/computations/{computation_id}"
        seller = self.signed_http("provider")
        with self.rec.step("upload_computation_result", "PUT", f"{path}/result", request=False):
            seller.put(
                f"{path}/result",
                content=ciphertext,
                headers={"content-type": "application/octet-stream"},
            ).raise_for_status()
        self.rec.requests["upload_computation_result"] = base64.b64encode(ciphertext).decode()
        digest = base64.b64encode(sm3(ciphertext)).decode("ascii")
        self.rec.requests["upload_computation_result_digest"] = f"sm3=:{digest}:"
        wrapped = envelope.wrap_key(buyer_key.public_key(), key)
        completed = {
            "computation_id": computation_id,
            "order_id": order_id,
            "query_sm3": sm3(sql.encode()).hex(),
            "result_sm3": table.sm3_hex(),
            "ciphertext_sm3": sm3(ciphertext).hex(),
            "ciphertext_size": len(ciphertext),
            "wrapped_key": base64.b64encode(wrapped).decode(),
            "epsilon_spent": "0.5",
            "rows_scanned": int(self.fields["row_count"]),
        }
        with self.rec.step("answer_computation", "POST", f"{path}/outcome"):
            answered = sign_record(self.keys["provider"], "computation.completed", completed)
            seller.post(f"{path}/outcome", json={"record": answered.to_dict()}).raise_for_status()
        with self.rec.step("get_computation", "GET", path):
            buyer.get(path).raise_for_status()
        with self.rec.step("list_computations", "GET", "/computations"):
            buyer.get("/computations", params={"order_id": order_id}).raise_for_status()
        with self.rec.step("computation_result", "GET", f"{path}/result") as got:
            buyer.get(f"{path}/result").raise_for_status()
        self.rec.responses["computation_result"] = {
            "etag": got[0].headers["etag"],
            "size": int(got[0].headers["content-length"]),
        }
        buyer.close()
        seller.close()

    def quality(self) -> None:
        """The provider's quality report on the ridership (computed here, where the data
        is), an assessor's countersignature and the listing's quality (docs/quality.md)."""
        provider, assessor = self.client("provider"), self.client("assessor")
        lid = self.listing_id
        report = compute_report(
            self.csv, RIDERSHIP_SCHEMA, update_frequency="monthly", as_of=QUALITY_AS_OF
        )
        with self.rec.step("report_quality", "POST", f"/listings/{lid}/quality-reports"):
            provider.report_quality(lid, report, version=1)
        assessor.register("重庆数据资产评估中心", "assessor")
        self.client("operator").approve_participant(self.key_id("assessor"))
        digest = report.digest()
        path = f"/listings/{lid}/quality-reports/{digest}/countersignatures"
        with self.rec.step("countersign_quality", "POST", path):
            assessor.countersign_quality(lid, 1, digest)
        self.get("get_quality", f"/listings/{lid}/quality")

    def signed_http(self, who: str) -> httpx.Client:
        """Plain HTTP signed as ``who``: for what the SDK does not call yet."""
        return httpx.Client(
            base_url=self.url, transport=self.rec, auth=SM2RequestSigner(self.keys[who])
        )

    def other_branches(self) -> None:
        provider, operator = self.client("provider"), self.client("operator")
        taxi = write_ridership(self.work / "taxi.csv", range(1, 4), STOPS[:1])
        other = {
            **self.fields,
            **describe_file(taxi, sample_rows=1).to_listing_fields(),
            "title": "重庆主城区出租车行程 2025",
            "description": "出租车与网约车逐笔行程的起讫点网格、时长与里程。Origin and "
            "destination grid cells, duration and distance of every taxi trip.",
            "tags": ["出租车", "chongqing", "mobility"],
        }
        rid = provider.create_listing(other).id
        provider.submit_listing(rid)
        operator.review_listing(rid)
        with self.rec.step("reject_listing", "POST", f"/listings/{rid}/reject"):
            operator.reject_listing(
                rid,
                "来源合法性声明未附出租车企业的数据授权书；行程起讫点可能构成个人信息，"
                "需补充个人信息处理的合法性基础后重新提交。The source statement lacks the "
                "operators' authorisation, and trip endpoints may be personal information.",
            )
        self.ids["rejected_listing_id"] = rid

        v2 = write_ridership(self.work / "ridership-v2.csv", range(1, 10), STOPS)
        with self.rec.step("add_version", "POST", f"/listings/{self.listing_id}/versions"):
            provider.new_version(self.listing_id, describe_file(v2).to_listing_fields())

        broker = self.key_id("broker")
        with self.rec.step("suspend", "POST", f"/participants/{broker}/suspend"):
            operator.suspend_participant(
                broker,
                "账户涉嫌转售所购数据，暂停交易待调查。Suspected resale of purchased data; "
                "suspended pending investigation.",
            )

    def certificates(self) -> None:
        """The current version's certificate: the provider moves 10 % of its operation
        right to the co-provider (offered, accepted, approved) and has it renewed."""
        provider, operator = self.client("provider"), self.client("operator")
        number = provider.listing(self.listing_id).certificate
        assert number is not None
        provider.offer_transfer(
            number, right="operation", share_bps=1_000, to=self.key_id("co-provider")
        )
        self.client("co-provider").accept_transfer(number)
        checked = "双方签署的转让协议已核验。Agreement checked."
        operator.review_certificate(number, "approve", checked)
        path = f"/certificates/{number}/records"
        current = provider.certificate(number)
        with self.rec.step("certificate_record", "POST", path):
            provider.request_renewal(number, current.valid_until + 3 * 365 * 86_400_000)
        operator.review_certificate(
            number,
            "approve",
            "续展申请符合要求。Renewal granted.",
            valid_until=current.valid_until + 3 * 365 * 86_400_000,
        )
        self.get("get_certificate", f"/certificates/{number}")
        self.get("list_certificates", "/certificates", listing=self.listing_id)
        self.ids["certificate"] = number

    def reads(self) -> None:
        lid = self.listing_id
        self.get("get_listing", f"/listings/{lid}")
        self.get("get_reference_price", f"/listings/{lid}/reference-price")
        self.get("list_listings", "/listings", provider=self.key_id("provider"))
        self.get("list_versions", f"/listings/{lid}/versions")
        with self.rec.step("search_listings", "GET", "/listings/search"):
            self.client("buyer").search("公交 客流", facets=True)
        with self.rec.step("my_account", "GET", "/accounts/me"):
            self.client("buyer").account()
        provider = self.key_id("provider")
        with self.rec.step("participant_account", "GET", f"/accounts/{provider}"):
            self.client("operator").account(provider)
        with self.rec.step("get_order", "GET", f"/orders/{self.order_id}"):
            self.client("buyer").order(self.order_id)
        with self.rec.step("list_orders", "GET", "/orders"):
            self.client("buyer").orders()
        with self.rec.step("order_records", "GET", f"/orders/{self.order_id}/records"):
            self.client("buyer").order_records(self.order_id)
        with self.rec.step("operator_queue", "GET", "/operator/queue"):
            self.client("operator").operator_queue()
        self.get("get_log_key", "/.well-known/shancheng/log-key")
        self.get("get_health", "/health")

    def log_statements(self) -> None:
        """The provider's own statements in the log: one alone, two in a batch."""
        key, client = self.keys["provider"], self.client("provider")
        lid = self.listing_id
        note = sign_record(
            key, "note.added", {"listing_id": lid, "text": "3 月数据已重新发布：YZ0412 客流更正"}
        )
        with self.rec.step("post_record", "POST", "/log/records"):
            client.append(note, public_key=key.public_key())
        batch = [
            sign_record(
                key,
                "attestation.published",
                {"listing_id": lid, "statement": "source contract 2025-17 renewed to 2027-12-31"},
            ),
            sign_record(
                key, "note.added", {"listing_id": lid, "text": "YZ0412 的 3 月 2 日客流以本次为准"}
            ),
        ]
        with self.rec.step("post_records", "POST", "/log/records:batch"):
            client.append_many(batch, public_key=key.public_key())

    def revoke_and_delist(self) -> None:
        provider = self.client("provider")
        with self.rec.step("revoke_access", "POST", f"/orders/{self.order_id}/revoke"):
            provider.revoke(
                self.order_id,
                "买方违反使用条款，将原始数据提供给第三方。"
                "The buyer passed the raw data to a third party.",
                idempotency_key="revoke-1",
            )
        with self.rec.step("delist_listing", "POST", f"/listings/{self.listing_id}/delist"):
            provider.delist(
                self.listing_id, "数据源协议到期，停止发布。The data-sharing agreement has ended."
            )

    def receipt(self) -> None:
        """The first order's receipt, once a final anchor covers it: taken before the
        rest of the story, so the latest checkpoint is larger than the receipt's."""
        bundle = self.client("buyer").wait_for_receipt(self.placed_index, timeout=WAIT_S)
        self.receipt_size = bundle.checkpoint.tree_size
        self.get("get_receipt", f"/receipts/{self.placed_index}")

    def proofs(self) -> None:
        """The receipt's checkpoint and anchor, and proofs up to the latest checkpoint
        of the whole log."""
        auditor = self.client("buyer")
        index, size = self.placed_index, self.receipt_size
        self.get("get_checkpoint", f"/log/checkpoints/{size}")
        self.get("get_anchors", "/log/anchors", start=size, limit=10)
        last_index = max(
            int(e.response["log"]["index"])
            for e in self.rec.exchanged
            if isinstance(e.response, dict) and isinstance(e.response.get("log"), dict)
        )
        wait_for(
            "the sequencer to integrate the story",
            lambda: True if auditor.checkpoint().tree_size > last_index else None,
        )
        latest = self.get("get_latest_checkpoint", "/log/checkpoint")["tree_size"]
        self.get("get_entry", f"/log/entries/{index}")
        self.get("get_inclusion_proof", "/log/proofs/inclusion", index=index, tree_size=latest)
        self.get("get_consistency_proof", "/log/proofs/consistency", first=size, second=latest)

    def events_and_webhooks(self, receiver: Receiver) -> None:
        """The buyer's feed from the first order on (with the anchor made final), and the
        buyer's webhook once it delivered every event it asked for."""
        buyer = self.client("buyer")
        with self.rec.step("list_events", "GET", "/events"):
            page = buyer.events(after=str(self.placed_index - 1), limit=50)
        if not any(event.type == "anchor.final" for event in page.events):
            raise RuntimeError("the buyer's feed shows no final anchor")
        wanted = [e.id for e in buyer.events(types=WEBHOOK_TYPES, limit=100).events]
        wait_for("the webhook deliveries", lambda: True if receiver.delivered == wanted else None)
        webhook = self.ids["webhook_id"]
        wait_for(
            "the webhook's cursor",
            lambda: True if buyer.webhooks()[0].delivered == len(wanted) else None,
        )
        with self.rec.step("list_webhooks", "GET", "/webhooks"):
            buyer.webhooks()
        with self.rec.step("webhook_attempts", "GET", f"/webhooks/{webhook}/attempts"):
            buyer.webhook_attempts(webhook)
        with self.rec.step("delete_webhook", "DELETE", f"/webhooks/{webhook}"):
            buyer.delete_webhook(webhook)
