"""The certificate calls (docs/certificates.md), built once for both clients like
:mod:`clients.sdk._marketplace`: reads, and the lifecycle records a holder, a
receiver or an operator signs. The answer's promise is checked to be for the
record signed here (``_action``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from clients.sdk._base import Call, _parsed
from clients.sdk._marketplace import MarketplaceCalls
from clients.sdk.certificate_models import Certificate

__all__ = ["REVIEWS", "CertificateCalls", "change_payload", "review_payload", "review_type"]

REVIEWS: Final = {
    "change_pending": ("certificate.changed", "certificate.changed"),
    "transfer_offered": (None, "certificate.transfer_rejected"),
    "transfer_accepted": ("certificate.transfer_approved", "certificate.transfer_rejected"),
    "renewal_pending": ("certificate.renewed", "certificate.renewed"),
    "cancellation_pending": ("certificate.cancelled", "certificate.cancelled"),
}
"""The operator's review record of a certificate's pending request, by state:
(approve, reject)."""


def review_type(state: str, decision: str) -> str:
    """The record type that reviews a certificate in ``state`` with ``decision``
    (``approve`` or ``reject``); ``ValueError`` when nothing is under review."""
    if decision not in ("approve", "reject"):
        raise ValueError("decision is approve or reject")
    pair = REVIEWS.get(state)
    chosen = None if pair is None else pair[decision == "reject"]
    if chosen is None:
        raise ValueError(f"a certificate that is {state} has no request to {decision}")
    return chosen


def review_payload(
    number: str, record_type: str, decision: str, reason: str, valid_until: int | None
) -> dict[str, Any]:
    payload: dict[str, Any] = {"number": number, "reason": reason}
    if record_type in ("certificate.changed", "certificate.renewed", "certificate.cancelled"):
        payload["decision"] = decision
    if valid_until is not None:
        payload["valid_until"] = valid_until
    return payload


class CertificateCalls(MarketplaceCalls):
    """Call builders of ``/certificates`` (no I/O)."""

    def _certificate_call(self, number: str) -> Call[Certificate]:
        return Call("GET", f"/certificates/{number}", _parsed(Certificate.from_view))

    def _certificates_call(self, listing_id: str) -> Call[list[Certificate]]:
        return Call(
            "GET", "/certificates", _parsed(Certificate.list_from), params={"listing": listing_id}
        )

    def _certificate_record_call(
        self, number: str, record_type: str, payload: Mapping[str, Any]
    ) -> Call[Certificate]:
        return self._action(
            "POST",
            f"/certificates/{number}/records",
            record_type,
            {"number": number, **payload},
            Certificate.from_changed,
        )


def change_payload(
    reason: str,
    scope: Mapping[str, Any] | None,
    valid_until: int | None,
    rights: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The payload of ``certificate.change_requested`` (without ``number``)."""
    payload: dict[str, Any] = {"reason": reason}
    if scope is not None:
        payload["scope"] = dict(scope)
    if valid_until is not None:
        payload["valid_until"] = valid_until
    if rights is not None:
        payload["rights"] = {k: list(v) for k, v in rights.items()}
    return payload
