"""The language's grammar, exported for grammar-constrained decoding by an LLM.

One source of truth: both exports are generated at run time from the rules and terminals
Lark loads from ``grammar.lark``, never copied by hand.

- ``gbnf()``: GBNF, as the llama.cpp server's ``grammar`` field and vLLM's grammar
  backend (xgrammar) read it.
- ``lark()``: the Lark dialect of OpenAI's custom-tool grammars (LLGuidance's), whose
  regular expressions may not look around.

Both describe exactly one automation. Three transformations make Lark's lexer-driven
grammar a plain context-free grammar these engines take:

1. Whitespace and comments, ``%ignore``d by Lark, become explicit separators between
   symbols: required (``sp``) where two word characters would otherwise touch (``when``
   then a name), optional (``ws``) elsewhere. This replaces the keywords' ``\\b`` and the
   numbers' ``(?!...)`` lookarounds, which are dropped: their only job is to stop one
   token running into the next, and a required separator does that. What a separator may
   contain comes from the grammar's ``%ignore`` terminals.
2. Lark's expansion of ``x*`` into left-recursive helper rules is turned back into
   repetition (``step (ws step)*``): llama.cpp refuses left recursion.
3. Only what one automation reaches is exported, starting at ``automation``.

What the exports still accept that the language does not: a keyword where a name goes
(an action called ``wait``), which Lark's lexer would read as the keyword. The builder
parses and checks every answer anyway; the grammar only keeps the model close.
"""

from __future__ import annotations

import re
import re._parser as sre_parse  # the regex parser Lark itself uses to size its terminals
from dataclasses import dataclass
from functools import cache
from re import _constants as sre
from typing import Any

from lark import Lark
from lark.grammar import NonTerminal, Symbol

ROOT = "automation"
_WORD = re.compile(r"\w", re.ASCII)
_ZERO_WIDTH = (sre.AT, sre.ASSERT, sre.ASSERT_NOT)
_Item = tuple[Any, Any]  # an item of a parsed regular expression: (opcode, argument)


@dataclass(frozen=True)
class Sep:
    """Whitespace or comments between two symbols; ``required`` between word characters."""

    required: bool


@dataclass(frozen=True)
class Ref:
    name: str
    terminal: bool


# A sequence of references and separators; a Repeat is ``(sep alternative)*``.
Seq = tuple["Ref | Sep | Repeat", ...]


@dataclass(frozen=True)
class Repeat:
    alternatives: tuple[Seq, ...]


@dataclass(frozen=True)
class Grammar:
    """The grammar as the exports need it: rules over terminals, separators explicit."""

    rules: dict[str, tuple[Seq, ...]]  # in the order they are reached from the root
    terminals: dict[str, list[_Item]]  # name -> parsed regular expression
    separator: list[list[_Item]]  # what one separator unit may be (whitespace, a comment)


@cache
def _lark() -> Lark:
    return Lark.open("grammar.lark", rel_to=__file__, parser="lalr", start=[ROOT])


@cache
def grammar() -> Grammar:
    """The loaded grammar, reachable from ``automation``, with explicit separators."""
    lark = _lark()
    alternatives: dict[str, list[list[Symbol]]] = {}
    for rule in lark.rules:
        alternatives.setdefault(rule.origin.name, []).append(list(rule.expansion))
    terminals = {t.name: _parse_pattern(t.pattern) for t in lark.terminals}
    edges = _Edges(alternatives, terminals)
    rules: dict[str, tuple[Seq, ...]] = {}
    pending = [ROOT]
    while pending:
        name = pending.pop(0)
        if name in rules:
            continue
        rules[name] = _rule(name, alternatives[name], edges)
        pending += [s.name for alt in alternatives[name] for s in alt if isinstance(s, NonTerminal)]
    used = {r.name for seqs in rules.values() for r in _refs(seqs) if r.terminal}
    separator = [_unit(terminals[name]) for name in lark.ignore_tokens]
    return Grammar(rules, {n: t for n, t in terminals.items() if n in used}, separator)


def _parse_pattern(pattern: object) -> list[_Item]:
    value = pattern.value
    if pattern.type == "str":
        return [(sre.LITERAL, ord(c)) for c in value]
    if pattern.flags:
        raise ValueError(f"regex flags are not exported: /{value}/")
    # Lookarounds at the edges only stop one token running into the next; the
    # separators do that here (see the module's docstring).
    return [item for item in sre_parse.parse(value) if item[0] not in _ZERO_WIDTH]


