"""The participant table and the authenticated :class:`Principal`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import BigInteger, Column, Integer
from sqlmodel import Field, SQLModel


class Role(StrEnum):
    PROVIDER = "provider"
    BUYER = "buyer"
    AUDITOR = "auditor"
    ASSESSOR = "assessor"
    """评估机构: recomputes and countersigns quality reports (docs/quality.md)."""
    OPERATOR = "operator"
    """Configured in settings (``operator_public_keys``), never registered."""


REGISTRABLE_ROLES = (Role.PROVIDER, Role.BUYER, Role.AUDITOR, Role.ASSESSOR)
APPROVED_ROLES = (Role.PROVIDER, Role.ASSESSOR)
"""Roles that start unverified, until an operator approves them."""


class ParticipantStatus(StrEnum):
    UNVERIFIED = "unverified"
    """A provider or assessor an operator has not approved yet (buyers and auditors
    start active)."""
    ACTIVE = "active"
    SUSPENDED = "suspended"


_participant_row_version = Column("row_version", Integer, nullable=False)


class Participant(SQLModel, table=True):
    """A registered participant; ``key_id`` is SM3 of its DER SubjectPublicKeyInfo.

    ``row_version`` is SQLAlchemy's optimistic version counter: a state change
    read before the log's write lock fails at flush (409) if another one won.
    """

    __tablename__ = "participant"
    __mapper_args__ = {"version_id_col": _participant_row_version}

    key_id: str = Field(primary_key=True, max_length=64)
    display_name: str = Field(max_length=200)
    role: str = Field(index=True, max_length=16)
    status: str = Field(index=True, max_length=16)
    public_key: str
    """SubjectPublicKeyInfo PEM."""
    registered_at: int = Field(sa_type=BigInteger)
    updated_at: int = Field(sa_type=BigInteger)
    suspension_reason: str | None = None
    row_version: int = Field(default=1, sa_column=_participant_row_version)


participant_table = SQLModel.metadata.tables["participant"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who an authenticated request is from."""

    key_id: str
    role: Role
    status: ParticipantStatus
    display_name: str
    public_key_pem: str

    @property
    def is_operator(self) -> bool:
        return self.role is Role.OPERATOR

    @classmethod
    def of(cls, row: Participant) -> Principal:
        return cls(
            key_id=row.key_id,
            role=Role(row.role),
            status=ParticipantStatus(row.status),
            display_name=row.display_name,
            public_key_pem=row.public_key,
        )
