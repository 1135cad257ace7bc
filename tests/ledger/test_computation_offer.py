"""Computation offers: strict parsing, canonical bytes, the ε budget."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ledger.computation.offer import BudgetExhaustedError, ComputationOffer, OfferFormatError
from ledger.records import RecordFormatError, canonical_json

WEATHER = json.loads(
    (Path(__file__).parent / "testdata" / "computation_offer_weather.json").read_text("utf-8")
)
PRIVACY = {
    "mechanism": "laplace",
    "epsilon_per_query": "0.5",
    "epsilon_budget": "2",
    "bounds": {"temperature_c": ["-30", "50"]},
}


def offer_dict(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = copy.deepcopy(WEATHER)
    data.update(changes)
    return data


def private_dict() -> dict[str, Any]:
    data = offer_dict(privacy=copy.deepcopy(PRIVACY))
    # min/max cannot be released with noise: drop them from the private variant
    for column in data["columns"]:
        column["aggregates"] = [a for a in column["aggregates"] if a not in ("min", "max")]
    data["columns"] = [c for c in data["columns"] if c["name"] != "humidity_pct"]
    data["columns"][-1]["aggregates"] = ["count"]  # aqi: no avg, so no bounds needed
    return data


def test_the_weather_offer_parses_and_round_trips_canonically() -> None:
    offer = ComputationOffer.from_dict(WEATHER)
    assert offer.table == "weather"
    assert offer.min_group_size == 10
    assert offer.price.unit == "query" and offer.price.fen == 200
    assert offer.column("TEMPERATURE_C") is not None  # DuckDB's case-insensitive names
    assert offer.column("wind_speed_ms") is None  # not named: never usable
    assert offer.canonical_bytes() == canonical_json(WEATHER)
    assert ComputationOffer.from_json(offer.to_json()) == offer
    assert ComputationOffer.from_json(json.dumps(WEATHER)) == offer


def test_list_order_is_normalised_so_the_canonical_bytes_are_one_per_offer() -> None:
    shuffled = offer_dict()
    shuffled["columns"][4]["control"] = ["filter", "aggregate"]
    shuffled["columns"][4]["aggregates"] = ["sum", "count", "avg"]
    assert ComputationOffer.from_dict(shuffled).canonical_bytes() == canonical_json(WEATHER)


def test_a_private_offer_round_trips_with_decimal_strings() -> None:
    offer = ComputationOffer.from_dict(private_dict())
    assert offer.privacy is not None
    assert offer.privacy.epsilon_per_query == Decimal("0.5")
    assert offer.privacy.bounds["temperature_c"] == (Decimal(-30), Decimal(50))
    assert ComputationOffer.from_json(offer.to_json()) == offer
    assert json.loads(offer.to_json())["privacy"] == PRIVACY


def _bad(mutate: Any) -> dict[str, Any]:
    data = offer_dict()
    mutate(data)
    return data


BAD_OFFERS: list[tuple[str, Any, str]] = [
    ("unknown top-level field", lambda d: d.update(extra=1), "unknown field"),
    ("missing field", lambda d: d.pop("price"), "missing field"),
    ("version 2", lambda d: d.update(version=2), "version"),
    ("version true", lambda d: d.update(version=True), "version"),
    ("table with a dot", lambda d: d.update(table="main.weather"), "table"),
    ("k zero", lambda d: d.update(min_group_size=0), "min_group_size"),
    ("k as a string", lambda d: d.update(min_group_size="10"), "min_group_size"),
    ("k as a bool", lambda d: d.update(min_group_size=True), "min_group_size"),
    ("no columns", lambda d: d.update(columns=[]), "columns"),
    (
        "every column never",
        lambda d: d.update(columns=[{"name": "a", "control": ["never"], "aggregates": []}]),
        "at least one column",
    ),
    (
        "a column named twice, in another case",
        lambda d: d["columns"].append(
            {"name": "District", "control": ["filter"], "aggregates": []}
        ),
        "named twice",
    ),
    ("never with filter", lambda d: d["columns"][0].update(control=["never", "filter"]), "never"),
    ("unknown control", lambda d: d["columns"][2].update(control=["select"]), "columns[2].control"),
    ("control twice", lambda d: d["columns"][2].update(control=["filter", "filter"]), "twice"),
    ("empty control", lambda d: d["columns"][2].update(control=[]), "control"),
    (
        "aggregates without the aggregate control",
        lambda d: d["columns"][2].update(aggregates=["count"]),
        "columns[2].aggregates",
    ),
    (
        "aggregate control without functions",
        lambda d: d["columns"][4].update(aggregates=[]),
        "columns[4].aggregates",
    ),
    ("unknown function", lambda d: d["columns"][4].update(aggregates=["median"]), "median"),
    ("control not a list", lambda d: d["columns"][2].update(control="filter"), "control"),
    ("column name blank", lambda d: d["columns"][2].update(name=""), "column name"),
    ("column name padded", lambda d: d["columns"][2].update(name=" district"), "spaces"),
    ("unknown column field", lambda d: d["columns"][2].update(hint="x"), "unknown field"),
    ("price negative", lambda d: d["price"].update(fen=-1), "price.fen"),
    ("price as a float", lambda d: d["price"].update(fen=2.5), "price.fen"),
    ("price unit", lambda d: d["price"].update(unit="row"), "price.unit"),
    ("budget price without privacy", lambda d: d["price"].update(unit="budget"), "price.unit"),
]


@pytest.mark.parametrize(("desc", "mutate", "expected"), BAD_OFFERS, ids=[b[0] for b in BAD_OFFERS])
def test_malformed_offers_are_refused_naming_the_problem(
    desc: str, mutate: Any, expected: str
) -> None:
    with pytest.raises(OfferFormatError) as caught:
        ComputationOffer.from_dict(_bad(mutate))
    assert expected in str(caught.value)
    assert isinstance(caught.value, RecordFormatError)  # one family for "malformed"


def _private_bad(mutate: Any) -> dict[str, Any]:
    data = private_dict()
    mutate(data)
    return data


BAD_PRIVACY: list[tuple[str, Any, str]] = [
    ("ε as a float", lambda d: d["privacy"].update(epsilon_per_query=0.5), "decimal string"),
    ("ε zero", lambda d: d["privacy"].update(epsilon_per_query="0"), "positive"),
    ("ε negative", lambda d: d["privacy"].update(epsilon_per_query="-1"), "decimal string"),
    ("ε exponent", lambda d: d["privacy"].update(epsilon_per_query="1e-3"), "decimal string"),
    ("budget below one query", lambda d: d["privacy"].update(epsilon_budget="0.1"), "budget"),
    ("mechanism", lambda d: d["privacy"].update(mechanism="gaussian"), "mechanism"),
    ("missing bounds", lambda d: d["privacy"].update(bounds={}), "temperature_c"),
    (
        "bounds for a column without sum/avg",
        lambda d: d["privacy"]["bounds"].update(aqi=["0", "500"]),
        "aqi",
    ),
    (
        "bounds reversed",
        lambda d: d["privacy"]["bounds"].update(temperature_c=["50", "-30"]),
        "lower < upper",
    ),
    (
        "bounds as numbers",
        lambda d: d["privacy"]["bounds"].update(temperature_c=[-30, 50]),
        "decimal string",
    ),
    (
        "min with privacy",
        lambda d: d["columns"][4].update(aggregates=["avg", "count", "min", "sum"]),
        "min",
    ),
]


@pytest.mark.parametrize(
    ("desc", "mutate", "expected"), BAD_PRIVACY, ids=[b[0] for b in BAD_PRIVACY]
)
def test_malformed_privacy_is_refused(desc: str, mutate: Any, expected: str) -> None:
    with pytest.raises(OfferFormatError) as caught:
        ComputationOffer.from_dict(_private_bad(mutate))
    assert expected in str(caught.value)


def test_json_text_with_duplicate_keys_or_nan_is_refused() -> None:
    text = json.dumps(WEATHER)
    with pytest.raises(OfferFormatError, match="duplicate"):
        ComputationOffer.from_json(text[:-1] + ', "table": "other"}')
    with pytest.raises(OfferFormatError):
        ComputationOffer.from_json(text.replace('"min_group_size": 10', '"min_group_size": NaN'))
    with pytest.raises(OfferFormatError):
        ComputationOffer.from_json(b"\xff")


def test_the_budget_pays_for_whole_queries_only() -> None:
    privacy = ComputationOffer.from_dict(private_dict()).privacy
    assert privacy is not None
    spent = Decimal(0)
    for _ in range(4):  # 2 / 0.5
        spent += privacy.next_query_epsilon(spent)
    assert spent == Decimal(2)
    with pytest.raises(BudgetExhaustedError):
        privacy.next_query_epsilon(spent)
    with pytest.raises(BudgetExhaustedError):
        privacy.next_query_epsilon(Decimal("1.6"))
