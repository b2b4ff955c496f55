"""Lark's syntax errors, told in the language of the person who wrote the rule.

Common mistakes get messages of their own (an unclosed string, a missing brace, `=`
where `==` was meant, a step before the trigger, a missing comma or colon); everything
else says what was found and what could have come instead.
"""

from __future__ import annotations

import re

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from dsl.ast import Span
from dsl.diagnostics import Diagnostic, error

TOKEN_NAMES = {
    "AUTOMATION": "`automation`",
    "DESCRIPTION": "`description`",
    "WHEN": "`when`",
    "WAIT": "`wait`",
    "IF": "`if`",
    "ELSE": "`else`",
    "AND": "`and`",
    "OR": "`or`",
    "NOT": "`not`",
    "IN": "`in`",
    "TRUE": "`true`",
    "FALSE": "`false`",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "COMMA": "`,`",
    "COLON": "`:`",
    "DOT": "`.`",
    "COMPARE_OP": "a comparison (`==`, `!=`, `<`, `<=`, `>`, `>=`)",
    "ARGNAME": "an argument (`name: value`)",
    "NAME": "a name",
    "STRING": 'a string ("...")',
    "MONEY": "an amount of money ($10)",
    "PERCENT": "a percentage (20%)",
    "DURATION": "a duration (2d, 48h, 30m)",
    "NUMBER": "a number",
    "$END": "the end of the file",
}

_VALUE_TOKENS = {"STRING", "MONEY", "PERCENT", "DURATION", "NUMBER", "TRUE", "FALSE", "LSQB"}
# Errors after which the braces no longer match: the parser drops the whole automation.
UNCLOSED_BLOCK = "syntax/unclosed-block"

_STEP_HINT = 'a step is an action (`send_message text: "..."`), `wait 2d`, or `if ... { }`'


def _name(terminal: str) -> str:
    return TOKEN_NAMES.get(terminal.lstrip("_"), terminal)


def _expected(expected) -> str:
    names = sorted({_name(t) for t in expected})
    if len(names) > 6:
        names = [*names[:6], "..."]
    return ", ".join(names)


def _span_at(text: str, line: int, column: int, width: int = 1) -> Span:
    start = _offset(text, line, column)
    return Span(line, column, line, column + width, start, start + width)


def _offset(text: str, line: int, column: int) -> int:
    offset = 0
    for _ in range(line - 1):
        offset = text.find("\n", offset) + 1
    return offset + column - 1