def _unit(items: list[_Item]) -> list[_Item]:
    """One repetition of an ``%ignore`` pattern (``[ \\t]+`` -> ``[ \\t]``), so that a
    run of separators has one reading, not exponentially many."""
    if len(items) == 1 and items[0][0] is sre.MAX_REPEAT and items[0][1][0] >= 1:
        return list(items[0][1][2])
    return items


class _Edges:
    """Whether a symbol can start or end with a word character, which decides whether
    the separator before or after it is required."""

    def __init__(self, rules: dict[str, list[list[Symbol]]], terminals: dict[str, list]):
        self.starts = {n: _edge_word(t, last=False) for n, t in terminals.items()}
        self.ends = {n: _edge_word(t, last=True) for n, t in terminals.items()}
        self.starts |= dict.fromkeys(rules, False)
        self.ends |= dict.fromkeys(rules, False)
        changed = True
        while changed:
            changed = False
            for name, alts in rules.items():
                starts = any(self.starts[a[0].name] for a in alts if a)
                ends = any(self.ends[a[-1].name] for a in alts if a)
                if (starts, ends) != (self.starts[name], self.ends[name]):
                    self.starts[name], self.ends[name] = starts, ends
                    changed = True

    def sep(self, before: str, after: str) -> Sep:
        return Sep(self.ends[before] and self.starts[after])


def _rule(name: str, alternatives: list[list[Symbol]], edges: _Edges) -> tuple[Seq, ...]:
    """A rule's alternatives; ``R: R a | b`` becomes ``R: b (sep a)*``."""
    if any(not alt for alt in alternatives):
        raise ValueError(f"rule {name!r} can be empty; only non-empty rules are exported")
    base = [alt for alt in alternatives if alt[0].name != name]
    tails = [alt[1:] for alt in alternatives if alt[0].name == name]
    if not base:
        raise ValueError(f"rule {name!r} never ends its left recursion")
    seqs = [_seq(alt, edges) for alt in base]
    if tails:
        repeat = Repeat(tuple((edges.sep(name, t[0].name), *_seq(t, edges)) for t in tails))
        seqs = [(*seq, repeat) for seq in seqs]
    return tuple(seqs)


def _seq(symbols: list[Symbol], edges: _Edges) -> Seq:
    out: list[Ref | Sep | Repeat] = []
    for i, symbol in enumerate(symbols):
        if i:
            out.append(edges.sep(symbols[i - 1].name, symbol.name))
        out.append(Ref(symbol.name, symbol.is_term))
    return tuple(out)


def _refs(seqs: tuple[Seq, ...]) -> list[Ref]:
    found: list[Ref] = []
    for seq in seqs:
        for item in seq:
            if isinstance(item, Ref):
                found.append(item)
            elif isinstance(item, Repeat):
                found += _refs(item.alternatives)
    return found


# -- what a regular expression can start or end with -----------------------------------


def _edge_word(items: list[_Item], *, last: bool) -> bool:
    """Whether a match of ``items`` can start (end, when ``last``) with a word character."""
    return _edge(items, last)[0]


def _edge(items: list[_Item], last: bool) -> tuple[bool, bool]:
    """(can start/end with a word character, can match the empty string)."""
    word = False
    for op, av in reversed(items) if last else items:
        item_word, nullable = _edge_item(op, av, last)
        word = word or item_word
        if not nullable:
            return word, False
    return word, True


def _edge_item(op: object, av: object, last: bool) -> tuple[bool, bool]:
    if op is sre.LITERAL:
        return bool(_WORD.match(chr(av))), False
    if op in (sre.NOT_LITERAL, sre.ANY):
        return True, False
    if op is sre.IN:
        return _class_has_word(av), False
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
        low, _high, sub = av
        word, nullable = _edge(list(sub), last)
        return word, nullable or low == 0
    if op is sre.SUBPATTERN:
        return _edge(list(av[3]), last)
    if op is sre.BRANCH:
        edges = [_edge(list(b), last) for b in av[1]]
        return any(w for w, _ in edges), any(n for _, n in edges)
    if op in _ZERO_WIDTH:
        return False, True
    raise ValueError(f"regex construct {op} is not exported")


def _class_has_word(items: list[_Item]) -> bool:
    for op, av in items:
        if op is sre.NEGATE:
            return True
        if op is sre.LITERAL and _WORD.match(chr(av)):
            return True
        if op is sre.RANGE and any(_WORD.match(chr(c)) for c in range(av[0], av[1] + 1)):
            return True
        if op is sre.CATEGORY and av is not sre.CATEGORY_SPACE:
            return True
    return False


