"""Usage policies enforced: an order's declaration checked against its listing
version's policy, and the operator's cross-border assessments.

The policy itself and the one evaluator are :mod:`ledger.protocol.policy` (the SDK
and CLI run the same one to warn before ordering). Here the exchange supplies what
only it knows: the listing's declarations (classification, personal information),
the cross-border assessment for the buyer and listing as recorded now, and the days
of use an order buys. Any violation refuses the order with 422
``policy_violation``, the body naming the first ``clause`` (every one in the
message). The assessment is read again inside the order's transaction
(:func:`recheck_cross_border`): a rejection committed meanwhile refuses the order.

``crossborder.assessed`` (operators): the decision for one listing and buyer,
replacing the previous one (the history is the log). Refusals: 404
``listing_not_found`` / ``participant_not_found``, 422 ``invalid_payload`` (an
approval without a validity in the future, a rejection with one, the named
participant not a buyer).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select
from sqlmodel import Session, col

from exchange.errors import ExchangeError
from exchange.listings.models import Listing, ListingProvider
from exchange.listings.service import ListingNotFoundError
from exchange.participants.models import Participant, Principal, Role
from exchange.participants.service import ParticipantNotFoundError
from exchange.policies.models import CrossBorderAssessment
from exchange.policies.schemas import (
    AssessmentPage,
    AssessmentPayload,
    AssessmentPublic,
    AssessmentRecorded,
)
from exchange.records import InvalidPayloadError, SignedAction, commit_with_record, log_receipt
from exchange.records import payload_of as _payload_of
from ledger.protocol.policy import (
    DOMESTIC_REGION,
    AssessmentState,
    Declaration,
    Policy,
    PolicyContext,
    PolicyFormatError,
    Violation,
    evaluate,
    policy_of,
)
from ledger.sm2 import SM2PrivateKey

__all__ = [
    "PolicyViolationError",
    "assess",
    "check_order",
    "declaration_of",
    "list_assessments",
    "recheck_cross_border",
]


class PolicyViolationError(ExchangeError):
    """The order breaks its listing's usage policy (or a cross-border / PIPL rule)."""

    status = 422
    code = "policy_violation"

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.clause}: {v.message}" for v in violations))

    def details(self) -> dict[str, str]:
        return {"clause": self.violations[0].clause}


@dataclass(frozen=True, slots=True)
class Agreement:
    """What an order agreed to: the policy (and its digest) and the declaration."""

    policy: Policy
    digest: str
    declaration: Declaration
    cross_border: bool
    """Whether the order needed a cross-border assessment (re-checked at commit)."""


def declaration_of(value: object) -> Declaration:
    """The declaration of an ``order.placed`` payload (422 ``invalid_payload``)."""
    try:
        return Declaration.from_dict(value, "payload.declaration")
    except PolicyFormatError as exc:
        raise InvalidPayloadError(str(exc)) from None


def _assessment_state(
    connection: Connection, listing_id: str, buyer: str, now: int
) -> AssessmentState:
    row = connection.execute(
        select(col(CrossBorderAssessment.approved), col(CrossBorderAssessment.valid_until)).where(
            col(CrossBorderAssessment.listing_id) == listing_id,
            col(CrossBorderAssessment.buyer_key_id) == buyer,
        )
    ).first()
    if row is None:
        return "missing"
    if not row[0]:
        return "rejected"
    return "approved" if row[1] is not None and now < row[1] else "expired"


def _context(listing: Listing, assessment: AssessmentState, days: int | None) -> PolicyContext:
    return PolicyContext(
        classification=listing.classification,
        personal_information=bool(listing.personal_information),
        assessment=assessment,
        requested_days=days,
    )


def _needs_assessment(listing: Listing, declaration: Declaration) -> bool:
    sensitive = listing.classification == "重要" or bool(listing.personal_information)
    return sensitive and declaration.processing_region != DOMESTIC_REGION


def check_order(
    session: Session,
    listing: Listing,
    buyer: str,
    declaration: Declaration,
    *,
    requested_days: int | None,
    now: int,
) -> Agreement:
    """The agreement an order on ``listing``'s current version makes, or
    :class:`PolicyViolationError` naming every clause it breaks."""
    policy = policy_of(listing.policy)
    cross_border = _needs_assessment(listing, declaration)
    state: AssessmentState = (
        _assessment_state(session.connection(), listing.id, buyer, now)
        if cross_border
        else "approved"
    )
    violations = evaluate(policy, declaration, _context(listing, state, requested_days))
    if violations:
        raise PolicyViolationError(violations)
    return Agreement(policy, policy.digest(), declaration, cross_border)


