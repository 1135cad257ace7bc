"""``/log`` and ``/anchors``: the verifiable log for people.

* ``/log``: the latest signed checkpoint (tree size, root, time, signing key) and
  the integrated entries, newest first (index, record type, actor, when the log
  accepted it, leaf hash), a page at a time (``?before=INDEX``); each entry links
  to its receipt's verification (``/verify?index=N``) and its JSON.
* ``/anchors``: the checkpoints chosen for anchoring with their chain state
  (pending, sent, anchored, final, conflict, superseded), transaction, block,
  confirmations at the chain's head (read now from the configured JSON-RPC
  endpoint; unknown when it does not answer), gas used, and the registry.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from contracts.chain import ChainClient
from contracts.errors import ChainError
from exchange.anchoring import browse as anchors
from exchange.api.deps import LogKeyDep, OperatorsDep, SessionDep, SettingsDep
from exchange.api.explorer.rendering import html_errors, int_param, render
from exchange.log import queries
from exchange.log.browse import entries_page
from exchange.participants.directory import display_names
from ledger.records import MAX_SAFE_INTEGER

__all__ = ["LOG_PAGE", "router"]

router = APIRouter(include_in_schema=False)

LOG_PAGE = 50
ANCHORS_PAGE = 50


@router.get("/log", response_class=HTMLResponse)
@html_errors
def log_page(
    session: SessionDep,
    operators: OperatorsDep,
    log_key: LogKeyDep,
    before: str | None = None,
    limit: str | None = None,
) -> HTMLResponse:
    size = int_param(limit, "limit", low=1, high=200) or LOG_PAGE
    bound = int_param(before, "before", low=0, high=MAX_SAFE_INTEGER)
    checkpoint = queries.latest_checkpoint(session)
    page = entries_page(session, before=bound, limit=size)
    names = display_names(session, operators, {e.actor_key_id for e in page.entries})
    return render(
        "log.html",
        page="log",
        title="日志 Log",
        checkpoint=checkpoint,
        entries=page,
        limit=size,
        names=names,
        log_key_id=log_key.key_id(),
    )


def _head_block(rpc_url: str | None) -> tuple[int | None, str | None]:
    """The chain's latest block number, or why it is unknown."""
    if not rpc_url:
        return None, "no chain configured"
    try:
        return ChainClient(rpc_url, timeout=3.0).block_number(), None
    except ChainError as exc:
        return None, str(exc)


@router.get("/anchors", response_class=HTMLResponse)
@html_errors
def anchors_page(
    session: SessionDep, settings: SettingsDep, before: str | None = None
) -> HTMLResponse:
    bound = int_param(before, "before", low=0, high=MAX_SAFE_INTEGER)
    rows = anchors.latest_anchors(session, before=bound, limit=ANCHORS_PAGE)
    head, head_problem = _head_block(settings.rpc_url)
    return render(
        "anchors.html",
        page="anchors",
        title="锚定 Anchors",
        rows=[(row, anchors.confirmations(row, head)) for row in rows],
        counts=anchors.state_counts(session),
        head=head,
        head_problem=head_problem,
        settings=settings,
        older=rows[-1].tree_size if len(rows) == ANCHORS_PAGE else None,
        paged=bound is not None,
    )
