"""Assessment orders (docs/quality.md): an approved assessor (评估机构) orders a
listing's whole current version at 0 fen with terms ``purpose: "assessment"``, so
that the provider's agent delivers it like any order and the assessor can recompute
the quality report. Nobody else gets a zero-price assessment, and an assessor orders
nothing else (403 ``assessment_forbidden``); an assessment takes no seat of a
limited offer and buys no rows, periods or queries (422 ``invalid_terms``)."""

from __future__ import annotations

from exchange.auth.errors import RoleError
from exchange.participants.models import ParticipantStatus, Role
from exchange.pricing import TermsError

__all__ = ["ASSESSMENT", "AssessmentForbiddenError", "is_assessment"]

ASSESSMENT = "assessment"


class AssessmentForbiddenError(RoleError):
    code = "assessment_forbidden"


def is_assessment(
    role: Role,
    status: ParticipantStatus,
    purpose: str | None,
    *,
    rows: int | None = None,
    periods: int | None = None,
    computation: bool = False,
) -> bool:
    """Whether terms with ``purpose`` make an assessment order for a participant of
    ``role`` and ``status``; refuses what may not be ordered (see the module docstring)."""
    if purpose != ASSESSMENT:
        if role is Role.ASSESSOR:
            raise AssessmentForbiddenError(
                "an assessor orders only assessments (terms purpose: assessment), at 0 fen"
            )
        return False
    if role is not Role.ASSESSOR or status is not ParticipantStatus.ACTIVE:
        raise AssessmentForbiddenError(
            "only an approved assessor orders an assessment at 0 fen; you are "
            f"{'an unapproved ' if role is Role.ASSESSOR else 'a '}{role.value}"
        )
    if rows is not None or periods is not None or computation:
        raise TermsError("an assessment orders the whole version: no rows, periods or queries")
    return True
