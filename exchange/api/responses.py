"""OpenAPI error-response declarations shared by the signed-request routers."""

from __future__ import annotations

from typing import Any

from exchange.log.schemas import ErrorBody

AUTH_ERRORS = {
    401: "unauthenticated, unknown_key, signature_invalid, stale_signature, replayed_nonce, "
    "digest_mismatch",
    403: "participant_suspended, role_forbidden",
}


def signed_errors(extra: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """The authentication errors every signed endpoint can return, plus ``extra``."""
    merged = dict(AUTH_ERRORS)
    for status, text in extra.items():
        merged[status] = f"{merged[status]}, {text}" if status in merged else text
    return {s: {"model": ErrorBody, "description": t} for s, t in merged.items()}
