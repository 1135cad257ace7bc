"""JSON shapes of uploads and deliveries.

Record ``delivery.issued`` (signed by the exchange's log key, actor = its key
id): ``{"order_id", "buyer", "listing_id", "version", "content_digest",
"envelope_sm3"}`` — ``envelope_sm3`` is the SM3 (hex) of the envelope bytes
returned, so the buyer can prove which key it was given. In provider custody
the provider signs ``delivery.issued`` itself, with a
``ledger.protocol.delivery.ProviderDelivery`` payload.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ledger.protocol.log import Appended


class ContentUploaded(BaseModel):
    listing_id: str
    version: int
    sm3: str = Field(description="SM3 (hex) of the stored plaintext: the listing's digest.")
    size: int = Field(description="Plaintext bytes stored.")


class DeliveryRequest(BaseModel):
    """The body of ``POST /orders/{id}/delivery``: empty (``{}``), or no body at all."""

    model_config = ConfigDict(extra="forbid")


class DeliveryIssued(BaseModel):
    order_id: str
    listing_id: str
    version: int
    content_digest: str = Field(description="SM3 (hex) of the plaintext the order bought.")
    size: int = Field(description="Plaintext bytes.")
    ciphertext_size: int = Field(description="Bytes of the ciphertext download.")
    envelope: str = Field(
        description="Base64 of the content key (SM4, 16 bytes) SM2-encrypted to your "
        "registered public key (GM/T 0009 ASN.1 ciphertext): ledger.envelope.unwrap_key."
    )
    download_path: str = Field(
        description="Where to GET the ciphertext (HTTP Range supported); decrypt it with "
        "ledger.delivery.decrypt_file and the unwrapped key.",
        examples=["/orders/3f0c.../content"],
    )
    log: Appended = Field(description="The delivery.issued record the exchange logged.")


class DeliverableUploaded(BaseModel):
    order_id: str
    ciphertext_sm3: str = Field(description="SM3 (hex) of the stored ciphertext.")
    ciphertext_size: int = Field(description="Bytes stored.")


class DeliveryRecord(BaseModel):
    custody: str = Field(examples=["provider"], description="Who delivered: provider or exchange.")
    record: dict[str, Any] = Field(
        description="The latest delivery.issued of the order as logged ({record, signature}, "
        "as GET /log/entries shows it): signed by a provider of the listing in provider "
        "custody (payload ledger.protocol.delivery.ProviderDelivery), by the exchange's log "
        "key in exchange custody."
    )
    log_index: int = Field(description="Its index in the log.")
    download_path: str = Field(
        description="Where to GET the ciphertext (HTTP Range supported).",
        examples=["/orders/3f0c.../content"],
    )
