"""Listings over REST: the registration flow (数据产品登记) and simple listing.

Each POST/PUT takes ``{"record": <signed record>}`` whose type names the
action (``listing.drafted``, ``listing.edited``, ``listing.submitted``,
``listing.review_started``, ``listing.published``, ``listing.rejected``,
``listing.delisted``, ``listing.version_added``); the response carries the
listing and ``"log": {"index", "leaf_hash", "promise"}``. ``GET /listings/search``
searches published listings (exchange/listings/search.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from exchange.api.deps import (
    AuthenticatorDep,
    LogKeyDep,
    OptionalParticipant,
    SessionDep,
    SettingsDep,
    require_role,
)
from exchange.api.examples import json_body, ok
from exchange.api.params import ListingIdPath
from exchange.api.responses import error_responses
from exchange.auth.verifier import Authenticator
from exchange.listings import search, service
from exchange.listings.models import ListingState
from exchange.participants.models import Principal, Role
from exchange.pricing import MAX_AMOUNT_FEN
from exchange.records import ActionRequest, log_receipt
from exchange.settings import Settings
from ledger.protocol.listing import (
    Listing,
    ListingChanged,
    ListingPage,
    ListingVersion,
    VersionAdded,
)
from ledger.protocol.search import SearchPage
from ledger.sm2 import SM2PrivateKey, SM2PublicKey

__all__ = ["router"]

router = APIRouter(prefix="/listings", tags=["listings"])

Provider = Annotated[Principal, Depends(require_role(Role.PROVIDER))]
Operator = Annotated[Principal, Depends(require_role(Role.OPERATOR))]
ProviderOrOperator = Annotated[Principal, Depends(require_role(Role.PROVIDER, Role.OPERATOR))]

_COMMON = {
    400: "invalid_record, invalid_signature",
    401: "unauthenticated, unknown_key, signature_invalid, stale_signature, replayed_nonce, "
    "digest_mismatch",
    403: "participant_suspended, role_forbidden, actor_mismatch",
    404: "listing_not_found (also for a listing you may not see)",
    409: "duplicate_record, concurrent_update",
    422: "invalid_request, wrong_record_type, stale_record, invalid_payload, target_mismatch",
}
_READ_ERRORS = {  # reads take an optional signature: unsigned is anonymous, not refused
    401: _COMMON[401],
    403: "participant_suspended",
    404: _COMMON[404],
    422: "invalid_request",
}


def _errors(**extra: str) -> dict[int | str, dict[str, Any]]:
    spec: dict[int, str] = {}
    for status, text in _COMMON.items():
        more = extra.get(f"e{status}")
        spec[status] = f"{text}, {more}" if more else text
    if "e413" in extra:
        spec[413] = extra["e413"]
    return error_responses(spec)


@dataclass(frozen=True, slots=True)
class _Signing:
    """What checking and logging a listing action needs besides the request."""

    authenticator: Authenticator
    log_key: SM2PrivateKey
    settings: Settings


async def _signing(
    authenticator: AuthenticatorDep, log_key: LogKeyDep, settings: SettingsDep
) -> _Signing:
    return _Signing(authenticator, log_key, settings)


Signing = Annotated[_Signing, Depends(_signing)]


def _ctx(signing: _Signing, session: SessionDep, principal: Principal) -> service.ListingContext:
    authenticator = signing.authenticator
    if principal.is_operator:
        key = authenticator.operators[principal.key_id]
    else:
        key = SM2PublicKey.from_pem(principal.public_key_pem)
    return service.ListingContext(
        session=session,
        principal=principal,
        public_key=key,
        log_key=signing.log_key,
        skew_s=authenticator.skew_s,
        sample_max_bytes=signing.settings.listing_sample_max_bytes,
        certificate_validity_s=signing.settings.certificate_validity_s,
    )


def _changed(result: tuple[Listing, Any]) -> ListingChanged:
    listing, accepted = result
    return ListingChanged(listing=listing, log=log_receipt(accepted))


_CONTENT_ERRORS = (
    "core_data_forbidden, invalid_shares, unknown_provider, invalid_sample, invalid_pricing"
)
_TOO_LARGE = "sample_too_large, payload_too_large (the body exceeds max_request_bytes)"


@router.post(
    "",
    status_code=201,
    response_model=ListingChanged,
    summary="Draft a listing (providers)",
    responses={
        **ok(201, "create_listing"),
        **_errors(e409="listing_exists", e422=_CONTENT_ERRORS, e413=_TOO_LARGE),
    },
    openapi_extra=json_body("create_listing"),
)
def create_listing(
    body: ActionRequest, principal: Provider, session: SessionDep, signing: Signing
) -> ListingChanged:
    """A ``listing.drafted`` record: ``{"listing_id": <new UUID>, title, …}``.
    Unverified providers may draft; 核心 data is refused at once."""
    return _changed(service.draft(_ctx(signing, session, principal), body))


@router.put(
    "/{listing_id}",
    response_model=ListingChanged,
    summary="Edit a draft (or a rejected listing, which becomes a draft again)",
    responses={
        **ok(200, "edit_listing"),
        **_errors(e403="not_owner", e409="invalid_state", e422=_CONTENT_ERRORS, e413=_TOO_LARGE),
    },
    openapi_extra=json_body("edit_listing"),
)
def edit_listing(
    listing_id: ListingIdPath,
    body: ActionRequest,
    principal: Provider,
    session: SessionDep,
    signing: Signing,
) -> ListingChanged:
    """A ``listing.edited`` record with the full new content."""
    return _changed(service.edit(_ctx(signing, session, principal), listing_id, body))


@router.post(
    "/{listing_id}/submit",
    response_model=ListingChanged,
    summary="Submit a draft for review (its owner)",
    responses={
        **ok(200, "submit_listing"),
        **_errors(
            e403="not_owner, provider_unverified",
            e409="invalid_state",
            e422="declarations_incomplete",
        ),
    },
    openapi_extra=json_body("submit_listing"),
)
def submit_listing(
    listing_id: ListingIdPath,
    body: ActionRequest,
    principal: Provider,
    session: SessionDep,
    signing: Signing,
) -> ListingChanged:
    """Refused (422 ``declarations_incomplete``) unless the declarations publication
    needs are complete (the same check as publishing)."""
    return _changed(service.submit(_ctx(signing, session, principal), listing_id, body))


@router.post(
    "/{listing_id}/review",
    response_model=ListingChanged,
    summary="Start the compliance review (operators)",
    responses={**ok(200, "start_review"), **_errors(e409="invalid_state")},
    openapi_extra=json_body("start_review"),
)
def start_review(
    listing_id: ListingIdPath,
    body: ActionRequest,
    principal: Operator,
    session: SessionDep,
    signing: Signing,
) -> ListingChanged:
    return _changed(service.start_review(_ctx(signing, session, principal), listing_id, body))


@router.post(
    "/{listing_id}/publish",
    response_model=ListingChanged,
    summary="Publish after review (operators)",
    responses={
        **ok(200, "publish_listing"),
        **_errors(
            e409="invalid_state, certificate_number_taken (publications kept racing for "
            "the number)",
            e422="declarations_incomplete",
        ),
    },
    openapi_extra=json_body("publish_listing"),
)
def publish_listing(
    listing_id: ListingIdPath,
    body: ActionRequest,
    principal: Operator,
    session: SessionDep,
    signing: Signing,
) -> ListingChanged:
    """Refused (422 ``declarations_incomplete``) unless classification (一般/重要),
    personal information (and its legal basis when true), source legality,
    licence and permitted purposes are declared."""
    return _changed(service.publish(_ctx(signing, session, principal), listing_id, body))


@router.post(
    "/{listing_id}/reject",
    response_model=ListingChanged,
    summary="Reject after review, with a reason (operators)",
    responses={**ok(200, "reject_listing"), **_errors(e409="invalid_state")},
    openapi_extra=json_body("reject_listing"),
)
def reject_listing(
    listing_id: ListingIdPath,
    body: ActionRequest,
    principal: Operator,
    session: SessionDep,
    signing: Signing,
) -> ListingChanged:
    return _changed(service.reject(_ctx(signing, session, principal), listing_id, body))


@router.post(
    "/{listing_id}/delist",
    response_model=ListingChanged,
    summary="Delist a published listing (its owner or an operator)",
    responses={**ok(200, "delist_listing"), **_errors(e403="not_owner", e409="invalid_state")},
    openapi_extra=json_body("delist_listing"),
)
def delist_listing(
    listing_id: ListingIdPath,
    body: ActionRequest,
    principal: ProviderOrOperator,
    session: SessionDep,
    signing: Signing,
) -> ListingChanged:
    return _changed(service.delist(_ctx(signing, session, principal), listing_id, body))


@router.post(
    "/{listing_id}/versions",
    status_code=201,
    response_model=VersionAdded,
    summary="Declare a new content version of a published listing (its owner)",
    responses={
        **ok(201, "add_version"),
        **_errors(
            e403="not_owner",
            e409="invalid_state, version_conflict, certificate_cancelled (the listing's "
            "registration was cancelled), certificate_number_taken",
        ),
    },
    openapi_extra=json_body("add_version"),
)
def add_version(
    listing_id: ListingIdPath,
    body: ActionRequest,
    principal: Provider,
    session: SessionDep,
    signing: Signing,
) -> VersionAdded:
    """A ``listing.version_added`` record: the next version number and its SM3 digest."""
    listing, version, accepted = service.add_version(
        _ctx(signing, session, principal), listing_id, body
    )
    return VersionAdded(listing=listing, version=version, log=log_receipt(accepted))


@router.get(
    "/search",
    response_model=SearchPage,
    summary="Search published listings: full text, filters, sort, cursor pages, facets",
    responses={
        **ok(200, "search_listings"),
        **error_responses(
            {
                400: "invalid_cursor",
                422: "invalid_request (a parameter out of range), invalid_query "
                "(too many terms or tags, NUL characters, min_price > max_price, "
                "sort=relevance without q)",
            }
        ),
    },
)
def search_listings(
    session: SessionDep,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Terms (space separated), each matched as a substring of the title, "
            "tags or description, case-insensitively; all must match. No query syntax.",
            examples=["重庆 交通"],
        ),
    ] = None,
    category: Annotated[str | None, Query(max_length=100)] = None,
    classification: search.SearchClassification | None = None,
    pricing_model: search.PricingModel | None = None,
    min_price: Annotated[
        int | None, Query(ge=0, le=MAX_AMOUNT_FEN, description="Fen, inclusive, on price_fen.")
    ] = None,
    max_price: Annotated[
        int | None, Query(ge=0, le=MAX_AMOUNT_FEN, description="Fen, inclusive, on price_fen.")
    ] = None,
    provider: Annotated[
        str | None, Query(pattern=r"^[0-9a-f]{64}$", description="A provider's key id.")
    ] = None,
    tag: Annotated[
        list[str] | None, Query(description="Repeatable; listings carrying all of them.")
    ] = None,
    custody: Annotated[
        search.SearchCustody | None,
        Query(
            description="Who holds the data: provider (its agent; the exchange never sees "
            "the rows) or exchange.",
            examples=["provider"],
        ),
    ] = None,
    computation: Annotated[
        bool | None,
        Query(
            description="true: listings whose current version offers computations; "
            "false: those without.",
            examples=[True],
        ),
    ] = None,
    grade: Annotated[
        search.SearchGrade | None,
        Query(
            description="The current version's quality grade (docs/quality.md): A, B, C or D.",
            examples=["A"],
        ),
    ] = None,
    sort: Annotated[
        search.Sort | None, Query(description="Default: relevance with q, else newest.")
    ] = None,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    facets: bool = True,
    facet_limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> SearchPage:
    """Published listings only (never drafts, listings under review or delisted ones).
    See ``exchange/listings/search.py`` for the matching, relevance, price and cursor
    rules."""
    if tag is not None and any(len(t) > 50 for t in tag):
        raise search.InvalidQueryError("a tag has at most 50 characters")
    return search.search(
        session,
        search.SearchParams(
            q=q,
            category=category,
            classification=classification,
            pricing_model=pricing_model,
            min_price=min_price,
            max_price=max_price,
            provider=provider,
            tags=tuple(tag or ()),
            custody=custody,
            computation=computation,
            grade=grade,
            sort=sort,
            cursor=cursor,
            limit=limit,
            facets=facets,
            facet_limit=facet_limit,
        ),
    )


@router.get(
    "/{listing_id}/versions",
    response_model=list[ListingVersion],
    summary="A listing's content versions",
    responses={**ok(200, "list_versions"), **error_responses(_READ_ERRORS)},
)
def list_versions(
    listing_id: ListingIdPath, principal: OptionalParticipant, session: SessionDep
) -> list[ListingVersion]:
    return service.versions(session, listing_id, principal)


@router.get(
    "/{listing_id}",
    response_model=Listing,
    summary="A listing (public when published or delisted)",
    responses={**ok(200, "get_listing"), **error_responses(_READ_ERRORS)},
)
def get_listing(
    listing_id: ListingIdPath, principal: OptionalParticipant, session: SessionDep
) -> Listing:
    """Drafts and listings under review are visible to their providers and operators
    only (a signed request); anyone else gets 404."""
    return service.get(session, listing_id, principal)


@router.get(
    "",
    response_model=ListingPage,
    summary="Listings you may see, filtered by provider and state",
    responses={
        **ok(200, "list_listings"),
        **error_responses({s: t for s, t in _READ_ERRORS.items() if s != 404}),
    },
)
def list_listings(
    principal: OptionalParticipant,
    session: SessionDep,
    provider: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$")] = None,
    state: ListingState | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ListingPage:
    items, next_offset = service.search(
        session, principal, provider=provider, state=state, limit=limit, offset=offset
    )
    return ListingPage(items=tuple(items), next_offset=next_offset)
