"""``/verify``: verify a receipt bundle in the browser, with nothing from the
exchange but the bundle.

Paste or drop a bundle (or choose its file), or open ``/verify?index=N`` to fetch
``/receipts/N``. The page's script (``static/verify-page.js``) hands it to the
in-browser verifier (``web/src/verify.js``: its own SM2/SM3 from sm-crypto, its
own RFC 9162 proofs, the registry read through the chain's JSON-RPC) and shows
each step (actor signature → leaf hash → inclusion → checkpoint signature →
chain anchor) with the values it compared. The result element carries
``data-verdict="verified"`` or ``"failed"`` and ``data-step`` (the failing step,
or the last one checked).

The JSON-RPC URL, the registry address and the confirmations required start as
this exchange's configuration and are shown in editable fields: an auditor pins
its own.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from exchange.api.deps import SettingsDep
from exchange.api.explorer.assets import VERIFIER_ENTRY, WebAssetsDep
from exchange.api.explorer.rendering import html_errors, int_param, render
from ledger.records import MAX_SAFE_INTEGER

__all__ = ["STEPS", "router"]

router = APIRouter(include_in_schema=False)

STEPS = {
    "actor_signature": "签名 Actor signature",
    "leaf_hash": "叶哈希 Leaf hash",
    "inclusion": "包含证明 Inclusion",
    "checkpoint_signature": "检查点签名 Checkpoint signature",
    "chain_anchor": "链上锚定 Chain anchor",
}
"""The verifier's steps, in order, with their labels."""


@router.get("/verify", response_class=HTMLResponse)
@html_errors
def verify_page(
    settings: SettingsDep, assets: WebAssetsDep, index: str | None = None
) -> HTMLResponse:
    entry = int_param(index, "index", low=0, high=MAX_SAFE_INTEGER)
    return render(
        "verify.html",
        page="verify",
        title="验证 Verify",
        index=entry,
        rpc_url=settings.rpc_url or "",
        registry_address=settings.registry_address or "",
        steps=STEPS,
        unavailable=assets.verifier_missing(),
        verifier_url=f"/assets/verifier/{VERIFIER_ENTRY}",
    )
