"""Quality grades for the market method's quality adjustment: the one place that
reads them.

A version's grade is the grade its listing shows
(:func:`exchange.listings.quality.current_reports`: the newest provider report,
by :func:`ledger.protocol.quality.current_report`), counting only the
``quality.reported`` records within the answer's ``as_of.log_size``, so that
``shancheng audit reference-price`` gets the same grades by replaying the same
entries (``ledger.pricing_reference.PublicRecords``).
"""

from __future__ import annotations

from collections.abc import Collection

from sqlmodel import Session

from exchange.listings.quality import current_reports
from ledger.pricing_reference import AsOf

__all__ = ["grades_of"]


def grades_of(
    session: Session, versions: Collection[tuple[str, int]], at: AsOf
) -> dict[tuple[str, int], str]:
    """The quality grade of each ``(listing_id, version)`` that had one as of ``at``."""
    return {key: row.grade for key, row in current_reports(session, versions, at.log_size).items()}