def recheck_cross_border(
    connection: Connection, listing: Listing, buyer: str, agreement: Agreement, now: int
) -> None:
    """Inside the order's transaction: the assessment it relied on still holds."""
    if not agreement.cross_border:
        return
    state = _assessment_state(connection, listing.id, buyer, now)
    violations = [
        v
        for v in evaluate(agreement.policy, agreement.declaration, _context(listing, state, None))
        if v.clause == "cross_border"
    ]
    if violations:
        raise PolicyViolationError(violations)


# --------------------------------------------------------------------------- assessments


def assessment_public(row: CrossBorderAssessment) -> AssessmentPublic:
    return AssessmentPublic(
        listing_id=row.listing_id,
        buyer=row.buyer_key_id,
        approved=row.approved,
        reference=row.reference,
        valid_until=row.valid_until,
        assessed_at=row.assessed_at,
        operator=row.operator_key_id,
        leaf_hash=row.leaf_hash,
    )


def assess(session: Session, action: SignedAction, log_key: SM2PrivateKey) -> AssessmentRecorded:
    """Apply a checked ``crossborder.assessed`` action (an operator's)."""
    payload = _payload_of(action, AssessmentPayload)
    timestamp = action.signed.record.timestamp
    if payload.approved and (payload.valid_until is None or payload.valid_until <= timestamp):
        raise InvalidPayloadError(
            "payload.valid_until: an approval needs a validity end after the record's timestamp"
        )
    if not payload.approved and payload.valid_until is not None:
        raise InvalidPayloadError("payload.valid_until: a rejection has no validity (null)")
    if session.get(Listing, payload.listing_id) is None:
        raise ListingNotFoundError(f"no listing {payload.listing_id}")
    buyer = session.get(Participant, payload.buyer)
    if buyer is None:
        raise ParticipantNotFoundError(f"no participant {payload.buyer}")
    if buyer.role != Role.BUYER:
        raise InvalidPayloadError(f"payload.buyer: participant {payload.buyer} is not a buyer")
    leaf_hash = action.submission.leaf_hash.hex()
    operator = action.signed.record.actor

    def stage() -> CrossBorderAssessment:
        row = session.get(CrossBorderAssessment, (payload.listing_id, payload.buyer))
        if row is None:
            row = CrossBorderAssessment(
                listing_id=payload.listing_id,
                buyer_key_id=payload.buyer,
                approved=payload.approved,
                reference=payload.reference,
                valid_until=payload.valid_until,
                assessed_at=timestamp,
                operator_key_id=operator,
                leaf_hash=leaf_hash,
            )
            session.add(row)
        else:
            row.approved = payload.approved
            row.reference = payload.reference
            row.valid_until = payload.valid_until
            row.assessed_at = timestamp
            row.operator_key_id = operator
            row.leaf_hash = leaf_hash
        return row

    row, accepted = commit_with_record(session, action, log_key, stage)
    session.refresh(row)
    return AssessmentRecorded(assessment=assessment_public(row), log=log_receipt(accepted))


def list_assessments(
    session: Session,
    principal: Principal,
    *,
    listing_id: str | None,
    buyer: str | None,
    limit: int,
    offset: int,
) -> AssessmentPage:
    """Operators see every assessment; a buyer its own; a provider those of its
    listings. Filtered by listing and buyer; newest first."""
    query = select(CrossBorderAssessment)
    if principal.role is Role.BUYER:
        query = query.where(col(CrossBorderAssessment.buyer_key_id) == principal.key_id)
    elif not principal.is_operator:
        own = select(col(ListingProvider.listing_id)).where(
            col(ListingProvider.provider_key_id) == principal.key_id
        )
        query = query.where(col(CrossBorderAssessment.listing_id).in_(own))
    if listing_id is not None:
        query = query.where(col(CrossBorderAssessment.listing_id) == listing_id)
    if buyer is not None:
        query = query.where(col(CrossBorderAssessment.buyer_key_id) == buyer)
    query = query.order_by(
        col(CrossBorderAssessment.assessed_at).desc(),
        col(CrossBorderAssessment.listing_id),
        col(CrossBorderAssessment.buyer_key_id),
    ).offset(offset)
    rows = session.execute(query.limit(limit + 1)).scalars().all()
    return AssessmentPage(
        items=[assessment_public(r) for r in rows[:limit]],
        next_offset=offset + limit if len(rows) > limit else None,
    )
