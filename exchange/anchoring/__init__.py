"""Anchoring the log's checkpoints to the AnchorRegistry contract."""
