"""The stages in one call: text → checked module → rule graphs."""

from __future__ import annotations

from dsl import ast
from dsl.catalog import Catalog
from dsl.checker import check
from dsl.compiler import compile_module
from dsl.diagnostics import Diagnostic
from dsl.errors import DslError
from dsl.graph import RuleGraph
from dsl.parser import parse_with_diagnostics


def analyse(text: str, catalog: Catalog) -> tuple[ast.Module | None, list[Diagnostic]]:
    """Parse and check. The module is None when the text does not parse; the
    diagnostics hold every syntax or semantic problem, errors and warnings."""
    module, diagnostics = parse_with_diagnostics(text)
    if module is None:
        return None, diagnostics
    return module, check(module, catalog)


def compile_text(
    text: str, catalog: Catalog, filename: str = "<text>"
) -> tuple[list[RuleGraph], list[Diagnostic]]:
    """The rule graphs of every automation in ``text`` and the warnings found on the
    way. Raises :class:`DslError` with all the errors if there is any."""
    module, diagnostics = analyse(text, catalog)
    errors = [d for d in diagnostics if d.is_error]
    if module is None or errors:
        raise DslError(errors, text, filename)
    return compile_module(module, catalog), diagnostics
