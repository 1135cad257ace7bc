"""ledger.protocol.policy: the policy and declaration wire forms (strict, normalised,
one digest per policy) and the one evaluator, clause by clause."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.protocol.policy import (
    CLAUSES,
    DEFAULT_POLICY,
    LEGAL_BASES,
    PURPOSES,
    Declaration,
    Policy,
    PolicyContext,
    PolicyFormatError,
    evaluate,
    policy_of,
)
from ledger.records import RecordFormatError

FULL: dict[str, Any] = {
    "version": 1,
    "permitted_purposes": ["public_service", "academic_research"],
    "prohibited_purposes": ["marketing"],
    "processing_regions": ["HK", "CN"],
    "access_days": 365,
    "onward_transfer": False,
    "attribution": "Source: Chongqing Transport Data",
}


def test_a_policy_round_trips_normalised_with_one_digest() -> None:
    policy = Policy.from_dict(FULL)
    out = policy.to_dict()
    assert out["permitted_purposes"] == ["academic_research", "public_service"]
    assert out["processing_regions"] == ["CN", "HK"]
    assert Policy.from_dict(out) == policy
    shuffled = {**FULL, "permitted_purposes": ["academic_research", "public_service"]}
    assert Policy.from_dict(shuffled).digest() == policy.digest()
    assert Policy.from_dict({**FULL, "access_days": 364}).digest() != policy.digest()
    assert len(policy.digest()) == 64


def test_absent_fields_take_the_defaults_and_null_is_the_default_policy() -> None:
    assert Policy.from_dict({}) == DEFAULT_POLICY
    assert policy_of(None) == DEFAULT_POLICY
    assert DEFAULT_POLICY.to_dict() == {
        "version": 1,
        "permitted_purposes": None,
        "prohibited_purposes": [],
        "processing_regions": None,
        "access_days": None,
        "onward_transfer": False,
        "attribution": None,
    }


BAD_POLICIES = [
    ("not an object", [], "policy"),
    ("unknown field", {"purposes": []}, "policy"),
    ("version 2", {"version": 2}, "policy.version"),
    ("version true", {"version": True}, "policy.version"),
    ("unknown purpose", {"permitted_purposes": ["spying"]}, "policy.permitted_purposes[0]"),
    ("purpose not a string", {"prohibited_purposes": [7]}, "policy.prohibited_purposes[0]"),
    ("purpose twice", {"prohibited_purposes": ["marketing"] * 2}, "policy.prohibited_purposes[1]"),
    ("empty permitted list", {"permitted_purposes": []}, "policy.permitted_purposes"),
    (
        "permitted and prohibited",
        {"permitted_purposes": ["marketing"], "prohibited_purposes": ["marketing"]},
        "policy.prohibited_purposes",
    ),
    ("lowercase region", {"processing_regions": ["cn"]}, "policy.processing_regions[0]"),
    ("alpha-3 region", {"processing_regions": ["CHN"]}, "policy.processing_regions[0]"),
    ("unassigned region", {"processing_regions": ["XX"]}, "policy.processing_regions[0]"),
    ("UK is not ISO", {"processing_regions": ["UK"]}, "policy.processing_regions[0]"),
    ("region twice", {"processing_regions": ["CN", "CN"]}, "policy.processing_regions[1]"),
    ("empty region list", {"processing_regions": []}, "policy.processing_regions"),
    ("regions not a list", {"processing_regions": "CN"}, "policy.processing_regions"),
    ("zero days", {"access_days": 0}, "policy.access_days"),
    ("days as text", {"access_days": "30"}, "policy.access_days"),
    ("too many days", {"access_days": 36_501}, "policy.access_days"),
    ("onward as text", {"onward_transfer": "no"}, "policy.onward_transfer"),
    ("blank attribution", {"attribution": "  "}, "policy.attribution"),
    ("long attribution", {"attribution": "x" * 501}, "policy.attribution"),
]


@pytest.mark.parametrize(("desc", "data", "path"), BAD_POLICIES, ids=[c[0] for c in BAD_POLICIES])
def test_malformed_policies_are_refused_naming_the_path(desc: str, data: Any, path: str) -> None:
    with pytest.raises(PolicyFormatError) as raised:
        Policy.from_dict(data)
    assert raised.value.path == path, desc
    assert isinstance(raised.value, RecordFormatError)


def test_policy_text_with_duplicate_keys_or_nan_is_refused() -> None:
    with pytest.raises(PolicyFormatError, match="duplicate key 'access_days'"):
        Policy.from_json('{"access_days": 30, "access_days": 3650}')
    with pytest.raises(PolicyFormatError):
        Policy.from_json('{"access_days": NaN}')
    assert Policy.from_json('{"access_days": 30}').access_days == 30


BAD_DECLARATIONS = [
    ("missing region", {"purpose": "marketing"}, "declaration"),
    ("unknown field", {"purpose": "marketing", "processing_region": "CN", "x": 1}, "declaration"),
    ("unknown purpose", {"purpose": "spying", "processing_region": "CN"}, "declaration.purpose"),
    (
        "bad region",
        {"purpose": "marketing", "processing_region": "China"},
        "declaration.processing_region",
    ),
    (
        "unknown basis",
        {"purpose": "marketing", "processing_region": "CN", "legal_basis": "because"},
        "declaration.legal_basis",
    ),
]


@pytest.mark.parametrize(
    ("desc", "data", "path"), BAD_DECLARATIONS, ids=[c[0] for c in BAD_DECLARATIONS]
)
def test_malformed_declarations_are_refused_naming_the_path(
    desc: str, data: Any, path: str
) -> None:
    with pytest.raises(PolicyFormatError) as raised:
        Declaration.from_dict(data)
    assert raised.value.path == path, desc


def test_declarations_round_trip_and_the_vocabularies_are_closed() -> None:
    declared = Declaration.from_dict({"purpose": "credit_scoring", "processing_region": "SG"})
    assert declared.to_dict() == {
        "purpose": "credit_scoring",
        "processing_region": "SG",
        "legal_basis": None,
    }
    assert Declaration.from_dict(declared.to_dict()) == declared
    with pytest.raises(PolicyFormatError):
        Declaration("credit_scoring", "SG", "whim")
    assert "resale" in PURPOSES and "consent" in LEGAL_BASES


PLAIN = PolicyContext(classification="一般", personal_information=False, assessment="missing")
RESTRICTIVE = Policy.from_dict(FULL)

# (desc, policy, declaration, context, the clauses broken)
CASES: list[tuple[str, Policy, Declaration, PolicyContext, list[str]]] = [
    ("complies", RESTRICTIVE, Declaration("public_service", "CN"), PLAIN, []),
    ("default policy, anything", DEFAULT_POLICY, Declaration("marketing", "US"), PLAIN, []),
    (
        "not permitted",
        RESTRICTIVE,
        Declaration("credit_scoring", "CN"),
        PLAIN,
        ["permitted_purposes"],
    ),
    (
        "prohibited (and not permitted)",
        RESTRICTIVE,
        Declaration("marketing", "CN"),
        PLAIN,
        ["permitted_purposes", "prohibited_purposes"],
    ),
    (
        "prohibited under an open policy",
        Policy.from_dict({"prohibited_purposes": ["marketing"]}),
        Declaration("marketing", "CN"),
        PLAIN,
        ["prohibited_purposes"],
    ),
    (
        "resale without onward transfer",
        DEFAULT_POLICY,
        Declaration("resale", "CN"),
        PLAIN,
        ["onward_transfer"],
    ),
    (
        "resale with onward transfer",
        Policy.from_dict({"onward_transfer": True}),
        Declaration("resale", "CN"),
        PLAIN,
        [],
    ),
    (
        "outside the regions",
        RESTRICTIVE,
        Declaration("public_service", "SG"),
        PLAIN,
        ["processing_regions"],
    ),
    (
        "subscription longer than allowed",
        RESTRICTIVE,
        Declaration("public_service", "CN"),
        PolicyContext("一般", False, "missing", requested_days=366),
        ["access_days"],
    ),
    (
        "subscription as long as allowed",
        RESTRICTIVE,
        Declaration("public_service", "CN"),
        PolicyContext("一般", False, "missing", requested_days=365),
        [],
    ),
    (
        "重要 abroad, no assessment",
        DEFAULT_POLICY,
        Declaration("academic_research", "DE"),
        PolicyContext("重要", False, "missing"),
        ["cross_border"],
    ),
    (
        "重要 abroad, rejected",
        DEFAULT_POLICY,
        Declaration("academic_research", "DE"),
        PolicyContext("重要", False, "rejected"),
        ["cross_border"],
    ),
    (
        "重要 abroad, expired",
        DEFAULT_POLICY,
        Declaration("academic_research", "DE"),
        PolicyContext("重要", False, "expired"),
        ["cross_border"],
    ),
    (
        "重要 abroad, approved",
        DEFAULT_POLICY,
        Declaration("academic_research", "DE"),
        PolicyContext("重要", False, "approved"),
        [],
    ),
    (
        "重要 abroad, unknown to a client",
        DEFAULT_POLICY,
        Declaration("academic_research", "DE"),
        PolicyContext("重要", False, None),
        [],
    ),
    (
        "重要 at home",
        DEFAULT_POLICY,
        Declaration("academic_research", "CN"),
        PolicyContext("重要", False, "missing"),
        [],
    ),
    (
        "Hong Kong is outside CN",
        DEFAULT_POLICY,
        Declaration("academic_research", "HK"),
        PolicyContext("重要", False, "missing"),
        ["cross_border"],
    ),
    (
        "personal information without a legal basis",
        DEFAULT_POLICY,
        Declaration("service_provision", "CN"),
        PolicyContext("一般", True, "missing"),
        ["legal_basis"],
    ),
    (
        "personal information with a legal basis",
        DEFAULT_POLICY,
        Declaration("service_provision", "CN", "contract"),
        PolicyContext("一般", True, "missing"),
        [],
    ),
    (
        "personal information abroad",
        DEFAULT_POLICY,
        Declaration("service_provision", "SG", "consent"),
        PolicyContext("一般", True, "missing"),
        ["cross_border"],
    ),
    (
        "everything at once, in clause order",
        RESTRICTIVE,
        Declaration("resale", "US"),
        PolicyContext("重要", True, "missing", requested_days=400),
        [
            "permitted_purposes",
            "onward_transfer",
            "processing_regions",
            "access_days",
            "cross_border",
            "legal_basis",
        ],
    ),
]


@pytest.mark.parametrize(
    ("desc", "policy", "declaration", "context", "clauses"), CASES, ids=[c[0] for c in CASES]
)
def test_evaluate_names_every_clause_broken(
    desc: str,
    policy: Policy,
    declaration: Declaration,
    context: PolicyContext,
    clauses: list[str],
) -> None:
    found = evaluate(policy, declaration, context)
    assert [v.clause for v in found] == clauses, desc
    assert all(v.clause in CLAUSES and v.message for v in found)
    assert evaluate(policy, declaration, context) == found  # pure: same answer again
