"""The operators' work queue: what waits for a decision of theirs.

* listings ``submitted`` (to start reviewing) and ``under_review`` (to publish or
  reject), longest waiting first (by the time of their last change);
* providers ``unverified`` (to approve), in the order they registered.

Each part holds at most ``limit`` items; ``more`` says whether others wait.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlmodel import Session, col

from exchange.listings.models import Listing, ListingState
from exchange.listings.service import listing_public
from exchange.participants.models import Participant, ParticipantStatus, Role
from exchange.participants.service import profile
from ledger.protocol import listing as listing_wire
from ledger.protocol import participant as participant_wire

__all__ = ["AWAITING_REVIEW", "ReviewQueue", "review_queue"]

AWAITING_REVIEW = (ListingState.SUBMITTED, ListingState.UNDER_REVIEW)


class ReviewQueue(BaseModel):
    listings: list[listing_wire.Listing] = Field(
        description="Listings submitted or under review, longest waiting first."
    )
    participants: list[participant_wire.Participant] = Field(
        description="Providers awaiting approval (unverified), in the order they registered."
    )
    more_listings: bool = Field(description="More listings wait than `limit` shows.")
    more_participants: bool = Field(description="More providers wait than `limit` shows.")


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
        listings=[listing_public(session, row) for row in listings[:limit]],
        participants=[profile(row) for row in waiting[:limit]],
        more_listings=len(listings) > limit,
        more_participants=len(waiting) > limit,
    )
