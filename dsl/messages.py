"""Lark's syntax errors, told in the language of the person who wrote the rule.

Each common mistake has a rule: a small function that recognises it from the parser's
state and the text and returns a named message, or None to let the next rule try. Rules
run in order, most specific first; what no rule recognises is reported as "unexpected X"
with what could have come instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from dsl import ast
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

# Codes of errors after which the braces no longer match: the parser then drops the whole
# automation instead of one line, so one mistake is not reported again as others.
UNCLOSED_BLOCK = "syntax/unclosed-block"
MISSING_BRACE = "syntax/missing-brace"
MISSING_TRIGGER = "syntax/missing-trigger"
RECOVER_BY_AUTOMATION = frozenset({UNCLOSED_BLOCK, MISSING_BRACE, MISSING_TRIGGER})

_STEP_HINT = 'a step is an action (`send_message text: "..."`), `wait 2d`, or `if ... { }`'
_TRIGGER_EXAMPLE = "`when new_subscriber`"
_HEADER = re.compile(r"^[ \t]*automation\b", re.MULTILINE)
_WHEN_LINE = re.compile(r"^[ \t]*when\b", re.MULTILINE)
_STRING_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*')

# Words from other languages that people and LLMs write by habit: (message, hint).
_FOREIGN_WORDS = {
    "elif": ("`elif` is written `else if`", "write `} else if condition {`"),
    "elsif": ("`elsif` is written `else if`", "write `} else if condition {`"),
    "elseif": ("`elseif` is written `else if`", "write `} else if condition {`"),
    "then": ("`then` is not needed after a condition", "a branch reads `if condition {`"),
    "is": (
        "`is` is not an operator; compare with `==`",
        "write `==` to compare, or `!=` for “is not”",
    ),
    "equals": ("`equals` is not an operator; compare with `==`", "write `==` to compare"),
    "contains": (
        "`contains` is not an operator; use `in`",
        'write the item first: `"vip" in fan.tags`',
    ),
}

# Unit words people spell out, and the letter a duration uses instead.
_DURATION_UNITS = {
    **dict.fromkeys(("sec", "secs", "second", "seconds"), "s"),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), "m"),
    **dict.fromkeys(("hr", "hrs", "hour", "hours"), "h"),
    **dict.fromkeys(("day", "days"), "d"),
    **dict.fromkeys(("wk", "wks", "week", "weeks"), "w"),
}
_DURATION_HINT = "expected a duration like 30m, 48h, 2d or 1w"


def _duration_hint(amount: str, unit: str) -> str:
    """`write 2d` for `2 days` or `2days`; the general hint for anything else."""
    letter = _DURATION_UNITS.get(unit.lower())
    return f"write `{amount}{letter}`" if letter and amount.isdigit() else _DURATION_HINT


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


def _line(text: str, line: int) -> str:
    start = _offset(text, line, 1)
    end = text.find("\n", start)
    return text[start:] if end == -1 else text[start:end]


def _token_span(tok: Token) -> Span:
    return Span(tok.line, tok.column, tok.end_line, tok.end_column, tok.start_pos, tok.end_pos)


def _end_of(item) -> Span | None:
    """Where a value on the parser's stack ends, as a one-character span just after it."""
    if isinstance(item, Tree):
        return _end_of(item.children[-1]) if item.children else None
    span = _token_span(item) if isinstance(item, Token) else getattr(item, "span", None)
    if span is None:
        return None
    return Span(
        span.end_line, span.end_column, span.end_line, span.end_column + 1, span.end, span.end + 1
    )


def _last_child(item):
    """The last finished node inside the parser's helper trees (a body's steps so far)."""
    while isinstance(item, Tree) and item.children:
        item = item.children[-1]
    return item


def _is_token(item, *types: str) -> bool:
    return isinstance(item, Token) and item.type in types


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


# --- Keywords where a step was expected ---------------------------------------------


