"""Problems found in automation text, as data.

Every stage (parser, checker) reports a list of :class:`Diagnostic`; nothing stops at
the first problem. :func:`render` prints one the way compilers do::

    welcome.hz:3:22: error: `=` assigns nothing here; compare with `==`
        3 |   if fan.total_spent = 10 {
          |                      ^
      hint: write `fan.total_spent == 10`
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from dsl.ast import Span


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    severity: Severity
    message: str
    span: Span
    hint: str | None = None
    code: str = "syntax"

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def to_dict(self, filename: str | None = None) -> dict:
        return {
            "file": filename,
            "line": self.span.line,
            "column": self.span.column,
            "end_line": self.span.end_line,
            "end_column": self.span.end_column,
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
        }


def error(message: str, span: Span, hint: str | None = None, code: str = "syntax") -> Diagnostic:
    return Diagnostic(Severity.ERROR, message, span, hint, code)


def warning(message: str, span: Span, hint: str | None = None, code: str = "") -> Diagnostic:
    return Diagnostic(Severity.WARNING, message, span, hint, code)


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A "did you mean" hint naming the closest candidates, or None if none is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f"`{c}`" for c in close) + "?"


@functools.lru_cache(maxsize=8)
def _lines(source: str) -> tuple[str, ...]:
    # Split once per text, not once per diagnostic: a file with many problems was split
    # as many times as it has problems. (A str caches its hash, so a lookup is cheap.)
    return tuple(source.splitlines())


def render(diagnostic: Diagnostic, source: str, filename: str = "<text>") -> str:
    """``file:line:col: severity: message``, the source line with a caret, the hint."""
    span = diagnostic.span
    header = f"{filename}:{span.line}:{span.column}: {diagnostic.severity.value}: "
    lines = [header + diagnostic.message]
    source_lines = _lines(source)
    if 1 <= span.line <= len(source_lines):
        text = source_lines[span.line - 1].expandtabs(1)
        width = 1
        if span.end_line == span.line and span.end_column > span.column:
            width = span.end_column - span.column
        gutter = f"{span.line:>5} | "
        lines.append(gutter + text)
        lines.append(" " * (len(gutter) - 2) + "| " + " " * (span.column - 1) + "^" * width)
    if diagnostic.hint:
        lines.append(f"  hint: {diagnostic.hint}")
    return "\n".join(lines)


def render_all(diagnostics: Iterable[Diagnostic], source: str, filename: str = "<text>") -> str:
    return "\n".join(render(d, source, filename) for d in diagnostics)
