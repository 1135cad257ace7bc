"""JSON shapes of the log's REST API (for validation and the OpenAPI document).

Hashes are lowercase hex, signatures standard base64, keys PEM: exactly the
``to_dict()`` forms of :mod:`ledger.records`, :mod:`ledger.checkpoint` and
:mod:`ledger.bundle`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

MAX_BATCH_RECORDS = 1000


class LogKey(BaseModel):
    key_id: str = Field(description="Hex SM3 of the key's DER SubjectPublicKeyInfo.")
    public_key: str = Field(description="SubjectPublicKeyInfo PEM of the log's SM2 key.")


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


class PromiseBody(BaseModel):
    """``ledger.checkpoint.Promise.to_dict()``: verify with ``Promise.verify(log_key)``."""

    leaf_hash: str
    index: int
    timestamp: int
    log_key_id: str
    batch_first_index: int = Field(description="First index of the append batch signed.")
    batch_size: int = Field(description="Number of entries in that batch.")
    batch_proof: list[str] = Field(
        description="RFC 9162 inclusion proof (hex) of the leaf at index - batch_first_index "
        "in the batch's tree; its root is the signed batch_root."
    )
    signature: str = Field(
        description='Base64 DER SM2 signature over RFC 8785 of {"kind": '
        '"shancheng.promise-batch.v1", "first_index", "size", "batch_root", "timestamp", '
        '"log_key_id"}.'
    )


class Appended(BaseModel):
    index: int
    leaf_hash: str
    promise: PromiseBody


class BatchAppended(BaseModel):
    appended: list[Appended]


class CheckpointBody(BaseModel):
    tree_size: int
    root: str
    timestamp: int
    log_key_id: str
    signature: str


class Entry(BaseModel):
    index: int
    leaf_hash: str
    record: dict[str, Any] = Field(description="The signed record as stored.")
    public_key: str = Field(description="The actor's public key PEM, as accepted.")
    promise: PromiseBody


class InclusionProofBody(BaseModel):
    index: int
    tree_size: int
    leaf_hash: str
    hashes: list[str] = Field(description="RFC 9162 audit path, leaf to root, hex.")


class ConsistencyProofBody(BaseModel):
    first: int
    second: int
    hashes: list[str] = Field(description="RFC 9162 consistency proof, hex.")


class AnchorBody(BaseModel):
    tree_size: int
    root: str
    state: str = Field(description="pending, sent, anchored (mined) or final.")
    chain_id: int
    registry_address: str
    tx_hash: str | None
    block_number: int | None
    block_hash: str | None


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