# -- GBNF ------------------------------------------------------------------------------


@cache
def gbnf() -> str:
    """The grammar of one automation in GBNF (``root`` is the start rule)."""
    g = grammar()
    names = _gbnf_names(g)
    units = " | ".join(_gbnf_regex(u) for u in g.separator)
    # An optional separator is ``sp?`` rather than a rule matching the empty string:
    # readers that turn rules into lexemes (LLGuidance's) cannot lex an empty token.
    lines = [f"root ::= sp? {names[ROOT]} sp?", f"sp ::= ({units})+"]
    for name, seqs in g.rules.items():
        lines.append(f"{names[name]} ::= {_gbnf_alternatives(seqs, names)}")
    for name, items in g.terminals.items():
        lines.append(f"{names[name]} ::= {_gbnf_regex(items)}")
    return "\n".join(lines) + "\n"


def _gbnf_names(g: Grammar) -> dict[str, str]:
    """GBNF rule names: lower-case words joined by dashes; terminals prefixed ``tok-``."""
    names = {n: n.strip("_").replace("_", "-") for n in g.rules}
    names |= {n: "tok-" + n.strip("_").lower().replace("_", "-") for n in g.terminals}
    taken = [*names.values(), "root", "sp"]
    if len(set(taken)) != len(taken):
        raise ValueError("two grammar symbols share a GBNF name")
    return names


def _gbnf_alternatives(seqs: tuple[Seq, ...], names: dict[str, str]) -> str:
    return " | ".join(_gbnf_seq(seq, names) for seq in seqs)


def _gbnf_seq(seq: Seq, names: dict[str, str]) -> str:
    parts = []
    for item in seq:
        if isinstance(item, Sep):
            parts.append("sp" if item.required else "sp?")
        elif isinstance(item, Ref):
            parts.append(names[item.name])
        else:
            parts.append(f"({_gbnf_alternatives(item.alternatives, names)})*")
    return " ".join(parts)


def _gbnf_regex(items: list[_Item]) -> str:
    """A parsed regular expression as a GBNF expression; lookarounds are dropped."""
    parts: list[str] = []
    literal = ""
    for op, av in items:
        if op is sre.LITERAL:
            literal += chr(av)
            continue
        if literal:
            parts.append(_gbnf_string(literal))
            literal = ""
        piece = _gbnf_item(op, av)
        if piece:
            parts.append(piece)
    if literal:
        parts.append(_gbnf_string(literal))
    if not parts:
        raise ValueError("a terminal that matches only the empty string")
    return " ".join(parts)


def _gbnf_item(op: object, av: object) -> str:
    if op is sre.NOT_LITERAL:
        return f"[^{_class_char(av)}]"
    if op is sre.ANY:
        return "[^\\n]"
    if op is sre.IN:
        return _gbnf_class(av)
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
        low, high, sub = av
        return _gbnf_repeat(_gbnf_group(list(sub)), low, high)
    if op is sre.SUBPATTERN:
        return _gbnf_group(list(av[3]))
    if op is sre.BRANCH:
        return "(" + " | ".join(_gbnf_regex(list(b)) for b in av[1]) + ")"
    if op in _ZERO_WIDTH:
        return ""
    raise ValueError(f"regex construct {op} is not exported")


def _gbnf_group(items: list[_Item]) -> str:
    text = _gbnf_regex(items)
    single = len(items) == 1 and items[0][0] in (sre.IN, sre.BRANCH, sre.NOT_LITERAL, sre.ANY)
    return text if single or re.fullmatch(r'"[^"\\]"', text) else f"({text})"


def _gbnf_repeat(body: str, low: int, high: int) -> str:
    if (low, high) == (0, sre.MAXREPEAT):
        return body + "*"
    if (low, high) == (1, sre.MAXREPEAT):
        return body + "+"
    # Written out rather than as {m,n}, which older GBNF readers lack.
    tail = [body + "*"] if high == sre.MAXREPEAT else [body + "?"] * (high - low)
    return " ".join([body] * low + tail)


def _gbnf_class(items: list[_Item]) -> str:
    out = ""
    for op, av in items:
        if op is sre.NEGATE:
            out = "^" + out
        elif op is sre.LITERAL:
            out += _class_char(av)
        elif op is sre.RANGE:
            out += f"{_class_char(av[0])}-{_class_char(av[1])}"
        elif op is sre.CATEGORY:
            out += _CATEGORIES[av]
        else:
            raise ValueError(f"regex class construct {op} is not exported")
    return f"[{out}]"


