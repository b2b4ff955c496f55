"""The engine's errors. Those a web request can cause carry an HTTP status."""

from __future__ import annotations

from dsl.diagnostics import Diagnostic


class HuntazeError(Exception):
    status_code = 500


class NotFound(HuntazeError):
    status_code = 404


class InvalidInput(HuntazeError):
    """Input that fails validation; ``field`` names what is wrong."""

    status_code = 422

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidAutomation(InvalidInput):
    """Automation text that does not pass the checker; nothing was saved."""

    def __init__(self, diagnostics: list[Diagnostic], source: str) -> None:
        super().__init__(f"the automation has {len(diagnostics)} problem(s)", "source")
        self.diagnostics = diagnostics
        self.source = source


class Conflict(HuntazeError):
    """A write based on a version that is no longer current."""

    status_code = 409

    def __init__(self, message: str, current_version: int | None = None) -> None:
        super().__init__(message)
        self.current_version = current_version


class MessageCapReached(HuntazeError):
    """The fan has had as many messages today as the creator allows."""
