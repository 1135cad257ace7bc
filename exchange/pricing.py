"""Pricing models of a listing and the one function that turns terms into fen.

A listing's ``pricing`` is one JSON object, discriminated by ``model``::

    {"model": "free"}
    {"model": "fixed", "price": 19900}
    {"model": "tiers", "tiers": [{"up_to_rows": 100000, "price_per_1000_rows": 500},
                                 {"up_to_rows": null,   "price_per_1000_rows": 200}]}
    {"model": "subscription", "price_per_period": 99900, "period_days": 30, "max_periods": 12}

each optionally with the offer limits ``"seats": int`` (at most that many
sales of the listing version) and ``"exclusive": bool`` (one sale only: an
exclusive licence). Amounts are integers in fen (the CNY minor unit); floats,
booleans and numeric strings are refused wherever an integer is expected
(pydantic ``StrictInt``), and so are unknown fields.

Rules (see ``docs/money.md``):

* Every amount is in ``[0, MAX_AMOUNT_FEN]`` (10^15 fen = 10^13 yuan), both
  the configured prices and every computed price.
* ``tiers`` is *graduated*: the rows of an order fill the tiers in order, the
  rows falling into tier *i* (``(up_to_rows[i-1], up_to_rows[i]]``) are priced
  at its ``price_per_1000_rows``. Bounds strictly ascend; only the last tier
  is unbounded (``up_to_rows: null``) and it must be. The total is
  ``ceil(Σ rows_i × price_per_1000_rows_i / 1000)``: exact rational price,
  rounded up once, on the total (never per tier), to a whole fen.
* ``subscription`` costs ``periods × price_per_period`` for
  ``1 ≤ periods ≤ max_periods``.
* Terms that do not apply to a model are refused rather than ignored: ``rows``
  only for ``tiers`` (required there), ``periods`` only for ``subscription``
  (required there).
* A computation order (terms ``computation: true``) is priced by the listing
  version's computation offer instead (:func:`computation_allowance`): per
  query, ``queries × price.fen`` for ``1 ≤ queries ≤ MAX_QUERIES``; per budget,
  ``price.fen`` for one ε budget. It buys an allowance: queries left and ε
  left (integer micro-ε: an offer's ε has at most 6 decimals).

:func:`parse_pricing` validates JSON into a :data:`Pricing`;
:func:`price` computes the amount. Both raise :class:`PricingError` /
:class:`TermsError` (422), subclasses of :class:`exchange.errors.ExchangeError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from exchange.errors import ExchangeError
from ledger.computation.offer import ComputationOffer
from ledger.protocol.limits import MAX_AMOUNT_FEN, MAX_QUERIES

__all__ = [
    "MAX_AMOUNT_FEN",
    "MAX_PERIODS",
    "MAX_PERIOD_DAYS",
    "MAX_QUERIES",
    "MAX_ROWS",
    "MAX_SEATS",
    "MAX_TIERS",
    "MICRO_EPSILON",
    "ComputationAllowance",
    "FixedPricing",
    "FreePricing",
    "Pricing",
    "PricingError",
    "SubscriptionPricing",
    "TermsError",
    "Tier",
    "TieredPricing",
    "computation_allowance",
    "epsilon_text",
    "micro_epsilon",
    "parse_pricing",
    "price",
]

MAX_ROWS: Final = 10**12
"""Largest row count (a tier bound or an order's rows)."""
MAX_TIERS: Final = 32
MAX_PERIOD_DAYS: Final = 3660
MAX_PERIODS: Final = 1200
MAX_SEATS: Final = 1_000_000
MICRO_EPSILON: Final = 1_000_000
"""Micro-ε per ε: allowances are integers."""

Fen = Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT_FEN, examples=[19900])]
"""An amount in fen: a strict integer in ``[0, MAX_AMOUNT_FEN]``."""


class PricingError(ExchangeError):
    """A pricing object is malformed, or a price would exceed ``MAX_AMOUNT_FEN``."""

    status = 422
    code = "invalid_pricing"


