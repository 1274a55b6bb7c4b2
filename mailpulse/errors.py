"""The CLI's error type: one line for the user, and the exit status."""

from __future__ import annotations


class CliError(Exception):
    """Exit status 2 for bad usage or input, 1 for a failure."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status
