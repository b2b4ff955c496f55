"""Conditions: their JSON form in a rule graph, and fast Python callables built from it.

A condition is compiled twice. The fast form is Python source generated from the
expression tree — field reads become ``ctx["fan"]["total_spent"]``, constants and keys
are passed in as variables, never spliced in as text — and costs about as much as a
hand-written lambda. When the context lacks a field or holds the wrong kind of value
the fast form raises, and the precise form, a tree of closures, gives the answer.

Missing fields (absent, or ``null``) follow one rule, documented in the language
reference: a missing value equals nothing — ``==`` and ``in`` are false, ``!=`` and
``not in`` are true — and orders against nothing — ``<``, ``<=``, ``>``, ``>=`` are
false. ``in`` with text on its right tests for a substring, ignoring case.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from decimal import Decimal
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


def _field_reader(path: tuple[str, ...]) -> Callable[[Mapping], Any]:
    def read(ctx: Mapping) -> Any:
        value: Any = ctx
        for key in path:
            if not isinstance(value, Mapping):
                return None
            value = value.get(key)
        return value

    return read


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
        return _field_reader(tuple(data["field"].split(".")))
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


# --- The fast form ---------------------------------------------------------------


class _Codegen:
    """Python source for a condition; every constant and key is a parameter."""

    def __init__(self) -> None:
        self.params: list[Any] = []

    def param(self, value: Any) -> str:
        self.params.append(value)
        return f"p{len(self.params) - 1}"

    def expr(self, data: JSON) -> str:
        if "field" in data:
            keys = data["field"].split(".")
            return "ctx" + "".join(f"[{self.param(k)}]" for k in keys)
        if "not" in data:
            return f"(not {self.expr(data['not'])})"
        for op in ("and", "or"):
            if op in data:
                left, right = data[op]
                return f"({self.expr(left)} {op} {self.expr(right)})"
        if "op" in data:
            return self.comparison(data)
        return self.param(runtime_value(data))

    def operand(self, data: JSON) -> str:
        # Python's `and`/`or` yield one of their operands; compared as a value, the
        # result must be the bool the precise form compares.
        code = self.expr(data)
        return f"bool{code}" if "and" in data or "or" in data else code

    def comparison(self, data: JSON) -> str:
        op, left, right = data["op"], data["left"], data["right"]
        lhs = self.operand(left)
        if op not in ("in", "not in"):
            return f"({lhs} {op} {self.operand(right)})"
        if "list" in right:
            members = runtime_value(right)
            try:
                container = self.param(frozenset(members))
            except TypeError:
                container = self.param(members)
            return f"({lhs} {op} {container})"
        rhs = self.operand(right)
        if right.get("type") == ValueType.LIST:
            return f"({lhs} {op} {rhs})"
        if right.get("type") == ValueType.TEXT:
            # `.casefold` on a value that is not text raises, and the precise form decides.
            return f"({lhs}.casefold() {op} {rhs}.casefold())"
        negate = "not " if op == "not in" else ""
        return f"({negate}{self.param(_contains)}({lhs}, {rhs}))"


def compile_condition(data: JSON) -> Condition:
    """A fast callable ``ctx -> bool`` for a condition in its JSON form."""
    gen = _Codegen()
    body = gen.expr(data)
    precise = gen.param(_closure(data))
    names = ", ".join(f"p{i}" for i in range(len(gen.params)))
    source = (
        f"def _make({names}):\n"
        f"    def condition(ctx):\n"
        f"        try:\n"
        f"            return True if {body} else False\n"
        f"        except (KeyError, TypeError, AttributeError, IndexError):\n"
        f"            return bool({precise}(ctx))\n"
        f"    return condition\n"
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, "<condition>", "exec"), namespace)  # generated from the tree only
    return namespace["_make"](*gen.params)