def misplaced_keyword(tok: Token) -> Diagnostic | None:
    """A keyword written where a step goes, which the lexer then read as an action name."""
    span = _token_span(tok)
    if tok.value == "when":
        return error(
            "a second `when`: an automation has exactly one trigger",
            span,
            hint="write one automation per trigger",
            code="syntax/second-trigger",
        )
    if tok.value == "else":
        return error(
            "`else` without an `if`",
            span,
            hint="`else` comes right after the `}` of an `if` block: `} else {`",
            code="syntax/else",
        )
    if tok.value == "description":
        return error(
            "`description` comes before `when`",
            span,
            hint='write `description "..."` on the line after `automation "Name" {`',
            code="syntax/description",
        )
    if tok.value in ("and", "or", "not", "in", "true", "false"):
        return error(
            f"`{tok.value}` is a keyword, not an action",
            span,
            hint=_STEP_HINT,
            code="syntax/keyword",
        )
    return None


def trigger_name_on_next_line(when: Token) -> Diagnostic:
    return error(
        "`when` needs a trigger name on the same line",
        _token_span(when),
        hint=f"write the trigger right after `when`, as in {_TRIGGER_EXAMPLE}",
        code=MISSING_TRIGGER,
    )


# --- Unexpected characters ---------------------------------------------------------


def _unexpected_character(exc: UnexpectedCharacters, text: str) -> Diagnostic:
    rest = text[exc.pos_in_stream :].split("\n", 1)[0]
    before = _line(text, exc.line)[: exc.column - 1]
    for rule in _CHARACTER_RULES:
        diagnostic = rule(exc, text, rest, before)
        if diagnostic is not None:
            return diagnostic
    allowed = exc.allowed or set()
    return error(
        f"unexpected character `{exc.char}`",
        _span_at(text, exc.line, exc.column),
        hint=f"expected {_expected(allowed)}" if allowed else None,
        code="syntax/character",
    )


def _unclosed_string(exc, text, rest, before):
    if exc.char != '"':
        return None
    return error(
        "unclosed string",
        _span_at(text, exc.line, exc.column, len(rest)),
        hint='end the string with `"` on the same line; write \\n for a line break',
        code="syntax/unclosed-string",
    )


def _single_equals(exc, text, rest, before):
    if exc.char != "=" or rest.startswith("=="):
        return None
    span = _span_at(text, exc.line, exc.column)
    word = re.search(r"([a-z_]\w*)\s*$", before)
    if "COMPARE_OP" not in (exc.allowed or ()) and word:
        return error(
            "`=` does not give an argument its value; write `:`",
            span,
            hint=f'write `{word.group(1)}: ...`, as in `tag: "vip"`',
            code="syntax/argument-equals",
        )
    return error(
        "`=` is not an operator here; compare with `==`",
        span,
        hint="write `==` to compare, as in `fan.total_spent == 10`; "
        'arguments take a colon, as in `tag: "vip"`',
        code="syntax/single-equals",
    )


_SYMBOL_WORDS = {"&&": "and", "||": "or", "!": "not"}


def _symbol_operator(exc, text, rest, before):
    symbol = next((s for s in _SYMBOL_WORDS if rest.startswith(s)), None)
    if symbol is None or rest.startswith("!="):
        return None
    word = _SYMBOL_WORDS[symbol]
    return error(
        f"`{symbol}` is written `{word}`",
        _span_at(text, exc.line, exc.column, len(symbol)),
        hint="conditions use the words `and`, `or` and `not`, as in "
        '`fan.total_spent > $20 and not ("vip" in fan.tags)`',
        code="syntax/operator-word",
    )


def _foreign_punctuation(exc, text, rest, before):
    span = _span_at(text, exc.line, exc.column)
    if rest.startswith("//"):
        return error(
            "comments start with `#`",
            _span_at(text, exc.line, exc.column, 2),
            hint="write `# comment`",
            code="syntax/comment",
        )
    if rest.startswith("```"):
        return error(
            "a Markdown code fence is not part of an automation",
            _span_at(text, exc.line, exc.column, len(rest.rstrip())),
            hint="remove the ``` lines around the automations",
            code="syntax/code-fence",
        )
    if exc.char == ";":
        return error(
            "`;` is not used in this language",
            span,
            hint="remove it; write each step on its own line",
            code="syntax/semicolon",
        )
    if exc.char == "+":
        return error(
            "there is no `+` in this language",
            span,
            hint='to put a value into a message, write it in the text: "Hi {{ fan.name }}"',
            code="syntax/plus",
        )
    return None


def _currency_after(exc, text, rest, before):
    amount = re.search(r"\d+(?:\.\d+)?$", before)
    if exc.char not in "$€£" or amount is None:
        return None
    width = len(amount.group(0))
    return error(
        "the currency sign goes before the amount",
        _span_at(text, exc.line, exc.column - width, width + 1),
        hint=f"write `{exc.char}{amount.group(0)}`",
        code="syntax/money",
    )


