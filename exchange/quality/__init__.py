"""Quality reports as signed records: the provider's, the assessor's countersignature
or differing report (docs/quality.md)."""
