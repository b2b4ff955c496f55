"""Conditions: their JSON form in a rule graph, and fast Python callables built from it.

A compiled condition is one generated Python function with two forms of the expression.
The fast form — field reads become ``ctx["fan"]["total_spent"]``, constants and keys are
passed in as parameters, never spliced in as text — costs about as much as a hand-written
lambda. When the context lacks a field or holds the wrong kind of value the fast form
raises, and the precise form, generated alongside it, gives the answer ``evaluate`` gives.
Since the text holds no constant, conditions of the same shape share one code object.

Missing fields (absent, or ``null``) follow one rule, documented in the language
reference: a missing value equals nothing — ``==`` and ``in`` are false, ``!=`` and
``not in`` are true — and orders against nothing — ``<``, ``<=``, ``>``, ``>=`` are
false. ``in`` with text on its right tests for a substring, ignoring case.
"""

from __future__ import annotations

import builtins
import operator
import sys
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import lru_cache
from types import CodeType, FunctionType
from typing import Any

from dsl import ast
from dsl.catalog import ValueType

Condition = Callable[[Mapping[str, Any]], bool]
JSON = Any

# --- JSON form -----------------------------------------------------------------


def literal_to_json(node: ast.Expr) -> JSON:
    """Literals as tagged JSON objects, exact (decimals as strings)."""
    match node:
        case ast.String(value=value):
            return {"text": value}
        case ast.Number(value=value):
            return {"number": _decimal_text(value)}
        case ast.Money(amount=amount, currency=currency):
            return {"money": _decimal_text(amount), "currency": currency}
        case ast.Percent(value=value):
            return {"percent": _decimal_text(value)}
        case ast.Duration(amount=amount, unit=unit):
            return {"duration": f"{amount}{unit}"}
        case ast.Boolean(value=value):
            return {"bool": value}
        case ast.ListExpr(items=items):
            return {"list": [to_json(item) for item in items]}
    raise TypeError(f"not a literal: {node!r}")


def to_json(node: ast.Expr, fields: Mapping[str, ValueType] | None = None) -> JSON:
    """An expression as JSON. With ``fields``, field references carry their type so
    the compiled form can skip run-time type tests."""
    match node:
        case ast.Field(path=path):
            data = {"field": ".".join(path)}
            kind = fields.get(data["field"]) if fields else None
            if kind is not None:
                data["type"] = kind.value
            return data
        case ast.Not(operand=operand):
            return {"not": to_json(operand, fields)}
        case ast.BoolOp(op=op, left=left, right=right):
            return {op: [to_json(left, fields), to_json(right, fields)]}
        case ast.Compare(op=op, left=left, right=right):
            return {"op": op, "left": to_json(left, fields), "right": to_json(right, fields)}
    return literal_to_json(node)


def from_json(data: JSON) -> ast.Expr:
    """The expression tree back from its JSON form (spans are empty)."""
    if "field" in data:
        return ast.Field(tuple(data["field"].split(".")))
    if "not" in data:
        return ast.Not(from_json(data["not"]))
    for op in ("and", "or"):
        if op in data:
            left, right = data[op]
            return ast.BoolOp(op, from_json(left), from_json(right))
    if "op" in data:
        return ast.Compare(data["op"], from_json(data["left"]), from_json(data["right"]))
    return literal_from_json(data)


def literal_from_json(data: JSON) -> ast.Expr:
    if "text" in data:
        return ast.String(data["text"])
    if "number" in data:
        return ast.Number(Decimal(data["number"]))
    if "money" in data:
        return ast.Money(Decimal(data["money"]), data.get("currency", "USD"))
    if "percent" in data:
        return ast.Percent(Decimal(data["percent"]))
    if "duration" in data:
        text = data["duration"]
        return ast.Duration(int(text[:-1]), text[-1])
    if "bool" in data:
        return ast.Boolean(bool(data["bool"]))
    if "list" in data:
        return ast.ListExpr(tuple(from_json(item) for item in data["list"]))
    raise ValueError(f"not an expression: {data!r}")


def _decimal_text(value: Decimal) -> str:
    return format(value, "f")


def runtime_value(data: JSON) -> Any:
    """The Python value a literal compares as: numbers, money and percentages as int
    or float, durations as seconds, lists as tuples."""
    if "text" in data:
        return data["text"]
    if "bool" in data:
        return bool(data["bool"])
    if "list" in data:
        return tuple(runtime_value(item) for item in data["list"])
    if "duration" in data:
        return literal_from_json(data).seconds
    number = Decimal(data.get("number") or data.get("money") or data.get("percent"))
    return int(number) if number == number.to_integral_value() else float(number)


# --- The precise form ------------------------------------------------------------

_ORDERING = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _read(ctx: Mapping, *path: str) -> Any:
    """A field's value: None where a step is missing or is no mapping."""
    value: Any = ctx
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _contains(item: Any, container: Any) -> bool:
    if container is None:
        return False
    if isinstance(container, str):
        return isinstance(item, str) and item.casefold() in container.casefold()
    try:
        return item in container
    except TypeError:
        return False


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    if op == "in":
        return _contains(left, right)
    if op == "not in":
        return not _contains(left, right)
    if left is None or right is None:
        return False
    try:
        return _ORDERING[op](left, right)
    except TypeError:
        return False


