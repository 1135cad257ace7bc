"""Quality grades for the market method's quality adjustment: the one place that
reads them.

Quality reports (A/B/C/D per listing version, issue 13 item 2) are not on this
branch yet, so no version has a grade and every quality adjustment is 10000 bp
(no adjustment). When they land, this function reads each version's grade from
them, and ``shancheng audit reference-price`` takes the same grades from the
public quality records.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlmodel import Session

__all__ = ["grades_of"]


def grades_of(
    session: Session, versions: Collection[tuple[str, int]]
) -> dict[tuple[str, int], str]:
    """The quality grade of each ``(listing_id, version)`` that has one (none yet)."""
    del session, versions
    return {}
