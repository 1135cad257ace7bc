"""Payload schemas of the participant records and the API's JSON shapes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ledger.protocol.log import Appended

KeyId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RegisteredPayload(_Payload):
    """``participant.registered``, signed by the key being registered."""

    display_name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    role: Literal["provider", "buyer", "auditor", "assessor"]
    public_key: Annotated[str, StringConstraints(min_length=1, max_length=2000)] = Field(
        description="SubjectPublicKeyInfo PEM of the SM2 key; its key id is the record's actor."
    )


class ApprovedPayload(_Payload):
    """``participant.approved``, signed by an operator."""

    participant: KeyId


class SuspendedPayload(_Payload):
    """``participant.suspended``, signed by an operator."""

    participant: KeyId
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class ParticipantPublic(BaseModel):
    key_id: str
    display_name: str
    role: str = Field(examples=["provider"])
    status: str = Field(examples=["active"], description="unverified, active or suspended.")
    public_key: str
    registered_at: int | None = Field(description="ms since the epoch; null for operators.")


class ParticipantChanged(BaseModel):
    participant: ParticipantPublic
    log: Appended = Field(description="Where the signed record went in the log, and its promise.")
