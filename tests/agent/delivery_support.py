"""A provider-held listing without a server: a 100-row CSV, its signed version record,
orders, and what the buyer's client would have fetched (for agent and receive tests)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agent.deliver import Dataset, file_fingerprint
from clients.datasets import describe_file
from clients.sdk import Delivery, Listing, ListingVersion, Order
from clients.sdk._receive import ReceiveJob, SignedVersion
from ledger.records import SignedRecord, sign_record
from ledger.sm2 import SM2PrivateKey

ROWS = 100
LISTING_ID = "6f1c3f5e-3a47-4a31-9a55-0c7a6a3f9d10"


def write_csv(path: Path, rows: int = ROWS, changed_row: int | None = None) -> Path:
    lines = ["id,station,reading"]
    for i in range(rows):
        reading = f"{i * 0.5:.1f}" if i != changed_row else "999.9"
        lines.append(f"{i},站-{i % 7},{reading}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class Market:
    """The provider, the buyer, the listing version as signed, and the dataset."""

    provider: SM2PrivateKey
    buyer: SM2PrivateKey
    dataset: Dataset
    version_record: SignedRecord

    @property
    def listing(self) -> Listing:
        d = self.dataset
        return Listing.from_dict(
            {
                "id": LISTING_ID,
                "state": "published",
                "owner": self.provider.key_id(),
                "title": "readings",
                "description": "",
                "category": "weather",
                "tags": [],
                "providers": [{"key_id": self.provider.key_id(), "share_bps": 10_000}],
                "columns": [],
                "sample_rows": [],
                "row_count": d.row_count,
                "byte_size": d.path.stat().st_size,
                "content_digest": d.content_digest,
                "format": "csv",
                "update_frequency": "once",
                "version": 1,
                "licence": None,
                "usage_terms": "",
                "pricing": {"model": "free"},
                "declarations": {},
                "created_at": 0,
                "updated_at": 0,
                "published_at": 0,
                "custody": "provider",
                "row_root": d.row_root,
            }
        )

    @property
    def version(self) -> ListingVersion:
        d = self.dataset
        return ListingVersion(
            version=1,
            content_digest=d.content_digest,
            row_count=d.row_count,
            byte_size=d.path.stat().st_size,
            format="csv",
            created_at=0,
            log_leaf_hash=self.version_record.leaf_hash().hex(),
            row_root=d.row_root,
        )

    def order(self, rows: int | None = None, offset: int = 0, order_id: str = "o-1") -> Order:
        terms: dict[str, Any] = {} if rows is None else {"rows": rows, "row_offset": offset}
        return Order(
            id=order_id,
            buyer=self.buyer.key_id(),
            listing_id=LISTING_ID,
            version=1,
            content_digest=self.dataset.content_digest,
            quote_id="q-1",
            terms=terms,
            amount=100,
            escrow=100,
            state="placed",
            created_at=0,
            updated_at=0,
            acceptance_deadline=None,
            access_expires_at=None,
            placed_leaf_hash="0" * 64,
            rows=rows,
            row_offset=None if rows is None else offset,
            custody="provider",
        )

    def job(self, order: Order, out: Path) -> ReceiveJob:
        return ReceiveJob(self.buyer, order, self.listing, out)

    def signed_version(self, job: ReceiveJob) -> SignedVersion:
        return job.signed_version(self.version, 7, self.version_record)

    @staticmethod
    def delivery(payload: dict[str, Any], signer: SM2PrivateKey) -> Delivery:
        record = sign_record(signer, "delivery.issued", payload)
        return Delivery("provider", record, 42, "/orders/o-1/content")


def make_market(directory: Path, file: Path | None = None) -> Market:
    provider, buyer = SM2PrivateKey.generate(), SM2PrivateKey.generate()
    path = file or write_csv(directory / "readings.csv")
    index = directory / "readings.idx"
    described = describe_file(path, sample_rows=0, row_index=index)
    assert described.row_count is not None and described.row_root is not None
    dataset = Dataset(
        listing_id=LISTING_ID,
        version=1,
        path=path,
        format="csv",
        content_digest=described.sm3,
        row_count=described.row_count,
        row_root=described.row_root,
        row_index=index,
        fingerprint=file_fingerprint(path),
    )
    version_record = sign_record(
        provider,
        "listing.drafted",
        {
            "listing_id": LISTING_ID,
            "content_digest": described.sm3,
            "row_count": described.row_count,
            "row_root": described.row_root,
            "format": "csv",
        },
    )
    return Market(provider, buyer, dataset, version_record)


def with_dataset(market: Market, **changes: Any) -> Market:
    return replace(market, dataset=replace(market.dataset, **changes))
