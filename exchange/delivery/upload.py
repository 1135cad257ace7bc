"""Uploading a listing version's content: who may, and the streamed, checked ingest.

``PUT /listings/{id}/versions/{v}/content`` takes the dataset as the raw
body. The request is authenticated by its signed headers first
(:func:`exchange.api.deps.streaming_participant`); then :func:`upload_target`
checks the listing, and :func:`store_upload` streams the body, in a worker
thread, through two checks before anything is kept:

1. the signed ``Content-Digest`` (:class:`~exchange.auth.verifier.StreamedBody`,
   the same check every signed request gets) — at the end of the stream,
   before the store commits, so a body that does not match it is refused
   (401 ``digest_mismatch``) and nothing is kept;
2. the SM3 the listing version committed to (``ContentStore.ingest``) — 422
   ``content_digest_mismatch``, nothing kept.

No log record is written: the provider's ``listing.drafted`` /
``listing.version_added`` record already commits the digest, and the store
only accepts bytes with that digest.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlmodel import Session

from exchange.auth.verifier import StreamedBody
from exchange.content import ContentStore, ContentTooLargeError, StoredContent
from exchange.content import DigestMismatchError as StoredDigestMismatchError
from exchange.delivery.errors import (
    ContentDigestMismatchError,
    ListingDelistedError,
    NotProviderError,
    ProviderCustodyError,
    VersionNotFoundError,
)
from exchange.listings.models import Listing, ListingProvider, ListingState, ListingVersion
from exchange.listings.service import PUBLIC_STATES, ListingNotFoundError
from exchange.participants.models import Principal
from ledger.sm3 import SM3Hasher

__all__ = ["checked_chunks", "store_upload", "upload_target"]


def upload_target(session: Session, principal: Principal, listing_id: str, version: int) -> str:
    """The SM3 digest (hex) the upload must have; refuses, in this order:

    404 ``listing_not_found`` (none, or a draft you may not see), 403
    ``not_a_provider``, 409 ``provider_custody`` (the data stays with its
    provider), 404 ``version_not_found``, 409 ``listing_delisted``.
    Any other listing state takes uploads (content may arrive before review).
    """
    listing = session.get(Listing, listing_id)
    if listing is None:
        raise ListingNotFoundError(f"no listing {listing_id}")
    if session.get(ListingProvider, (listing_id, principal.key_id)) is None:
        if listing.state in PUBLIC_STATES or principal.is_operator:
            raise NotProviderError(f"only the providers of listing {listing_id} upload its content")
        raise ListingNotFoundError(f"no listing {listing_id}")
    if listing.custody == "provider":
        raise ProviderCustodyError(
            "this listing's data stays with its provider; the exchange takes no content for it"
        )
    row = session.get(ListingVersion, (listing_id, version))
    if row is None:
        raise VersionNotFoundError(f"listing {listing_id} has no version {version}")
    if listing.state == ListingState.DELISTED:
        raise ListingDelistedError(f"listing {listing_id} is delisted; it takes no content")
    return row.content_digest


def checked_chunks(chunks: Iterable[bytes], body: StreamedBody) -> Iterator[bytes]:
    """``chunks`` as they come, each fed to ``body``; after the last one, raises
    :class:`~exchange.auth.errors.DigestMismatchError` instead of ending if they do
    not match the signed ``Content-Digest`` (so the consumer never sees a clean end)."""
    for chunk in chunks:
        if chunk:
            body.update(chunk)
            yield chunk
    body.verify()


def store_upload(
    store: ContentStore,
    listing_id: str,
    version: int,
    chunks: Iterable[bytes],
    body: StreamedBody,
    expected_sm3_hex: str,
    max_bytes: int,
) -> tuple[StoredContent, bool]:
    """Stream ``chunks`` (blocking; run it in a worker thread) into ``store``;
    return the stored content and whether this call stored it (``False``: the
    same content was already there, an idempotent retry).

    A retry's body is still read and checked (both digests) but not stored, so
    the answer never depends on whether the content was there before. Raises
    401 ``digest_mismatch``, 422 ``content_digest_mismatch``, 413
    ``content_too_large``, 409 ``content_exists`` or the stream's error
    (a disconnect); nothing is kept then.
    """
    checked = checked_chunks(chunks, body)
    try:
        if store.exists(listing_id, version):
            _verify_only(checked, expected_sm3_hex, max_bytes)
            return store.ingest(listing_id, version, (), expected_sm3_hex), False
        return store.ingest(listing_id, version, checked, expected_sm3_hex, max_bytes), True
    except StoredDigestMismatchError as exc:
        raise _mismatch(exc.expected, exc.actual) from None


def _verify_only(chunks: Iterable[bytes], expected_sm3_hex: str, max_bytes: int) -> None:
    hasher = SM3Hasher()
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise ContentTooLargeError(max_bytes)
        hasher.update(chunk)
    actual = hasher.hexdigest()
    if actual != expected_sm3_hex.lower():
        raise _mismatch(expected_sm3_hex, actual)


def _mismatch(expected: str, actual: str) -> ContentDigestMismatchError:
    return ContentDigestMismatchError(
        f"the SM3 of the uploaded bytes is {actual}; the listing version commits to "
        f"{expected}. Upload the exact bytes you registered (or add a version); nothing was kept"
    )
