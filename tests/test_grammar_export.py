"""The grammar exports for constrained decoding (dsl/grammar_export.py).

The GBNF is checked twice: as text (well-formed, every rule defined and reached, no
left recursion, which llama.cpp refuses) and by what it accepts, read back as a
character-level grammar, which is how llama.cpp and xgrammar read GBNF. The Lark export
is compiled and run by LLGuidance, the engine behind OpenAI's grammar-constrained custom
tools; LLGuidance also runs the GBNF read back (it is fast, and with one-character
lexemes it is a plain context-free recogniser). Both must accept every automation in
examples/ and everything the formatter writes, and refuse text the language refuses.
"""

from __future__ import annotations

import ast as pyast
import json
import re
from functools import cache
from pathlib import Path
from typing import ClassVar

import llguidance
import pytest
from hypothesis import HealthCheck, given, settings
from strategies import automations

from dsl import DslError, ast, grammar_export
from dsl.formatter import format_module
from dsl.parser import KEYWORDS, parse

ROOT = Path(__file__).resolve().parent.parent
_HEADER = re.compile(r"^(?=automation\b)", re.M)

# Text the language refuses, each for one reason.
REFUSED = {
    "no trigger": 'automation "a" {\n  send_message text: "hi"\n}',
    "keyword run into a name": 'automation "a" {\n  whennew_subscriber\n}',
    "space inside a duration": 'automation "a" {\n  when new_subscriber\n  wait 3 d\n}',
    "string left open": 'automation "a {\n  when new_subscriber\n}',
    "argument without a value": 'automation "a" {\n  when x\n  send_message text:\n}',
    "money with three decimals": 'automation "a" {\n  when x\n  if y > $1.005 {\n  }\n}',
}


def example_automations() -> list[tuple[str, str]]:
    """(id, text) for every automation of every example file, one at a time."""
    found = []
    for path in sorted((ROOT / "examples").rglob("*.hz")):
        chunks = _HEADER.split(path.read_text(encoding="utf-8"))
        for i, chunk in enumerate(c for c in chunks if c.startswith("automation")):
            found.append((f"{path.relative_to(ROOT)}#{i + 1}", chunk))
    return found


EXAMPLES = example_automations()


# -- GBNF as text ---------------------------------------------------------------------

_GBNF_TOKEN = re.compile(
    r"""\s*(?:(?P<name>[a-z][a-z0-9-]*)|(?P<string>"(?:[^"\\]|\\.)*")
    |(?P<cls>\[(?:[^\]\\]|\\.)*\])|(?P<op>[()|*+?]))""",
    re.X,
)


def gbnf_rules() -> dict[str, list[tuple[str, str]]]:
    """Rule name -> its body's tokens (kind, text); fails on anything not GBNF."""
    rules: dict[str, list[tuple[str, str]]] = {}
    for line in grammar_export.gbnf().splitlines():
        name, sep, body = line.partition(" ::= ")
        assert sep and re.fullmatch(r"[a-z][a-z0-9-]*", name), line
        assert name not in rules, f"{name} defined twice"
        tokens, pos = [], 0
        while pos < len(body):
            m = _GBNF_TOKEN.match(body, pos)
            assert m and m.end() > pos, f"not GBNF at {body[pos:]!r}"
            tokens.append((m.lastgroup, m.group(m.lastgroup)))
            pos = m.end()
        depth = 0
        for kind, text in tokens:
            depth += {"(": 1, ")": -1}.get(text, 0) if kind == "op" else 0
            assert depth >= 0, line
        assert depth == 0, line
        rules[name] = tokens
    return rules


def test_gbnf_defines_every_rule_it_uses_and_uses_every_rule_it_defines():
    rules = gbnf_rules()
    assert "root" in rules
    used = {text for tokens in rules.values() for kind, text in tokens if kind == "name"}
    assert used - rules.keys() == set()
    reached, pending = set(), ["root"]
    while pending:
        name = pending.pop()
        if name not in reached:
            reached.add(name)
            pending += [text for kind, text in rules[name] if kind == "name"]
    assert reached == rules.keys()


def _first_names(tokens: list[tuple[str, str]]) -> set[str]:
    """Names that can come first in a rule body (over-approximated: every name that
    starts an alternative or a group, or follows an optional item at the start)."""
    first, at_start = set(), True
    for i, (kind, text) in enumerate(tokens):
        if kind == "op" and text in "(|":
            at_start = True
        elif at_start and kind == "name":
            first.add(text)
            optional = i + 1 < len(tokens) and tokens[i + 1] in (("op", "?"), ("op", "*"))
            at_start = optional
        elif kind in ("string", "cls"):
            at_start = False
    return first


def test_gbnf_has_no_left_recursion():
    """llama.cpp refuses a rule that can reach itself without consuming input."""
    rules = gbnf_rules()
    firsts = {name: _first_names(tokens) for name, tokens in rules.items()}
    for name in rules:
        seen, pending = set(), list(firsts[name])
        while pending:
            current = pending.pop()
            assert current != name, f"{name} is left-recursive"
            if current not in seen:
                seen.add(current)
                pending += firsts[current]