_CATEGORIES = {
    sre.CATEGORY_DIGIT: "0-9",
    sre.CATEGORY_WORD: "a-zA-Z0-9_",
    sre.CATEGORY_SPACE: " \\t\\n\\r\\x0B\\x0C",
}
_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}


def _class_char(code: int) -> str:
    c = chr(code)
    if c in _ESCAPES:
        return _ESCAPES[c]
    if c in "]^-[/" or not c.isprintable():
        return f"\\x{code:02X}" if code < 0x100 else f"\\u{code:04X}"
    return c


def _gbnf_string(text: str) -> str:
    out = "".join(
        _ESCAPES.get(c) or ('\\"' if c == '"' else c if c.isprintable() else f"\\x{ord(c):02X}")
        for c in text
    )
    return f'"{out}"'


# -- Lark, OpenAI's dialect ------------------------------------------------------------

SEPARATOR = "SEP"


@cache
def lark() -> str:
    """The grammar of one automation in the Lark dialect of OpenAI's custom tools."""
    g = grammar()
    names = {n: n.strip("_") for n in g.rules} | {n: n for n in g.terminals}
    if len(set(names.values())) != len(names) or SEPARATOR in names.values():
        raise ValueError("two grammar symbols share a Lark name")
    units = "|".join(_lark_regex(u) for u in g.separator)
    lines = [f"start: {SEPARATOR}? {names[ROOT]} {SEPARATOR}?"]
    for name, seqs in g.rules.items():
        lines.append(f"{names[name]}: {_lark_alternatives(seqs, names)}")
    for name, items in g.terminals.items():
        lines.append(f"{names[name]}: {_lark_terminal(items)}")
    lines.append(f"{SEPARATOR}: /(?:{units})+/")
    return "\n".join(lines) + "\n"


def _lark_alternatives(seqs: tuple[Seq, ...], names: dict[str, str]) -> str:
    return " | ".join(_lark_seq(seq, names) for seq in seqs)


def _lark_seq(seq: Seq, names: dict[str, str]) -> str:
    parts = []
    for item in seq:
        if isinstance(item, Sep):
            parts.append(SEPARATOR if item.required else SEPARATOR + "?")
        elif isinstance(item, Ref):
            parts.append(names[item.name])
        else:
            parts.append(f"({_lark_alternatives(item.alternatives, names)})*")
    return " ".join(parts)


def _lark_terminal(items: list[_Item]) -> str:
    text = "".join(chr(av) for op, av in items if op is sre.LITERAL)
    if all(op is sre.LITERAL for op, _ in items):
        return _gbnf_string(text)
    return f"/{_lark_regex(items)}/"


def _lark_regex(items: list[_Item]) -> str:
    """A parsed regular expression written back without lookarounds."""
    return "".join(_lark_item(op, av) for op, av in items)


def _lark_item(op: object, av: Any) -> str:
    if op is sre.LITERAL:
        return _regex_char(av)
    if op is sre.NOT_LITERAL:
        return f"[^{_regex_char(av)}]"
    if op is sre.ANY:
        return "."
    if op is sre.IN:
        return _gbnf_class(av)
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
        low, high, sub = av
        body = _lark_regex(list(sub))
        if not _atomic(list(sub)):
            body = f"(?:{body})"
        return body + _REPEATS.get(
            (low, high), f"{{{low},{'' if high == sre.MAXREPEAT else high}}}"
        )
    if op is sre.SUBPATTERN:
        return f"(?:{_lark_regex(list(av[3]))})"
    if op is sre.BRANCH:
        return "(?:" + "|".join(_lark_regex(list(b)) for b in av[1]) + ")"
    if op in _ZERO_WIDTH:
        return ""
    raise ValueError(f"regex construct {op} is not exported")


_REPEATS = {(0, sre.MAXREPEAT): "*", (1, sre.MAXREPEAT): "+", (0, 1): "?"}


def _atomic(items: list[_Item]) -> bool:
    """Whether ``items`` render as one regex atom that a quantifier may follow."""
    return len(items) == 1 and items[0][0] in (
        sre.LITERAL,
        sre.NOT_LITERAL,
        sre.ANY,
        sre.IN,
        sre.SUBPATTERN,
        sre.BRANCH,
    )


def _regex_char(code: int) -> str:
    c = chr(code)
    if c in _ESCAPES:
        return _ESCAPES[c]
    if c in ".^$*+?{}[]|()/":
        return "\\" + c
    return c if c.isprintable() else f"\\x{code:02x}"
