"""The language's value types: of literals, of plugin arguments, and in words."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from dsl import ast
from dsl.catalog import ValueType
from dsl.values import Money, Percentage

_LITERAL_TYPES = {
    ast.String: ValueType.TEXT,
    ast.Number: ValueType.NUMBER,
    ast.Money: ValueType.MONEY,
    ast.Percent: ValueType.PERCENT,
    ast.Duration: ValueType.DURATION,
    ast.Boolean: ValueType.BOOLEAN,
    ast.ListExpr: ValueType.LIST,
}

_PYTHON_TYPES = {
    str: ValueType.TEXT,
    int: ValueType.NUMBER,
    float: ValueType.NUMBER,
    Decimal: ValueType.NUMBER,
    bool: ValueType.BOOLEAN,
    Money: ValueType.MONEY,
    Percentage: ValueType.PERCENT,
    timedelta: ValueType.DURATION,
    datetime: ValueType.DATETIME,
    list: ValueType.LIST,
    tuple: ValueType.LIST,
    set: ValueType.LIST,
    frozenset: ValueType.LIST,
}

_WORDS = {
    ValueType.TEXT: 'text ("...")',
    ValueType.NUMBER: "a number",
    ValueType.MONEY: "an amount of money like $10",
    ValueType.PERCENT: "a percentage like 20%",
    ValueType.DURATION: "a duration like 48h",
    ValueType.BOOLEAN: "true or false",
    ValueType.DATETIME: "a date and time",
    ValueType.LIST: "a list",
}


def literal_type(node: ast.Expr) -> ValueType | None:
    return _LITERAL_TYPES.get(type(node))


def literal_value(node: ast.Expr) -> Any:
    """The Python value an argument literal is validated and run with."""
    match node:
        case ast.String(value=value) | ast.Boolean(value=value) | ast.Number(value=value):
            return value
        case ast.Money(amount=amount, currency=currency):
            return Money(amount, currency)
        case ast.Percent(value=value):
            return Percentage(value)
        case ast.Duration():
            return timedelta(seconds=node.seconds)
        case ast.ListExpr(items=items):
            return [literal_value(item) for item in items]
    raise TypeError(f"not a literal: {node!r}")


def accepted_types(annotation: Any) -> set[ValueType]:
    """The value types a config field accepts; empty when it cannot be told (then the
    model's own validation decides)."""
    if annotation is None:
        return set()
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return accepted_types(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        found: set[ValueType] = set()
        for arg in typing.get_args(annotation):
            if arg is type(None):
                continue
            inner = accepted_types(arg)
            if not inner:
                return set()
            found |= inner
        return found
    if origin is typing.Literal:
        return (
            {ValueType.TEXT}
            if all(isinstance(a, str) for a in typing.get_args(annotation))
            else set()
        )
    if origin is not None:
        annotation = origin
    if isinstance(annotation, type):
        if issubclass(annotation, Enum):
            return {ValueType.TEXT}
        for python_type, value_type in _PYTHON_TYPES.items():
            if issubclass(annotation, python_type) and not (
                python_type is int and annotation is bool
            ):
                return {value_type}
    return set()


def describe(kinds: Iterable[ValueType | None]) -> str:
    words = [_WORDS[k] for k in sorted(k for k in kinds if k is not None)]
    return " or ".join(words) if words else "a value"
