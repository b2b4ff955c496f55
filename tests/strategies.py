"""Hypothesis strategies that build valid syntax trees of the automation language.

Every tree drawn here can be written as text: names are not keywords, strings hold no
unclosed ``{{``, money has at most two decimals and no sign. Nodes carry ``NO_SPAN``.
The parser, formatter, checker and compiler tests all draw from these.

Each function builds its strategy once (``@cache``): strategies are immutable, and
rebuilding them on every draw makes Hypothesis validate them again, which was most of
the run time.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cache

from hypothesis import strategies as st

from dsl import ast

_STATEMENT_KEYWORDS = {"automation", "description", "when", "wait", "if", "else"}
KEYWORDS = frozenset({*_STATEMENT_KEYWORDS, "and", "or", "not", "in", "true", "false"})
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)  # as dsl.templates reads them
_NAME_START = "abcdefghijklmnopqrstuvwxyz_"
_NAME_REST = _NAME_START + "0123456789"


@cache
def names() -> st.SearchStrategy[str]:
    """Lower-case names, including ones that start with a keyword (`iffy`, `android`)."""
    head = st.one_of(st.sampled_from(_NAME_START), st.sampled_from(sorted(KEYWORDS)))
    tail = st.text(alphabet=_NAME_REST, max_size=6)
    return st.builds(str.__add__, head, tail).filter(lambda n: n not in KEYWORDS)


def _closed_placeholders(text: str) -> bool:
    return "{{" not in _PLACEHOLDER.sub(" ", text)


@cache
def string_values() -> st.SearchStrategy[str]:
    """Any text (quotes, backslashes, newlines, control characters, `#`), mixed with
    well-formed ``{{ placeholder }}`` pieces."""
    placeholder = st.lists(names(), min_size=1, max_size=2).map(
        lambda path: "{{ " + ".".join(path) + " }}"
    )
    piece = st.one_of(st.text(max_size=12), placeholder)
    return st.lists(piece, max_size=4).map("".join).filter(_closed_placeholders)


def _scaled(digits: int, min_exponent: int) -> st.SearchStrategy[Decimal]:
    """Decimals as ``integer * 10**exponent``, so some print with an exponent (1E+3)."""
    return st.builds(
        lambda n, e: Decimal(n).scaleb(e),
        st.integers(-(10**digits), 10**digits),
        st.integers(min_exponent, 4),
    )


@cache
def decimals() -> st.SearchStrategy[Decimal]:
    return _scaled(7, -6)


@cache
def literals() -> st.SearchStrategy[ast.Expr]:
    money = st.builds(
        ast.Money,
        _scaled(7, -2).map(abs),
        st.sampled_from(["USD", "EUR", "GBP"]),
    )
    return st.one_of(
        st.builds(ast.String, string_values()),
        st.builds(ast.Number, decimals()),
        money,
        st.builds(ast.Percent, decimals()),
        durations(),
        st.builds(ast.Boolean, st.booleans()),
    )


@cache
def durations() -> st.SearchStrategy[ast.Duration]:
    return st.builds(ast.Duration, st.integers(0, 10**6), st.sampled_from("smhdw"))


@cache
def fields() -> st.SearchStrategy[ast.Field]:
    return st.builds(ast.Field, st.lists(names(), min_size=1, max_size=3).map(tuple))


@cache
def expressions(max_leaves: int = 12) -> st.SearchStrategy[ast.Expr]:
    """Literals, fields and lists under any nesting of `not`, `and`/`or` and comparisons."""

    def extend(children):
        return st.one_of(
            st.builds(ast.ListExpr, st.lists(children, max_size=3).map(tuple)),
            st.builds(ast.Not, children),
            st.builds(ast.BoolOp, st.sampled_from(["and", "or"]), children, children),
            st.builds(ast.Compare, st.sampled_from(ast.COMPARISON_OPERATORS), children, children),
        )

    return st.recursive(st.one_of(literals(), fields()), extend, max_leaves=max_leaves)


@cache
def arguments() -> st.SearchStrategy[tuple[ast.Argument, ...]]:
    argument = st.builds(ast.Argument, names(), expressions(max_leaves=3))
    return st.lists(argument, max_size=2).map(tuple)


@cache
def steps() -> st.SearchStrategy[ast.Step]:
    """Actions, waits and `if` / `else if` / `else` branches nested a few levels deep."""
    simple = st.one_of(
        st.builds(ast.Action, names(), arguments()),
        st.builds(ast.Wait, durations()),
    )

    def extend(children):
        body = st.lists(children, max_size=3).map(tuple)
        branch = st.builds(ast.Branch, expressions(max_leaves=5), body)
        return st.builds(
            ast.If,
            st.lists(branch, min_size=1, max_size=2).map(tuple),
            st.none() | body,
        )

    return st.recursive(simple, extend, max_leaves=5)


@cache
def automations() -> st.SearchStrategy[ast.Automation]:
    return st.builds(
        ast.Automation,
        name=string_values(),
        trigger=st.builds(ast.Trigger, names(), arguments()),
        body=st.lists(steps(), max_size=3).map(tuple),
        description=st.none() | string_values(),
    )


@cache
def modules() -> st.SearchStrategy[ast.Module]:
    return st.builds(ast.Module, st.lists(automations(), max_size=3).map(tuple))
