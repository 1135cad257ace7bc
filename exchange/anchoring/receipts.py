"""Receipt bundles (``ledger.bundle.Bundle`` v1) for log entries.

The receipt of entry ``i`` proves it against the *earliest* checkpoint that
covers it (``tree_size > i``) and is anchored on chain (state ``anchored`` or
``final``): the record and its actor key as stored, the promise, the
inclusion proof at that checkpoint's size, the checkpoint, and the anchor
transaction. Until such an anchor exists the receipt is pending (409).

The bundle holds what the database holds, unverified: checking it is the
auditor's job (``ledger.audit.verify_bundle``), which is how a tampered
database shows.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session, col

from exchange.anchoring.models import AnchorRow, AnchorState
from exchange.log.errors import CorruptEntryError, EntryNotFoundError, ReceiptPendingError
from exchange.log.queries import (
    checkpoint_at,
    entry_record,
    find_entry,
    inclusion_proof,
    promise_of,
)
from ledger.bundle import AnchorRef, Bundle, InclusionProof
from ledger.errors import KeyFormatError
from ledger.records import RecordFormatError, SignedRecord
from ledger.sm2 import SM2PublicKey

__all__ = ["build_receipt", "covering_anchor"]

_PROVEN_STATES = (AnchorState.ANCHORED.value, AnchorState.FINAL.value)


def covering_anchor(session: Session, index: int) -> AnchorRow | None:
    """The earliest anchored (or final) checkpoint whose tree holds entry ``index``."""
    return (
        session.execute(
            select(AnchorRow)
            .where(
                col(AnchorRow.tree_size) > index,
                col(AnchorRow.state).in_(_PROVEN_STATES),
                col(AnchorRow.tx_hash).is_not(None),
                col(AnchorRow.block_number).is_not(None),
            )
            .order_by(col(AnchorRow.tree_size))
            .limit(1)
        )
        .scalars()
        .first()
    )


def build_receipt(session: Session, index: int, log_public_key: SM2PublicKey) -> Bundle:
    """The receipt bundle of entry ``index``.

    Raises :class:`EntryNotFoundError` (no such entry), :class:`ReceiptPendingError`
    (accepted but not yet covered by an anchored checkpoint) or
    :class:`CorruptEntryError` (the stored entry cannot be parsed).
    """
    entry = find_entry(session, index)
    if entry is None:
        raise EntryNotFoundError(f"no entry at index {index}")
    anchor = covering_anchor(session, index)
    if anchor is None:
        raise ReceiptPendingError(
            f"entry {index} is accepted but no anchored checkpoint covers it yet; retry later"
        )
    assert anchor.tx_hash is not None and anchor.block_number is not None
    checkpoint = checkpoint_at(session, anchor.tree_size)
    proof = inclusion_proof(session, anchor.tree_size, index=index)
    try:
        return Bundle(
            record=SignedRecord.from_dict(entry_record(entry)),
            actor_public_key=SM2PublicKey.from_pem(entry.actor_public_key),
            promise=promise_of(session, entry),
            log_public_key=log_public_key,
            inclusion=InclusionProof(proof.index, proof.tree_size, tuple(proof.hashes)),
            checkpoint=checkpoint,
            anchor=AnchorRef(
                chain_id=anchor.chain_id,
                registry_address=anchor.registry_address,
                tx_hash=anchor.tx_hash,
                block_number=anchor.block_number,
            ),
        )
    except (RecordFormatError, KeyFormatError) as exc:
        raise CorruptEntryError(f"the receipt of entry {index} cannot be built: {exc}") from None