def _closure(data: JSON) -> Callable[[Mapping], Any]:
    if "field" in data:
        path = tuple(data["field"].split("."))
        return lambda ctx: _read(ctx, *path)
    if "not" in data:
        inner = _closure(data["not"])
        return lambda ctx: not inner(ctx)
    if "and" in data:
        left, right = (_closure(d) for d in data["and"])
        return lambda ctx: bool(left(ctx)) and bool(right(ctx))
    if "or" in data:
        left, right = (_closure(d) for d in data["or"])
        return lambda ctx: bool(left(ctx)) or bool(right(ctx))
    if "op" in data:
        op = data["op"]
        left, right = _closure(data["left"]), _closure(data["right"])
        return lambda ctx: _compare(op, left(ctx), right(ctx))
    value = runtime_value(data)
    return lambda ctx: value


def evaluate(data: JSON, ctx: Mapping[str, Any]) -> bool:
    """Evaluate a condition precisely (the reference the fast form must agree with)."""
    return bool(_closure(data)(ctx))


# --- The compiled form -----------------------------------------------------------
#
# One generated function per condition holds both forms: the fast expression, and in its
# `except` the precise one as code (a field read by `_read`, a comparison by `_compare`, as
# `evaluate` does). Every constant and key is a parameter (p0, p1, ...), never spliced into
# the text, so the source depends only on the condition's shape: conditions of one shape
# share one code object, and each is a function over it whose parameters' defaults are its
# values — a function object and a tuple (docs/performance.md, Conditions).

_COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">=", "in", "not in"})
_FALLBACK = "(KeyError, TypeError, AttributeError, IndexError)"


# The generated functions' globals, the same for all.
_GLOBALS: dict[str, Any] = {
    "__builtins__": builtins,
    "_read": _read,
    "_compare": _compare,
    "_contains": _contains,
}


class _Codegen:
    """Python source for both forms of a condition; every constant and key is a
    parameter. ``expr`` returns (fast, precise) source for a node."""

    def __init__(self) -> None:
        self.params: list[Any] = []

    def param(self, value: Any) -> str:
        self.params.append(value)
        return f"p{len(self.params) - 1}"

    def expr(self, data: JSON) -> tuple[str, str]:
        if "field" in data:
            keys = [self.param(sys.intern(key)) for key in data["field"].split(".")]
            return "ctx" + "".join(f"[{k}]" for k in keys), f"_read(ctx, {', '.join(keys)})"
        if "not" in data:
            fast, precise = self.expr(data["not"])
            return f"(not {fast})", f"(not {precise})"
        for op in ("and", "or"):
            if op in data:
                (fast_l, precise_l), (fast_r, precise_r) = (self.expr(d) for d in data[op])
                return (
                    f"({fast_l} {op} {fast_r})",
                    f"(bool({precise_l}) {op} bool({precise_r}))",
                )
        if "op" in data:
            return self.comparison(data)
        value = self.param(runtime_value(data))
        return value, value

    def operand(self, data: JSON) -> tuple[str, str]:
        # Python's `and`/`or` yield one of their operands; compared as a value, the
        # result must be the bool the precise form compares.
        fast, precise = self.expr(data)
        return (f"bool{fast}", precise) if "and" in data or "or" in data else (fast, precise)

    def comparison(self, data: JSON) -> tuple[str, str]:
        op, left, right = data["op"], data["left"], data["right"]
        if op not in _COMPARISONS:
            raise ValueError(f"not a comparison: {op!r}")
        lhs, precise_l = self.operand(left)
        if op in ("in", "not in") and "list" in right:
            members = runtime_value(right)
            try:
                container = self.param(frozenset(members))
            except TypeError:
                container = self.param(members)
            # Membership in the set is membership in the list for any value: equal
            # values hash alike, and an unhashable one equals no literal.
            return f"({lhs} {op} {container})", f"_compare({op!r}, {precise_l}, {container})"
        rhs, precise_r = self.operand(right)
        precise = f"_compare({op!r}, {precise_l}, {precise_r})"
        if op not in ("in", "not in") or right.get("type") == ValueType.LIST:
            return f"({lhs} {op} {rhs})", precise
        if right.get("type") == ValueType.TEXT:
            # `.casefold` on a value that is not text raises, and the precise form decides.
            return f"({lhs}.casefold() {op} {rhs}.casefold())", precise
        negate = "not " if op == "not in" else ""
        return f"({negate}_contains({lhs}, {rhs}))", precise


@lru_cache(maxsize=4096)
def _shape(fast: str, precise: str, count: int) -> CodeType:
    """The code object of one shape of condition, compiled once."""
    params = "".join(f", p{i}=None" for i in range(count))
    source = (
        f"def condition(ctx{params}):\n"
        f"    try:\n"
        f"        return True if {fast} else False\n"
        f"    except {_FALLBACK}:\n"
        f"        return True if {precise} else False\n"
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, "<condition>", "exec"), _GLOBALS, namespace)  # from the tree only
    return namespace["condition"].__code__


def compile_condition(data: JSON) -> Condition:
    """A fast callable ``ctx -> bool`` for a condition in its JSON form. It agrees with
    ``evaluate`` on every context; call it with the context only (its other parameters
    hold the condition's constants)."""
    gen = _Codegen()
    fast, precise = gen.expr(data)
    code = _shape(fast, precise, len(gen.params))
    return FunctionType(code, _GLOBALS, "condition", tuple(gen.params))
