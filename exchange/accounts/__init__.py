"""Participant accounts: integer fen balances (available, held) and their
append-only movement ledger."""
