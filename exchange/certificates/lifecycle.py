"""The certificate's state machine: one table of the allowed transitions
(:data:`TRANSITIONS`), and what each record does to the certificate.

=======================  ================  ===============================  ==================
record (certificate.*)   signed by         from                             to
=======================  ================  ===============================  ==================
issued                   the exchange      —                                active
change_requested         a holder          active                           change_pending
changed                  an operator       change_pending                   active (approve:
                                                                            the change applies)
transfer_offered         a right's holder  active                           transfer_offered
transfer_accepted        the receiver      transfer_offered                 transfer_accepted
transfer_approved        an operator       transfer_accepted                active (share moves)
transfer_rejected        an operator       transfer_offered/_accepted       active
renewal_requested        a holder          active                           renewal_pending
renewed                  an operator       renewal_pending                  active (approve:
                                                                            new valid_until)
cancellation_requested   a holder          active                           cancellation_pending
cancelled                an operator       any but cancelled (approve),     cancelled (approve),
                                           cancellation_pending (reject)    active (reject)
=======================  ================  ===============================  ==================

A holder is a participant holding any of the three rights. An expired certificate
(``valid_until`` passed) is still ``active``: it may be renewed, changed or
cancelled, but its listing version cannot be ordered. ``cancelled`` is final.
Refusals: 403 ``not_holder`` / ``not_right_holder`` / ``not_receiver`` /
``operator_only`` (wrong signer), 409 ``invalid_state`` (wrong state), 422
``invalid_shares`` / ``invalid_transfer`` / ``invalid_validity``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from exchange.certificates.errors import (
    InvalidSharesError,
    InvalidStateError,
    InvalidTransferError,
    InvalidValidityError,
    NotHolderError,
    NotReceiverError,
    NotRightHolderError,
    OperatorOnlyError,
)
from exchange.certificates.models import Certificate, CertificateState
from exchange.certificates.schemas import (
    RIGHTS,
    ChangeRequestedPayload,
    NumberPayload,
    ReasonPayload,
    RenewalRequestedPayload,
    RenewedPayload,
    ReviewPayload,
    Rights,
    TransferOfferedPayload,
)

__all__ = ["ISSUED", "TRANSITIONS", "Signer", "Transition", "apply", "check_signer"]

ISSUED = "certificate.issued"

S = CertificateState


class Signer(StrEnum):
    HOLDER = "a holder"
    RIGHT_HOLDER = "a holder of the right"
    RECEIVER = "the receiver of the transfer"
    OPERATOR = "an operator"


@dataclass(frozen=True, slots=True)
class Transition:
    signer: Signer
    sources: tuple[CertificateState, ...]
    payload: type[BaseModel]


_NOT_CANCELLED = tuple(s for s in CertificateState if s is not S.CANCELLED)

TRANSITIONS: dict[str, Transition] = {
    "certificate.change_requested": Transition(Signer.HOLDER, (S.ACTIVE,), ChangeRequestedPayload),
    "certificate.changed": Transition(Signer.OPERATOR, (S.CHANGE_PENDING,), ReviewPayload),
    "certificate.transfer_offered": Transition(
        Signer.RIGHT_HOLDER, (S.ACTIVE,), TransferOfferedPayload
    ),
    "certificate.transfer_accepted": Transition(
        Signer.RECEIVER, (S.TRANSFER_OFFERED,), NumberPayload
    ),
    "certificate.transfer_approved": Transition(
        Signer.OPERATOR, (S.TRANSFER_ACCEPTED,), ReasonPayload
    ),
    "certificate.transfer_rejected": Transition(
        Signer.OPERATOR, (S.TRANSFER_OFFERED, S.TRANSFER_ACCEPTED), ReasonPayload
    ),
    "certificate.renewal_requested": Transition(
        Signer.HOLDER, (S.ACTIVE,), RenewalRequestedPayload
    ),
    "certificate.renewed": Transition(Signer.OPERATOR, (S.RENEWAL_PENDING,), RenewedPayload),
    "certificate.cancellation_requested": Transition(Signer.HOLDER, (S.ACTIVE,), ReasonPayload),
    "certificate.cancelled": Transition(Signer.OPERATOR, _NOT_CANCELLED, ReviewPayload),
}
"""Every lifecycle record a participant or operator signs (``certificate.issued`` is
the exchange's own, issued with the publication)."""


def _holds(cert: Certificate, key_id: str, right: str) -> int:
    """The share (basis points) ``key_id`` holds of ``right`` (0: none)."""
    for holder in cert.rights[right]:
        if holder["participant"] == key_id:
            return int(holder["share_bps"])
    return 0


def check_signer(
    cert: Certificate, record_type: str, payload: BaseModel, key_id: str, is_operator: bool
) -> None:
    """Refuse a record the signer may not sign (403) or the state does not allow (409)."""
    transition = TRANSITIONS[record_type]
    signer = transition.signer
    if signer is Signer.OPERATOR and not is_operator:
        raise OperatorOnlyError(f"{record_type} is an operator's review")
    if signer is Signer.HOLDER and not any(_holds(cert, key_id, r) for r in RIGHTS):
        raise NotHolderError(f"{key_id} holds no right of certificate {cert.number}")
    if signer is Signer.RIGHT_HOLDER:
        assert isinstance(payload, TransferOfferedPayload)
        if not _holds(cert, key_id, payload.right):
            raise NotRightHolderError(
                f"{key_id} holds no {payload.right} right of certificate {cert.number}"
            )
    if cert.state not in transition.sources:
        allowed = ", ".join(s.value for s in transition.sources)
        raise InvalidStateError(
            f"certificate {cert.number} is {cert.state}; {record_type} needs it {allowed}"
        )
    if signer is Signer.RECEIVER and (cert.pending or {}).get("to") != key_id:
        raise NotReceiverError(f"the transfer under review is not offered to {key_id}")
    if record_type == "certificate.cancelled":
        assert isinstance(payload, ReviewPayload)
        if payload.decision == "reject" and cert.state != S.CANCELLATION_PENDING:
            raise InvalidStateError(
                f"certificate {cert.number} is {cert.state}: there is no cancellation "
                "request to reject"
            )


def check_payload(cert: Certificate, record_type: str, payload: BaseModel, key_id: str) -> None:
    """Refuse a payload that does not fit the certificate (422)."""
    if isinstance(payload, ChangeRequestedPayload):
        if payload.valid_until is not None and payload.valid_until <= cert.valid_from:
            raise InvalidValidityError("valid_until must be after valid_from")
        if payload.rights is not None:
            _check_redivision(cert, payload.rights)
    elif isinstance(payload, TransferOfferedPayload):
        if payload.to == key_id:
            raise InvalidTransferError("a transfer goes to another participant")
        held = _holds(cert, key_id, payload.right)
        if payload.share_bps > held:
            raise InvalidSharesError(
                f"you hold {held} basis points of the {payload.right} right, "
                f"not {payload.share_bps}"
            )
    elif isinstance(payload, RenewalRequestedPayload | RenewedPayload):
        until = payload.valid_until
        if until is not None and until <= cert.valid_until:
            raise InvalidValidityError(
                f"a renewal extends validity beyond {cert.valid_until}, not to {until}"
            )


def _check_redivision(cert: Certificate, rights: Rights) -> None:
    problem = rights.problem()
    if problem is not None:
        raise InvalidSharesError(problem)
    for right in RIGHTS:
        now = {h["participant"] for h in cert.rights[right]}
        new = {h.participant for h in rights.of(right)}
        if now != new:
            raise InvalidSharesError(
                f"rights.{right}: a change re-divides the shares among the present holders; "
                "a new holder takes a transfer"
            )


def _pending(record_type: str, key_id: str, payload: BaseModel) -> dict[str, Any]:
    body = payload.model_dump(exclude={"number"}, exclude_none=True)
    return {"type": record_type, "by": key_id, **body}


def _move(rights: dict[str, Any], right: str, giver: str, taker: str, share: int) -> None:
    holders: list[dict[str, Any]] = [dict(h) for h in rights[right]]
    for holder in holders:
        if holder["participant"] == giver:
            holder["share_bps"] -= share
    holders = [h for h in holders if h["share_bps"] > 0]
    for holder in holders:
        if holder["participant"] == taker:
            holder["share_bps"] += share
            break
    else:
        holders.append({"participant": taker, "share_bps": share})
    rights[right] = holders


def _approve_change(cert: Certificate) -> None:
    pending = cert.pending or {}
    if "scope" in pending:
        cert.scope = dict(pending["scope"])
    if "valid_until" in pending:
        cert.valid_until = int(pending["valid_until"])
    if "rights" in pending:
        cert.rights = {right: list(pending["rights"][right]) for right in RIGHTS}


def _approve_transfer(cert: Certificate) -> None:
    pending = cert.pending or {}
    rights = {right: list(cert.rights[right]) for right in RIGHTS}
    _move(rights, pending["right"], pending["by"], pending["to"], int(pending["share_bps"]))
    cert.rights = rights


def apply(
    cert: Certificate, record_type: str, payload: BaseModel, key_id: str, now_ms: int
) -> None:
    """Change ``cert`` as ``record_type`` does (after :func:`check_signer` and
    :func:`check_payload`)."""
    approve = getattr(payload, "decision", "approve") == "approve"
    requests = {
        "certificate.change_requested": S.CHANGE_PENDING,
        "certificate.transfer_offered": S.TRANSFER_OFFERED,
        "certificate.renewal_requested": S.RENEWAL_PENDING,
        "certificate.cancellation_requested": S.CANCELLATION_PENDING,
    }
    if record_type in requests:
        cert.pending = _pending(record_type, key_id, payload)
        cert.state = requests[record_type].value
    elif record_type == "certificate.transfer_accepted":
        cert.pending = {**(cert.pending or {}), "accepted_at": now_ms}
        cert.state = S.TRANSFER_ACCEPTED.value
    else:  # an operator's review closes the request (or cancels outright)
        if record_type == "certificate.changed" and approve:
            _approve_change(cert)
        elif record_type == "certificate.transfer_approved":
            _approve_transfer(cert)
        elif isinstance(payload, RenewedPayload) and payload.valid_until is not None:
            cert.valid_until = payload.valid_until
        cancelled = record_type == "certificate.cancelled" and approve
        cert.state = (S.CANCELLED if cancelled else S.ACTIVE).value
        cert.pending = None
    cert.updated_at = now_ms
