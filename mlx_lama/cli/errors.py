"""The CLI's own error: printed as ``Error: <message>`` on stderr, exit status 1."""

from __future__ import annotations


class CliError(Exception):
    """A failure to report to the user in one line (Ollama's ``Error: ...``)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
