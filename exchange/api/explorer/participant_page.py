"""``/explore/participants/{key_id}``: a participant's public page (its JSON is ``GET
/participants/{key_id}``): display name, role, status, key id and public key, and
the public listings it provides (published or delisted), newest first."""

from __future__ import annotations

import re

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from exchange.api.deps import OperatorsDep, SessionDep
from exchange.api.explorer.rendering import PageParamError, html_errors, int_param, render
from exchange.listings import service as listings
from exchange.participants import service as participants

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

_KEY_ID = re.compile(r"[0-9a-f]{64}")
PAGE_SIZE = 50


@router.get("/explore/participants/{key_id}", response_class=HTMLResponse)
@html_errors
def participant_page(
    key_id: str, session: SessionDep, operators: OperatorsDep, offset: str | None = None
) -> HTMLResponse:
    if not _KEY_ID.fullmatch(key_id):
        raise PageParamError("a key id is 64 lower-case hex digits (SM3 of the DER key)")
    start = int_param(offset, "offset", low=0, high=1_000_000) or 0
    profile = participants.public_profile(session, operators, key_id)
    items, next_offset = listings.search(
        session, None, provider=key_id, state=None, limit=PAGE_SIZE, offset=start
    )
    return render(
        "participant.html",
        page="participant",
        title=profile.display_name,
        participant=profile,
        listings=items,
        offset=start,
        next_offset=next_offset,
        previous_offset=max(start - PAGE_SIZE, 0) if start else None,
    )
