"""Reference prices of a listing: the cost method and the market method, as pure
integer arithmetic over public records (docs/pricing.md).

One implementation, used by the exchange (``GET /listings/{id}/reference-price``)
and by anyone recomputing it from the public log (``shancheng audit
reference-price``): :class:`PublicRecords` replays the log's records into the
listings' terms and the settled deals, :func:`reference_price` computes the answer.

**Cost method.** A listing (version) may declare a ``cost_basis``::

    {"acquisition_fen": int, "processing_fen": int, "storage_fen": int,
     "compliance_fen": int, "other_fen": int, "expected_units": int, "margin_bp": int}

(the ``*_fen`` costs default to 0; ``expected_units`` ≥ 1 and ``margin_bp`` are
required). With ``C = Σ costs`` and ``U = expected_units``: ``low = ceil(C / U)``
(break-even: the least unit price that recovers the costs) and ``high = ceil(C ×
(10000 + margin_bp) / (U × 10000))`` (break-even plus the declared margin). Both
are rounded *up* to a whole fen, so neither is below cost.

**Market method.** Comparables are settled deals of *other* listings in the same
category with the same pricing unit (:func:`pricing_unit`), settled within
:data:`WINDOW_MS` before ``as_of`` and within the log's first ``as_of.log_size``
entries; the newest :data:`MAX_COMPARABLES` (newest first, ties by order id).
A deal's unit price is its settled amount per unit (:func:`deal_unit_price`).
Each is adjusted by quality (``quality_bp = round(10000 × ratio(subject grade) /
ratio(comparable grade))``, :data:`GRADE_RATIO_BP`; 10000 when either grade is
unknown) and freshness (``freshness_bp = max(FRESHNESS_FLOOR_BP, 10000 −
decay × age_ms // 30 days)``, ``decay`` from :data:`DECAY_BP_PER_30_DAYS` by the
comparable listing's update frequency): ``adjusted = round(unit_price ×
quality_bp × freshness_bp / 10^8)``. The range is the interquartile range of the
adjusted prices with the median (:func:`quantile`); fewer than
:data:`MIN_COMPARABLES` comparables → ``insufficient_comparables``, no numbers.

Every ``round`` here is half up on exact integers; nothing is a float. Buyers are
never named: comparables carry order and listing ids only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ledger.protocol.quality import current_report

__all__ = [
    "COST_FIELDS",
    "DECAY_BP_PER_30_DAYS",
    "FRESHNESS_FLOOR_BP",
    "GRADE_RATIO_BP",
    "MAX_COMPARABLES",
    "MIN_COMPARABLES",
    "WINDOW_MS",
    "AsOf",
    "CostBasis",
    "CostBasisError",
    "Deal",
    "PublicRecords",
    "Subject",
    "asking_position",
    "cost_reference",
    "deal_unit_price",
    "freshness_bp",
    "market_reference",
    "pricing_unit",
    "quality_bp",
    "quantile",
    "reference_price",
    "select_comparables",
]

BP: Final = 10_000
DAY_MS: Final = 86_400_000
WINDOW_MS: Final = 180 * DAY_MS
"""Comparables are deals settled at most this long before ``as_of``."""
MAX_COMPARABLES: Final = 50
"""At most this many comparables: the newest."""
MIN_COMPARABLES: Final = 5
"""Fewer comparables than this: the market method gives no range (K)."""
QUANTILES: Final = (25, 50, 75)
GRADE_RATIO_BP: Final = {"A": 11_500, "B": 10_000, "C": 8_500, "D": 7_000}
"""Quality grade → value ratio in basis points (GB/T 36344 grades A–D)."""
DECAY_BP_PER_30_DAYS: Final = {
    "realtime": 1_000,
    "hourly": 1_000,
    "daily": 800,
    "weekly": 600,
    "monthly": 400,
    "quarterly": 300,
    "yearly": 200,
    "once": 200,
}
"""Freshness: basis points a deal loses per full 30 days of age, by how often the
comparable listing's data is updated (fast-moving data ages its prices faster)."""
FRESHNESS_FLOOR_BP: Final = 5_000
THIRTY_DAYS_MS: Final = 30 * DAY_MS
MAX_FEN: Final = 10**15
MAX_UNITS: Final = 10**12
MAX_MARGIN_BP: Final = 100_000
COST_FIELDS: Final = (
    "acquisition_fen",
    "processing_fen",
    "storage_fen",
    "compliance_fen",
    "other_fen",
)
_BASIS_FIELDS: Final = frozenset({*COST_FIELDS, "expected_units", "margin_bp"})

