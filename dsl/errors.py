"""The one exception type of the language: a failed stage and everything it found."""

from __future__ import annotations

from dsl.diagnostics import Diagnostic, render_all


class DslError(Exception):
    """Raised when text cannot be turned into automations. Carries every problem found,
    not only the first; ``str()`` renders them with carets when the source is known."""

    def __init__(
        self, diagnostics: list[Diagnostic], source: str = "", filename: str = "<text>"
    ) -> None:
        self.diagnostics = diagnostics
        self.source = source
        self.filename = filename
        super().__init__(render_all(diagnostics, source, filename))


class FlowError(ValueError):
    """A flow in the step format that cannot be read; ``field`` says where, as in
    ``steps[2].config.duration``."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")
