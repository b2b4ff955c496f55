"""Syntax tree → canonical text, comments and paragraph breaks kept.

The printer walks the tree and emits one output line per statement. Comments are not in
the tree; they are put back by their source line:

- a comment on a line that also holds code (some node starts or ends there) is trailing:
  it goes at the end of the last output line whose statement covers that source line;
- any other comment is on its own line: it goes before the first statement that starts
  after it, at that statement's indentation (or before the closing `}` of its block).

Nodes built in memory carry ``NO_SPAN`` (line 0), so for them there are no comments and no
blank lines to keep.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from dsl import ast
from dsl.parser import parse

INDENT = "  "
_CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}

# Escapes for string literals: the named ones, then every other control character as
# \u{hex} so that a string never hides a character the reader cannot see.
_STRING_ESCAPES = {c: f"\\u{{{c:x}}}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_STRING_ESCAPES.update({ord("\\"): "\\\\", ord('"'): '\\"'})
_STRING_ESCAPES.update({ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"})


def format_module(module: ast.Module) -> str:
    """The canonical text of ``module``: ends with one newline, or is empty."""
    return _Printer(module).run()


def format_text(text: str, filename: str = "<text>") -> str:
    """Parse ``text`` and print it canonically. Raises :class:`DslError` on syntax errors."""
    return format_module(parse(text, filename))


# --- Expressions ---------------------------------------------------------------

# Binding strength: a child printed where a stronger one is needed gets parentheses.
_OR, _AND, _NOT, _COMPARE, _ATOM = range(1, 6)


def quote(value: str) -> str:
    return '"' + value.translate(_STRING_ESCAPES) + '"'


def _plain(value) -> str:
    return format(value, "f")


def _money(node: ast.Money) -> str:
    if node.currency not in _CURRENCY_SYMBOLS:
        raise ValueError(f"no symbol for the currency {node.currency!r}")
    return _CURRENCY_SYMBOLS[node.currency] + _plain(node.amount)


def _precedence(node: ast.Expr) -> int:
    if isinstance(node, ast.BoolOp):
        return _OR if node.op == "or" else _AND
    return {ast.Not: _NOT, ast.Compare: _COMPARE}.get(type(node), _ATOM)


def _operand(node: ast.Expr, at_least: int) -> str:
    text = expression(node)
    return f"({text})" if _precedence(node) < at_least else text


def _bool_op(node: ast.BoolOp) -> str:
    # Left-associative: `a or b or c` is ((a or b) or c), so only a right operand of the
    # same operator needs parentheses. The left spine is walked in a loop, not by
    # recursion, so that a long chain of alternatives cannot exhaust the stack.
    op, strength = node.op, _precedence(node)
    rights = []
    while isinstance(node, ast.BoolOp) and node.op == op:
        rights.append(node.right)
        node = node.left
    operands = [_operand(node, strength), *(_operand(r, strength + 1) for r in reversed(rights))]
    return f" {op} ".join(operands)


_EXPRESSIONS: dict[type, Callable] = {
    ast.String: lambda n: quote(n.value),
    ast.Number: lambda n: _plain(n.value),
    ast.Money: _money,
    ast.Percent: lambda n: _plain(n.value) + "%",
    ast.Duration: lambda n: f"{n.amount}{n.unit}",
    ast.Boolean: lambda n: "true" if n.value else "false",
    ast.ListExpr: lambda n: "[" + ", ".join(expression(i) for i in n.items) + "]",
    ast.Field: lambda n: n.dotted,
    # `not (a in b)` rather than the equivalent `not a in b`, which reads like `not in`.
    ast.Not: lambda n: (
        "not " + _operand(n.operand, _ATOM if isinstance(n.operand, ast.Compare) else _NOT)
    ),
    ast.BoolOp: _bool_op,
    ast.Compare: lambda n: f"{_operand(n.left, _ATOM)} {n.op} {_operand(n.right, _ATOM)}",
}


def expression(node: ast.Expr) -> str:
    """An expression's canonical text, with parentheses only where precedence needs them."""
    return _EXPRESSIONS[type(node)](node)


def _call(name: str, arguments: tuple[ast.Argument, ...]) -> str:
    args = ", ".join(f"{a.name}: {expression(a.value)}" for a in arguments)
    return f"{name} {args}" if args else name


# --- Statements ----------------------------------------------------------------


@dataclass
class _Line:
    """An output line; ``first``..``last`` are the source lines whose trailing comments
    belong at its end (None for comment and blank lines)."""

    text: str
    first: int | None = None
    last: int | None = None


def _spans(root) -> Iterator[ast.Span]:
    """Every span in a tree of dataclasses and tuples of them (a loop, not recursion, as
    a long `or` chain is a deep tree)."""
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, tuple):
            stack.extend(node)
        elif dataclasses.is_dataclass(node) and not isinstance(node, ast.Span):
            yield node.span
            stack.extend(getattr(node, f.name) for f in dataclasses.fields(node))


