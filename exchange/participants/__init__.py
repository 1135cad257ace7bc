"""Participants: registered SM2 keys with a role (provider, buyer, auditor) and the
operators configured in settings."""
