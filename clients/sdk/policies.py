"""Usage policies on the buyer's side: the declaration an order signs and the
pre-check the SDK and CLI run before ordering (the same evaluator as the
exchange's, :func:`ledger.protocol.policy.evaluate`; docs/policies.md).

The pre-check cannot know the cross-border assessment the exchange holds for you:
it leaves that clause to the exchange (which refuses with 422 ``policy_violation``).
"""

from __future__ import annotations

from typing import Final

from clients.sdk.market_models import Listing
from ledger.protocol.policy import Declaration, PolicyContext, Violation, evaluate

__all__ = ["DEFAULT_PURPOSE", "DEFAULT_REGION", "check", "declare"]

DEFAULT_PURPOSE: Final = "internal_analytics"
"""The purpose an order declares unless told otherwise."""
DEFAULT_REGION: Final = "CN"
"""The processing region an order declares unless told otherwise."""


def declare(
    purpose: str = DEFAULT_PURPOSE, region: str = DEFAULT_REGION, legal_basis: str | None = None
) -> Declaration:
    """A declaration of use; ``ValueError`` (a ``RecordFormatError``) naming the field
    when the purpose, region (ISO 3166-1 alpha-2) or legal basis is not a known one."""
    return Declaration(purpose, region, legal_basis)


def check(
    listing: Listing, declaration: Declaration, *, days: int | None = None
) -> list[Violation]:
    """What the exchange would refuse in ordering ``listing`` with ``declaration``
    (``days``: the days of use a subscription buys), the cross-border clause aside."""
    declared = listing.declarations
    context = PolicyContext(
        classification=declared.get("classification"),
        personal_information=bool(declared.get("personal_information")),
        assessment=None,
        requested_days=days,
    )
    return evaluate(listing.usage_policy, declaration, context)
