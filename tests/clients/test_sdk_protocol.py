"""The SDK parses the exchange's answers with the shapes the exchange serves
(``ledger.protocol``), not with copies of its own."""

from __future__ import annotations

from dataclasses import fields

import clients.sdk as sdk
from ledger.protocol import accounts, health, listing, participant, quality, review_queue, search


def test_the_sdk_exports_the_shared_shapes_themselves() -> None:
    assert sdk.Health is health.Health
    assert sdk.DatabaseStatus is health.DatabaseStatus
    assert sdk.ChainStatus is health.ChainStatus
    assert sdk.Balance is accounts.Balance
    assert sdk.PLATFORM_ACCOUNT == accounts.PLATFORM_ACCOUNT


def test_listing_search_and_participant_answers_are_the_shared_shapes() -> None:
    for shared in (
        listing.ListingVersion,
        listing.ProviderShare,
        listing.Column,
        listing.ListingPage,
        review_queue.ReviewQueue,
        search.SearchPage,
        search.SearchHit,
        search.Facets,
        search.FacetCount,
        quality.QualitySummary,
    ):
        assert getattr(sdk, shared.__name__) is shared


def test_the_sdk_listing_and_participant_add_only_the_log_to_the_shared_shapes() -> None:
    """They derive from the shared shapes and declare no field of the wire object
    again: the field list and its types live in ``ledger.protocol`` alone."""
    for ours, shared, own in (
        (sdk.Listing, listing.Listing, {"log", "added_version"}),
        (sdk.Participant, participant.Participant, {"log"}),
    ):
        assert issubclass(ours, shared)
        assert set(ours.__annotations__) == own
        assert {f.name for f in fields(ours)} == {f.name for f in fields(shared)} | own
