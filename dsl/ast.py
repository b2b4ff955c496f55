"""The syntax tree of the automation language.

Every node is a frozen dataclass that carries the :class:`Span` of the source text it
came from. Spans are excluded from equality, so two trees that say the same thing are
equal wherever they were written: ``parse(format(tree)) == tree``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Union


@dataclass(frozen=True, slots=True)
class Span:
    """A region of source text. Lines and columns count from 1; ``end_column`` is
    exclusive. ``start`` and ``end`` are character offsets into the text."""

    line: int
    column: int
    end_line: int
    end_column: int
    start: int
    end: int

    def to(self, other: Span) -> Span:
        """The span that runs from the start of this one to the end of ``other``."""
        return Span(self.line, self.column, other.end_line, other.end_column, self.start, other.end)


NO_SPAN = Span(0, 0, 0, 0, 0, 0)


# --- Expressions -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Placeholder:
    """A ``{{ expression }}`` inside a string; ``expression`` is the stripped text."""

    expression: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class String:
    value: str
    placeholders: tuple[Placeholder, ...] = field(default=(), compare=False)
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Number:
    value: Decimal
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str = "USD"
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Percent:
    value: Decimal
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True, slots=True)
class Duration:
    amount: int
    unit: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    @property
    def seconds(self) -> int:
        return self.amount * DURATION_UNITS[self.unit]


@dataclass(frozen=True, slots=True)
class Boolean:
    value: bool
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ListExpr:
    items: tuple[Expr, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Field:
    """A dotted path into the trigger's context, such as ``fan.total_spent``."""

    path: tuple[str, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class BoolOp:
    """``left and right`` or ``left or right``."""

    op: str
    left: Expr
    right: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


COMPARISON_OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "in", "not in")


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Expr
    right: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


Literal = Union[String, Number, Money, Percent, Duration, Boolean]  # noqa: UP007
Expr = Union[Literal, ListExpr, Field, Not, BoolOp, Compare]  # noqa: UP007


# --- Statements ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Argument:
    name: str
    value: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Trigger:
    name: str
    arguments: tuple[Argument, ...] = ()
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    arguments: tuple[Argument, ...] = ()
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Wait:
    duration: Duration
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Branch:
    """One ``if`` or ``else if`` arm. Its span runs to the arm's closing brace."""

    condition: Expr
    body: tuple[Step, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class If:
    branches: tuple[Branch, ...]
    else_body: tuple[Step, ...] | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


Step = Union[Action, Wait, If]  # noqa: UP007


@dataclass(frozen=True, slots=True)
class Automation:
    name: str
    trigger: Trigger
    body: tuple[Step, ...]
    description: str | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Comment:
    """A ``#`` comment, kept so the formatter can put it back. ``text`` excludes ``#``."""

    text: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Module:
    automations: tuple[Automation, ...]
    comments: tuple[Comment, ...] = ()
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
