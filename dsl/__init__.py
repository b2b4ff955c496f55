"""The Huntaze automation language: text → syntax tree → diagnostics → rule graph, and
back to text.

Pure: no database, network, web framework or queue is imported here. The installed
plugins reach the checker as a :class:`Catalog` argument.
"""

from dsl.ast import Module, Span
from dsl.catalog import ActionSpec, Catalog, TriggerSpec, ValueType
from dsl.checker import check
from dsl.compiler import compile_automation, compile_module
from dsl.conditions import compile_condition
from dsl.diagnostics import Diagnostic, Severity, render, render_all
from dsl.errors import DslError, FlowError
from dsl.flow import export_flow, import_flow
from dsl.formatter import format_module, format_text
from dsl.graph import RuleGraph
from dsl.parser import parse, parse_expression, parse_with_diagnostics
from dsl.pipeline import analyse, compile_text

__all__ = [
    "ActionSpec",
    "Catalog",
    "Diagnostic",
    "DslError",
    "FlowError",
    "Module",
    "RuleGraph",
    "Severity",
    "Span",
    "TriggerSpec",
    "ValueType",
    "analyse",
    "check",
    "compile_automation",
    "compile_condition",
    "compile_module",
    "compile_text",
    "export_flow",
    "format_module",
    "format_text",
    "import_flow",
    "parse",
    "parse_expression",
    "parse_with_diagnostics",
    "render",
    "render_all",
]