class _Printer:
    def __init__(self, module: ast.Module) -> None:
        self.module = module
        self.lines: list[_Line] = []
        code_lines = set()
        for span in _spans(module.automations):
            code_lines.update((span.line, span.end_line))
        comments = sorted(module.comments, key=lambda c: c.span.start)
        self.trailing = [c for c in comments if c.span.line in code_lines]
        self.pending = [c for c in comments if c.span.line not in code_lines]
        # End line of the previous item of the sequence being printed: None at the start
        # of a sequence (no blank line before its first item).
        self.last_end: float | None = None

    def run(self) -> str:
        for automation in self.module.automations:
            self.item(automation.span.line, 0)
            self.automation(automation)
            self.last_end = float("-inf")  # always one blank line after an automation
        self.flush(float("inf"), 0)
        self.attach_trailing()
        return "".join(line.text.rstrip() + "\n" for line in self.lines)

    def emit(self, indent: int, text: str, first: int | None, last: int | None = None) -> None:
        self.lines.append(_Line(INDENT * indent + text, first, first if last is None else last))

    def item(self, line: int, indent: int) -> None:
        """Before a statement or comment of a sequence: its comments, then a blank line
        where the source had one."""
        self.flush(line, indent)
        self.paragraph_break(line)

    def paragraph_break(self, line: int) -> None:
        """One blank line if the source had any between the previous item and ``line``."""
        if self.last_end is not None and line - self.last_end > 1:
            self.lines.append(_Line(""))

    def flush(self, before: float, indent: int) -> None:
        """Print the own-line comments that come before source line ``before``."""
        while self.pending and self.pending[0].span.line < before:
            comment = self.pending.pop(0)
            self.paragraph_break(comment.span.line)
            self.lines.append(_Line(INDENT * indent + "#" + comment.text))
            self.last_end = comment.span.line

    def attach_trailing(self) -> None:
        # Code lines come out in source order, so the lines that start at or before a
        # comment's line are a prefix, found by bisection; the line the comment belongs to
        # is found walking back from the end of that prefix, not by a scan of every line
        # for every comment (quadratic: 3 s for 4,000 automations).
        code = [ln for ln in self.lines if ln.first is not None]
        firsts = [ln.first for ln in code]
        for comment in self.trailing:
            at = comment.span.line
            k = bisect.bisect_right(firsts, at)
            target = next((code[i] for i in range(k - 1, -1, -1) if at <= code[i].last), None)
            if target is None:
                target = code[k - 1] if k else self.lines[-1]
            target.text += "  #" + comment.text

    def automation(self, node: ast.Automation) -> None:
        self.emit(0, f"automation {quote(node.name)} {{", node.span.line)
        if node.description is not None:
            self.emit(1, f"description {quote(node.description)}", None)
        self.last_end = None
        trigger = node.trigger
        self.flush(trigger.span.line, 1)
        self.emit(1, "when " + _call(trigger.name, trigger.arguments), *_lines(trigger))
        self.body(node.body, 1, node.span.end_line)
        self.emit(0, "}", node.span.end_line)

    def body(self, steps: tuple[ast.Step, ...], indent: int, closing_line: int) -> None:
        self.last_end = None
        for step in steps:
            self.item(step.span.line, indent)
            _STEPS[type(step)](self, step, indent)
            self.last_end = step.span.end_line
        self.flush(closing_line, indent)

    def action(self, node: ast.Action, indent: int) -> None:
        self.emit(indent, _call(node.name, node.arguments), *_lines(node))

    def wait(self, node: ast.Wait, indent: int) -> None:
        self.emit(indent, "wait " + expression(node.duration), *_lines(node))

    def if_(self, node: ast.If, indent: int) -> None:
        previous = None
        for branch in node.branches:
            head = f"if {expression(branch.condition)} {{"
            if previous is None:
                self.emit(indent, head, branch.span.line, branch.condition.span.end_line)
            else:
                end = branch.condition.span.end_line
                self.emit(indent, "} else " + head, previous.span.end_line, end)
            self.body(branch.body, indent + 1, branch.span.end_line)
            previous = branch
        if node.else_body is not None:
            self.emit(indent, "} else {", previous.span.end_line)
            self.body(node.else_body, indent + 1, node.span.end_line)
        self.emit(indent, "}", node.span.end_line)


def _lines(node) -> tuple[int, int]:
    return node.span.line, node.span.end_line


_STEPS: dict[type, Callable[[_Printer, ast.Step, int], None]] = {
    ast.Action: _Printer.action,
    ast.Wait: _Printer.wait,
    ast.If: _Printer.if_,
}
