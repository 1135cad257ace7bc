"""The query's terms (folded, at most :data:`MAX_TERMS`) and the SQL that matches
them, in the form the index at hand serves, each exact (see
:mod:`exchange.listings.search.index`): ``instr``/``strpos`` on the row (the
plain form), FTS5 ``MATCH`` on SQLite, ``LIKE`` or gram-array containment on
PostgreSQL; and the relevance score."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Text, case, func, literal, literal_column, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import col

from exchange.listings.search.index import ListingSearch, fold, is_word_break
from exchange.listings.search.params import InvalidQueryError

__all__ = [
    "MAX_TERMS",
    "TRIGRAM",
    "bigrams",
    "fts5_string",
    "fts_match",
    "match_sets",
    "plain_text",
    "position",
    "postgres_text",
    "score",
    "terms_of",
]

MAX_TERMS = 8
TRIGRAM = 3

_LS = ListingSearch


def terms_of(q: str | None) -> list[str]:
    """The folded query terms (control characters separate terms)."""
    if q is None:
        return []
    folded = "".join(" " if is_word_break(ch) else ch for ch in fold(q))
    terms = list(dict.fromkeys(folded.split()))
    if len(terms) > MAX_TERMS:
        raise InvalidQueryError(f"at most {MAX_TERMS} query terms")
    return terms


def fts5_string(term: str) -> str:
    """A term as an FTS5 string literal: nothing in it is query syntax."""
    return '"' + term.replace('"', '""') + '"'


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def bigrams(term: str) -> list[str]:
    return list(dict.fromkeys(term[i : i + 2] for i in range(len(term) - 1))) or [term]


def position(dialect: str, column: Any, term: str) -> ColumnElement[int]:
    name = "strpos" if dialect == "postgresql" else "instr"
    return getattr(func, name)(column, literal(term))  # type: ignore[no-any-return]


def score(dialect: str, terms: list[str]) -> ColumnElement[int]:
    total: ColumnElement[int] = literal(0)
    for term in terms:
        for column, weight in ((_LS.title_fold, 4), (_LS.tags_fold, 2), (_LS.desc_fold, 1)):
            total = total + case((position(dialect, column, term) > 0, weight), else_=0)
    return total


def _gram_array() -> ColumnElement[Any]:
    """PostgreSQL: the gram array its GIN index is on (the same expression, with a
    literal separator, or the planner cannot use the index)."""
    return func.string_to_array(col(_LS.grams), literal_column("' '"))


def plain_text(dialect: str, terms: list[str]) -> list[ColumnElement[bool]]:
    """Every term a substring of ``doc``, checked on the row."""
    return [position(dialect, _LS.doc, t) > 0 for t in terms]


def postgres_text(terms: list[str], common: set[str]) -> list[ColumnElement[bool]]:
    """Every term a substring of ``doc``, in the forms PostgreSQL's indexes serve
    (each exact): ``LIKE`` for 3+ characters (the trigram GIN index narrows, the
    heap re-check decides); gram-array containment for 1-2 characters, unless the
    gram is ``common`` (the plan's choice): then ``strpos`` on the rows, as a scan
    would (splitting every row's grams costs ~6x more)."""
    conditions: list[ColumnElement[bool]] = []
    for term in terms:
        if len(term) >= TRIGRAM:
            conditions.append(col(_LS.doc).like(_like_pattern(term), escape="\\"))
        elif term in common:
            conditions.append(position("postgresql", _LS.doc, term) > 0)
        else:
            conditions.append(_gram_array().op("@>")(literal([term], ARRAY(Text))))
    return conditions


def match_sets(terms: list[str]) -> list[tuple[str, str, str]]:
    """SQLite: the FTS ``MATCH`` queries the text needs, one per index, as (table, bind
    name, query): trigram of the 3+ character terms, gram of the shorter ones.
    Both are exact (the text is folded before it is indexed; the trigram tokenizer
    is case-sensitive, so it folds nothing more; a 1-2 character term occurs
    exactly when it is a gram), so the rows need no re-check."""
    long_terms = [t for t in terms if len(t) >= TRIGRAM]
    short_terms = [t for t in terms if len(t) < TRIGRAM]
    return [
        (table, param, " AND ".join(fts5_string(t) for t in chosen))
        for table, param, chosen in (
            ("listing_search_fts", "fts_query", long_terms),
            ("listing_search_gram", "gram_query", short_terms),
        )
        if chosen
    ]


def fts_match(table: str, param: str, match: str) -> Any:
    return text(f"{table} MATCH :{param}").bindparams(**{param: match})