class TermsError(ExchangeError):
    """Order terms (rows, periods) that the listing's pricing cannot price."""

    status = 422
    code = "invalid_terms"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Limits(_Model):
    seats: Annotated[StrictInt, Field(ge=1, le=MAX_SEATS)] | None = Field(
        default=None, description="At most this many sales of a listing version."
    )
    exclusive: StrictBool = Field(
        default=False, description="An exclusive licence: exactly one sale."
    )

    @model_validator(mode="after")
    def _exclusive_is_one_seat(self) -> _Limits:
        if self.exclusive and self.seats not in (None, 1):
            raise ValueError("an exclusive offer has exactly one seat")
        return self

    @property
    def seat_limit(self) -> int | None:
        """How many sales the offer allows (``None``: unlimited)."""
        return 1 if self.exclusive else self.seats


class FreePricing(_Limits):
    model: Literal["free"]


class FixedPricing(_Limits):
    model: Literal["fixed"]
    price: Fen


class Tier(_Model):
    up_to_rows: Annotated[StrictInt, Field(ge=1, le=MAX_ROWS)] | None = Field(
        description="Inclusive upper row bound of this tier; null for the last tier."
    )
    price_per_1000_rows: Fen


class TieredPricing(_Limits):
    model: Literal["tiers"]
    tiers: tuple[Tier, ...] = Field(min_length=1, max_length=MAX_TIERS)

    @model_validator(mode="after")
    def _tiers_ascend(self) -> TieredPricing:
        *bounded, last = self.tiers
        if last.up_to_rows is not None:
            raise ValueError("the last tier must be unbounded (up_to_rows: null)")
        previous = 0
        for i, tier in enumerate(bounded):
            if tier.up_to_rows is None:
                raise ValueError(f"only the last tier may be unbounded (tier {i} is)")
            if tier.up_to_rows <= previous:
                raise ValueError(f"tier bounds must strictly ascend (tier {i}: {tier.up_to_rows})")
            previous = tier.up_to_rows
        return self


class SubscriptionPricing(_Limits):
    model: Literal["subscription"]
    price_per_period: Fen
    period_days: Annotated[StrictInt, Field(ge=1, le=MAX_PERIOD_DAYS)]
    max_periods: Annotated[StrictInt, Field(ge=1, le=MAX_PERIODS)]

    @model_validator(mode="after")
    def _bounded_total(self) -> SubscriptionPricing:
        if self.price_per_period * self.max_periods > MAX_AMOUNT_FEN:
            raise ValueError(f"max_periods × price_per_period exceeds {MAX_AMOUNT_FEN} fen")
        return self


Pricing = Annotated[
    FreePricing | FixedPricing | TieredPricing | SubscriptionPricing,
    Field(discriminator="model"),
]
"""Any pricing model; validate JSON with :func:`parse_pricing`."""

_MODELS: Final = frozenset({"free", "fixed", "tiers", "subscription"})
_ADAPTER: TypeAdapter[FreePricing | FixedPricing | TieredPricing | SubscriptionPricing] = (
    TypeAdapter(Pricing)
)


def parse_pricing(
    data: Any,
) -> FreePricing | FixedPricing | TieredPricing | SubscriptionPricing:
    """Validate a pricing JSON object (already parsed); raises :class:`PricingError`
    naming the first offending field."""
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first["loc"]
        if loc and loc[0] in _MODELS:  # the union's tag; the model is in the data
            loc = loc[1:]
        where = ".".join(str(part) for part in loc)
        message = first["msg"].removeprefix("Value error, ")
        where = f"pricing.{where}" if where else "pricing"
        raise PricingError(f"{where}: {message}") from None


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _tiered_amount(tiers: tuple[Tier, ...], rows: int) -> int:
    """``ceil(Σ rows_in_tier × rate / 1000)`` over the graduated tiers."""
    total = 0  # in thousandths of a fen
    lower = 0
    for tier in tiers:
        upper = rows if tier.up_to_rows is None else min(rows, tier.up_to_rows)
        if upper > lower:
            total += (upper - lower) * tier.price_per_1000_rows
        if tier.up_to_rows is None or rows <= tier.up_to_rows:
            break
        lower = tier.up_to_rows
    return _ceil_div(total, 1000)


