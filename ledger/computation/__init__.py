"""Computations on a provider's data that never show its rows (可用不可见).

* :mod:`ledger.computation.offer`: what a listing lets buyers compute (the column
  control list, the minimum group size k, optional differential privacy, the price).
* :mod:`ledger.computation.validate`: the one allow-list validator of a buyer's SQL,
  used by the exchange (early refusal) and by the provider's agent (authoritative).

Both are wire objects of both sides, hence here, pure: no database, no web.
See ``docs/computations.md``.
"""
