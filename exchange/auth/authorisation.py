"""Authorisation of an authenticated principal: not suspended, and of the right role."""

from __future__ import annotations

from exchange.auth.errors import RoleError, SuspendedError
from exchange.participants.models import ParticipantStatus, Principal, Role

__all__ = ["check_active", "check_role"]


def check_active(principal: Principal) -> Principal:
    """``principal``, refused (403 ``participant_suspended``) if an operator suspended it."""
    if principal.status is ParticipantStatus.SUSPENDED:
        raise SuspendedError(f"participant {principal.key_id} is suspended")
    return principal


def check_role(principal: Principal, *roles: Role) -> Principal:
    """``principal``, refused (403 ``role_forbidden``) unless its role is one of ``roles``."""
    if principal.role not in roles:
        names = " or ".join(sorted(r.value for r in roles))
        raise RoleError(f"this needs the {names} role; you are {principal.role.value}")
    return principal