def test_gbnf_spells_every_keyword_and_no_lookaround():
    literals = {
        pyast.literal_eval(text)
        for tokens in gbnf_rules().values()
        for kind, text in tokens
        if kind == "string"
    }
    assert literals >= KEYWORDS
    assert not re.search(r"\\b|\(\?[=!<]", grammar_export.gbnf())


# -- LLGuidance, reading both exports --------------------------------------------


class _ByteTokenizer:
    """One token per byte, and an end of text: LLGuidance then matches text exactly."""

    eos_token_id = 256
    bos_token_id = None
    tokens: ClassVar = [bytes([b]) for b in range(256)] + [b"<eos>"]
    special_token_ids: ClassVar = [256]

    def __call__(self, text: bytes) -> list[int]:
        return list(text)


@cache
def _tokenizer() -> llguidance.LLTokenizer:
    return llguidance.LLTokenizer(llguidance.TokenizerWrapper(_ByteTokenizer()))


def _matches(grammar: str, text: str) -> bool:
    """Whether LLGuidance, constraining byte by byte with ``grammar``, lets ``text``
    through whole."""
    matcher = llguidance.LLMatcher(_tokenizer(), grammar, log_level=0)
    return matcher.consume_tokens(list(text.encode())) and matcher.is_accepting()


# -- GBNF by what it accepts ----------------------------------------------------------


def _unescape(body: str) -> str:
    """A GBNF string or class body's escapes decoded."""
    return re.sub(
        r"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|.)",
        lambda m: (
            {"n": "\n", "t": "\t", "r": "\r"}.get(m[1], m[1])
            if len(m[1]) == 1
            else chr(int(m[1][1:], 16))
        ),
        body,
    )


def _class_regex(cls: str) -> str:
    negate = cls.startswith("[^")
    body = _unescape(cls[2 if negate else 1 : -1])
    out, i = "", 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            out += f"{_regex_char(body[i])}-{_regex_char(body[i + 2])}"
            i += 3
        else:
            out += _regex_char(body[i])
            i += 1
    return "/[" + ("^" if negate else "") + out + "]/"


def _regex_char(c: str) -> str:
    """``c`` in a regular expression inside a Lark grammar."""
    if c.isalnum() or c in " _#$€£":
        return c
    return f"\\x{ord(c):02x}" if not c.isprintable() else "\\" + c


@cache
def gbnf_read_back() -> str:
    """The GBNF as a character-level grammar for LLGuidance: every rule a rule, every
    string one lexeme per character and every class a one-character lexeme, so that no
    lexer decides anything and what is accepted is what the GBNF accepts."""
    lines = []
    for name, tokens in gbnf_rules().items():
        parts = []
        for kind, text in tokens:
            if kind == "name":
                parts.append(text.replace("-", "_"))
            elif kind == "string":
                chars = _unescape(text[1:-1])
                parts.append("(" + " ".join(json.dumps(c) for c in chars) + ")")
            elif kind == "cls":
                parts.append(_class_regex(text))
            else:
                parts.append(text)
        lark_name = "start" if name == "root" else name.replace("-", "_")
        lines.append(f"{lark_name}: {' '.join(parts)}")
    return llguidance.LLMatcher.grammar_from_lark("\n".join(lines))


def gbnf_accepts(text: str) -> bool:
    return _matches(gbnf_read_back(), text)


@pytest.mark.parametrize("text", [t for _, t in EXAMPLES], ids=[i for i, _ in EXAMPLES])
def test_gbnf_accepts_every_example(text):
    assert gbnf_accepts(text)


@pytest.mark.parametrize("text", REFUSED.values(), ids=REFUSED.keys())
def test_gbnf_refuses_what_the_language_refuses(text):
    with pytest.raises(DslError):
        parse(text)
    assert not gbnf_accepts(text)


def test_exports_describe_one_automation():
    two = 'automation "a" {\n  when x\n}\nautomation "b" {\n  when x\n}\n'
    assert len(parse(two).automations) == 2
    assert not gbnf_accepts(two)
    assert not lark_export_accepts(two)


# -- Lark, OpenAI's dialect ----------------------------------------------------------


@cache
def lark_export() -> str:
    return llguidance.LLMatcher.grammar_from_lark(grammar_export.lark())


def lark_export_accepts(text: str) -> bool:
    return _matches(lark_export(), text)


def test_llguidance_compiles_the_lark_export():
    assert llguidance.LLMatcher.validate_grammar(lark_export(), _tokenizer()) == ""


def test_lark_export_has_no_lookaround_and_every_keyword():
    text = grammar_export.lark()
    assert not re.search(r"\\b|\(\?[=!<]|%ignore|%import", text)
    for keyword in KEYWORDS:
        assert f'"{keyword}"' in text


@pytest.mark.parametrize("text", [t for _, t in EXAMPLES], ids=[i for i, _ in EXAMPLES])
def test_lark_export_accepts_every_example(text):
    assert lark_export_accepts(text)


@pytest.mark.parametrize("text", REFUSED.values(), ids=REFUSED.keys())
def test_lark_export_refuses_what_the_language_refuses(text):
    assert not lark_export_accepts(text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(automations())
def test_exports_accept_every_automation_the_formatter_writes(automation):
    """Property: the GBNF and Lark exports accept the canonical text of any automation."""
    text = format_module(ast.Module((automation,)))
    assert lark_export_accepts(text)
    assert gbnf_accepts(text)