Unit = Literal["order", "1000_rows", "30_days", "query", "epsilon_budget"]


class CostBasisError(ValueError):
    """A ``cost_basis`` that is not integers in range (message names the field)."""


def _round_div(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half up (both non-negative)."""
    return (2 * numerator + denominator) // (2 * denominator)


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _strict_int(
    data: Mapping[str, Any], name: str, low: int, high: int, default: int | None
) -> int:
    value = data.get(name, default)
    if value is None:
        raise CostBasisError(f"cost_basis.{name} is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise CostBasisError(f"cost_basis.{name} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise CostBasisError(f"cost_basis.{name} must be in [{low}, {high}], got {value}")
    return value


@dataclass(frozen=True, slots=True)
class CostBasis:
    """The provider's declared costs (fen), expected unit sales and margin (bp)."""

    costs: tuple[tuple[str, int], ...]
    expected_units: int
    margin_bp: int

    @classmethod
    def from_dict(cls, data: Any) -> CostBasis:
        """Parse strictly: integers only (no floats, booleans or strings), no
        unknown fields, each cost in ``[0, 10^15]`` fen and their sum too."""
        if not isinstance(data, Mapping):
            raise CostBasisError(f"cost_basis must be an object, got {type(data).__name__}")
        unknown = sorted(set(data) - _BASIS_FIELDS)
        if unknown:
            raise CostBasisError(f"cost_basis.{unknown[0]} is not a cost basis field")
        costs = tuple((name, _strict_int(data, name, 0, MAX_FEN, 0)) for name in COST_FIELDS)
        if sum(value for _, value in costs) > MAX_FEN:
            raise CostBasisError(f"cost_basis: the costs sum to more than {MAX_FEN} fen")
        units = _strict_int(data, "expected_units", 1, MAX_UNITS, None)
        margin = _strict_int(data, "margin_bp", 0, MAX_MARGIN_BP, None)
        return cls(costs, units, margin)

    def to_dict(self) -> dict[str, int]:
        return {
            **dict(self.costs),
            "expected_units": self.expected_units,
            "margin_bp": self.margin_bp,
        }

    @property
    def total_fen(self) -> int:
        return sum(value for _, value in self.costs)


def cost_reference(basis: CostBasis) -> dict[str, Any]:
    """The cost method: the inputs, ``total_fen``, ``low`` (break-even) and ``high``
    (with the margin), both rounded up to a whole fen."""
    total = basis.total_fen
    units = basis.expected_units
    return {
        **basis.to_dict(),
        "total_fen": total,
        "low": _ceil_div(total, units),
        "high": _ceil_div(total * (BP + basis.margin_bp), units * BP),
    }


# --------------------------------------------------------------------------- units


def pricing_unit(pricing: Mapping[str, Any]) -> tuple[Unit, int] | None:
    """A listing's pricing unit and its asking price per unit (fen): ``fixed`` and
    ``free`` → per ``order``; ``tiers`` → per ``1000_rows`` at the first tier's rate;
    ``subscription`` → per ``30_days`` (``round(price_per_period × 30 /
    period_days)``). ``None`` for anything else."""
    model = pricing.get("model")
    if model == "free":
        return "order", 0
    if model == "fixed":
        return "order", int(pricing["price"])
    if model == "tiers":
        return "1000_rows", int(pricing["tiers"][0]["price_per_1000_rows"])
    if model == "subscription":
        return "30_days", _round_div(
            int(pricing["price_per_period"]) * 30, int(pricing["period_days"])
        )
    return None


def deal_unit_price(
    pricing: Mapping[str, Any], terms: Mapping[str, Any], amount: int
) -> tuple[Unit, int] | None:
    """The unit and unit price (fen, rounded half up) of a deal of ``amount`` fen on
    ``terms`` under the listing's ``pricing`` when it was settled: a computation order
    per ``query`` (or per ``epsilon_budget``), ``tiers`` per ``1000_rows`` (``amount ×
    1000 / rows``), ``subscription`` per ``30_days`` (``amount × 30 / (periods ×
    period_days)``), ``fixed`` per ``order``. ``None``: not a comparable (a free deal,
    an amount of 0, or terms without units)."""
    if amount <= 0:
        return None
    if terms.get("computation") is True:
        queries = terms.get("queries")
        if isinstance(queries, int) and queries > 0:
            return "query", _round_div(amount, queries)
        return "epsilon_budget", amount
    model = pricing.get("model")
    if model == "fixed":
        return "order", amount
    if model == "tiers":
        rows = terms.get("rows")
        if isinstance(rows, int) and rows > 0:
            return "1000_rows", _round_div(amount * 1000, rows)
        return None
    if model == "subscription":
        periods = terms.get("periods")
        if isinstance(periods, int) and periods > 0:
            return "30_days", _round_div(amount * 30, periods * int(pricing["period_days"]))
        return None
    return None


# --------------------------------------------------------------------------- market


@dataclass(frozen=True, slots=True)
class AsOf:
    """The log the answer was computed at: its first ``log_size`` entries, and the
    promise timestamp (ms) of the last of them."""

    log_size: int
    timestamp: int

    def to_dict(self) -> dict[str, int]:
        return {"log_size": self.log_size, "timestamp": self.timestamp}


@dataclass(frozen=True, slots=True)
class Deal:
    """A settled order as the market method sees it (no buyer)."""

    order_id: str
    listing_id: str
    version: int
    category: str
    unit: str
    unit_price_fen: int
    settled_at: int
    update_frequency: str


@dataclass(frozen=True, slots=True)
class Subject:
    """The listing being priced, as it is at ``as_of``."""

    listing_id: str
    version: int
    category: str
    pricing: Mapping[str, Any]
    update_frequency: str
    cost_basis: Mapping[str, Any] | None


def quality_bp(subject_grade: str | None, comparable_grade: str | None) -> int:
    """``round(10000 × ratio(subject) / ratio(comparable))``; 10000 if either is unknown."""
    if subject_grade not in GRADE_RATIO_BP or comparable_grade not in GRADE_RATIO_BP:
        return BP
    return _round_div(BP * GRADE_RATIO_BP[subject_grade], GRADE_RATIO_BP[comparable_grade])


def freshness_bp(age_ms: int, update_frequency: str) -> int:
    """``max(5000, 10000 − decay × (age_ms // 30 days))`` (age below 0 counts as 0)."""
    decay = DECAY_BP_PER_30_DAYS.get(update_frequency, DECAY_BP_PER_30_DAYS["once"])
    periods = max(age_ms, 0) // THIRTY_DAYS_MS
    return max(FRESHNESS_FLOOR_BP, BP - decay * periods)


def quantile(ordered: list[int], percent: int) -> int:
    """The ``percent``-th percentile of ascending ``ordered`` by linear interpolation
    between closest ranks (Hyndman–Fan type 7, numpy's default): ``h = (n − 1) ×
    p / 100``, ``x[⌊h⌋] + round((x[⌊h⌋+1] − x[⌊h⌋]) × frac(h))``, half up."""
    if not ordered:
        raise ValueError("no values")
    position = (len(ordered) - 1) * percent
    low, rest = divmod(position, 100)
    if rest == 0:
        return ordered[low]
    return ordered[low] + _round_div((ordered[low + 1] - ordered[low]) * rest, 100)


def select_comparables(
    subject: Subject, unit: str, deals: Iterable[Deal], as_of: AsOf
) -> list[Deal]:
    """Deals of other listings in the subject's category with ``unit``, settled after
    ``as_of.timestamp − WINDOW_MS``: the newest :data:`MAX_COMPARABLES` (newest
    first, equal times by ascending order id). ``deals`` must already be limited to
    the first ``as_of.log_size`` entries."""
    since = as_of.timestamp - WINDOW_MS
    chosen = [
        d
        for d in deals
        if d.category == subject.category
        and d.unit == unit
        and d.listing_id != subject.listing_id
        and d.settled_at > since
    ]
    chosen.sort(key=lambda d: (-d.settled_at, d.order_id))
    return chosen[:MAX_COMPARABLES]


GradeOf = Mapping[tuple[str, int], str]
"""Quality grade (A–D) by ``(listing_id, version)``; absent: unknown."""


def market_reference(
    subject: Subject, comparables: list[Deal], as_of: AsOf, grades: GradeOf
) -> dict[str, Any]:
    """The market method over :func:`select_comparables`'s ``comparables``."""
    subject_grade = grades.get((subject.listing_id, subject.version))
    shown = []
    adjusted_prices = []
    for deal in comparables:
        grade = grades.get((deal.listing_id, deal.version))
        q = quality_bp(subject_grade, grade)
        f = freshness_bp(as_of.timestamp - deal.settled_at, deal.update_frequency)
        adjusted = _round_div(deal.unit_price_fen * q * f, BP * BP)
        adjusted_prices.append(adjusted)
        shown.append(
            {
                "order_id": deal.order_id,
                "listing_id": deal.listing_id,
                "unit_price_fen": deal.unit_price_fen,
                "settled_at": deal.settled_at,
                "grade": grade,
                "adjustments": {"quality_bp": q, "freshness_bp": f},
                "adjusted_unit_price_fen": adjusted,
            }
        )
    method = {
        "window_ms": WINDOW_MS,
        "since": as_of.timestamp - WINDOW_MS,
        "max_comparables": MAX_COMPARABLES,
        "min_comparables": MIN_COMPARABLES,
        "quantiles": list(QUANTILES),
        "quantile_method": "linear interpolation between closest ranks (type 7), half up",
        "subject_grade": subject_grade,
    }
    if len(comparables) < MIN_COMPARABLES:
        return {
            "status": "insufficient_comparables",
            "low": None,
            "median": None,
            "high": None,
            "comparables": shown,
            "method": method,
        }
    ordered = sorted(adjusted_prices)
    low, median, high = (quantile(ordered, p) for p in QUANTILES)
    return {
        "status": "ok",
        "low": low,
        "median": median,
        "high": high,
        "comparables": shown,
        "method": method,
    }


Position = Literal["below", "within", "above"]


def asking_position(asking: int, low: int, high: int) -> Position:
    """Where ``asking`` falls against ``[low, high]`` (both ends within)."""
    if asking < low:
        return "below"
    if asking > high:
        return "above"
    return "within"


def reference_price(
    subject: Subject, comparables: list[Deal], as_of: AsOf, grades: GradeOf
) -> dict[str, Any]:
    """The whole answer: ``listing_id``, ``as_of``, ``unit``, ``cost`` (or ``None``),
    ``market`` (or ``None`` without a pricing unit) and ``asking`` (its unit price
    and its position against the market range, else the cost range, else ``None``)."""
    unit_price = pricing_unit(subject.pricing)
    cost = (
        None
        if subject.cost_basis is None
        else cost_reference(CostBasis.from_dict(subject.cost_basis))
    )
    market = None
    asking: dict[str, Any] | None = None
    if unit_price is not None:
        asking_fen = unit_price[1]
        market = market_reference(subject, comparables, as_of, grades)
        position: dict[str, Any] = {"market": None, "cost": None}
        if market["status"] == "ok":
            position["market"] = asking_position(asking_fen, market["low"], market["high"])
        if cost is not None:
            position["cost"] = asking_position(asking_fen, cost["low"], cost["high"])
        asking = {"unit_price_fen": asking_fen, "position": position}
    return {
        "listing_id": subject.listing_id,
        "version": subject.version,
        "category": subject.category,
        "unit": None if unit_price is None else unit_price[0],
        "as_of": as_of.to_dict(),
        "cost": cost,
        "market": market,
        "asking": asking,
    }


# --------------------------------------------------------------------------- replay


@dataclass
class _Listing:
    category: str = ""
    pricing: Mapping[str, Any] = field(default_factory=dict)
    update_frequency: str = ""
    version: int = 1
    cost_basis: Mapping[str, Any] | None = None
    providers: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class _Report:
    reported_at: int
    leaf_hash: str
    grade: str


@dataclass
class _Order:
    listing_id: str
    version: int
    terms: Mapping[str, Any]


class PublicRecords:
    """The listings' terms, the settled deals and the versions' quality grades,
    replayed from the log's records in log order (each a ``{"type", "actor",
    "timestamp", "payload", …}`` record dict, as ``GET /log/entries/{i}`` serves it
    under ``record.record``, with the entry's ``leaf_hash``). Only records the
    exchange accepted are on the log, so their payloads are taken as valid.

    A deal is an order with a ``settlement.paid`` record (settled at its timestamp,
    for its ``amount``) and no ``access.revoked`` (an order whose access was
    revoked was not a deal honoured in full); the listing's terms are those at
    settlement.

    A version's grade (:attr:`grades`) is that of its current provider report
    (:func:`ledger.protocol.quality.current_report`, as the listing shows it): a
    ``quality.reported`` record signed by one of the listing's providers at the
    time. An assessor's differing report and a ``quality.countersigned`` record do
    not change it."""

    def __init__(self) -> None:
        self.listings: dict[str, _Listing] = {}
        self._orders: dict[str, _Order] = {}
        self._deals: dict[str, Deal] = {}
        self._revoked: set[str] = set()
        self._reports: dict[tuple[str, int], list[_Report]] = {}

    def add(self, record: Mapping[str, Any], leaf_hash: str | None = None) -> None:
        """Replay one record; ``leaf_hash`` (hex, the entry's) is needed for a
        ``quality.reported`` record (``ValueError`` without it): equal report times
        are ordered by it."""
        kind = record["type"]
        payload = record["payload"]
        if kind in ("listing.drafted", "listing.edited"):
            listing = self.listings.setdefault(payload["listing_id"], _Listing())
            listing.category = payload["category"]
            listing.pricing = payload["pricing"]
            listing.update_frequency = payload["update_frequency"]
            listing.cost_basis = payload.get("cost_basis")
            listing.providers = frozenset(str(p["key_id"]) for p in payload["providers"])
        elif kind == "listing.version_added":
            listing = self.listings[payload["listing_id"]]
            listing.version = payload["version"]
            listing.cost_basis = payload.get("cost_basis")
        elif kind == "order.placed":
            quote = payload["quote"]
            self._orders[payload["order_id"]] = _Order(
                quote["listing_id"], quote["listing_version"], quote["terms"]
            )
        elif kind == "settlement.paid":
            self._settled(payload["order_id"], payload["amount"], record["timestamp"])
        elif kind == "access.revoked":
            self._revoked.add(payload["order_id"])
            self._deals.pop(payload["order_id"], None)
        elif kind == "quality.reported":
            if leaf_hash is None:
                raise ValueError("a quality.reported record is replayed with its leaf hash")
            self._reported(record, leaf_hash)

    def _reported(self, record: Mapping[str, Any], leaf_hash: str) -> None:
        payload = record["payload"]
        listing = self.listings.get(payload["listing_id"])
        if listing is None or record["actor"] not in listing.providers:
            return  # an assessor's report: it does not set the grade
        report = _Report(record["timestamp"], leaf_hash.lower(), payload["report"]["grade"])
        self._reports.setdefault((payload["listing_id"], payload["version"]), []).append(report)

    @property
    def grades(self) -> dict[tuple[str, int], str]:
        """The grade of each ``(listing_id, version)`` with a provider report."""
        found = {key: current_report(reports) for key, reports in self._reports.items()}
        return {key: report.grade for key, report in found.items() if report is not None}

    def _settled(self, order_id: str, amount: int, timestamp: int) -> None:
        order = self._orders.get(order_id)
        if order is None or order_id in self._revoked:
            return
        listing = self.listings.get(order.listing_id)
        if listing is None:
            return
        priced = deal_unit_price(listing.pricing, order.terms, amount)
        if priced is None:
            return
        unit, unit_price = priced
        self._deals[order_id] = Deal(
            order_id=order_id,
            listing_id=order.listing_id,
            version=order.version,
            category=listing.category,
            unit=unit,
            unit_price_fen=unit_price,
            settled_at=timestamp,
            update_frequency=listing.update_frequency,
        )

    @property
    def deals(self) -> list[Deal]:
        return list(self._deals.values())

    def subject(self, listing_id: str) -> Subject:
        """The listing as replayed (``KeyError`` if the records never drafted it)."""
        listing = self.listings[listing_id]
        return Subject(
            listing_id=listing_id,
            version=listing.version,
            category=listing.category,
            pricing=listing.pricing,
            update_frequency=listing.update_frequency,
            cost_basis=listing.cost_basis,
        )

    def reference_price(self, listing_id: str, as_of: AsOf) -> dict[str, Any]:
        """The answer over the records replayed (which must be the log's first
        ``as_of.log_size``), with their :attr:`grades`."""
        subject = self.subject(listing_id)
        unit = pricing_unit(subject.pricing)
        comparables = (
            [] if unit is None else select_comparables(subject, unit[0], self.deals, as_of)
        )
        return reference_price(subject, comparables, as_of, self.grades)