def _bad_number(exc, text, rest, before):
    if not exc.char.isdigit():
        return None
    if "DURATION" in (exc.allowed or ()):
        word = re.match(r"(\d+)(\w*)", rest)
        return error(
            f"`{word.group(0)}` is not a duration",
            _span_at(text, exc.line, exc.column, len(word.group(0))),
            hint=_duration_hint(word.group(1), word.group(2)),
            code="syntax/duration",
        )
    word = re.match(r"[\w.%]+", rest)
    token = word.group(0) if word else exc.char
    return error(
        f"`{token}` is not a number, amount, percentage or duration",
        _span_at(text, exc.line, exc.column, len(token)),
        hint="write numbers as 10 or 9.99, money as $10, percentages as 20%, "
        "durations as 30m, 48h, 2d or 1w",
        code="syntax/literal",
    )


def _capitals(exc, text, rest, before):
    if not (exc.char.isalpha() and exc.char.isupper()):
        return None
    word = re.match(r"\w+", rest).group(0)
    span = _span_at(text, exc.line, exc.column, len(word))
    if before.rstrip().endswith("automation"):
        return _unquoted_name("automation", f"`{word}`", span)
    return error(
        f"`{word}`: names are written in lower case",
        span,
        hint=f"write `{word.lower()}`",
        code="syntax/case",
    )


def _single_quote(exc, text, rest, before):
    if exc.char != "'":
        return None
    return error(
        "strings use double quotes",
        _span_at(text, exc.line, exc.column),
        hint="write \"text\" instead of 'text'",
        code="syntax/quote",
    )


_CHARACTER_RULES = (
    _unclosed_string,
    _single_equals,
    _symbol_operator,
    _foreign_punctuation,
    _currency_after,
    _bad_number,
    _capitals,
    _single_quote,
)


# --- Unexpected tokens -------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    """An unexpected token and what the parser knew when it met it."""

    text: str
    token: Token
    kind: str  # the token's terminal, without a leading `_`
    expected: frozenset[str]
    stack: tuple  # the parser's value stack: tokens and finished syntax-tree nodes
    span: Span
    found: str  # how the message names the token

    @property
    def previous(self):
        return self.stack[-1] if self.stack else None

    @property
    def before_previous(self):
        return self.stack[-2] if len(self.stack) > 1 else None


def _unexpected_token(exc: UnexpectedToken, text: str) -> Diagnostic:
    tok: Token = exc.token
    kind = tok.type.lstrip("_")
    at_end = kind == "$END"
    parser = exc.interactive_parser
    found = _Found(
        text=text,
        token=tok,
        kind=kind,
        expected=frozenset(t.lstrip("_") for t in exc.expected),
        stack=tuple(parser.parser_state.value_stack) if parser is not None else (),
        span=_span_at(text, text.count("\n") + 1, len(text) - text.rfind("\n"))
        if at_end
        else _token_span(tok),
        found="the end of the file" if at_end else f"`{tok.value}`",
    )
    for rule in _TOKEN_RULES:
        diagnostic = rule(found)
        if diagnostic is not None:
            return diagnostic
    if "RBRACE" in found.expected and kind not in _VALUE_TOKENS:
        return error(
            f"expected a step, found {found.found}", found.span, hint=_STEP_HINT, code="syntax/step"
        )
    return error(
        "unexpected end of the file" if at_end else f"unexpected {found.found}",
        found.span,
        hint=f"expected {_expected(found.expected)}",
        code="syntax/token",
    )


def _unclosed_block(f: _Found) -> Diagnostic | None:
    previous = f.previous
    runs_into_next = f.kind == "AUTOMATION" or (
        isinstance(previous, Token)
        and previous.value == "automation"
        and f.token.line == previous.line
    )
    if not (f.kind == "$END" or runs_into_next):
        return None
    if "RBRACE" not in f.expected and not _is_token(previous, "NAME"):
        return None
    if f.kind == "$END":
        at = len(f.text)
    else:
        at = (previous if f.kind != "AUTOMATION" else f.token).start_pos
    openers = _brace_openers(f.text, at)
    if not openers:
        return None
    line, column, opener = openers[-1]
    return error(
        f"missing `}}`: `{opener}` on line {line} is never closed",
        _span_at(f.text, line, column),
        hint=f"add `}}` to close the block opened on line {line}",
        code=UNCLOSED_BLOCK,
    )


