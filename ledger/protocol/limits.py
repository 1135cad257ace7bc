"""Bounds of the amounts and counts that travel in signed objects: the exchange
prices within them and both sides refuse a quote outside them."""

from __future__ import annotations

from typing import Final

__all__ = ["MAX_AMOUNT_FEN", "MAX_QUERIES"]

MAX_AMOUNT_FEN: Final = 10**15
"""Largest amount (fen) of any price, configured or computed."""
MAX_QUERIES: Final = 10_000
"""Most queries one computation order buys."""
