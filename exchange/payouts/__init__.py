"""Payouts: participants withdraw available funds; operators record each withdrawal
paid (with the outside transfer's reference) or rejected (the amount released)."""