def _trigger(f: _Found) -> Diagnostic | None:
    if _is_token(f.previous, "WHEN"):
        return error(
            "`when` needs a trigger name",
            _token_span(f.previous),
            hint=f"name what starts the automation, as in {_TRIGGER_EXAMPLE}",
            code=MISSING_TRIGGER,
        )
    if "WHEN" not in f.expected or f.kind == "$END":
        return None
    rest = f.text[f.token.start_pos :]
    header = _HEADER.search(rest)
    if _WHEN_LINE.search(rest, 0, header.start() if header else len(rest)):
        if f.kind not in ("NAME", "WAIT", "IF", "ARGNAME"):
            return None
        return error(
            f"{f.found} comes before the trigger",
            f.span,
            hint=f"an automation starts with its trigger, as in {_TRIGGER_EXAMPLE}, then its steps",
            code="syntax/trigger-first",
        )
    header = _open_automation(f.stack)
    if header is None:
        return None
    automation, name = header
    return error(
        f"automation {name.value} has no trigger",
        _token_span(automation).to(_token_span(name)),
        hint=f"start it with `when` and a trigger, as in {_TRIGGER_EXAMPLE}",
        code=MISSING_TRIGGER,
    )


def _open_automation(stack: tuple) -> tuple[Token, Token] | None:
    """The `automation` and name tokens of the automation being parsed, if any."""
    for i in range(len(stack) - 2, -1, -1):
        if _is_token(stack[i], "AUTOMATION"):
            return (stack[i], stack[i + 1]) if _is_token(stack[i + 1], "STRING") else None
    return None


def _top_level(f: _Found) -> Diagnostic | None:
    if "AUTOMATION" not in f.expected or f.kind == "AUTOMATION" or "RBRACE" in f.expected:
        return None
    hint = 'a file holds automations: automation "Name" { when ... }'
    if f.kind == "RBRACE":
        hint = "this `}` closes nothing; remove it"
    return error(f"expected `automation`, found {f.found}", f.span, hint=hint, code="syntax/top")


def _keyword_as_action(f: _Found) -> Diagnostic | None:
    if f.kind == "ELSE" and _is_token(f.before_previous, "ELSE"):
        return error(
            "a second `else`: the `else` branch comes last",
            f.span,
            hint="add branches before it with `} else if condition {`",
            code="syntax/else",
        )
    if f.kind == "ELSE":
        return misplaced_keyword(f.token)
    previous = f.previous
    if _is_token(previous, "NAME") and f.kind in ("STRING", "LBRACE", "NAME", "IF"):
        return misplaced_keyword(previous)
    return None


def _foreign_word(f: _Found) -> Diagnostic | None:
    if f.kind == "$END":
        return None
    line = _line(f.text, f.token.line)
    code = _STRING_OR_COMMENT.sub(lambda m: " " * len(m.group(0)), line)
    upto = f.token.column - 1 + len(f.token.value) if f.token.line == f.token.end_line else None
    for m in re.finditer(r"(?<![\w.])[a-z]+(?![\w.:])", code[:upto]):
        if m.group(0) in _FOREIGN_WORDS:
            message, hint = _FOREIGN_WORDS[m.group(0)]
            span = _span_at(f.text, f.token.line, m.start() + 1, len(m.group(0)))
            return error(message, span, hint=hint, code="syntax/foreign-word")
    return None


_OPENER_OF = {"RSQB": "LSQB", "RPAR": "LPAR", "RBRACE": "LBRACE"}


def _innermost_open(stack: tuple) -> Token | None:
    """The `[`, `(`, `{` or `if` (open until its `{`) that the parser is inside."""
    closed: list[str] = []
    for item in reversed(stack):
        if not isinstance(item, Token):
            continue
        if item.type in _OPENER_OF:
            closed.append(_OPENER_OF[item.type])
        elif item.type in ("LSQB", "LPAR", "LBRACE"):
            if not closed:
                return item
            if closed[-1] == item.type:
                closed.pop()
        elif item.type == "IF" and not closed:
            return item
    return None


def _in_condition(stack: tuple) -> bool:
    """True inside the condition of an `if` (after `if`, before its `{`)."""
    return _is_token(_innermost_open(stack), "IF")


