"""Usage policies: the offer's terms of use, the buyer's declaration, and the one
evaluator both sides run (the exchange to refuse an order, the SDK and CLI to warn
before ordering). docs/policies.md maps every field to its ODRL 2.2 term.

A :class:`Policy` (JSON form, every field optional on input, all present on output)::

    {"version": 1,
     "permitted_purposes": ["academic_research", "internal_analytics"] | null,
     "prohibited_purposes": ["marketing"],
     "processing_regions": ["CN", "HK"] | null,
     "access_days": 365 | null,
     "onward_transfer": false,
     "attribution": "Source: Chongqing Weather Bureau" | null}

* ``permitted_purposes``: the purposes allowed (ODRL permission ``use`` with a
  ``purpose`` ``isAnyOf`` constraint); ``null``: any purpose not prohibited.
* ``prohibited_purposes``: purposes refused (ODRL prohibition ``use``, ``purpose``
  ``isAnyOf``). A purpose may not be both permitted and prohibited.
* ``processing_regions``: ISO 3166-1 alpha-2 codes where the data may be processed
  (ODRL ``spatial`` ``isAnyOf``); ``null``: anywhere (the cross-border rule still
  applies, see below).
* ``access_days``: how long the buyer may use the data from the order (ODRL
  ``elapsedTime`` ``lteq`` ``P<n>D``); ``null``: no limit.
* ``onward_transfer``: whether the buyer may pass the data on or resell it (ODRL
  ``distribute``/``sell``: a permission when true, a prohibition when false).
* ``attribution``: the credit line the buyer must show (ODRL duty ``attribute``);
  a duty accepted by ordering, not something an order can violate.

Purposes come from the closed vocabulary :data:`PURPOSES` (names after the W3C
Data Privacy Vocabulary, DPV), so "permitted" and "prohibited" are decidable.
Lists are normalised (sorted, duplicates refused), so :meth:`Policy.digest` (SM3
of RFC 8785) is one value per policy. :data:`DEFAULT_POLICY` is the policy of a
listing that states none: any purpose, anywhere, no time limit, no onward transfer.

A :class:`Declaration` is what the buyer signs in ``order.placed``::

    {"purpose": "academic_research", "processing_region": "CN",
     "legal_basis": "consent" | null}

``legal_basis`` is one of :data:`LEGAL_BASES`, the grounds of PIPL Article 13
(个人信息保护法 第十三条) for processing personal information.

:func:`evaluate` is pure: given the policy, the declaration and a
:class:`PolicyContext` (the listing's classification and personal-information flag,
the cross-border assessment's state, the days the order would buy) it returns every
:class:`Violation` in a fixed clause order; an empty list means the order complies.
Beyond the policy's own clauses it applies two rules of law to every listing:
``cross_border`` (data classified 重要, or personal information, processed outside
CN needs an approved, unexpired cross-border assessment for that buyer and listing:
数据出境安全评估, PIPL Art. 38) and ``legal_basis`` (personal information needs a
declared legal basis).

Parsing is strict: unknown or missing fields, wrong types, unknown purposes, region
codes that are not ISO 3166-1 alpha-2, duplicates raise :class:`PolicyFormatError`
(a :class:`ledger.records.RecordFormatError`) naming the path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from iso3166 import countries_by_alpha2

from ledger.records import (
    MAX_SAFE_INTEGER,
    Fields,
    RecordFormatError,
    canonical_json,
    parse_json_object,
)
from ledger.sm3 import sm3

__all__ = [
    "CLAUSES",
    "DEFAULT_POLICY",
    "DOMESTIC_REGION",
    "LEGAL_BASES",
    "POLICY_VERSION",
    "PURPOSES",
    "AssessmentState",
    "Declaration",
    "Policy",
    "PolicyContext",
    "PolicyFormatError",
    "Violation",
    "evaluate",
    "policy_of",
]

POLICY_VERSION: Final = 1
DOMESTIC_REGION: Final = "CN"
MAX_ACCESS_DAYS: Final = 36_500
MAX_ATTRIBUTION_LENGTH: Final = 500

PURPOSES: Final[Mapping[str, str]] = {
    "academic_research": "dpv:AcademicResearch",
    "ai_training": "dpv:ResearchAndDevelopment (training machine-learning models)",
    "commercial_research": "dpv:CommercialResearch",
    "credit_scoring": "dpv:CreditChecking",
    "fraud_prevention": "dpv:FraudPreventionAndDetection",
    "internal_analytics": "dpv:InternalResourceOptimisation",
    "legal_compliance": "dpv:LegalCompliance",
    "marketing": "dpv:Marketing",
    "personalised_advertising": "dpv:PersonalisedAdvertising",
    "public_service": "dpv:PublicBenefit",
    "resale": "dpv:SellDataToThirdParties",
    "service_provision": "dpv:ServiceProvision",
}
"""The closed purpose vocabulary: name → the DPV concept it stands for."""

ONWARD_TRANSFER_PURPOSES: Final = frozenset({"resale"})
"""Purposes that pass the data on: refused unless the policy allows onward transfer."""

LEGAL_BASES: Final[Mapping[str, str]] = {
    "consent": "PIPL 13(1): the individual's consent (取得个人的同意)",
    "contract": "PIPL 13(2): a contract with the individual, or HR management under "
    "labour rules (订立、履行合同或人力资源管理所必需)",
    "legal_duty": "PIPL 13(3): a statutory duty or obligation (履行法定职责或者法定义务所必需)",
    "emergency": "PIPL 13(4): a public-health emergency or protecting life, health and "
    "property (应对突发公共卫生事件或紧急情况)",
    "news_reporting": "PIPL 13(5): news reporting and public-opinion supervision in the "
    "public interest (为公共利益实施新闻报道、舆论监督)",
    "public_information": "PIPL 13(6): information the individual disclosed or already "
    "lawfully public (已经合法公开的个人信息)",
    "other_law": "PIPL 13(7): another case laws and regulations provide for "
    "(法律、行政法规规定的其他情形)",
}
"""The legal bases of PIPL Article 13 a buyer may declare: name → the ground."""

CLAUSES: Final = (
    "permitted_purposes",
    "prohibited_purposes",
    "onward_transfer",
    "processing_regions",
    "access_days",
    "cross_border",
    "legal_basis",
)
"""Every clause a :class:`Violation` can name, in the order :func:`evaluate` checks."""

AssessmentState = Literal["approved", "rejected", "expired", "missing"]
"""The cross-border assessment for the buyer and listing, as the exchange holds it."""

_POLICY_FIELDS: Final = (
    "version",
    "permitted_purposes",
    "prohibited_purposes",
    "processing_regions",
    "access_days",
    "onward_transfer",
    "attribution",
)
_DEFAULTS: Final[Mapping[str, Any]] = {
    "version": POLICY_VERSION,
    "permitted_purposes": None,
    "prohibited_purposes": [],
    "processing_regions": None,
    "access_days": None,
    "onward_transfer": False,
    "attribution": None,
}
_DECLARATION_FIELDS: Final = ("purpose", "processing_region", "legal_basis")


class PolicyFormatError(RecordFormatError):
    """A policy or declaration is malformed; ``path`` names the value."""


def _names(value: Any, path: str, vocabulary: Mapping[str, str] | None) -> tuple[str, ...]:
    """A list of distinct names (from ``vocabulary``, or ISO 3166-1 alpha-2 codes when
    it is ``None``), sorted."""
    if not isinstance(value, list):
        raise PolicyFormatError(f"expected a list, got {type(value).__name__}", path=path)
    seen: set[str] = set()
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        if vocabulary is None:
            _region(item, where)
        elif not isinstance(item, str) or item not in vocabulary:
            raise PolicyFormatError(
                f"{item!r} is not one of: {', '.join(sorted(vocabulary))}", path=where
            )
        if item in seen:
            raise PolicyFormatError(f"{item!r} is listed twice", path=where)
        seen.add(item)
    return tuple(sorted(seen))


def _region(value: Any, path: str) -> str:
    if not isinstance(value, str) or value not in countries_by_alpha2:
        raise PolicyFormatError(
            f"{value!r} is not an ISO 3166-1 alpha-2 country code (e.g. CN, HK, SG)", path=path
        )
    return value


def _choice(value: Any, path: str, vocabulary: Mapping[str, str]) -> str:
    if not isinstance(value, str) or value not in vocabulary:
        raise PolicyFormatError(
            f"{value!r} is not one of: {', '.join(sorted(vocabulary))}", path=path
        )
    return value


@dataclass(frozen=True, slots=True)
class Policy:
    """A usage policy; see the module docstring. Build it with :meth:`from_dict`."""

    permitted_purposes: tuple[str, ...] | None
    prohibited_purposes: tuple[str, ...]
    processing_regions: tuple[str, ...] | None
    access_days: int | None
    onward_transfer: bool
    attribution: str | None

    @classmethod
    def from_dict(cls, data: Any, path: str = "policy") -> Policy:
        """Parse a policy's JSON form strictly (absent fields take their defaults)."""
        if not isinstance(data, Mapping):
            raise PolicyFormatError(f"expected a JSON object, got {type(data).__name__}", path=path)
        try:
            f = Fields({**_DEFAULTS, **data}, path, _POLICY_FIELDS)
        except RecordFormatError as exc:
            raise PolicyFormatError(exc.reason, path=exc.path) from None
        if f.raw("version") != POLICY_VERSION or isinstance(f.raw("version"), bool):
            raise PolicyFormatError(f"only version {POLICY_VERSION}", path=f.path("version"))
        permitted = f.raw("permitted_purposes")
        prohibited = _names(f.raw("prohibited_purposes"), f.path("prohibited_purposes"), PURPOSES)
        allowed = (
            None if permitted is None else _names(permitted, f.path("permitted_purposes"), PURPOSES)
        )
        if allowed is not None:
            if not allowed:
                raise PolicyFormatError(
                    "an empty list permits nothing; null permits any purpose not prohibited",
                    path=f.path("permitted_purposes"),
                )
            both = sorted(set(allowed) & set(prohibited))
            if both:
                raise PolicyFormatError(
                    f"{', '.join(both)} both permitted and prohibited",
                    path=f.path("prohibited_purposes"),
                )
        regions_raw = f.raw("processing_regions")
        regions = (
            None if regions_raw is None else _names(regions_raw, f.path("processing_regions"), None)
        )
        if regions is not None and not regions:
            raise PolicyFormatError(
                "an empty list permits no region; null permits any",
                path=f.path("processing_regions"),
            )
        days = f.raw("access_days")
        if days is not None:
            if isinstance(days, bool) or not isinstance(days, int) or days < 1:
                raise PolicyFormatError(
                    "expected a whole number of days ≥ 1, or null", path=f.path("access_days")
                )
            if days > MAX_ACCESS_DAYS:
                raise PolicyFormatError(f"at most {MAX_ACCESS_DAYS}", path=f.path("access_days"))
        onward = f.raw("onward_transfer")
        if not isinstance(onward, bool):
            raise PolicyFormatError("expected true or false", path=f.path("onward_transfer"))
        attribution = f.raw("attribution")
        if attribution is not None and (
            not isinstance(attribution, str)
            or not 0 < len(attribution.strip()) <= MAX_ATTRIBUTION_LENGTH
            or len(attribution) > MAX_ATTRIBUTION_LENGTH
        ):
            raise PolicyFormatError(
                f"a credit line of 1 to {MAX_ATTRIBUTION_LENGTH} characters, or null",
                path=f.path("attribution"),
            )
        return cls(allowed, prohibited, regions, days, onward, attribution)

    @classmethod
    def from_json(cls, data: str | bytes, what: str = "policy") -> Policy:
        """Parse JSON text (duplicate keys, NaN and deep nesting refused)."""
        try:
            value = parse_json_object(data, what)
        except RecordFormatError as exc:
            raise PolicyFormatError(exc.reason, path=exc.path) from None
        return cls.from_dict(value, what)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": POLICY_VERSION,
            "permitted_purposes": (
                None if self.permitted_purposes is None else list(self.permitted_purposes)
            ),
            "prohibited_purposes": list(self.prohibited_purposes),
            "processing_regions": (
                None if self.processing_regions is None else list(self.processing_regions)
            ),
            "access_days": self.access_days,
            "onward_transfer": self.onward_transfer,
            "attribution": self.attribution,
        }

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    def digest(self) -> str:
        """Hex SM3 of the RFC 8785 form: what a quote and an order commit to."""
        return sm3(self.canonical_bytes()).hex()


