"""The reference price's arithmetic (ledger/pricing_reference.py, docs/pricing.md):
the cost method's rounding and refusals, the market method on crafted deals
(which deals count, the window, K, the adjustments, the quantiles), and the replay
of public records."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.pricing_reference import (
    DAY_MS,
    MAX_COMPARABLES,
    MIN_COMPARABLES,
    THIRTY_DAYS_MS,
    WINDOW_MS,
    AsOf,
    CostBasis,
    CostBasisError,
    Deal,
    PublicRecords,
    Subject,
    cost_reference,
    deal_unit_price,
    freshness_bp,
    market_reference,
    pricing_unit,
    quality_bp,
    quantile,
    reference_price,
    select_comparables,
)

NOW = 1_800_000_000_000
PROVIDER = "p" * 64
ASSESSOR = "a" * 64
AT = AsOf(log_size=1000, timestamp=NOW)
SUBJECT = Subject(
    listing_id="subject",
    version=1,
    category="transport",
    pricing={"model": "fixed", "price": 1_000},
    update_frequency="monthly",
    cost_basis=None,
)


def deal(order_id: str, price: int, *, age_ms: int = DAY_MS, **kw: Any) -> Deal:
    fields: dict[str, Any] = {
        "order_id": order_id,
        "listing_id": "other",
        "version": 1,
        "category": "transport",
        "unit": "order",
        "unit_price_fen": price,
        "settled_at": NOW - age_ms,
        "update_frequency": "once",
    }
    fields.update(kw)
    return Deal(**fields)


# ------------------------------------------------------------------ cost method


def test_cost_method_rounds_both_ends_up() -> None:
    basis = CostBasis.from_dict(
        {"acquisition_fen": 1_000, "processing_fen": 1, "expected_units": 3, "margin_bp": 1_500}
    )
    cost = cost_reference(basis)
    assert cost["total_fen"] == 1_001
    assert cost["low"] == 334  # ceil(1001 / 3) = ceil(333.67)
    assert cost["high"] == 384  # ceil(1001 × 11500 / 30000) = ceil(383.72)
    assert cost["storage_fen"] == 0 and cost["expected_units"] == 3


def test_cost_method_exact_division_and_zero_costs() -> None:
    cost = cost_reference(
        CostBasis.from_dict({"other_fen": 10_000, "expected_units": 100, "margin_bp": 2_500})
    )
    assert (cost["low"], cost["high"]) == (100, 125)
    zero = cost_reference(CostBasis.from_dict({"expected_units": 1, "margin_bp": 0}))
    assert (zero["low"], zero["high"]) == (0, 0)


def test_cost_method_huge_inputs_stay_exact() -> None:
    basis = CostBasis.from_dict(
        {"acquisition_fen": 10**15, "expected_units": 7, "margin_bp": 100_000}
    )
    cost = cost_reference(basis)
    assert cost["low"] == -(-(10**15) // 7)
    assert cost["high"] == -(-(10**15) * 110_000 // 70_000)


@pytest.mark.parametrize(
    ("desc", "basis", "field"),
    [
        (
            "float cost",
            {"acquisition_fen": 1.5, "expected_units": 1, "margin_bp": 0},
            "acquisition_fen",
        ),
        ("negative cost", {"storage_fen": -1, "expected_units": 1, "margin_bp": 0}, "storage_fen"),
        ("boolean units", {"expected_units": True, "margin_bp": 0}, "expected_units"),
        ("string margin", {"expected_units": 1, "margin_bp": "100"}, "margin_bp"),
        ("zero units", {"expected_units": 0, "margin_bp": 0}, "expected_units"),
        ("no units", {"margin_bp": 0}, "expected_units"),
        ("no margin", {"expected_units": 1}, "margin_bp"),
        ("negative margin", {"expected_units": 1, "margin_bp": -5}, "margin_bp"),
        ("margin too large", {"expected_units": 1, "margin_bp": 100_001}, "margin_bp"),
        (
            "cost too large",
            {"other_fen": 10**15 + 1, "expected_units": 1, "margin_bp": 0},
            "other_fen",
        ),
        ("unknown field", {"expected_units": 1, "margin_bp": 0, "profit": 1}, "profit"),
        (
            "sum too large",
            {"other_fen": 10**15, "processing_fen": 1, "expected_units": 1, "margin_bp": 0},
            "sum",
        ),
    ],
)
def test_cost_basis_refusals(desc: str, basis: dict[str, Any], field: str) -> None:
    with pytest.raises(CostBasisError, match=field):
        CostBasis.from_dict(basis)


def test_cost_basis_must_be_an_object() -> None:
    with pytest.raises(CostBasisError, match="object"):
        CostBasis.from_dict([1, 2])


# ------------------------------------------------------------------ units


def test_units_and_asking_prices() -> None:
    assert pricing_unit({"model": "fixed", "price": 500}) == ("order", 500)
    assert pricing_unit({"model": "free"}) == ("order", 0)
    tiers = {
        "model": "tiers",
        "tiers": [
            {"up_to_rows": 10, "price_per_1000_rows": 7},
            {"up_to_rows": None, "price_per_1000_rows": 3},
        ],
    }
    assert pricing_unit(tiers) == ("1000_rows", 7)
    sub = {"model": "subscription", "price_per_period": 1_001, "period_days": 7, "max_periods": 3}
    assert pricing_unit(sub) == ("30_days", 4_290)  # round(1001 × 30 / 7) = round(4290.0)
    assert pricing_unit({"model": "barter"}) is None


def test_deal_unit_prices() -> None:
    fixed = {"model": "fixed", "price": 500}
    assert deal_unit_price(fixed, {"rows": None, "periods": None}, 500) == ("order", 500)
    assert deal_unit_price(fixed, {}, 0) is None  # a gift is no price
    tiers = {"model": "tiers", "tiers": [{"up_to_rows": None, "price_per_1000_rows": 3}]}
    assert deal_unit_price(tiers, {"rows": 3_000}, 10) == ("1000_rows", 3)  # round(3.33)
    assert deal_unit_price(tiers, {"rows": 2_000}, 5) == ("1000_rows", 3)  # 2.5 → 3 (half up)
    sub = {"model": "subscription", "price_per_period": 1, "period_days": 15, "max_periods": 9}
    assert deal_unit_price(sub, {"periods": 4}, 1_000) == ("30_days", 500)
    computed = {"computation": True, "queries": 4}
    assert deal_unit_price(fixed, computed, 10) == ("query", 3)  # 2.5 → 3
    assert deal_unit_price(fixed, {"computation": True, "queries": None}, 10) == (
        "epsilon_budget",
        10,
    )


# ------------------------------------------------------------------ market method


def test_quantiles_interpolate_with_half_up_rounding() -> None:
    assert quantile([10], 25) == 10
    values = [100, 200, 300, 400, 1000]
    assert [quantile(values, p) for p in (25, 50, 75)] == [200, 300, 400]
    assert quantile([1, 2], 25) == 1  # 1.25 → 1
    assert quantile([1, 3], 25) == 2  # 1.5 → 2
    assert quantile([0, 10, 20, 30, 40, 50], 25) == 13  # h = 1.25: 10 + 2.5 → 13
    with pytest.raises(ValueError):
        quantile([], 50)


def test_adjustment_tables() -> None:
    assert quality_bp("A", "B") == 11_500
    assert quality_bp("B", "A") == 8_696  # 10000 × 10000 / 11500 = 8695.65
    assert quality_bp("D", "D") == 10_000
    assert quality_bp(None, "A") == quality_bp("A", None) == quality_bp("Z", "A") == 10_000
    assert freshness_bp(0, "daily") == 10_000
    assert freshness_bp(THIRTY_DAYS_MS - 1, "daily") == 10_000
    assert freshness_bp(THIRTY_DAYS_MS, "daily") == 9_200
    assert freshness_bp(5 * THIRTY_DAYS_MS, "realtime") == 5_000
    assert freshness_bp(50 * THIRTY_DAYS_MS, "realtime") == 5_000  # the floor
    assert freshness_bp(-DAY_MS, "once") == 10_000


def test_only_other_listings_same_category_and_unit_within_the_window() -> None:
    deals = [
        deal("in", 100),
        deal("own", 100, listing_id="subject"),
        deal("category", 100, category="finance"),
        deal("unit", 100, unit="30_days"),
        deal("edge-in", 100, age_ms=WINDOW_MS - 1),
        deal("edge-out", 100, age_ms=WINDOW_MS),
    ]
    chosen = select_comparables(SUBJECT, "order", deals, AT)
    assert [d.order_id for d in chosen] == ["in", "edge-in"]


def test_the_newest_comparables_only_ties_by_order_id() -> None:
    deals = [
        deal(f"o{i:03d}", 100, age_ms=(i // 2) * 1000 + 1) for i in range(MAX_COMPARABLES + 10)
    ]
    chosen = select_comparables(SUBJECT, "order", list(reversed(deals)), AT)
    assert [d.order_id for d in chosen] == [f"o{i:03d}" for i in range(MAX_COMPARABLES)]


def test_fewer_than_k_comparables_give_no_numbers() -> None:
    few = [deal(f"o{i}", 100 * (i + 1)) for i in range(MIN_COMPARABLES - 1)]
    market = market_reference(SUBJECT, few, AT, {})
    assert market["status"] == "insufficient_comparables"
    assert (market["low"], market["median"], market["high"]) == (None, None, None)
    assert len(market["comparables"]) == MIN_COMPARABLES - 1
    enough = [*few, deal("last", 1_000)]
    market = market_reference(SUBJECT, enough, AT, {})
    assert market["status"] == "ok"
    assert (market["low"], market["median"], market["high"]) == (200, 300, 400)


def test_adjustments_apply_to_each_comparable() -> None:
    deals = [
        deal("fresh", 1_000, update_frequency="daily"),
        deal("old", 1_000, age_ms=2 * THIRTY_DAYS_MS, update_frequency="daily"),
        deal("graded", 1_000, listing_id="graded"),
        deal("d", 1_000),
        deal("e", 1_000),
    ]
    grades = {("subject", 1): "A", ("graded", 1): "C"}
    market = market_reference(SUBJECT, deals, AT, grades)
    by_id = {c["order_id"]: c for c in market["comparables"]}
    assert by_id["old"]["adjustments"] == {"quality_bp": 10_000, "freshness_bp": 8_400}
    assert by_id["old"]["adjusted_unit_price_fen"] == 840
    # A against C: 11500 / 8500 = 1.352941… → 13529 bp
    assert by_id["graded"]["adjustments"] == {"quality_bp": 13_529, "freshness_bp": 10_000}
    assert by_id["graded"]["grade"] == "C"
    assert by_id["graded"]["adjusted_unit_price_fen"] == 1_353
    assert by_id["fresh"]["adjusted_unit_price_fen"] == 1_000
    assert market["method"]["subject_grade"] == "A"


def test_answer_places_the_asking_price() -> None:
    subject = Subject(
        "subject",
        1,
        "transport",
        {"model": "fixed", "price": 150},
        "monthly",
        {"other_fen": 1_000, "expected_units": 10, "margin_bp": 1_000},
    )
    deals = [deal(f"o{i}", p) for i, p in enumerate([100, 120, 140, 160, 180])]
    answer = reference_price(subject, deals, AT, {})
    assert answer["unit"] == "order"
    assert (answer["cost"]["low"], answer["cost"]["high"]) == (100, 110)
    assert (answer["market"]["low"], answer["market"]["high"]) == (120, 160)
    assert answer["asking"] == {
        "unit_price_fen": 150,
        "position": {"market": "within", "cost": "above"},
    }
    cheap = reference_price(
        Subject("subject", 1, "transport", {"model": "fixed", "price": 50}, "monthly", None),
        deals,
        AT,
        {},
    )
    assert cheap["cost"] is None
    assert cheap["asking"]["position"] == {"market": "below", "cost": None}


# ------------------------------------------------------------------ replay


def _record(kind: str, timestamp: int, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": kind,
        "timestamp": timestamp,
        "payload": payload,
        "actor": "x" * 64,
        "schema_version": 1,
    }


def _listing(listing_id: str, category: str = "transport", **kw: Any) -> dict[str, Any]:
    payload = {
        "listing_id": listing_id,
        "category": category,
        "pricing": {"model": "fixed", "price": 100},
        "update_frequency": "once",
        "providers": [{"key_id": PROVIDER, "share_bps": 10_000}],
    }
    payload.update(kw)
    return _record("listing.drafted", NOW - 10 * DAY_MS, payload)


def _placed(order_id: str, listing_id: str, amount: int) -> dict[str, Any]:
    quote = {
        "listing_id": listing_id,
        "listing_version": 1,
        "terms": {"rows": None, "periods": None, "licence": "l"},
        "amount": amount,
    }
    return _record("order.placed", NOW - 5 * DAY_MS, {"order_id": order_id, "quote": quote})


def test_replay_keeps_settled_deals_and_drops_revoked_and_unsettled() -> None:
    records = [
        _listing("a"),
        _listing("b", category="finance"),
        _listing("subject", cost_basis={"other_fen": 500, "expected_units": 5, "margin_bp": 0}),
        _placed("settled", "a", 100),
        _placed("revoked", "a", 100),
        _placed("unsettled", "a", 100),
        _placed("other-category", "b", 100),
        _record("settlement.paid", NOW - DAY_MS, {"order_id": "settled", "amount": 90}),
        _record("settlement.paid", NOW - DAY_MS, {"order_id": "revoked", "amount": 100}),
        _record("access.revoked", NOW - DAY_MS + 1, {"order_id": "revoked", "reason": "r"}),
        _record("settlement.paid", NOW - DAY_MS, {"order_id": "other-category", "amount": 100}),
    ]
    replay = PublicRecords()
    for record in records:
        replay.add(record)
    assert sorted(d.order_id for d in replay.deals) == ["other-category", "settled"]
    [settled] = [d for d in replay.deals if d.order_id == "settled"]
    assert (settled.unit_price_fen, settled.settled_at, settled.category) == (
        90,
        NOW - DAY_MS,
        "transport",
    )
    answer = replay.reference_price("subject", AT)
    assert [c["order_id"] for c in answer["market"]["comparables"]] == ["settled"]
    assert answer["cost"]["low"] == 100


def _reported(
    listing_id: str, grade: str, timestamp: int, actor: str = PROVIDER, version: int = 1
) -> dict[str, Any]:
    payload = {"listing_id": listing_id, "version": version, "report": {"grade": grade}}
    return {**_record("quality.reported", timestamp, payload), "actor": actor}


def _graded_replay(*records: tuple[dict[str, Any], str]) -> PublicRecords:
    replay = PublicRecords()
    for record, leaf in records:
        replay.add(record, leaf)
    return replay


def test_replay_grades_are_the_newest_provider_reports() -> None:
    leaf = iter(f"{n:064x}" for n in range(100))
    replay = _graded_replay(
        (_listing("a"), next(leaf)),
        (_listing("b"), next(leaf)),
        (_reported("a", "D", NOW - 3), next(leaf)),
        (_reported("a", "B", NOW - 1), next(leaf)),  # the newest provider report
        (_reported("a", "C", NOW - 2), next(leaf)),  # logged later, signed earlier
        (_reported("a", "A", NOW, actor=ASSESSOR), next(leaf)),  # an assessor's: no grade
        (_reported("a", "A", NOW, version=2), next(leaf)),
        (_record("quality.countersigned", NOW, {"listing_id": "b"}), next(leaf)),
        (_reported("b", "C", NOW, actor=ASSESSOR), next(leaf)),
        (_reported("zz", "A", NOW), next(leaf)),  # never drafted
    )
    assert replay.grades == {("a", 1): "B", ("a", 2): "A"}
    # equal times: the smallest leaf hash, whatever the log order
    tied = _graded_replay(
        (_listing("a"), "0" * 64),
        (_reported("a", "C", NOW), "f" * 64),
        (_reported("a", "A", NOW), "E" * 64),
        (_reported("a", "D", NOW), "e" * 63 + "f"),
    )
    assert tied.grades == {("a", 1): "A"}


def test_replay_needs_the_leaf_hash_of_a_quality_report() -> None:
    replay = PublicRecords()
    replay.add(_listing("a"))
    with pytest.raises(ValueError, match="leaf hash"):
        replay.add(_reported("a", "A", NOW))
    assert replay.grades == {}


def test_replay_adjusts_comparables_by_their_grades() -> None:
    leaf = iter(f"{n:064x}" for n in range(100))
    records = [_listing("subject"), _listing("good"), _listing("poor")]
    records += [_placed(f"g{i}", "good", 100) for i in range(3)]
    records += [_placed(f"p{i}", "poor", 100) for i in range(3)]
    records += [
        _record("settlement.paid", NOW - DAY_MS, {"order_id": o, "amount": 100})
        for o in ("g0", "g1", "g2", "p0", "p1", "p2")
    ]
    records += [
        _reported("subject", "A", NOW - 10),
        _reported("good", "A", NOW - 10),
        _reported("poor", "D", NOW - 10),
    ]
    replay = _graded_replay(*((r, next(leaf)) for r in records))
    answer = replay.reference_price("subject", AT)
    assert answer["market"]["method"]["subject_grade"] == "A"
    by_listing = {c["listing_id"]: c for c in answer["market"]["comparables"]}
    assert by_listing["good"]["grade"] == "A"
    assert by_listing["good"]["adjustments"]["quality_bp"] == 10_000
    assert by_listing["poor"]["grade"] == "D"
    assert by_listing["poor"]["adjustments"]["quality_bp"] == 16_429  # 11500 / 7000
    assert answer["market"]["status"] == "ok"
