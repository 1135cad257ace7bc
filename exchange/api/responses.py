"""OpenAPI error responses, with an example per documented code, for every router.

A route documents its errors as ``{status: "code, code (a note), code: a note"}``:
per status, the codes it can answer, separated by commas or "or", each optionally
followed by a note in parentheses or after a colon. :func:`error_responses` turns
that into ``responses=`` entries carrying the ``ErrorBody`` schema, the text as
description, and one named example per code (``{"code", "message"}``, with the
message from :data:`ERROR_MESSAGES`). A code without a message there, or text that
does not start with a code, fails at import: the documented codes and their
examples cannot drift apart. ``tests/exchange/test_openapi.py`` also checks that
each documented code is one the exchange raises with that status.

Two answers come from no route but from what wraps them all, so
:func:`install_common_errors` adds them to the document itself: 400
``invalid_json`` on every operation taking a JSON body (exchange/json_body.py) and
500 ``internal`` on every operation (the last-resort guard, exchange/errors.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI

from exchange.api.examples import ids
from ledger.protocol.errors import ErrorBody

__all__ = [
    "AUTH_ERRORS",
    "ERROR_MESSAGES",
    "error_codes",
    "error_example",
    "error_responses",
    "install_common_errors",
    "signed_errors",
]

AUTH_ERRORS = {
    401: "unauthenticated, unknown_key, signature_invalid, stale_signature, replayed_nonce, "
    "digest_mismatch",
    403: "participant_suspended, role_forbidden",
}

_IDS = ids()
_MESSAGES = {
    # authentication (exchange/auth)
    "unauthenticated": "the request is not signed: send Signature-Input and Signature "
    "(RFC 9421, alg sm2-sm3; see docs/api-auth.md)",
    "unknown_key": "no participant or operator has key {buyer}",
    "signature_invalid": "the request signature does not verify: the signature base "
    "differs from the one signed (method, target URI or Content-Digest changed?)",
    "stale_signature": "signature created at 1772503800, server time 1772504412: more than "
    "300 s apart",
    "replayed_nonce": "this nonce was already used by this key; sign each request afresh",
    "digest_mismatch": "the body does not match its signed Content-Digest",
    "participant_suspended": "participant {broker} is suspended",
    "role_forbidden": "this needs the provider role; you are buyer",
    # signed records (exchange/records.py, exchange/log)
    "invalid_record": "malformed record: record.timestamp: expected an integer, got str",
    "invalid_signature": "the actor's signature over the record does not verify",
    "invalid_public_key": "public_key: not a PEM SM2 SubjectPublicKeyInfo",
    "actor_mismatch": "the record is by {buyer}, but the request is signed by {provider}",
    "wrong_record_type": "this endpoint takes a listing.submitted record, not listing.edited",
    "stale_record": "record timestamp 1772413200000 is more than 300 s from the server "
    "clock (1772499600000)",
    "invalid_payload": "payload.reason: String should have at least 1 character",
    "target_mismatch": "the record names listing {rejected_listing_id}, the request {listing_id}",
    "duplicate_record": "the record with leaf hash "
    "6a1f0e53c9d2b8a47e6c15f3d09a2b4c8e7f1d6053a9c2b4e8f7a1d0c3b5e6f9 is already in the log "
    "at index 11",
    "concurrent_update": "the resource changed while this request was applied; read it "
    "and try again",
    "invalid_request": "body.record: Field required",
    "invalid_idempotency_key": "Idempotency-Key must be 1 to 200 visible ASCII characters",
    "idempotency_key_reused": "Idempotency-Key 'deposit-2026030309001842' was used for a "
    "different request",
    "payload_too_large": "the request body exceeds 1048576 bytes",
    "invalid_json": "the request body: duplicate key 'amount' in JSON object",
    "internal": "internal error (reference 5f0c2a9e41d7b386); the exchange has logged it",
    "record_type_not_allowed": "the log's raw append takes only note.* and attestation.* "
    "records (statements that change nothing); settlement.paid is not one: the exchange's "
    "actions enter the log only through their own endpoints",
    "rate_limited": "key {buyer} appends faster than the log's raw append allows; retry in 7 s",
    # the log (exchange/log)
    "no_checkpoint": "the log has no checkpoint yet",
    "checkpoint_not_found": "no checkpoint with tree size 1024",
    "entry_not_found": "no integrated entry at index 4096 (the latest checkpoint has 28 entries)",
    "invalid_index": "index must be >= 0, got -1",
    "invalid_tree_size": "tree_size 4096 is beyond the latest checkpoint (tree size 28)",
    "invalid_range": "first (28) must not exceed second (16)",
    "receipt_pending": "entry 27 is accepted but no anchored checkpoint covers it yet; retry in "
    "about 12 s",
    "shutting_down": "the exchange is shutting down; retry in a moment",
    "log_busy": "the log database is busy: database is locked",
    # participants
    "participant_not_found": "no participant {broker}",
    "already_registered": "key {provider} is already registered",
    "invalid_transition": "only an unverified provider or assessor can be approved; this is "
    "a active provider",
    "key_mismatch": "the record's actor {buyer} must be the key being registered ({provider})",
    # listings
    "listing_not_found": "no listing {listing_id}",
    "listing_exists": "listing {listing_id} already exists",
    "invalid_state": "the listing is published; this needs it draft, rejected",
    "not_owner": "only the provider that drafted the listing may do this",
    "provider_unverified": "an operator must approve you before you submit",
    "version_conflict": "the next version is 3, the record says 2",
    "core_data_forbidden": "核心 (core) data can never be listed",
    "invalid_shares": "revenue shares sum to 9000 basis points, not 10000",
    "unknown_provider": "co-provider {broker} is not a registered provider",
    "invalid_sample": "sample_rows[0] has unknown column(s) ['boarding']",
    "sample_too_large": "sample rows take 70312 bytes; at most 65536",
    "invalid_pricing": "pricing.tiers: the last tier must be unbounded (up_to_rows: null)",
    "declarations_incomplete": "cannot publish without the declarations: source_legality, "
    "permitted_purposes",
    "invalid_cursor": "the cursor belongs to another query, filter or sort",
    "invalid_query": "min_price is greater than max_price",
    # quotes and orders
    "invalid_terms": "rows do not apply to fixed pricing",
    "listing_not_published": "listing {listing_id} is delisted, not published",
    "provider_suspended": "listing {listing_id} is not for sale: its provider {provider} is "
    "suspended",
    "sold_out": "all 1 seat(s) of listing {listing_id} are sold",
    "insufficient_funds": "the order costs 46808 fen; your balance is lower",
    "quote_used": "quote 9f27c0d41b6e8a35c2d7f04e1a9b3c68 was already used for an order",
    "quote_expired": "the quote expired at 1772500980000 ms (now 1772501412000 ms); request "
    "a new one",
    "order_exists": "order {order_id} exists",
    "not_renewable": "order {order_id} is not a subscription",
    "invalid_quote": "quote.content_digest: expected an SM3 digest (64 lowercase hex)",
    "invalid_quote_signature": "the quote's signature does not verify",
    "quote_mismatch": "the quote's buyer_key_id is '{broker}', the order's is '{buyer}'",
    "order_not_found": "no order {order_id}",
    "policy_violation": "prohibited_purposes: purpose 'marketing' is prohibited by the policy",
    "not_delivered": "order {order_id} has not been delivered yet",
    "acceptance_closed": "the acceptance window of order {order_id} closed at 1773105120002",
    "order_not_open": "order {order_id} is settled; it cannot change now",
    "not_disputed": "order {order_id} is delivered, not disputed",
    "not_provider": "only a provider of the order's listing may revoke its access",
    "already_revoked": "access to order {order_id} was revoked at 1773208800037",
    "order_closed": "order {disputed_order_id} was refunded; its data is no longer delivered",
    # content and delivery
    "access_revoked": "the provider revoked access to order {order_id}: the buyer passed "
    "the raw data to a third party",
    "access_expired": "the paid period of order {order_id} ended at 1775145600000 (ms since "
    "the epoch); renew the subscription",
    "content_not_available": "the provider has not uploaded the content of listing "
    "{listing_id} version 2 yet; ask again later",
    "not_a_provider": "only the providers of listing {listing_id} upload its content",
    # quality reports (exchange/quality)
    "assessor_unverified": "an operator must approve you before you assess",
    "report_digest_mismatch": "report_sm3 "
    "0a4e3f9c1b7d2e8a6c5f4b3a2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d is not the SM3 of "
    "the report's canonical bytes",
    "report_mismatch": "the report's content_sm3 is "
    "'5b2e9c1d7a3f8e6b4c0d2a9f1e8b7c6d5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d'; listing "
    "{listing_id} version 1 has "
    "'4c1f9b0e7d2a8c3f6e5b1a0d9c8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e'",
    "report_exists": "you already signed report "
    "0a4e3f9c1b7d2e8a6c5f4b3a2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d on this version",
    "countersign_instead": "a provider signed this very report: countersign it instead",
    "report_not_found": "no provider report "
    "0a4e3f9c1b7d2e8a6c5f4b3a2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d on listing "
    "{listing_id} version 1",
    "already_countersigned": "you already countersigned report "
    "0a4e3f9c1b7d2e8a6c5f4b3a2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d",
    "assessment_forbidden": "only an assessor orders an assessment, at 0 fen; assessors "
    "order nothing else",
    "version_not_found": "listing {listing_id} has no version 3",
    "listing_delisted": "listing {listing_id} is delisted; it takes no content",
    "content_exists": "{listing_id} version 1 already holds content "
    "4c1f9b0e7d2a8c3f6e5b1a0d9c8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e; a new content "
    "needs a new version",
    "content_too_large": "the content exceeds the limit of 68719476736 bytes",
    "content_digest_mismatch": "the SM3 of the uploaded bytes is "
    "9d3e1c7b5a2f8e4d6c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d; the listing version "
    "commits to 4c1f9b0e7d2a8c3f6e5b1a0d9c8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e. Upload the "
    "exact bytes you registered (or add a version); nothing was kept",
    "upload_incomplete": "the client disconnected before the end of the body",
    "range_not_satisfiable": "range starts at 140000000, the size is 131093296",
    # computations
    "query_refused": "returns_rows: a query returns aggregates only; SELECT * returns rows",
    "not_a_computation_order": "order {order_id} did not buy computation",
    "budget_exhausted": "order {order_id} has ε 0.5 left; a query spends 1",
    "computation_exists": "computation 3f1c9a2e-7b4d-4e8a-9c61-0d2f5b7a8e13 exists",
    "computation_not_found": "no computation 3f1c9a2e-7b4d-4e8a-9c61-0d2f5b7a8e13",
    "computation_closed": "computation 3f1c9a2e-7b4d-4e8a-9c61-0d2f5b7a8e13 is completed; "
    "it takes no answer",
    "result_missing": "upload the result of computation 3f1c9a2e-7b4d-4e8a-9c61-0d2f5b7a8e13 first",
    "computation_mismatch": "payload.epsilon_spent is '0.4'; the computation's is '0.5'",
    "result_too_large": "the result exceeds the limit of 16777216 bytes; nothing was kept",
    "not_completed": "computation 3f1c9a2e-7b4d-4e8a-9c61-0d2f5b7a8e13 is pending, not completed",
    "provider_custody": "this listing's data stays with its provider; the exchange takes no "
    "content for it",
    "exchange_custody": "listing {listing_id} is in exchange custody: the exchange delivers "
    "its orders (POST /orders/{order_id}/delivery)",
    "already_delivered": "order {order_id} was delivered already; its deliverable is final",
    "deliverable_missing": "no deliverable was uploaded for order {order_id}: PUT "
    "/orders/{order_id}/deliverable first",
    "delivery_mismatch": "payload.ciphertext_sm3 is "
    "9d3e1c7b5a2f8e4d6c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d; the uploaded "
    "deliverable's is 4c1f9b0e7d2a8c3f6e5b1a0d9c8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e",
    # certificates
    "certificate_not_found": "no certificate SC-2026-000042",
    "invalid_certificate_state": "certificate SC-2026-000001 is cancelled; "
    "certificate.renewal_requested needs it active",
    "certificate_number_taken": "certificate number SC-2026-000007 was taken; the next is "
    "SC-2026-000008",
    "certificate_cancelled": "certificate SC-2026-000001 of listing {listing_id} v1 is "
    "cancelled (注销)",
    "certificate_expired": "certificate SC-2026-000001 of listing {listing_id} v1 expired at "
    "1796600761385; its holders must renew it",
    "not_holder": "{buyer} holds no right of certificate SC-2026-000001",
    "not_right_holder": "{co_provider} holds no operation right of certificate SC-2026-000001",
    "not_receiver": "the transfer under review is not offered to {broker}",
    "operator_only": "certificate.changed is an operator's review",
    "invalid_transfer": "a transfer goes to another participant",
    "invalid_validity": "a renewal extends validity beyond 1891208761385, not to 1891208761385",
    "unknown_participant": "{broker} is not a registered provider or buyer in good standing",
    # withdrawals (exchange/payouts)
    "withdrawal_not_found": "no withdrawal 5b0e8f3a-2c71-4d9e-9a41-7f3c2e1d0b6a",
    "withdrawal_exists": "withdrawal 5b0e8f3a-2c71-4d9e-9a41-7f3c2e1d0b6a already exists",
    "withdrawal_decided": "withdrawal 5b0e8f3a-2c71-4d9e-9a41-7f3c2e1d0b6a was already paid",
    "platform_account": "operators withdraw the platform's fees (account: platform) and hold "
    "no account of their own; only operators withdraw from the platform account",
    "same_operator": "the exchange's fees are paid out by another operator than the one who "
    "asked for the withdrawal",
    # events and webhooks
    "invalid_webhook_url": "url must be an http or https URL",
    "too_many_webhooks": "you have 20 webhooks, the most one participant may register; "
    "delete one first",
    "webhook_not_found": "no webhook {webhook_id}",
}
_BY_STATUS = {
    (400, "actor_mismatch"): "the record's actor is {buyer}, but the public key given is "
    "{provider}'s",
    (409, "insufficient_funds"): "payee {co_provider} has 12000 fen, less than its 14042 fen "
    "clawback; nothing was refunded",
}

ERROR_MESSAGES: dict[str, str] = {code: text.format(**_IDS) for code, text in _MESSAGES.items()}
"""A realistic message per error code (what the exchange answers, with the example ids)."""
_MESSAGES_BY_STATUS = {key: text.format(**_IDS) for key, text in _BY_STATUS.items()}

_CODE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*(?=$|[ (:])")


def _top_level_items(text: str) -> list[str]:
    """``text`` split at commas and " or " outside parentheses."""
    items: list[str] = []
    depth, start, i = 0, 0, 0
    while i < len(text):
        char = text[i]
        depth += {"(": 1, ")": -1}.get(char, 0)
        separator = 1 if char == "," else 4 if text.startswith(" or ", i) else 0
        if depth == 0 and separator:
            items.append(text[start:i])
            start = i + separator
            i += separator
            continue
        i += 1
    items.append(text[start:])
    return [item.strip().removeprefix("or ").strip() for item in items if item.strip()]


def error_codes(description: str) -> list[str]:
    """The codes a status's description lists, in order (see the module docstring).

    Raises ``ValueError`` for an item that does not start with a code or a code
    without an example message."""
    codes: list[str] = []
    for item in _top_level_items(description):
        match = _CODE.match(item)
        if match is None:
            raise ValueError(f"{item!r} in {description!r} does not start with an error code")
        code = match.group(0)
        if code not in ERROR_MESSAGES:
            raise ValueError(f"error code {code!r} has no example message in ERROR_MESSAGES")
        if code not in codes:
            codes.append(code)
    return codes


def error_example(status: int, code: str) -> dict[str, str]:
    """The ``{"code", "message"}`` body of ``code`` answered with ``status``."""
    message = _MESSAGES_BY_STATUS.get((status, code), ERROR_MESSAGES[code])
    return {"code": code, "message": message}


def error_responses(spec: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for ``{status: codes text}``, one named example per code."""
    out: dict[int | str, dict[str, Any]] = {}
    for status, description in spec.items():
        examples = {
            code: {"summary": code, "value": error_example(status, code)}
            for code in error_codes(description)
        }
        out[status] = {
            "model": ErrorBody,
            "description": description,
            "content": {"application/json": {"examples": examples}},
        }
    return out