DEFAULT_POLICY: Final = Policy(None, (), None, None, False, None)


def policy_of(data: Mapping[str, Any] | None) -> Policy:
    """The policy a stored (normalised) JSON form stands for: ``None`` is the default."""
    return DEFAULT_POLICY if data is None else Policy.from_dict(data)


@dataclass(frozen=True, slots=True)
class Declaration:
    """The buyer's signed declaration of use (``order.placed``'s ``declaration``)."""

    purpose: str
    processing_region: str
    legal_basis: str | None = None

    def __post_init__(self) -> None:
        _choice(self.purpose, "declaration.purpose", PURPOSES)
        _region(self.processing_region, "declaration.processing_region")
        if self.legal_basis is not None:
            _choice(self.legal_basis, "declaration.legal_basis", LEGAL_BASES)

    @classmethod
    def from_dict(cls, data: Any, path: str = "declaration") -> Declaration:
        if not isinstance(data, Mapping):
            raise PolicyFormatError(f"expected a JSON object, got {type(data).__name__}", path=path)
        try:
            f = Fields({"legal_basis": None, **data}, path, _DECLARATION_FIELDS)
        except RecordFormatError as exc:
            raise PolicyFormatError(exc.reason, path=exc.path) from None
        purpose = _choice(f.raw("purpose"), f.path("purpose"), PURPOSES)
        region = _region(f.raw("processing_region"), f.path("processing_region"))
        basis = f.raw("legal_basis")
        if basis is not None:
            _choice(basis, f.path("legal_basis"), LEGAL_BASES)
        return cls(purpose, region, basis)

    def to_dict(self) -> dict[str, Any]:
        return {
            "purpose": self.purpose,
            "processing_region": self.processing_region,
            "legal_basis": self.legal_basis,
        }


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """What the evaluation needs beyond policy and declaration.

    ``classification``/``personal_information``: the listing's declarations.
    ``assessment``: the cross-border assessment for this buyer and listing as held
    at evaluation time; ``None`` when unknown (a client's pre-check: the clause is
    then left to the exchange). ``requested_days``: the days of use the order buys
    (a subscription's periods × period length), ``None`` for a one-off order."""

    classification: str | None
    personal_information: bool
    assessment: AssessmentState | None = None
    requested_days: int | None = None

    def __post_init__(self) -> None:
        if self.requested_days is not None and not 0 <= self.requested_days <= MAX_SAFE_INTEGER:
            raise ValueError("requested_days out of range")


