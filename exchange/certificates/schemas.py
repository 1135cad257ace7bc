"""Payload schemas of the certificate records and the API's JSON shapes.

Record types and payloads (docs/certificates.md; who signs and from which state:
:mod:`exchange.certificates.lifecycle`):

* ``certificate.issued`` (the exchange, log key): the whole certificate
  (:class:`IssuedPayload`), in the same transaction as the ``listing.published``
  or ``listing.version_added`` record that caused it;
* ``certificate.change_requested`` (a holder): ``{"number", "scope"?,
  "valid_until"?, "rights"?, "reason"}`` (at least one change; ``rights`` may only
  re-divide the shares among the present holders of each right);
* ``certificate.transfer_offered`` (a holder of ``right``): ``{"number", "right",
  "share_bps", "to"}``; ``certificate.transfer_accepted`` (``to``): ``{"number"}``;
* ``certificate.renewal_requested`` (a holder): ``{"number", "valid_until"}``;
* ``certificate.cancellation_requested`` (a holder): ``{"number", "reason"}``;
* operator reviews: ``certificate.changed``, ``certificate.renewed`` and
  ``certificate.cancelled`` carry ``{"number", "decision", "reason"}`` (``renewed``
  also ``valid_until`` when approving); ``certificate.transfer_approved`` and
  ``certificate.transfer_rejected`` carry ``{"number", "reason"}``.

Strict like every payload: no coercion, unknown members refused.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, model_validator

from ledger.protocol.log import Appended

__all__ = [
    "NUMBER_PATTERN",
    "RIGHTS",
    "CertificateChanged",
    "CertificateList",
    "CertificatePublic",
    "CertificateRecordRef",
    "CertificateView",
    "ChangeRequestedPayload",
    "Holder",
    "IssuedPayload",
    "NumberPayload",
    "ReasonPayload",
    "RenewalRequestedPayload",
    "RenewedPayload",
    "ReviewPayload",
    "Rights",
    "Scope",
    "TransferOfferedPayload",
]

NUMBER_PATTERN = r"^SC-[0-9]{4}-[0-9]{6,9}$"
"""``SC-<year of issue>-<sequence>``: the sequence counts from 000001 each year, gap-free."""

RIGHTS = ("holding", "processing", "operation")
"""持有权 (holding), 加工使用权 (processing/use), 经营权 (operation)."""

Right = Literal["holding", "processing", "operation"]
Decision = Literal["approve", "reject"]
CertificateNumber = Annotated[str, StringConstraints(pattern=NUMBER_PATTERN)]
KeyId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
HexDigest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
ListingId = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]
Millis = Annotated[StrictInt, Field(ge=0, le=2**53 - 1)]
Share = Annotated[StrictInt, Field(ge=1, le=10_000)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=2000)]

BASIS_POINTS = 10_000
MAX_HOLDERS = 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Holder(_Strict):
    participant: KeyId
    share_bps: Share = Field(description="Share of the right in basis points (sum 10,000).")


HolderList = Annotated[list[Holder], Field(min_length=1, max_length=MAX_HOLDERS)]


class Rights(_Strict):
    """The holders of each of the three rights; each right's shares sum to 10,000 and
    name each participant once (checked by :meth:`problem`)."""

    holding: HolderList
    processing: HolderList
    operation: HolderList

    def of(self, right: str) -> list[Holder]:
        holders: list[Holder] = getattr(self, right)
        return holders

    def problem(self) -> str | None:
        """Why these rights are not a valid division (``None``: they are)."""
        for right in RIGHTS:
            holders = self.of(right)
            keys = [h.participant for h in holders]
            if len(set(keys)) != len(keys):
                return f"rights.{right} names a participant twice"
            total = sum(h.share_bps for h in holders)
            if total != BASIS_POINTS:
                return f"rights.{right}: shares sum to {total} basis points, not {BASIS_POINTS}"
        return None

    def holders(self) -> set[str]:
        return {h.participant for right in RIGHTS for h in self.of(right)}


class Scope(_Strict):
    category: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    purposes: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        max_length=50, description="The purposes the rights are registered for."
    )
    text: Annotated[str, StringConstraints(max_length=5000)] = Field(
        description="The registered scope in words (the listing's usage terms at issue)."
    )


class IssuedPayload(_Strict):
    """``certificate.issued``: the certificate as the exchange issues it."""

    number: CertificateNumber
    listing_id: ListingId
    version: Annotated[StrictInt, Field(ge=1)]
    title: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    content_digest: HexDigest
    row_root: HexDigest | None
    rights: Rights
    scope: Scope
    valid_from: Millis
    valid_until: Millis


class NumberPayload(_Strict):
    """``certificate.transfer_accepted``: the receiver accepts the offer under review."""

    number: CertificateNumber


class ReasonPayload(NumberPayload):
    """``certificate.cancellation_requested``, ``certificate.transfer_approved`` and
    ``certificate.transfer_rejected``."""

    reason: Reason


class ChangeRequestedPayload(ReasonPayload):
    scope: Scope | None = None
    valid_until: Millis | None = None
    rights: Rights | None = Field(
        default=None,
        description="A new division of the shares among the present holders of each right.",
    )

    @model_validator(mode="after")
    def _some_change(self) -> ChangeRequestedPayload:
        if self.scope is None and self.valid_until is None and self.rights is None:
            raise ValueError("a change request changes scope, valid_until or rights")
        return self


class TransferOfferedPayload(NumberPayload):
    right: Right
    share_bps: Share = Field(description="The part of the signer's share that moves.")
    to: KeyId = Field(description="The receiving participant's key id.")


class RenewalRequestedPayload(NumberPayload):
    valid_until: Millis


class ReviewPayload(ReasonPayload):
    """``certificate.changed``, ``certificate.cancelled``: the operator's decision."""

    decision: Decision


class RenewedPayload(ReviewPayload):
    valid_until: Millis | None = Field(
        default=None, description="The new end of validity; required to approve."
    )

    @model_validator(mode="after")
    def _until_on_approval(self) -> RenewedPayload:
        if self.decision == "approve" and self.valid_until is None:
            raise ValueError("approving a renewal needs valid_until")
        if self.decision == "reject" and self.valid_until is not None:
            raise ValueError("a rejected renewal has no valid_until")
        return self


# --------------------------------------------------------------------------- the API


class CertificatePublic(BaseModel):
    number: str = Field(examples=["SC-2026-000001"])
    listing_id: str
    version: int
    title: str
    content_digest: str
    row_root: str | None
    rights: dict[str, list[dict[str, Any]]] = Field(
        description="holding / processing / operation → [{participant, share_bps}]."
    )
    scope: dict[str, Any]
    valid_from: int
    valid_until: int
    state: str = Field(examples=["active"])
    expired: bool = Field(description="valid_until has passed (renewal needed to trade).")
    pending: dict[str, Any] | None = Field(
        description="The request under review: its type, signer and payload."
    )
    issued_at: int
    updated_at: int


class CertificateRecordRef(BaseModel):
    index: int = Field(description="The record's log index: GET /receipts/{index}.")
    type: str
    actor: str
    leaf_hash: str
    at: int


class CertificateView(BaseModel):
    certificate: CertificatePublic
    history: list[CertificateRecordRef]


class CertificateList(BaseModel):
    items: list[CertificatePublic]


class CertificateChanged(BaseModel):
    certificate: CertificatePublic
    log: Appended
