"""Usage policies and cross-border assessments (docs/policies.md)."""
