"""Message templates: ``{{ fan.name }}`` placeholders, checked at save time and rendered
in Jinja2's immutable sandbox.

A placeholder may only name a field the trigger provides, optionally through a short
list of formatting filters (``{{ fan.name | default("there") }}``). Anything else —
attribute tricks like ``{{ ''.__class__ }}``, calls, indexing — is rejected by the
checker before it can be saved, and the sandbox would refuse it at run time anyway.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

from jinja2 import ChainableUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dsl.ast import Placeholder
from dsl.diagnostics import Diagnostic, did_you_mean, error

ALLOWED_FILTERS = frozenset(
    {"default", "upper", "lower", "title", "capitalize", "trim", "round", "int", "join"}
)


def _default(value: object, default_value: object = "", boolean: bool = False) -> object:
    # A null field is missing, as in conditions: it takes the fallback too.
    if value is None or isinstance(value, Undefined) or (boolean and not value):
        return default_value
    return value


# Only `{{ }}` has a meaning in a message: `render` cuts the text at placeholders and
# hands Jinja each expression alone, so "{% off" or "{#1 fan}" stay plain text and no
# template statement (a loop, say) can ever run.
# ChainableUndefined: a field of a missing group (`event.x` without `event`) is
# missing too, not an error.
_env = ImmutableSandboxedEnvironment(autoescape=False, undefined=ChainableUndefined)
_env.filters = {name: _env.filters[name] for name in ALLOWED_FILTERS}
_env.filters["default"] = _default
_env.globals = {}


def check_placeholder(placeholder: Placeholder, fields: Mapping[str, object]) -> list[Diagnostic]:
    """Problems with one placeholder: it must parse and name a known field."""
    span = placeholder.span
    try:
        tree = _env.parse("{{ " + placeholder.expression + " }}")
    except TemplateSyntaxError as exc:
        return [
            error(
                f"placeholder `{{{{ {placeholder.expression} }}}}` is not valid: {exc.message}",
                span,
                hint="a placeholder names a field, as in {{ fan.name }}",
                code="template",
            )
        ]
    # Template → Output → expression; "a }} text {{ b" would be more than one.
    single = len(tree.body) == 1 and len(tree.body[0].nodes) == 1
    expr = tree.body[0].nodes[0] if single else None
    filters = []
    while isinstance(expr, nodes.Filter):
        filters.append(expr)
        expr = expr.node
    path = _dotted_path(expr)
    problems = []
    if path is None:
        problems.append(
            error(
                f"placeholder `{{{{ {placeholder.expression} }}}}` may only name a field",
                span,
                hint="write a field of the trigger, as in {{ fan.name }}",
                code="template/expression",
            )
        )
    elif path not in fields:
        problems.append(
            error(
                f"unknown field `{path}` in placeholder",
                span,
                hint=did_you_mean(path, fields) or _fields_hint(fields),
                code="template/field",
            )
        )
    for f in filters:
        if f.name not in ALLOWED_FILTERS:
            problems.append(
                error(
                    f"unknown filter `{f.name}` in placeholder",
                    span,
                    hint="filters: " + ", ".join(sorted(ALLOWED_FILTERS)),
                    code="template/filter",
                )
            )
        elif not all(isinstance(a, nodes.Const) for a in f.args) or f.kwargs or f.dyn_args:
            problems.append(
                error(
                    f"the filter `{f.name}` only takes plain values",
                    span,
                    hint='as in {{ fan.name | default("there") }}',
                    code="template/filter",
                )
            )
    return problems


def _dotted_path(expr: nodes.Node) -> str | None:
    parts = []
    while isinstance(expr, nodes.Getattr):
        if expr.attr.startswith("_"):
            return None
        parts.append(expr.attr)
        expr = expr.node
    if not isinstance(expr, nodes.Name) or expr.name.startswith("_"):
        return None
    parts.append(expr.name)
    return ".".join(reversed(parts))


def _fields_hint(fields: Mapping[str, object]) -> str:
    names = sorted(fields)
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    return f"this trigger provides: {shown}"


PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


@lru_cache(maxsize=4096)
def _expression(source: str):
    return _env.compile_expression(source, undefined_to_none=True)


def render(text: str, context: Mapping[str, object]) -> str:
    """Render a message: each ``{{ expression }}`` is evaluated in the sandbox, the rest
    is kept as written. Missing or null fields render as nothing (use ``default`` for a
    fallback word)."""
    if "{{" not in text:
        return text
    pieces = []
    end = 0
    for m in PLACEHOLDER.finditer(text):
        pieces.append(text[end : m.start()])
        value = _expression(m.group(1).strip())(**context)
        pieces.append("" if value is None else str(value))
        end = m.end()
    pieces.append(text[end:])
    return "".join(pieces)
