"""What awaits the operators (``GET /operator/queue``), defined once: the exchange
serves this class and the SDK parses it. No class docstring: it would become the
OpenAPI description."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.protocol.listing import Listing
from ledger.protocol.participant import Participant
from ledger.protocol.reader import JSONObject

__all__ = ["ReviewQueue"]


@dataclass(frozen=True, slots=True)
class ReviewQueue:
    listings: tuple[Listing, ...] = field(
        metadata={"description": "Listings submitted or under review, longest waiting first."}
    )
    participants: tuple[Participant, ...] = field(
        metadata={
            "description": "Providers awaiting approval (unverified), in the order they registered."
        }
    )
    more_listings: bool = field(metadata={"description": "More listings wait than `limit` shows."})
    more_participants: bool = field(
        metadata={"description": "More providers wait than `limit` shows."}
    )

    @classmethod
    def from_dict(cls, data: Any) -> ReviewQueue:
        o = JSONObject(data, "")
        return cls(
            listings=o.items("listings", lambda item, where: Listing.from_dict(item, path=where)),
            participants=o.items(
                "participants", lambda item, where: Participant.from_dict(item, path=where)
            ),
            more_listings=o.boolean("more_listings"),
            more_participants=o.boolean("more_participants"),
        )