def _condition(f: _Found) -> Diagnostic | None:
    if _is_token(f.previous, "IF"):
        after_else = _is_token(f.before_previous, "ELSE")
        return error(
            f"missing the condition after `{'else if' if after_else else 'if'}`",
            f.span,
            hint="write a condition, as in `if fan.total_spent > $10 {`"
            + ("; the last branch may be `} else {`" if after_else else ""),
            code="syntax/condition",
        )
    if "LBRACE" not in f.expected or not _in_condition(f.stack):
        return None
    end = _end_of(f.previous)
    if end is not None and (f.kind == "$END" or f.token.line > end.line):
        return error(
            "missing `{` after the condition",
            end,
            hint="a branch reads `if condition {`, then its steps, then `}`",
            code=MISSING_BRACE,
        )
    return error(
        f"expected `{{` after the condition, found {f.found}",
        f.span,
        hint="a branch reads `if condition { steps }`",
        code=MISSING_BRACE,
    )


def _chained_comparison(f: _Found) -> Diagnostic | None:
    compared = isinstance(f.previous, ast.Compare) or _is_token(
        f.before_previous, "COMPARE_OP", "IN"
    )
    if f.kind not in ("COMPARE_OP", "IN", "NOT") or not compared:
        return None
    return error(
        "comparisons cannot be chained",
        f.span,
        hint="join two comparisons with `and`, as in "
        "`fan.total_spent > $10 and fan.total_spent < $100`",
        code="syntax/chained-comparison",
    )


def _after_comma(f: _Found) -> Diagnostic | None:
    comma = f.previous
    if not _is_token(comma, "_COMMA", "COMMA") or not f.expected <= {"ARGNAME"}:
        return None
    if f.kind == "$END" or f.token.line > comma.line:
        return error(
            "trailing `,` after the last argument",
            _token_span(comma),
            hint="remove the `,`, or write the next argument after it (`name: value`)",
            code="syntax/trailing-comma",
        )
    return error(
        f"expected an argument after `,`, found {f.found}",
        f.span,
        hint='every argument has a name: `name: value`, as in `tag: "vip"`',
        code="syntax/argument",
    )


def _list(f: _Found) -> Diagnostic | None:
    opener = _innermost_open(f.stack)
    if "RSQB" not in f.expected or not _is_token(opener, "LSQB"):
        return None
    if f.kind in _VALUE_TOKENS | {"NAME"}:
        return error(
            "missing `,` between list items",
            f.span,
            hint='separate the items with commas: ["US", "CA"]',
            code="syntax/list-comma",
        )
    return error(
        "missing `]`: the list is never closed",
        _token_span(opener),
        hint='close the list with `]`, as in `["US", "CA"]`',
        code="syntax/unclosed-list",
    )


def _parenthesis(f: _Found) -> Diagnostic | None:
    opener = _innermost_open(f.stack)
    if "RPAR" not in f.expected or not _is_token(opener, "LPAR") or f.kind in _VALUE_TOKENS:
        return None
    return error(
        "missing `)`: the parenthesis is never closed",
        _token_span(opener),
        hint="close it with `)` where the grouped condition ends",
        code="syntax/unclosed-parenthesis",
    )


def _missing_value(f: _Found) -> Diagnostic | None:
    colon, name = f.previous, f.before_previous
    if not (_is_token(colon, "_COLON", "COLON") and _is_token(name, "ARGNAME")):
        return None
    return error(
        f"`{name.value}:` has no value",
        _token_span(name),
        hint=f'write its value after the colon, as in `{name.value}: "..."`',
        code="syntax/missing-value",
    )


def _bracketed_arguments(f: _Found) -> Diagnostic | None:
    name = f.previous
    if f.kind not in ("LBRACE", "LPAR") or not _is_token(name, "NAME"):
        return None
    after_when = _is_token(f.before_previous, "WHEN")
    if after_when and f.kind == "LBRACE":
        return error(
            f"no `{{` after the trigger: the steps follow `when {name.value}` directly",
            f.span,
            hint="remove this `{` and its `}`; the automation's braces hold the trigger "
            "and the steps",
            code=MISSING_TRIGGER,
        )
    closer = "}" if f.kind == "LBRACE" else ")"
    inner = _line(f.text, f.token.line)[f.token.column :]
    inner = inner[: inner.rfind(closer)] if closer in inner else ""
    # JSON habits: {"text": "Hi"} becomes text: "Hi".
    suggestion = re.sub(r'"([a-z_]\w*)"\s*:', r"\1:", inner).strip()
    brackets = "braces" if f.kind == "LBRACE" else "parentheses"
    return error(
        f"an action's arguments are not written in {brackets}",
        f.span,
        hint=f"write `{'when ' if after_when else ''}{name.value} "
        f"{suggestion or 'name: value, other: value'}`",
        code="syntax/arguments",
    )


