"""Text → syntax tree, with every syntax error reported at once.

The grammar lives in ``grammar.lark`` and is loaded once. Lark's LALR parser builds the
tree directly through :class:`AstBuilder` (no intermediate parse tree), so parsing costs
about as much as Lark's bare parse.

Error recovery: on a syntax error the parser records a diagnostic, repairs the mistake in
place when a fix of the same length exists (a name in capitals, single quotes, a damaged
trigger line) or else neutralises the offending line (or, when the damage is structural,
the whole automation) with spaces of the same length, so every other position stays put,
and parses again. Errors that are a
consequence of an earlier one on the same line are not reported twice.
"""

from __future__ import annotations

import re
from decimal import Decimal

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedEOF, UnexpectedInput, UnexpectedToken

from dsl import ast
from dsl.diagnostics import Diagnostic, error
from dsl.errors import DslError
from dsl.messages import (
    RECOVER_BY_AUTOMATION,
    describe_syntax_error,
    misplaced_keyword,
    trigger_name_on_next_line,
)
from dsl.templates import PLACEHOLDER

MAX_ERRORS = 50


class LiteralError(Exception):
    """A token that the grammar accepts but whose content is wrong (a bad escape)."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        self.diagnostic = diagnostic


def token_span(tok: Token) -> ast.Span:
    return ast.Span(tok.line, tok.column, tok.end_line, tok.end_column, tok.start_pos, tok.end_pos)


def _span_of(item) -> ast.Span:
    if isinstance(item, Token):
        return token_span(item)
    return item if isinstance(item, ast.Span) else item.span


def _cover(first, last) -> ast.Span:
    return _span_of(first).to(_span_of(last))


_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
_ESCAPE_RE = re.compile(r"\\(u\{[0-9a-fA-F]{1,6}\}|.)")


def decode_string(tok: Token) -> ast.String:
    """The string's value, escapes decoded, and its ``{{ placeholders }}`` — found in
    the decoded value (what renders), with spans in the source text."""
    raw = tok.value[1:-1]
    if "\\" in raw:
        value, ends = _unescape(tok, raw)
    else:
        value, ends = raw, None
    placeholders = tuple(_placeholders(tok, value, ends)) if "{{" in value else ()
    return ast.String(value, placeholders, token_span(tok))


def _unescape(tok: Token, raw: str) -> tuple[str, list[int]]:
    """The decoded text, and for each decoded character where it ends in ``raw``."""
    chars: list[str] = []
    ends: list[int] = []
    position = 0
    for m in _ESCAPE_RE.finditer(raw):
        for index in range(position, m.start()):
            chars.append(raw[index])
            ends.append(index + 1)
        chars.append(_escape(tok, m))
        ends.append(m.end())
        position = m.end()
    for index in range(position, len(raw)):
        chars.append(raw[index])
        ends.append(index + 1)
    return "".join(chars), ends


def _escape(tok: Token, m: re.Match) -> str:
    esc = m.group(1)
    if esc in _ESCAPES:
        return _ESCAPES[esc]
    if esc.startswith("u{"):
        code = int(esc[2:-1], 16)
        if code <= 0x10FFFF:
            return chr(code)
    column = tok.column + 1 + m.start()
    span = ast.Span(tok.line, column, tok.line, column + len(m.group(0)), 0, 0)
    raise LiteralError(
        error(
            f"unknown escape `{m.group(0)}` in a string",
            span,
            hint='use \\" \\\\ \\n \\t \\r or \\u{1F600}',
            code="syntax/escape",
        )
    )


def _raw_span(tok: Token, ends: list[int] | None, start: int, end: int) -> ast.Span:
    """The source span of ``value[start:end]``."""
    raw_start = start if ends is None else (ends[start - 1] if start else 0)
    raw_end = end if ends is None else ends[end - 1]
    column = tok.column + 1 + raw_start
    offset = tok.start_pos + 1 + raw_start
    width = raw_end - raw_start
    return ast.Span(tok.line, column, tok.line, column + width, offset, offset + width)


def _placeholders(tok: Token, value: str, ends: list[int] | None):
    end = 0
    for m in PLACEHOLDER.finditer(value):
        end = m.end()
        yield ast.Placeholder(m.group(1).strip(), _raw_span(tok, ends, m.start(), m.end()))
    opened = value.find("{{", end)
    if opened != -1:
        raise LiteralError(
            error(
                "unclosed placeholder `{{`",
                _raw_span(tok, ends, opened, opened + 2),
                hint="close it with `}}`, as in {{ fan.name }}",
                code="syntax/placeholder",
            )
        )


def _fold(op: str, children: list) -> ast.Expr:
    result = children[0]
    for right in children[1:]:
        result = ast.BoolOp(op, result, right, result.span.to(right.span))
    return result


class AstBuilder(Transformer):
    """Lark callbacks, one per grammar rule, that build :mod:`dsl.ast` nodes."""

    def start(self, c):
        if not c:
            return ast.Module(())
        return ast.Module(tuple(c), span=c[0].span.to(c[-1].span))

    def expression(self, c):
        return c[0]

    def automation(self, c):
        name = decode_string(c[1]).value
        description = None
        i = 3
        if isinstance(c[i], ast.String):
            description = c[i].value
            i += 1
        trigger = c[i]
        body = tuple(c[i + 1 : -1])
        return ast.Automation(name, trigger, body, description, _cover(c[0], c[-1]))

    def description(self, c):
        return decode_string(c[1])

    def trigger(self, c):
        if c[1].line != c[0].line:
            # Newlines are not significant, so `when` alone would take the first step's
            # name as the trigger's: the name must share the line.
            raise LiteralError(trigger_name_on_next_line(c[0]))
        args = c[2] if len(c) > 2 else ()
        return ast.Trigger(c[1].value, args, _cover(c[0], args[-1] if args else c[1]))

    def action(self, c):
        # Where a step goes, the lexer reads keywords such as `when` or `else` as names.
        misplaced = misplaced_keyword(c[0])
        if misplaced is not None:
            raise LiteralError(misplaced)
        args = c[1] if len(c) > 1 else ()
        return ast.Action(c[0].value, args, _cover(c[0], args[-1] if args else c[0]))

    def arguments(self, c):
        return tuple(c)

    def argument(self, c):
        return ast.Argument(c[0].value, c[1], _cover(c[0], c[1]))

    def wait(self, c):
        return ast.Wait(self.duration([c[1]]), _cover(c[0], c[1]))

    def if_chain(self, c):
        branches = [ast.Branch(c[1], c[2][0], _cover(c[0], c[2][1]))]
        else_body = None
        end = branches[0].span
        for part in c[3:]:
            if isinstance(part, ast.Branch):
                branches.append(part)
                end = part.span
            else:
                else_body, end = part
        return ast.If(tuple(branches), else_body, branches[0].span.to(end))

    def else_if(self, c):
        return ast.Branch(c[2], c[3][0], _cover(c[0], c[3][1]))

    def else_block(self, c):
        return c[1]

    def block(self, c):
        return tuple(c[1:-1]), token_span(c[-1])

    def or_expr(self, c):
        return _fold("or", c)

    def and_expr(self, c):
        return _fold("and", c)

    def negation(self, c):
        return ast.Not(c[1], _cover(c[0], c[1]))

    def compare(self, c):
        return ast.Compare(c[1].value, c[0], c[2], _cover(c[0], c[2]))

    def contains(self, c):
        return ast.Compare("in", c[0], c[2], _cover(c[0], c[2]))

    def not_contains(self, c):
        return ast.Compare("not in", c[0], c[3], _cover(c[0], c[3]))

    def group(self, c):
        return c[1]

    def field(self, c):
        return ast.Field(tuple(t.value for t in c), _cover(c[0], c[-1]))

    def list(self, c):
        items = tuple(item for item in c[1:-1] if item is not None)
        return ast.ListExpr(items, _cover(c[0], c[-1]))

    def string(self, c):
        return decode_string(c[0])

    def money(self, c):
        tok = c[0]
        currency = {"$": "USD", "€": "EUR", "£": "GBP"}[tok.value[0]]
        return ast.Money(Decimal(tok.value[1:]), currency, token_span(tok))

    def percent(self, c):
        return ast.Percent(Decimal(c[0].value[:-1]), token_span(c[0]))

    def duration(self, c):
        tok = c[0]
        return ast.Duration(int(tok.value[:-1]), tok.value[-1], token_span(tok))

    def number(self, c):
        return ast.Number(Decimal(c[0].value), token_span(c[0]))

    def true(self, c):
        return ast.Boolean(True, token_span(c[0]))

    def false(self, c):
        return ast.Boolean(False, token_span(c[0]))


_lark = Lark.open(
    "grammar.lark",
    rel_to=__file__,
    parser="lalr",
    lexer="contextual",
    start=["start", "expression"],
    transformer=AstBuilder(),
    maybe_placeholders=True,
)

# The reserved words: terminals that are a whole lower-case word (`/when\b/`).
KEYWORDS = frozenset(
    m.group(1)
    for terminal in _lark.terminals
    if (m := re.fullmatch(r"([a-z]+)\\b", terminal.pattern.value))
)

# Strings and comments, in the order they appear, for finding comments and braces
# without being fooled by a `#` or a `{` inside a string.
_STRING_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|"[^\n]*|#[^\n]*')
_HEADER = re.compile(r"^[ \t]*automation\b", re.MULTILINE)


def grammar_text() -> str:
    """The grammar, as Lark reads it (for documentation and the AI prompt)."""
    from importlib.resources import files

    return files("dsl").joinpath("grammar.lark").read_text(encoding="utf-8")


def parse(text: str, filename: str = "<text>") -> ast.Module:
    """Parse automation text. Raises :class:`DslError` with every syntax error found."""
    module, diagnostics = parse_with_diagnostics(text)
    if module is None:
        raise DslError(diagnostics, text, filename)
    return module


def parse_expression(text: str) -> ast.Expr:
    """Parse a condition on its own, such as ``fan.total_spent > $20``."""
    try:
        return _lark.parse(text, start="expression")
    except (UnexpectedInput, LiteralError) as exc:
        diagnostic = (
            exc.diagnostic if isinstance(exc, LiteralError) else describe_syntax_error(exc, text)
        )
        raise DslError([diagnostic], text, "<condition>") from None


def parse_with_diagnostics(text: str) -> tuple[ast.Module | None, list[Diagnostic]]:
    """Parse text; the module is None when there is any syntax error."""
    diagnostics: list[Diagnostic] = []
    reported_lines: set[int] = set()
    masked = text
    while True:
        try:
            module = _lark.parse(masked, start="start")
        except (UnexpectedInput, LiteralError) as exc:
            diagnostic = (
                exc.diagnostic
                if isinstance(exc, LiteralError)
                else describe_syntax_error(exc, masked)
            )
            line = diagnostic.span.line
            if line not in reported_lines:
                reported_lines.add(line)
                diagnostics.append(diagnostic)
            structural = diagnostic.code in RECOVER_BY_AUTOMATION or _is_structural(exc)
            recovered = _repair(masked, diagnostic)
            if recovered in (None, masked):
                recovered = _neutralise(masked, diagnostic.span, structural)
            if recovered == masked or len(diagnostics) >= MAX_ERRORS:
                return None, diagnostics
            masked = recovered
            continue
        diagnostics.extend(_too_deep(module, text))
        if diagnostics:
            return None, diagnostics
        return _with_comments(module, text), diagnostics


# Every later stage walks the tree recursively; nothing a person writes nests this deep.
MAX_DEPTH = 60


def _too_deep(module: ast.Module, text: str) -> list[Diagnostic]:
    """An error for each automation nested deeper than MAX_DEPTH (found without
    recursion, since recursion is what such a tree would break)."""
    problems = []
    for automation in module.automations:
        if _nesting_bound(text[automation.span.start : automation.span.end]) <= MAX_DEPTH:
            continue  # cannot be that deep: skip the walk
        stack = [(automation, 0)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_DEPTH:
                problems.append(
                    error(
                        f"nested more than {MAX_DEPTH} levels deep",
                        node.span,
                        hint="split it into simpler conditions or branches; for many "
                        "alternatives use `in [...]`",
                        code="syntax/too-deep",
                    )
                )
                break
            stack.extend((child, depth + 1) for child in _children(node))
    return problems


def _nesting_bound(text: str) -> int:
    """More than the depth of any tree this text parses to (each level of nesting
    needs one of these words or brackets, plus a few for the statement itself)."""
    words = text.count("not") + text.count("and") + text.count("or") + text.count("if")
    return 4 + words + text.count("(") + text.count("[") + text.count("{")


def _children(node) -> list:
    children = []
    for name in getattr(node, "__dataclass_fields__", ()):
        value = getattr(node, name)
        if isinstance(value, tuple):
            children.extend(v for v in value if hasattr(v, "__dataclass_fields__"))
        elif hasattr(value, "__dataclass_fields__") and not isinstance(value, ast.Span):
            children.append(value)
    return children


def _with_comments(module: ast.Module, text: str) -> ast.Module:
    if "#" not in text:
        return module
    comments = []
    # Lines are counted from the previous comment on, not from the start of the text for
    # every comment, which made this quadratic in the length of the file.
    line, line_start, counted_to = 1, 0, 0
    for m in _STRING_OR_COMMENT.finditer(text):
        if m.group(0).startswith("#"):
            start, end = m.span()
            newlines = text.count("\n", counted_to, start)
            if newlines:
                line += newlines
                line_start = text.rfind("\n", counted_to, start) + 1
            counted_to = start
            column = start - line_start + 1
            span = ast.Span(line, column, line, column + (end - start), start, end)
            comments.append(ast.Comment(m.group(0)[1:].rstrip(), span))
    return ast.Module(module.automations, tuple(comments), module.span)


def _is_structural(exc: Exception) -> bool:
    """Errors that mean the braces are off: recover by dropping a whole automation."""
    if isinstance(exc, UnexpectedEOF):
        return True
    if isinstance(exc, UnexpectedToken):
        return exc.token.type in ("$END", "AUTOMATION")
    return False


def _repair(text: str, diagnostic: Diagnostic) -> str | None:
    """The text with a mistake fixed in place when the fix keeps every length (a name in
    capitals, a string in single quotes), so the rest of the line is still checked."""
    span = diagnostic.span
    start = _line_offset(text, span.line) + span.column - 1
    if diagnostic.code == "syntax/case":
        end = start + span.end_column - span.column
        return text[:start] + text[start:end].lower() + text[end:]
    if diagnostic.code not in _KEEP_OUT_OF_TRIGGER_REPAIR:
        trigger = _trigger_stub(text, span.line)
        if trigger is not None:
            return trigger
    if diagnostic.code == "syntax/quote":
        quoted = re.compile(r"'[^'\"\\\n]*'").match(text, start)
        if quoted:
            return text[:start] + '"' + quoted.group(0)[1:-1] + '"' + text[quoted.end() :]
    return None


# A damaged trigger line becomes `when _`, so the automation keeps a trigger and its steps
# are still checked; not when the `when` itself is the mistake.
_KEEP_OUT_OF_TRIGGER_REPAIR = RECOVER_BY_AUTOMATION | {"syntax/second-trigger"}
_TRIGGER_LINE = re.compile(r"([ \t]*)when[ \t]+[^{}\n]*")


def _trigger_stub(text: str, line: int) -> str | None:
    start = _line_offset(text, line)
    end = text.find("\n", start)
    end = len(text) if end == -1 else end
    m = _TRIGGER_LINE.match(text, start)
    if m is None or m.end() != end:
        return None
    stub = m.group(1) + "when _"
    return text[:start] + stub + " " * (end - start - len(stub)) + text[end:]


def _neutralise(text: str, span: ast.Span, structural: bool) -> str:
    """Replace the damaged part of ``text`` by spaces (same length, same line breaks)."""
    line_start = _line_offset(text, span.line)
    line_end = text.find("\n", line_start)
    line_end = len(text) if line_end == -1 else line_end
    if not structural:
        line = text[line_start:line_end]
        replacement = _neutral_line(line)
        if replacement is not None and replacement != line:
            return text[:line_start] + replacement + text[line_end:]
    start, end = _automation_region(text, line_start)
    return text[:start] + _blank(text[start:end]) + text[end:]


def _line_offset(text: str, line: int) -> int:
    offset = 0
    for _ in range(line - 1):
        offset = text.find("\n", offset) + 1
        if offset == 0:
            return len(text)
    return offset


def _blank(chunk: str) -> str:
    return re.sub(r"[^\n]", " ", chunk)


def _neutral_line(line: str) -> str | None:
    """A line of the same length and the same brace shape that parses as a statement,
    or None when no such line fits (the caller then drops the whole automation)."""
    code = _STRING_OR_COMMENT.sub("", line).strip()
    if code.startswith("automation"):
        return None
    closes_first = code.startswith("}")
    opens_last = code.endswith("{")
    depth = code.count("{") - code.count("}")
    if depth == 0 and not closes_first and not opens_last:
        return _blank(line)
    if closes_first and opens_last and depth == 0:
        stub = "} else if true {"
    elif opens_last and depth == 1 and not closes_first:
        stub = "if true {"
    elif closes_first and depth == -1 and not opens_last:
        stub = "}"
    else:
        return None
    if len(stub) > len(line):
        return None
    return stub + " " * (len(line) - len(stub))


def _automation_region(text: str, line_start: int) -> tuple[int, int]:
    """From the header of the automation holding ``line_start`` to the next header."""
    start = line_start
    for m in _HEADER.finditer(text, 0, line_start + 1):
        start = m.start()
    nxt = _HEADER.search(text, line_start + 1)
    end = nxt.start() if nxt else len(text)
    if text[start:end].strip() == "":
        end = len(text)
    return start, end
