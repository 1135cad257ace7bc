"""Request authentication (RFC 9421 HTTP Message Signatures, ``sm2-sm3``) and
authorisation (roles, suspension). See ``docs/api-auth.md``."""

from exchange.auth.deps import (
    CurrentParticipant,
    OptionalParticipant,
    current_participant,
    optional_participant,
    require_role,
)

__all__ = [
    "CurrentParticipant",
    "OptionalParticipant",
    "current_participant",
    "optional_participant",
    "require_role",
]
