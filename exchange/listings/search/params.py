"""What a search asks: its parameters, the checks no plan can do without, the
sort orders and the opaque keyset cursor (base64url JSON of the sort, a
fingerprint of the query and the last item's sort key)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from exchange.errors import ExchangeError
from ledger.sm3 import sm3

__all__ = [
    "KEY_TYPES",
    "MAX_TAGS",
    "ORDER_KEYS",
    "InvalidCursorError",
    "InvalidQueryError",
    "PricingModel",
    "SearchClassification",
    "SearchCustody",
    "SearchParams",
    "Sort",
    "checked_sort",
    "clean",
    "decode_cursor",
    "encode_cursor",
    "fingerprint",
]

MAX_TAGS = 10

Sort = Literal["relevance", "newest", "price_asc", "price_desc", "title"]
PricingModel = Literal["free", "fixed", "tiers", "subscription"]
SearchClassification = Literal["一般", "重要"]
SearchCustody = Literal["provider", "exchange"]
SearchGrade = Literal["A", "B", "C", "D"]


class InvalidQueryError(ExchangeError):
    status = 422
    code = "invalid_query"


class InvalidCursorError(ExchangeError):
    status = 400
    code = "invalid_cursor"


@dataclass(frozen=True)
class SearchParams:
    q: str | None = None
    category: str | None = None
    classification: str | None = None
    pricing_model: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    provider: str | None = None
    tags: Sequence[str] = field(default_factory=tuple)
    custody: str | None = None
    computation: bool | None = None
    grade: str | None = None
    sort: Sort | None = None
    cursor: str | None = None
    limit: int = 20
    facets: bool = True
    facet_limit: int = 10


ORDER_KEYS: dict[str, list[tuple[str, bool]]] = {
    # (key name, descending); the listing id (ascending) always ends the order
    "relevance": [("score", True), ("published_at", True)],
    "newest": [("published_at", True)],
    "price_asc": [("price_fen", False)],
    "price_desc": [("price_fen", True)],
    "title": [("title_key", False)],
}
KEY_TYPES = {"score": int, "published_at": int, "price_fen": int, "title_key": str}


def clean(value: str, name: str) -> str:
    if "\x00" in value:
        raise InvalidQueryError(f"{name} must not contain NUL characters")
    return value


def checked_sort(params: SearchParams, terms: list[str]) -> str:
    """The search's sort (``relevance`` with terms, else ``newest``, unless asked),
    once the parameters no plan can run are refused."""
    sort = params.sort or ("relevance" if terms else "newest")
    if sort == "relevance" and not terms:
        raise InvalidQueryError("sort=relevance needs a query (q)")
    if (
        params.min_price is not None
        and params.max_price is not None
        and params.min_price > params.max_price
    ):
        raise InvalidQueryError("min_price is greater than max_price")
    if len(set(params.tags)) > MAX_TAGS:
        raise InvalidQueryError(f"at most {MAX_TAGS} tags")
    if params.provider is not None:
        clean(params.provider, "provider")
    return sort


def fingerprint(params: SearchParams, terms: list[str], sort: str) -> str:
    shape: list[Any] = [
        terms,
        params.category,
        params.classification,
        params.pricing_model,
        params.min_price,
        params.max_price,
        params.provider,
        sorted(set(params.tags)),
        sort,
    ]
    if params.custody is not None or params.computation is not None:
        # only then: the cursors of searches without them stay what they were
        shape.append([params.custody, params.computation])
    if params.grade is not None:  # (likewise)
        shape.append(["grade", params.grade])
    return sm3(json.dumps(shape, ensure_ascii=False).encode()).hex()[:16]


def encode_cursor(sort: str, fingerprint: str, key: list[Any]) -> str:
    raw = json.dumps({"v": 1, "s": sort, "f": fingerprint, "k": key}, ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, sort: str, fingerprint: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursorError("the cursor is not one this API issued") from None
    if not isinstance(data, dict) or data.get("v") != 1 or not isinstance(data.get("k"), list):
        raise InvalidCursorError("the cursor is not one this API issued")
    if data.get("s") != sort or data.get("f") != fingerprint:
        raise InvalidCursorError("the cursor belongs to another query, filter or sort")
    names = [name for name, _ in ORDER_KEYS[sort]] + ["listing_id"]
    key: list[Any] = data["k"]
    if len(key) != len(names):
        raise InvalidCursorError("the cursor is malformed")
    for name, value in zip(names, key, strict=True):
        expected = KEY_TYPES.get(name, str)
        if type(value) is not expected or (isinstance(value, str) and "\x00" in value):
            raise InvalidCursorError("the cursor is malformed")
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise InvalidCursorError("the cursor is malformed")
    return key
