"""What the raw append (``POST /log/records``, ``/log/records:batch``) is for.

It is a notary: an authenticated, active participant puts statements of its
own on the log — notes and attestations that change no state of the exchange
— and gets the log's promise, inclusion proof and anchored receipt for them
like for any record. So the raw append takes:

* only records whose type is in a statement namespace (:data:`RAW_NAMESPACES`,
  ``note.*`` and ``attestation.*``). Every other type is refused (403
  ``record_type_not_allowed``): the exchange's actions (``participant.*``,
  ``listing.*``, ``order.*``, ``deposit.*``, ``settlement.*``, ``delivery.*``,
  ``dispute.*``, ``access.*`` and whatever comes later) enter the log only
  through their endpoints, in one transaction with the change they record
  (``exchange.records``), so a record of an action in the log always means the
  action happened. An allow-list, not a list of the actions: a type added
  later is refused here without anyone having to remember this module;
* only records whose actor is the participant that signed the request (403
  ``actor_mismatch``): nobody notarises in another's name;
* from participants an operator has not suspended and, for providers, has
  approved (403 ``participant_suspended`` / ``provider_unverified``);
* at most ``raw_append_rate_per_s`` records a second per key, in bursts of
  ``raw_append_burst`` (429 ``rate_limited`` with ``Retry-After``; per worker
  process, see :mod:`exchange.ratelimit`).
"""

from __future__ import annotations

from typing import Final

from exchange.errors import ForbiddenError
from exchange.participants.models import ParticipantStatus, Principal
from exchange.records import ActorMismatchError
from ledger.records import SignedRecord

__all__ = [
    "RAW_NAMESPACES",
    "ProviderUnverifiedError",
    "RecordTypeNotAllowedError",
    "check_raw_record",
    "check_raw_sender",
    "is_raw_type",
]

RAW_NAMESPACES: Final = ("note", "attestation")
"""Record type namespaces of statements that change nothing: ``note.added``,
``attestation.published``, … (``<namespace>.<name>``)."""


class RecordTypeNotAllowedError(ForbiddenError):
    code = "record_type_not_allowed"


class ProviderUnverifiedError(ForbiddenError):
    code = "provider_unverified"


def is_raw_type(record_type: str) -> bool:
    """Whether the raw append takes records of ``record_type``."""
    namespace, _, _ = record_type.partition(".")
    return namespace in RAW_NAMESPACES


def check_raw_sender(principal: Principal) -> None:
    """Refuse (403) a participant that may not append raw records: not yet active."""
    if principal.status is not ParticipantStatus.ACTIVE:
        raise ProviderUnverifiedError(
            f"participant {principal.key_id} is {principal.status.value}: an operator must "
            "approve you before you append to the log"
        )


def check_raw_record(signed: SignedRecord, principal: Principal) -> None:
    """Refuse (403) a record the raw append does not take from ``principal``."""
    record = signed.record
    if not is_raw_type(record.type):
        allowed = " and ".join(f"{n}.*" for n in RAW_NAMESPACES)
        raise RecordTypeNotAllowedError(
            f"the log's raw append takes only {allowed} records (statements that change "
            f"nothing); {record.type} is not one: the exchange's actions enter the log only "
            "through their own endpoints"
        )
    if record.actor != principal.key_id:
        raise ActorMismatchError(
            f"the record is by {record.actor}, but the request is signed by {principal.key_id}"
        )
