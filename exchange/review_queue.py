"""The operators' work queue: what waits for a decision of theirs.

* listings ``submitted`` (to start reviewing) and ``under_review`` (to publish or
  reject), longest waiting first (by the time of their last change);
* providers ``unverified`` (to approve), in the order they registered.

Each part holds at most ``limit`` items; ``more`` says whether others wait. The
answer's shape is :class:`ledger.protocol.review_queue.ReviewQueue`.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session, col

from exchange.listings.models import Listing, ListingState
from exchange.listings.service import listings_public
from exchange.participants.models import Participant, ParticipantStatus, Role
from exchange.participants.service import profile
from ledger.protocol.review_queue import ReviewQueue

__all__ = ["AWAITING_REVIEW", "review_queue"]

AWAITING_REVIEW = (ListingState.SUBMITTED, ListingState.UNDER_REVIEW)


def review_queue(session: Session, limit: int) -> ReviewQueue:
    listings = (
        session.execute(
            select(Listing)
            .where(col(Listing.state).in_([s.value for s in AWAITING_REVIEW]))
            .order_by(col(Listing.updated_at), col(Listing.id))
            .limit(limit + 1)
        )
        .scalars()
        .all()
    )
    waiting = (
        session.execute(
            select(Participant)
            .where(
                col(Participant.role) == Role.PROVIDER.value,
                col(Participant.status) == ParticipantStatus.UNVERIFIED.value,
            )
            .order_by(col(Participant.registered_at), col(Participant.key_id))
            .limit(limit + 1)
        )
        .scalars()
        .all()
    )
    return ReviewQueue(
        listings=tuple(listings_public(session, listings[:limit])),
        participants=tuple(profile(row) for row in waiting[:limit]),
        more_listings=len(listings) > limit,
        more_participants=len(waiting) > limit,
    )
