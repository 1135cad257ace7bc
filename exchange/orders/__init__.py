"""Quotes, orders with escrow, and limited offers (seats) that never oversell."""