def _check_count(value: int | None, name: str, maximum: int) -> int:
    if value is None:
        raise TermsError(f"{name} is required by this pricing model")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TermsError(f"{name} must be an integer, got {type(value).__name__}")
    if not 1 <= value <= maximum:
        raise TermsError(f"{name} must be in [1, {maximum}], got {value}")
    return value


def price(
    pricing: FreePricing | FixedPricing | TieredPricing | SubscriptionPricing,
    *,
    rows: int | None,
    periods: int | None,
) -> int:
    """The amount in fen of ``rows`` / ``periods`` under ``pricing``.

    ``rows`` is required by (and only allowed for) ``tiers``, ``periods`` by
    (and only for) ``subscription``. Raises :class:`TermsError` for terms the
    model cannot price, :class:`PricingError` if the amount would exceed
    :data:`MAX_AMOUNT_FEN`.
    """
    if rows is not None and not isinstance(pricing, TieredPricing):
        raise TermsError(f"rows do not apply to {pricing.model} pricing")
    if periods is not None and not isinstance(pricing, SubscriptionPricing):
        raise TermsError(f"periods do not apply to {pricing.model} pricing")
    if isinstance(pricing, FreePricing):
        amount = 0
    elif isinstance(pricing, FixedPricing):
        amount = pricing.price
    elif isinstance(pricing, TieredPricing):
        amount = _tiered_amount(pricing.tiers, _check_count(rows, "rows", MAX_ROWS))
    else:
        count = _check_count(periods, "periods", pricing.max_periods)
        amount = count * pricing.price_per_period
    if amount > MAX_AMOUNT_FEN:
        raise PricingError(f"the price {amount} fen exceeds the maximum of {MAX_AMOUNT_FEN} fen")
    return amount


@dataclass(frozen=True, slots=True)
class ComputationAllowance:
    """What a computation order costs and buys: ``queries_left`` (``None``: as many
    as the ε budget pays for) and ``epsilon_left`` in micro-ε (``None``: no
    differential privacy), and the micro-ε one query reserves."""

    amount: int
    queries_left: int | None
    epsilon_left: int | None
    epsilon_per_query: int


def micro_epsilon(epsilon: Decimal) -> int:
    """``epsilon`` (at most 6 decimals, as offers and records carry it) in micro-ε."""
    micro = epsilon * MICRO_EPSILON
    if micro != micro.to_integral_value():
        raise ValueError(f"ε {epsilon} has more than 6 decimals")
    return int(micro)


def computation_allowance(offer: ComputationOffer, *, queries: int | None) -> ComputationAllowance:
    """The price and allowance of a computation order on ``offer`` (see the module
    docstring). Raises :class:`TermsError` for terms the offer cannot price."""
    privacy = offer.privacy
    budget = None if privacy is None else micro_epsilon(privacy.epsilon_budget)
    per_query = 0 if privacy is None else micro_epsilon(privacy.epsilon_per_query)
    if offer.price.unit == "budget":
        if queries is not None:
            raise TermsError("queries do not apply to an offer priced per ε budget")
        if offer.price.fen > MAX_AMOUNT_FEN:
            raise PricingError(f"the price exceeds the maximum of {MAX_AMOUNT_FEN} fen")
        return ComputationAllowance(offer.price.fen, None, budget, per_query)
    count = _check_count(queries, "queries", MAX_QUERIES)
    amount = count * offer.price.fen
    if amount > MAX_AMOUNT_FEN:
        raise PricingError(f"the price {amount} fen exceeds the maximum of {MAX_AMOUNT_FEN} fen")
    return ComputationAllowance(amount, count, budget, per_query)


def epsilon_text(micro: int) -> str:
    """``micro`` micro-ε as the decimal string records and answers carry (``"4.5"``)."""
    whole, fraction = divmod(micro, MICRO_EPSILON)
    return f"{whole}.{fraction:06d}".rstrip("0").rstrip(".")
