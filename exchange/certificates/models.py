"""Certificate tables: the certificate (its current content and state) and the
records of its history (their leaf hashes; the log gives their indexes)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = ["Certificate", "CertificateEvent", "CertificateState"]


class CertificateState(StrEnum):
    ACTIVE = "active"
    CHANGE_PENDING = "change_pending"
    TRANSFER_OFFERED = "transfer_offered"
    TRANSFER_ACCEPTED = "transfer_accepted"
    RENEWAL_PENDING = "renewal_pending"
    CANCELLATION_PENDING = "cancellation_pending"
    CANCELLED = "cancelled"


_certificate_row_version = Column("row_version", Integer, nullable=False)


class Certificate(SQLModel, table=True):
    """A registration certificate of one listing version. ``rights`` maps each right
    (``holding``, ``processing``, ``operation``) to ``[{"participant", "share_bps"}]``
    (shares sum to 10,000); ``pending`` is the request under review, if any.
    ``row_version`` is the optimistic lock (see ``exchange.records``)."""

    __tablename__ = "certificate"
    __table_args__ = (
        UniqueConstraint("year", "seq", name="uq_certificate_year_seq"),
        UniqueConstraint("listing_id", "version", name="uq_certificate_listing_version"),
    )
    __mapper_args__ = {"version_id_col": _certificate_row_version}

    number: str = Field(primary_key=True, max_length=24)
    year: int
    seq: int
    listing_id: str = Field(index=True, max_length=36)
    version: int
    title: str
    content_digest: str = Field(max_length=64)
    row_root: str | None = Field(default=None, max_length=64)
    rights: dict[str, Any] = Field(sa_type=JSON)
    scope: dict[str, Any] = Field(sa_type=JSON)
    valid_from: int = Field(sa_type=BigInteger)
    valid_until: int = Field(sa_type=BigInteger)
    state: str = Field(max_length=24)
    pending: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    issued_at: int = Field(sa_type=BigInteger)
    updated_at: int = Field(sa_type=BigInteger)
    row_version: int = Field(default=1, sa_column=_certificate_row_version)


class CertificateEvent(SQLModel, table=True):
    """One record of a certificate's history, in order (``position`` from 0)."""

    __tablename__ = "certificate_event"

    number: str = Field(primary_key=True, foreign_key="certificate.number", max_length=24)
    position: int = Field(primary_key=True)
    record_type: str = Field(max_length=64)
    actor_key_id: str = Field(max_length=64)
    leaf_hash: str = Field(max_length=64)
    at: int = Field(sa_type=BigInteger)
