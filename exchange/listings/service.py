"""The listing registration flow (数据产品登记); every change is a signed record
applied with :func:`exchange.records.commit_with_record`.

=================  =========================  ==================  ==============
record             who                        from                to
=================  =========================  ==================  ==============
listing.drafted    a provider (an owner)      —                   draft
listing.edited     the owner                  draft, rejected     draft
listing.submitted  the owner, approved        draft               submitted
review_started     an operator                submitted           under_review
listing.published  an operator                under_review        published
listing.rejected   an operator                under_review        rejected
listing.delisted   the owner or an operator   published           delisted
version_added      the owner                  published           published
=================  =========================  ==================  ==============

``listing.published`` and ``listing.version_added`` come with the exchange's
``certificate.issued`` record for the version, stored in the same transaction
(:mod:`exchange.certificates.service`; docs/certificates.md).

Visibility: published and delisted listings are public; others only to their
providers and operators (404 ``listing_not_found`` to anyone else, so drafts
do not leak). Submission and publication both need complete declarations
(:func:`missing_declarations`: 422 ``declarations_incomplete``). Refusals: 403
``not_owner`` / ``provider_unverified``, 409 ``invalid_state``, 422
``core_data_forbidden``, ``declarations_incomplete``, ``invalid_shares``,
``unknown_provider``, ``invalid_sample``, ``invalid_pricing``, ``invalid_payload``
(provider custody without a ``row_root``; quantity pricing outside provider
custody); 413 ``sample_too_large``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel
from sqlalchemy import or_, select
from sqlmodel import Session, col

from exchange.certificates import service as certificates
from exchange.errors import ConflictError, ExchangeError, ForbiddenError, NotFoundError
from exchange.listings.models import Listing, ListingProvider, ListingState, ListingVersion
from exchange.listings.quality import quality_summaries
from exchange.listings.schemas import (
    MAX_SAMPLE_ROWS,
    DraftPayload,
    ListingContent,
    ReasonPayload,
    TargetPayload,
    VersionPayload,
)
from exchange.listings.search import index as search_index
from exchange.log.service import Accepted
from exchange.participants.models import Participant, ParticipantStatus, Principal, Role
from exchange.pricing import TieredPricing, parse_pricing
from exchange.records import (
    ActionRequest,
    InvalidPayloadError,
    SignedAction,
    check_action,
    commit_with_records,
    payload_of,
)
from ledger.computation.offer import ComputationOffer, OfferFormatError
from ledger.pricing_reference import CostBasis, CostBasisError
from ledger.protocol import listing as wire
from ledger.protocol.policy import Policy, PolicyFormatError, policy_of
from ledger.protocol.quality import QualitySummary
from ledger.records import canonical_json
from ledger.sm2 import SM2PrivateKey, SM2PublicKey

__all__ = ["ListingContext", "get", "listing_public", "listings_public", "search", "versions"]

PUBLIC_STATES = (ListingState.PUBLISHED, ListingState.DELISTED)

_P = TypeVar("_P", bound=BaseModel)


class ListingNotFoundError(NotFoundError):
    code = "listing_not_found"


class ListingExistsError(ConflictError):
    code = "listing_exists"


class InvalidStateError(ConflictError):
    code = "invalid_state"


class NotOwnerError(ForbiddenError):
    code = "not_owner"


class ProviderUnverifiedError(ForbiddenError):
    code = "provider_unverified"


class TargetMismatchError(ExchangeError):
    status = 422
    code = "target_mismatch"


class CoreDataForbiddenError(ExchangeError):
    status = 422
    code = "core_data_forbidden"


class DeclarationsIncompleteError(ExchangeError):
    status = 422
    code = "declarations_incomplete"


class InvalidSharesError(ExchangeError):
    status = 422
    code = "invalid_shares"


class UnknownProviderError(ExchangeError):
    status = 422
    code = "unknown_provider"


class InvalidSampleError(ExchangeError):
    status = 422
    code = "invalid_sample"


class SampleTooLargeError(ExchangeError):
    status = 413
    code = "sample_too_large"


class VersionConflictError(ConflictError):
    code = "version_conflict"


@dataclass(frozen=True, slots=True)
class ListingContext:
    """What every change needs: the session, the signer, keys and limits."""

    session: Session
    principal: Principal
    public_key: SM2PublicKey
    log_key: SM2PrivateKey
    skew_s: int
    sample_max_bytes: int
    certificate_validity_s: int = certificates.DEFAULT_VALIDITY_S


# --------------------------------------------------------------------------- reading


def _providers(session: Session, listing_id: str) -> list[ListingProvider]:
    return list(
        session.execute(
            select(ListingProvider)
            .where(col(ListingProvider.listing_id) == listing_id)
            .order_by(col(ListingProvider.position))
        )
        .scalars()
        .all()
    )


def listing_public(session: Session, row: Listing) -> wire.Listing:
    """The listing as the exchange shows it (:class:`ledger.protocol.listing.Listing`)."""
    [public] = listings_public(session, [row])
    return public


def listings_public(session: Session, rows: Sequence[Listing]) -> list[wire.Listing]:
    """:func:`listing_public` of each of ``rows``, in order, in a fixed number of
    queries however many they are (a page of listings, the review queue)."""
    if not rows:
        return []
    ids = sorted({row.id for row in rows})
    current = {(row.id, row.version) for row in rows}
    row_roots = {
        (version.listing_id, version.version): version.row_root
        for version in session.execute(
            select(ListingVersion).where(col(ListingVersion.listing_id).in_(ids))
        ).scalars()
        if (version.listing_id, version.version) in current
    }
    providers: dict[str, list[wire.ProviderShare]] = defaultdict(list)
    for provider in session.execute(
        select(ListingProvider)
        .where(col(ListingProvider.listing_id).in_(ids))
        .order_by(col(ListingProvider.listing_id), col(ListingProvider.position))
    ).scalars():
        providers[provider.listing_id].append(
            wire.ProviderShare(provider.provider_key_id, provider.share_bps)
        )
    qualities = quality_summaries(session, current)
    numbers = certificates.current_numbers(session, current)
    return [
        _public(
            row,
            providers=providers[row.id],
            row_root=row_roots.get((row.id, row.version)),
            quality=qualities.get((row.id, row.version)),
            certificate=numbers.get((row.id, row.version)),
        )
        for row in rows
    ]


def _public(
    row: Listing,
    *,
    providers: Sequence[wire.ProviderShare],
    row_root: str | None,
    quality: QualitySummary | None,
    certificate: str | None,
) -> wire.Listing:
    policy = policy_of(row.policy)
    return wire.Listing(
        id=row.id,
        state=row.state,
        owner=row.owner_key_id,
        title=row.title,
        description=row.description,
        category=row.category,
        tags=tuple(row.tags),
        providers=tuple(providers),
        columns=tuple(wire.Column(c["name"], c["type"]) for c in row.columns),
        sample_rows=tuple(row.sample_rows),
        row_count=row.row_count,
        byte_size=row.byte_size,
        content_digest=row.content_digest,
        format=row.format,
        update_frequency=row.update_frequency,
        version=row.version,
        licence=row.licence,
        usage_terms=row.usage_terms,
        pricing=row.pricing,
        declarations={
            "classification": row.classification,
            "personal_information": row.personal_information,
            "pi_legal_basis": row.pi_legal_basis,
            "source_legality": row.source_legality,
            "permitted_purposes": row.permitted_purposes,
        },
        computation=row.computation,
        custody=row.custody,
        delivery_window_s=row.delivery_window_s,
        cost_basis=row.cost_basis,
        row_root=row_root,
        quality=quality,
        policy=policy.to_dict(),
        policy_digest=policy.digest(),
        rejection_reason=row.rejection_reason,
        delisting_reason=row.delisting_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        published_at=row.published_at,
        certificate=certificate,
    )


def _is_provider_of(session: Session, row: Listing, key_id: str) -> bool:
    return session.get(ListingProvider, (row.id, key_id)) is not None


def _can_see(session: Session, row: Listing, principal: Principal | None) -> bool:
    if row.state in PUBLIC_STATES:
        return True
    if principal is None:
        return False
    return principal.is_operator or _is_provider_of(session, row, principal.key_id)


def _load(session: Session, listing_id: str, principal: Principal | None) -> Listing:
    row = session.get(Listing, listing_id)
    if row is None or not _can_see(session, row, principal):
        raise ListingNotFoundError(f"no listing {listing_id}")
    return row


def load_visible(session: Session, listing_id: str, principal: Principal | None) -> Listing:
    """The listing row if ``principal`` may see it (404 ``listing_not_found`` otherwise)."""
    return _load(session, listing_id, principal)


def get(session: Session, listing_id: str, principal: Principal | None) -> wire.Listing:
    return listing_public(session, _load(session, listing_id, principal))


def versions(
    session: Session, listing_id: str, principal: Principal | None
) -> list[wire.ListingVersion]:
    _load(session, listing_id, principal)
    rows = (
        session.execute(
            select(ListingVersion)
            .where(col(ListingVersion.listing_id) == listing_id)
            .order_by(col(ListingVersion.version))
        )
        .scalars()
        .all()
    )
    return [version_public(row) for row in rows]


def version_public(row: ListingVersion) -> wire.ListingVersion:
    return wire.ListingVersion(
        version=row.version,
        content_digest=row.content_digest,
        row_count=row.row_count,
        byte_size=row.byte_size,
        format=row.format,
        computation=row.computation,
        row_root=row.row_root,
        policy=row.policy,
        created_at=row.created_at,
        log_leaf_hash=row.log_leaf_hash,
    )


def search(
    session: Session,
    principal: Principal | None,
    *,
    provider: str | None,
    state: ListingState | None,
    limit: int,
    offset: int,
) -> tuple[list[wire.Listing], int | None]:
    """Listings the caller may see, newest first, filtered by provider and state."""
    query = select(Listing)
    if principal is None:
        query = query.where(col(Listing.state).in_([s.value for s in PUBLIC_STATES]))
    elif not principal.is_operator:
        own = select(col(ListingProvider.listing_id)).where(
            col(ListingProvider.provider_key_id) == principal.key_id
        )
        query = query.where(
            or_(col(Listing.state).in_([s.value for s in PUBLIC_STATES]), col(Listing.id).in_(own))
        )
    if provider is not None:
        query = query.where(
            col(Listing.id).in_(
                select(col(ListingProvider.listing_id)).where(
                    col(ListingProvider.provider_key_id) == provider
                )
            )
        )
    if state is not None:
        query = query.where(col(Listing.state) == state.value)
    query = query.order_by(col(Listing.created_at).desc(), col(Listing.id)).offset(offset)
    rows = session.execute(query.limit(limit + 1)).scalars().all()
    items = listings_public(session, rows[:limit])
    return items, (offset + limit if len(rows) > limit else None)


# --------------------------------------------------------------------------- checks


def _action(
    ctx: ListingContext, body: ActionRequest, record_type: str, model: type[_P]
) -> tuple[SignedAction, _P]:
    action = check_action(
        body,
        record_type=record_type,
        public_key=ctx.public_key,
        signer=ctx.principal.key_id,
        skew_s=ctx.skew_s,
    )
    return action, payload_of(action, model)


def _check_target(payload_id: str, listing_id: str) -> None:
    if payload_id != listing_id:
        raise TargetMismatchError(
            f"the record names listing {payload_id}, the request {listing_id}"
        )


def _check_content(ctx: ListingContext, content: ListingContent) -> dict[str, object]:
    """Validate what the schema cannot; return the normalised pricing."""
    if content.declarations.classification == "核心":
        raise CoreDataForbiddenError("核心 (core) data can never be listed")
    keys = [p.key_id for p in content.providers]
    if len(set(keys)) != len(keys):
        raise InvalidSharesError("a provider is named twice")
    total = sum(p.share_bps for p in content.providers)
    if total != 10_000:
        raise InvalidSharesError(f"revenue shares sum to {total} basis points, not 10000")
    if ctx.principal.key_id not in keys:
        raise InvalidSharesError("the drafting provider must be one of the providers")
    for key_id in keys:
        if key_id == ctx.principal.key_id:
            continue
        row = ctx.session.get(Participant, key_id)
        if row is None or row.role != Role.PROVIDER or row.status == ParticipantStatus.SUSPENDED:
            raise UnknownProviderError(f"co-provider {key_id} is not a registered provider")
    names = [c.name for c in content.columns]
    if len(set(names)) != len(names):
        raise InvalidSampleError("column names must be unique")
    if len(content.sample_rows) > MAX_SAMPLE_ROWS:
        raise SampleTooLargeError(f"at most {MAX_SAMPLE_ROWS} sample rows")
    size = len(canonical_json(content.sample_rows))
    if size > ctx.sample_max_bytes:
        raise SampleTooLargeError(f"sample rows take {size} bytes; at most {ctx.sample_max_bytes}")
    known = set(names)
    for i, sample in enumerate(content.sample_rows):
        unknown = sorted(set(sample) - known)
        if unknown:
            raise InvalidSampleError(f"sample_rows[{i}] has unknown column(s) {unknown}")
    pricing = parse_pricing(content.pricing)
    _check_custody(content, pricing)
    _cost_basis(content.cost_basis)
    return pricing.model_dump(exclude_defaults=True) | {"model": pricing.model}


def _computation_offer(value: dict[str, object] | None, custody: str) -> dict[str, object] | None:
    """The normalised computation offer of a draft or version payload (422
    ``invalid_payload`` naming the path when it is not one, or when the data is not
    in provider custody: the provider's agent runs the queries)."""
    if value is None:
        return None
    if custody != "provider":
        raise InvalidPayloadError(
            "payload.computation: a computation offer needs provider custody: the "
            "provider's agent runs the queries on data that stays with it"
        )
    try:
        return ComputationOffer.from_dict(value, "payload.computation").to_dict()
    except OfferFormatError as exc:
        raise InvalidPayloadError(str(exc)) from None


def _cost_basis(value: dict[str, object] | None) -> dict[str, int] | None:
    """The normalised cost basis of a draft or version payload (422
    ``invalid_payload`` naming the field when it is not one)."""
    if value is None:
        return None
    try:
        return CostBasis.from_dict(value).to_dict()
    except CostBasisError as exc:
        raise InvalidPayloadError(f"payload.{exc}") from None


def _policy(value: dict[str, object] | None) -> dict[str, object] | None:
    """The normalised usage policy of a draft or version payload (422
    ``invalid_payload`` naming the path when it is not one)."""
    if value is None:
        return None
    try:
        return Policy.from_dict(value, "payload.policy").to_dict()
    except PolicyFormatError as exc:
        raise InvalidPayloadError(str(exc)) from None


def _check_custody(content: ListingContent, pricing: object) -> None:
    if content.custody == "provider" and content.row_root is None:
        raise InvalidPayloadError(
            "payload.row_root: required in provider custody (the SM3 row-tree root of the "
            "dataset, clients.datasets.describe_file): buyers check their rows against it"
        )
    if isinstance(pricing, TieredPricing) and content.custody != "provider":
        raise InvalidPayloadError(
            "quantity pricing needs provider custody: the provider's agent cuts the rows bought"
        )


def _apply_content(row: Listing, content: ListingContent, pricing: dict[str, object]) -> None:
    row.title = content.title
    row.description = content.description
    row.category = content.category
    row.tags = list(content.tags)
    row.columns = [c.model_dump() for c in content.columns]
    row.sample_rows = [dict(r) for r in content.sample_rows]
    row.row_count = content.row_count
    row.byte_size = content.byte_size
    row.content_digest = content.content_digest
    row.format = content.format
    row.update_frequency = content.update_frequency
    row.licence = content.licence
    row.usage_terms = content.usage_terms
    row.pricing = dict(pricing)
    row.custody = content.custody
    row.delivery_window_s = content.delivery_window_s
    row.cost_basis = _cost_basis(content.cost_basis)
    d = content.declarations
    row.classification = d.classification
    row.personal_information = d.personal_information
    row.pi_legal_basis = d.pi_legal_basis
    row.source_legality = d.source_legality
    row.permitted_purposes = list(d.permitted_purposes)


def _replace_providers(session: Session, listing_id: str, content: ListingContent) -> None:
    for old in _providers(session, listing_id):
        session.delete(old)
    for position, share in enumerate(content.providers):
        session.add(
            ListingProvider(
                listing_id=listing_id,
                provider_key_id=share.key_id,
                share_bps=share.share_bps,
                position=position,
            )
        )


def _require_owner(row: Listing, principal: Principal) -> None:
    if row.owner_key_id != principal.key_id:
        raise NotOwnerError("only the provider that drafted the listing may do this")


def _require_state(row: Listing, *states: ListingState) -> None:
    if row.state not in states:
        allowed = ", ".join(s.value for s in states)
        raise InvalidStateError(f"the listing is {row.state}; this needs it {allowed}")


def missing_declarations(row: Listing) -> list[str]:
    missing = []
    if row.classification not in ("一般", "重要"):
        missing.append("classification (一般 or 重要)")
    if row.personal_information is None:
        missing.append("personal_information")
    elif row.personal_information and not (row.pi_legal_basis or "").strip():
        missing.append("pi_legal_basis (personal information is included)")
    if not (row.source_legality or "").strip():
        missing.append("source_legality")
    if not (row.licence or "").strip():
        missing.append("licence")
    if not row.permitted_purposes:
        missing.append("permitted_purposes")
    return missing


def _require_declarations(row: Listing, what: str) -> None:
    """The one declarations check, at submission (so a provider learns before review)
    and again at publication."""
    missing = missing_declarations(row)
    if missing:
        raise DeclarationsIncompleteError(
            f"cannot {what} without the declarations: {', '.join(missing)}"
        )


# --------------------------------------------------------------------------- changes


def draft(ctx: ListingContext, body: ActionRequest) -> tuple[wire.Listing, Accepted]:
    action, payload = _action(ctx, body, "listing.drafted", DraftPayload)
    pricing = _check_content(ctx, payload)
    offer = _computation_offer(payload.computation, payload.custody)
    policy = _policy(payload.policy)
    timestamp = action.signed.record.timestamp
    session = ctx.session

    def stage() -> Listing:
        if session.get(Listing, payload.listing_id) is not None:
            raise ListingExistsError(f"listing {payload.listing_id} already exists")
        row = Listing(
            id=payload.listing_id,
            owner_key_id=ctx.principal.key_id,
            state=ListingState.DRAFT,
            version=1,
            created_at=timestamp,
            updated_at=timestamp,
            title="",
            description="",
            category="",
            tags=[],
            columns=[],
            sample_rows=[],
            row_count=0,
            byte_size=0,
            content_digest="",
            format="",
            update_frequency="",
            usage_terms="",
            pricing={},
            permitted_purposes=[],
        )
        _apply_content(row, payload, pricing)
        row.computation = offer
        row.policy = policy
        session.add(row)
        _replace_providers(session, row.id, payload)
        session.add(
            ListingVersion(
                listing_id=row.id,
                version=1,
                content_digest=payload.content_digest,
                row_count=payload.row_count,
                byte_size=payload.byte_size,
                format=payload.format,
                computation=offer,
                row_root=payload.row_root,
                policy=policy,
                created_at=timestamp,
                log_leaf_hash=action.submission.leaf_hash.hex(),
            )
        )
        return row

    return _commit(ctx, action, stage)


def edit(
    ctx: ListingContext, listing_id: str, body: ActionRequest
) -> tuple[wire.Listing, Accepted]:
    row = _load(ctx.session, listing_id, ctx.principal)
    action, payload = _action(ctx, body, "listing.edited", DraftPayload)
    _check_target(payload.listing_id, listing_id)
    _require_owner(row, ctx.principal)
    if row.state in (ListingState.PUBLISHED, ListingState.DELISTED):
        raise InvalidStateError(
            f"the listing is {row.state}: its content can no longer be edited (only a draft "
            "or a rejected listing can); declare a new content version, or draft a new listing"
        )
    _require_state(row, ListingState.DRAFT, ListingState.REJECTED)
    pricing = _check_content(ctx, payload)
    offer = _computation_offer(payload.computation, payload.custody)
    policy = _policy(payload.policy)
    session = ctx.session

    def stage() -> Listing:
        _apply_content(row, payload, pricing)
        row.computation = offer
        row.policy = policy
        row.state = ListingState.DRAFT
        row.rejection_reason = None
        row.updated_at = action.signed.record.timestamp
        _replace_providers(session, row.id, payload)
        first = session.get(ListingVersion, (row.id, 1))
        if first is not None and row.version == 1:  # a draft's content is still version 1
            first.content_digest = payload.content_digest
            first.row_count = payload.row_count
            first.byte_size = payload.byte_size
            first.format = payload.format
            first.computation = offer
            first.row_root = payload.row_root
            first.policy = policy
            first.log_leaf_hash = action.submission.leaf_hash.hex()
        return row

    return _commit(ctx, action, stage)


def _transition(
    ctx: ListingContext,
    listing_id: str,
    body: ActionRequest,
    record_type: str,
    check: Callable[[Listing], None],
    change: Callable[[Listing, SignedAction, BaseModel], None],
    model: type[BaseModel] = TargetPayload,
    certify: bool = False,
) -> tuple[wire.Listing, Accepted]:
    row = _load(ctx.session, listing_id, ctx.principal)
    action, payload = _action(ctx, body, record_type, model)
    _check_target(getattr(payload, "listing_id", ""), listing_id)
    issued = None
    if certify:  # refused before the exchange signs a certificate for it
        check(row)
        issued = _issuance(ctx, row, row.version, row.content_digest, _row_root(ctx, row))

    def stage() -> Listing:
        check(row)
        change(row, action, payload)
        row.updated_at = action.signed.record.timestamp
        return row

    return _commit(ctx, action, stage, issued)


def submit(
    ctx: ListingContext, listing_id: str, body: ActionRequest
) -> tuple[wire.Listing, Accepted]:
    def check(row: Listing) -> None:
        _require_owner(row, ctx.principal)
        if ctx.principal.status is not ParticipantStatus.ACTIVE:
            raise ProviderUnverifiedError("an operator must approve you before you submit")
        _require_state(row, ListingState.DRAFT)
        _require_declarations(row, "submit")

    def change(row: Listing, _action: SignedAction, _payload: BaseModel) -> None:
        row.state = ListingState.SUBMITTED

    return _transition(ctx, listing_id, body, "listing.submitted", check, change)


def start_review(
    ctx: ListingContext, listing_id: str, body: ActionRequest
) -> tuple[wire.Listing, Accepted]:
    def check(row: Listing) -> None:
        _require_state(row, ListingState.SUBMITTED)

    def change(row: Listing, _action: SignedAction, _payload: BaseModel) -> None:
        row.state = ListingState.UNDER_REVIEW

    return _transition(ctx, listing_id, body, "listing.review_started", check, change)


def publish(
    ctx: ListingContext, listing_id: str, body: ActionRequest
) -> tuple[wire.Listing, Accepted]:
    def check(row: Listing) -> None:
        _require_state(row, ListingState.UNDER_REVIEW)
        _require_declarations(row, "publish")

    def change(row: Listing, action: SignedAction, _payload: BaseModel) -> None:
        row.state = ListingState.PUBLISHED
        row.published_at = action.signed.record.timestamp

    return certificates.numbered(
        lambda: _transition(ctx, listing_id, body, "listing.published", check, change, certify=True)
    )


def reject(
    ctx: ListingContext, listing_id: str, body: ActionRequest
) -> tuple[wire.Listing, Accepted]:
    def check(row: Listing) -> None:
        _require_state(row, ListingState.UNDER_REVIEW)

    def change(row: Listing, _action: SignedAction, payload: BaseModel) -> None:
        assert isinstance(payload, ReasonPayload)
        row.state = ListingState.REJECTED
        row.rejection_reason = payload.reason

    return _transition(ctx, listing_id, body, "listing.rejected", check, change, ReasonPayload)


def delist(
    ctx: ListingContext, listing_id: str, body: ActionRequest
) -> tuple[wire.Listing, Accepted]:
    def check(row: Listing) -> None:
        if not ctx.principal.is_operator:
            _require_owner(row, ctx.principal)
        _require_state(row, ListingState.PUBLISHED)

    def change(row: Listing, _action: SignedAction, payload: BaseModel) -> None:
        assert isinstance(payload, ReasonPayload)
        row.state = ListingState.DELISTED
        row.delisting_reason = payload.reason

    return _transition(ctx, listing_id, body, "listing.delisted", check, change, ReasonPayload)


def add_version(
    ctx: ListingContext, listing_id: str, body: ActionRequest
) -> tuple[wire.Listing, wire.ListingVersion, Accepted]:
    """``listing.version_added``: a new digest under the next version number; the
    earlier versions stay (orders reference the version they bought). The new
    version gets its own certificate, issued with it."""
    return certificates.numbered(lambda: _add_version(ctx, listing_id, body))


def _add_version(
    ctx: ListingContext, listing_id: str, body: ActionRequest
) -> tuple[wire.Listing, wire.ListingVersion, Accepted]:
    row = _load(ctx.session, listing_id, ctx.principal)
    action, payload = _action(ctx, body, "listing.version_added", VersionPayload)
    _check_target(payload.listing_id, listing_id)
    _require_owner(row, ctx.principal)
    offer = _computation_offer(payload.computation, row.custody)
    if row.custody == "provider" and payload.row_root is None:
        raise InvalidPayloadError("payload.row_root: required in provider custody")
    cost_basis = _cost_basis(payload.cost_basis)
    given = _policy(payload.policy)
    timestamp = action.signed.record.timestamp
    session = ctx.session
    _require_state(row, ListingState.PUBLISHED)
    issued = _issuance(ctx, row, payload.version, payload.content_digest, payload.row_root)

    def stage() -> Listing:
        _require_state(row, ListingState.PUBLISHED)
        if payload.version != row.version + 1:
            raise VersionConflictError(
                f"the next version is {row.version + 1}, the record says {payload.version}"
            )
        policy = row.policy if given is None else given
        version = ListingVersion(
            listing_id=row.id,
            version=payload.version,
            content_digest=payload.content_digest,
            row_count=payload.row_count,
            byte_size=payload.byte_size,
            format=payload.format,
            computation=offer,
            row_root=payload.row_root,
            policy=policy,
            created_at=timestamp,
            log_leaf_hash=action.submission.leaf_hash.hex(),
        )
        session.add(version)
        row.version = payload.version
        row.content_digest = payload.content_digest
        row.row_count = payload.row_count
        row.byte_size = payload.byte_size
        row.format = payload.format
        row.computation = offer
        row.cost_basis = cost_basis
        row.policy = policy
        row.updated_at = timestamp
        return row

    listing, accepted = _commit(ctx, action, stage, issued)
    stored = ctx.session.get(ListingVersion, (listing_id, payload.version))
    version = wire.ListingVersion(
        version=payload.version,
        content_digest=payload.content_digest,
        row_count=payload.row_count,
        byte_size=payload.byte_size,
        format=payload.format,
        computation=offer,
        row_root=payload.row_root,
        policy=None if stored is None else stored.policy,
        created_at=timestamp,
        log_leaf_hash=action.submission.leaf_hash.hex(),
    )
    return listing, version, accepted


def _row_root(ctx: ListingContext, row: Listing) -> str | None:
    current = ctx.session.get(ListingVersion, (row.id, row.version))
    return None if current is None else current.row_root


def _issuance(
    ctx: ListingContext, row: Listing, version: int, content_digest: str, row_root: str | None
) -> certificates.Issuance:
    """The certificate the exchange issues with the publication of ``version``."""
    return certificates.issuance(
        ctx.session,
        ctx.log_key,
        listing_id=row.id,
        version=version,
        title=row.title,
        content_digest=content_digest,
        row_root=row_root,
        providers=[(p.provider_key_id, p.share_bps) for p in _providers(ctx.session, row.id)],
        scope={
            "category": row.category,
            "purposes": list(row.permitted_purposes),
            "text": row.usage_terms,
        },
        validity_s=ctx.certificate_validity_s,
    )


def _commit(
    ctx: ListingContext,
    action: SignedAction,
    stage: Callable[[], Listing],
    issued: certificates.Issuance | None = None,
) -> tuple[wire.Listing, Accepted]:
    """Store ``action`` with what ``stage`` stages (and the certificate ``issued``
    with it, its record next in the same batch item)."""

    def staged() -> Listing:
        row = stage()
        if issued is not None:
            issued.stage(ctx.session)
        search_index.sync(ctx.session, row)  # the search index commits with the change
        return row

    actions = [action] if issued is None else [action, issued.action]
    with issued.number_guard(ctx.session) if issued is not None else nullcontext():
        row, [accepted, *_] = commit_with_records(ctx.session, actions, ctx.log_key, staged)
    ctx.session.refresh(row)
    return listing_public(ctx.session, row), accepted