def _missing_comma(f: _Found) -> Diagnostic | None:
    previous = f.previous
    if f.kind != "COLON" or not _is_token(previous, "NAME"):
        return None
    return error(
        f"missing `,` before the argument `{previous.value}`",
        _token_span(previous),
        hint='separate an action\'s arguments with commas: `send_message text: "Hi", delay: 2h`',
        code="syntax/missing-comma",
    )


def _missing_colon(f: _Found) -> Diagnostic | None:
    previous = f.previous
    if f.kind not in _VALUE_TOKENS or not _is_token(previous, "NAME"):
        return None
    step = _last_child(f.before_previous)
    if not (isinstance(step, ast.Action) and step.span.end_line == previous.line):
        # The name is the action's own: the value has no argument name at all.
        return error(
            f"missing the argument's name before {f.found}",
            f.span,
            hint=f"arguments are written `name: value`, as in `{previous.value} text: ...`",
            code="syntax/argument",
        )
    return error(
        f"missing `:` after `{previous.value}`",
        f.span,
        hint=f"arguments are written `name: value`, as in `{previous.value}: {f.token.value}`",
        code="syntax/missing-colon",
    )


def _duration(f: _Found) -> Diagnostic | None:
    if "DURATION" not in f.expected or not f.expected <= {"DURATION"}:
        return None
    word = re.match(r"[\w.]+", f.text[f.token.start_pos :]) if f.kind == "NUMBER" else None
    if word and word.group(0) != f.token.value:
        # A fraction such as 1.5h: the lexer only took its first digits as a number.
        return error(
            f"`{word.group(0)}` is not a duration",
            _span_at(f.text, f.token.line, f.token.column, len(word.group(0))),
            hint="a duration is a whole number and a unit, as in 90m, 48h, 2d or 1w",
            code="syntax/duration",
        )
    unit = re.match(r"[ \t]+([a-z]+)", f.text[f.token.end_pos :]) if word else None
    return error(
        f"expected a duration after `wait`, found {f.found}",
        f.span,
        hint=_duration_hint(f.token.value, unit.group(1)) if unit else _DURATION_HINT,
        code="syntax/duration",
    )


def _quoted_name(f: _Found) -> Diagnostic | None:
    previous = f.previous
    if "STRING" not in f.expected or not _is_token(previous, "AUTOMATION", "DESCRIPTION"):
        return None
    # Pointing at the keyword when the name is missing keeps recovery to that one line.
    on_next_line = f.kind == "$END" or f.token.line > previous.line
    return _unquoted_name(
        previous.value, f.found, _token_span(previous) if on_next_line else f.span
    )


def _header_brace(f: _Found) -> Diagnostic | None:
    if f.expected != {"LBRACE"} or not _is_token(f.before_previous, "AUTOMATION"):
        return None
    return error(
        "missing `{` after the automation's name",
        _end_of(f.previous),
        hint='an automation reads `automation "Name" {`, its trigger and steps, then `}`',
        code=MISSING_BRACE,
    )


def _unquoted_name(keyword: str, found: str, span: Span) -> Diagnostic:
    if keyword == "description":
        what, example = "text", "Say hi to every new fan"
    else:
        what, example = "name", "Welcome new fans"
    return error(
        f"expected a quoted {what} after `{keyword}`, found {found}",
        span,
        hint=f'write `{keyword} "{example}"`',
        code="syntax/name",
    )


_TOKEN_RULES = (
    _unclosed_block,
    _trigger,
    _top_level,
    _keyword_as_action,
    _foreign_word,
    _list,
    _parenthesis,
    _chained_comparison,
    _condition,
    _after_comma,
    _missing_value,
    _bracketed_arguments,
    _missing_comma,
    _missing_colon,
    _duration,
    _quoted_name,
    _header_brace,
)
