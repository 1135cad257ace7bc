"""Payload schemas of the participant records. What the API answers (a profile, the
answer of a participant action) is :mod:`ledger.protocol.participant`, which the SDK
parses."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

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
