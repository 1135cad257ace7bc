"""Placeholder: filled in by the foundation work."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    del app