@dataclass(frozen=True, slots=True)
class Violation:
    """A clause the order breaks (one of :data:`CLAUSES`) and why."""

    clause: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"clause": self.clause, "message": self.message}


def _needs_assessment(context: PolicyContext) -> str | None:
    if context.classification == "重要":
        return "data classified 重要 (important data)"
    if context.personal_information:
        return "personal information"
    return None


def evaluate(policy: Policy, declaration: Declaration, context: PolicyContext) -> list[Violation]:
    """Every clause ``declaration`` breaks under ``policy`` in ``context``, in the
    order of :data:`CLAUSES`; empty when the order complies. Pure: no I/O, no clock."""
    found: list[Violation] = []
    purpose, region = declaration.purpose, declaration.processing_region
    if policy.permitted_purposes is not None and purpose not in policy.permitted_purposes:
        found.append(
            Violation(
                "permitted_purposes",
                f"purpose {purpose!r} is not permitted; the policy permits "
                f"{', '.join(policy.permitted_purposes)}",
            )
        )
    if purpose in policy.prohibited_purposes:
        found.append(
            Violation("prohibited_purposes", f"purpose {purpose!r} is prohibited by the policy")
        )
    if purpose in ONWARD_TRANSFER_PURPOSES and not policy.onward_transfer:
        found.append(
            Violation(
                "onward_transfer",
                f"purpose {purpose!r} passes the data on; the policy prohibits onward "
                "transfer and resale",
            )
        )
    if policy.processing_regions is not None and region not in policy.processing_regions:
        found.append(
            Violation(
                "processing_regions",
                f"processing in {region} is not permitted; the policy permits "
                f"{', '.join(policy.processing_regions)}",
            )
        )
    if (
        policy.access_days is not None
        and context.requested_days is not None
        and context.requested_days > policy.access_days
    ):
        found.append(
            Violation(
                "access_days",
                f"the order buys {context.requested_days} days of use; the policy allows "
                f"at most {policy.access_days}",
            )
        )
    sensitive = _needs_assessment(context)
    if (
        sensitive is not None
        and region != DOMESTIC_REGION
        and context.assessment is not None
        and context.assessment != "approved"
    ):
        why = {
            "missing": "no cross-border assessment is recorded",
            "rejected": "the cross-border assessment was rejected",
            "expired": "the cross-border assessment has expired",
        }[context.assessment]
        found.append(
            Violation(
                "cross_border",
                f"{sensitive} may be processed outside {DOMESTIC_REGION} ({region}) only "
                f"with an approved cross-border assessment for this buyer and listing: {why}",
            )
        )
    if context.personal_information and declaration.legal_basis is None:
        found.append(
            Violation(
                "legal_basis",
                "the data holds personal information: declare a legal basis "
                f"(PIPL Art. 13: {', '.join(LEGAL_BASES)})",
            )
        )
    return found
