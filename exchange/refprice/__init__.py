"""Reference prices of listings (cost and market methods; docs/pricing.md)."""
