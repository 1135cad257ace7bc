"""Computations on provider-held data: buyers' queries, the providers' answers, and
the order allowance they spend (docs/computations.md)."""
