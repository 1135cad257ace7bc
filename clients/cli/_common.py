"""Shared pieces of the command line: one-line errors and exit codes."""

from __future__ import annotations

from rich.console import Console

stdout = Console()
stderr = Console(stderr=True)


class CLIError(Exception):
    """An error the user can act on: printed as one line, then exit with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
