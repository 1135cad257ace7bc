"""JSON shapes of the log's REST API (for validation and the OpenAPI document)
that only the exchange uses; the answers the SDK parses too are
:mod:`ledger.protocol.log` (``Appended`` and ``PromiseBody`` are re-exported here
for the modules that build them).

Hashes are lowercase hex, signatures standard base64, keys PEM: exactly the
``to_dict()`` forms of :mod:`ledger.records`, :mod:`ledger.checkpoint` and
:mod:`ledger.bundle`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ledger.protocol.log import Appended, PromiseBody

__all__ = [
    "MAX_BATCH_RECORDS",
    "AppendRequest",
    "Appended",
    "BatchAppendRequest",
    "BatchAppended",
    "BundleBody",
    "CheckpointBody",
    "PromiseBody",
    "RecordBody",
    "SignedRecordBody",
]

MAX_BATCH_RECORDS = 1000


class RecordBody(BaseModel):
    type: str = Field(examples=["listing.published"])
    schema_version: int
    actor: str = Field(description="Key id of the signer.")
    timestamp: int = Field(description="Milliseconds since the epoch.")
    payload: dict[str, Any]


class SignedRecordBody(BaseModel):
    record: RecordBody
    signature: str = Field(description="Base64 DER SM2 signature over the RFC 8785 record.")


class AppendRequest(BaseModel):
    record: dict[str, Any] = Field(
        description='A signed record, `{"record": {...}, "signature": base64}`.'
    )
    public_key: str = Field(description="The actor's SM2 SubjectPublicKeyInfo PEM.")


class BatchAppendRequest(BaseModel):
    records: list[AppendRequest] = Field(min_length=1, max_length=MAX_BATCH_RECORDS)


class BatchAppended(BaseModel):
    appended: list[Appended]


class CheckpointBody(BaseModel):
    tree_size: int
    root: str
    timestamp: int
    log_key_id: str
    signature: str


class BundleInclusion(BaseModel):
    index: int
    tree_size: int
    hashes: list[str]


class BundleAnchor(BaseModel):
    chain_id: int
    registry_address: str
    tx_hash: str
    block_number: int


class BundleBody(BaseModel):
    """Receipt bundle, version 1 (``docs/bundle-v1.md``)."""

    version: int = Field(examples=[1])
    record: SignedRecordBody
    actor_public_key: str
    promise: PromiseBody
    log_public_key: str
    inclusion: BundleInclusion
    checkpoint: CheckpointBody
    anchor: BundleAnchor