def _brace_openers(text: str, before: int) -> list[tuple[int, int, str]]:
    """The braces still open at offset ``before``: (line, column, what opened them)."""
    stack: list[tuple[int, int, str]] = []
    line, line_start = 1, 0
    for m in re.finditer(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|[{}\n]', text[:before]):
        ch = m.group(0)
        if ch == "\n":
            line, line_start = line + 1, m.end()
        elif ch == "{":
            opener = text[line_start : m.start()].strip() or "{"
            stack.append((line, m.start() - line_start + 1, opener))
        elif ch == "}" and stack:
            stack.pop()
    return stack


def describe_syntax_error(exc: UnexpectedInput, text: str) -> Diagnostic:
    if isinstance(exc, UnexpectedCharacters):
        return _unexpected_character(exc, text)
    if isinstance(exc, UnexpectedToken):
        return _unexpected_token(exc, text)
    line = text.count("\n") + 1
    return error("unexpected end of the file", _span_at(text, line, 1))


def _unexpected_character(exc: UnexpectedCharacters, text: str) -> Diagnostic:
    ch = exc.char
    span = _span_at(text, exc.line, exc.column)
    rest = text[exc.pos_in_stream :].split("\n", 1)[0]
    allowed = exc.allowed or set()
    if ch == '"':
        return error(
            "unclosed string",
            _span_at(text, exc.line, exc.column, len(rest)),
            hint='end the string with `"` on the same line; write \\n for a line break',
            code="syntax/unclosed-string",
        )
    if ch == "=" and not rest.startswith("=="):
        return error(
            "`=` is not an operator here; compare with `==`",
            span,
            hint="write `==` to compare, as in `fan.total_spent == 10`; "
            'arguments take a colon, as in `tag: "vip"`',
            code="syntax/single-equals",
        )
    if ch.isdigit() and "DURATION" in allowed:
        word = re.match(r"\w+", rest)
        return error(
            f"`{word.group(0) if word else ch}` is not a duration",
            _span_at(text, exc.line, exc.column, len(word.group(0)) if word else 1),
            hint="expected a duration like 30m, 48h, 2d or 1w",
            code="syntax/duration",
        )
    if ch.isdigit():
        word = re.match(r"[\w.%]+", rest)
        token = word.group(0) if word else ch
        return error(
            f"`{token}` is not a number, amount, percentage or duration",
            _span_at(text, exc.line, exc.column, len(token)),
            hint="write numbers as 10 or 9.99, money as $10, percentages as 20%, "
            "durations as 30m, 48h, 2d or 1w",
            code="syntax/literal",
        )
    if ch.isalpha() and ch.isupper():
        word = re.match(r"\w+", rest)
        return error(
            f"`{word.group(0)}`: names are written in lower case",
            _span_at(text, exc.line, exc.column, len(word.group(0))),
            hint=f"write `{word.group(0).lower()}`",
            code="syntax/case",
        )
    if ch == "'":
        return error(
            "strings use double quotes",
            span,
            hint="write \"text\" instead of 'text'",
            code="syntax/quote",
        )
    return error(
        f"unexpected character `{ch}`",
        span,
        hint=f"expected {_expected(allowed)}" if allowed else None,
        code="syntax/character",
    )


def _unexpected_token(exc: UnexpectedToken, text: str) -> Diagnostic:
    tok: Token = exc.token
    expected = {t.lstrip("_") for t in exc.expected}
    kind = tok.type.lstrip("_")
    found = "the end of the file" if kind == "$END" else f"`{tok.value}`"
    span = (
        _span_at(text, text.count("\n") + 1, len(text) - text.rfind("\n"))
        if kind == "$END"
        else Span(tok.line, tok.column, tok.end_line, tok.end_column, tok.start_pos, tok.end_pos)
    )
    previous = _previous_token(exc)

    runs_into_next = kind == "AUTOMATION" or (
        isinstance(previous, Token) and previous.value == "automation" and tok.line == previous.line
    )
    if (kind == "$END" or runs_into_next) and "RBRACE" in expected | _after_step(previous):
        at = len(text) if kind == "$END" else (previous if kind != "AUTOMATION" else tok).start_pos
        openers = _brace_openers(text, at)
        if openers:
            line, column, opener = openers[-1]
            return error(
                f"missing `}}`: `{opener}` on line {line} is never closed",
                span if kind == "$END" else _span_at(text, line, column),
                hint=f"add `}}` to close the block opened on line {line}",
                code=UNCLOSED_BLOCK,
            )
    if "WHEN" in expected and kind in ("NAME", "WAIT", "IF", "ARGNAME"):
        return error(
            f"{found} comes before the trigger",
            span,
            hint="an automation starts with its trigger, as in `when new_subscriber`, "
            "then its steps",
            code="syntax/trigger-first",
        )
    if "AUTOMATION" in expected and kind != "AUTOMATION" and "RBRACE" not in expected:
        hint = 'a file holds automations: automation "Name" { when ... }'
        if kind == "RBRACE":
            hint = "this `}` closes nothing; remove it"
        return error(f"expected `automation`, found {found}", span, hint=hint, code="syntax/top")
    if kind == "COLON" and isinstance(previous, Token) and previous.type == "NAME":
        return error(
            f"missing `,` before the argument `{previous.value}`",
            Span(
                previous.line,
                previous.column,
                previous.end_line,
                previous.end_column,
                previous.start_pos,
                previous.end_pos,
            ),
            hint="separate an action's arguments with commas: "
            '`send_message text: "Hi", delay: 2h`',
            code="syntax/missing-comma",
        )
    if kind in _VALUE_TOKENS and isinstance(previous, Token) and previous.type == "NAME":
        return error(
            f"missing `:` after `{previous.value}`",
            span,
            hint=f"arguments are written `name: value`, as in `{previous.value}: {tok.value}`",
            code="syntax/missing-colon",
        )
    if "DURATION" in expected and expected <= {"DURATION"}:
        return error(
            f"expected a duration after `wait`, found {found}",
            span,
            hint="expected a duration like 30m, 48h, 2d or 1w",
            code="syntax/duration",
        )
    if "LBRACE" in expected and "AND" in expected:
        return error(
            f"expected `{{` after the condition, found {found}",
            span,
            hint="a branch reads `if condition { steps }`",
            code=UNCLOSED_BLOCK,
        )
    if (
        "STRING" in expected
        and previous is not None
        and getattr(previous, "type", "")
        in (
            "AUTOMATION",
            "DESCRIPTION",
        )
    ):
        return error(
            f"expected a quoted name after `{previous.value}`, found {found}",
            span,
            hint=f'write `{previous.value} "Welcome new fans"`',
            code="syntax/name",
        )
    if "RBRACE" in expected and kind not in _VALUE_TOKENS:
        return error(f"expected a step, found {found}", span, hint=_STEP_HINT, code="syntax/step")
    return error(
        f"unexpected {found}",
        span,
        hint=f"expected {_expected(expected)}",
        code="syntax/token",
    )


def _after_step(previous) -> set[str]:
    """A name parsed as an action can be followed by a block's `}`."""
    return {"RBRACE"} if isinstance(previous, Token) and previous.type == "NAME" else set()


def _previous_token(exc: UnexpectedToken):
    parser = exc.interactive_parser
    if parser is None:
        return None
    stack = parser.parser_state.value_stack
    return stack[-1] if stack else None