def signed_errors(extra: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """The authentication errors every signed endpoint can return, plus ``extra``."""
    merged = dict(AUTH_ERRORS)
    for status, text in extra.items():
        merged[status] = f"{merged[status]}, {text}" if status in merged else text
    return error_responses(merged)


INVALID_JSON = (
    "invalid_json (the JSON body nests deeper than 80 levels, repeats a key in an object, "
    "or holds NaN, Infinity or a NUL character)"
)
INTERNAL = "internal (a fault of the exchange's, logged under the reference its message gives)"
_ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorBody"}


def _add_error(operation: dict[str, Any], status: int, text: str) -> None:
    """Document ``text``'s code (with its example) under ``status`` of ``operation``
    (an OpenAPI operation object), next to the codes already there."""
    responses = operation.setdefault("responses", {})
    [code] = error_codes(text)
    example = {"summary": code, "value": error_example(status, code)}
    existing = responses.get(str(status))
    if existing is None:
        responses[str(status)] = {
            "description": text,
            "content": {"application/json": {"schema": _ERROR_SCHEMA, "examples": {code: example}}},
        }
        return
    media = existing["content"]["application/json"]
    if media.get("schema") != _ERROR_SCHEMA or code in media.get("examples", {}):
        raise ValueError(f"{status} of {operation.get('operationId')} cannot take {code}")
    existing["description"] = f"{existing['description']}, {text}"
    media.setdefault("examples", {})[code] = example


def document_common_errors(document: dict[str, Any]) -> None:
    """Add 400 ``invalid_json`` to every operation of ``document`` taking a JSON body
    and 500 ``internal`` to every operation."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                _add_error(operation, 400, INVALID_JSON)
            _add_error(operation, 500, INTERNAL)


def install_common_errors(app: FastAPI) -> None:
    """Make ``app.openapi()`` document the answers of what wraps every route (see the
    module docstring)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        document_common_errors(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
