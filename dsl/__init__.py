"""The Huntaze automation language: text → syntax tree → diagnostics, and back to text.

Pure: no database, network, web framework or queue is imported here.
"""

from dsl.ast import Module, Span
from dsl.diagnostics import Diagnostic, Severity, render, render_all
from dsl.errors import DslError
from dsl.formatter import format_module, format_text
from dsl.parser import parse, parse_with_diagnostics

__all__ = [
    "Diagnostic",
    "DslError",
    "Module",
    "Severity",
    "Span",
    "format_module",
    "format_text",
    "parse",
    "parse_with_diagnostics",
    "render",
    "render_all",
]
