"""Properties of the language as a whole: parse ∘ format, robustness, consistency.

Broken programs are made from valid ones by deleting, inserting or swapping tokens (the
text split at whitespace and punctuation), the mistakes a person or an LLM makes.
"""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import KEYWORDS, modules

import dsl
from dsl import DslError, format_module, format_text

CANONICAL_EXAMPLE = """\
# comment
automation "Welcome new subscribers" {
  description "Optional one-line description"
  when new_subscriber
  if fan.total_spent < $10 and "welcomed" not in fan.tags {
    send_message text: "Hey {{ fan.name }}, thanks for subscribing!"
    wait 2d
    create_offer discount: 20%, valid_for: 48h, name: "Welcome 20%"
  } else if fan.total_spent >= 100 or not (fan.country in ["US", "CA"]) {
    add_tag tag: "vip"
  } else {
    send_message text: "Welcome back, {{ fan.name }}!"
  }
  add_tag tag: "welcomed"
}
"""
EXAMPLES = [CANONICAL_EXAMPLE] + [
    p.read_text(encoding="utf-8")
    for p in sorted((Path(__file__).parent.parent / "examples").glob("*.hz"))
]

# Tokens people get wrong, inserted into otherwise valid programs.
_MISTAKES = ("==", "!=", "<=", "2d", "48h", "9.99", "1.5.5", "10x", "{{", "}}", "fan.name")
NOISE = [*"{}()[]\",:=#.-$€£%'\\\n", *sorted(KEYWORDS), *_MISTAKES]
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")
_LANGUAGE_CHARS = "".join(sorted(set(CANONICAL_EXAMPLE + "\\\t€£'=!_#{}"))) + "ABé\x00"
PARSE_BOUND_SECONDS = 1.0


_VALID_PROGRAMS = st.one_of(st.sampled_from(EXAMPLES), modules().map(format_module))


@st.composite
def broken_programs(draw) -> str:
    """A valid program with one to four tokens deleted, inserted or swapped."""
    text = draw(_VALID_PROGRAMS)
    tokens = _TOKEN.findall(text)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "swap"]))
        if kind == "insert" or not tokens:
            at = draw(st.integers(0, len(tokens)))
            tokens.insert(at, draw(st.sampled_from(NOISE) | st.sampled_from(tokens or NOISE)))
            continue
        i = draw(st.integers(0, len(tokens) - 1))
        if kind == "delete":
            del tokens[i]
        else:
            j = draw(st.integers(0, len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
    return "".join(tokens)


_SPACES = st.sampled_from(["", " ", "  ", "\t", "      "])
_COMMENT = st.builds(
    "#{}".format,
    st.text(st.characters(blacklist_characters="\n", blacklist_categories=["Cs"]), max_size=8),
)


@st.composite
def messy_programs(draw) -> str:
    """A valid program re-indented, some lines joined, with comments and blank lines
    added before and at the end of lines: still valid, and meaning the same."""
    pieces: list[str] = []
    for line in draw(_VALID_PROGRAMS).split("\n"):
        if draw(st.booleans()):
            pieces.append(draw(_SPACES) + draw(_COMMENT))
        pieces.extend([""] * draw(st.integers(0, 2)))
        code = draw(_SPACES) + line.strip()
        if line.strip() and draw(st.booleans()):
            code += draw(_SPACES) + draw(_COMMENT)
        pieces.append(code)
    text = pieces[0]
    for previous, piece in itertools.pairwise(pieces):
        # Newlines are not significant, except that a comment runs to the end of its line.
        joined = "#" not in previous and draw(st.integers(0, 3)) == 0
        text += (" " if joined else "\n") + piece
    return text


def any_text() -> st.SearchStrategy[str]:
    """Arbitrary text, text over the language's own characters, and token soup."""
    soup = st.lists(st.sampled_from([*NOISE, "a", "x", '"s"', "1"]), max_size=30).map(" ".join)
    return st.one_of(st.text(), st.text(alphabet=_LANGUAGE_CHARS), soup)


def parse_within_bound(text: str) -> dsl.Module | None:
    """Parse, allowing only DslError, within the time bound; check its diagnostics."""
    started = time.perf_counter()
    module = parse_or_none(text)
    elapsed = time.perf_counter() - started
    if elapsed >= PARSE_BOUND_SECONDS:
        # A busy machine can stall one call; a slow input is slow every time.
        started = time.perf_counter()
        parse_or_none(text)
        elapsed = time.perf_counter() - started
    assert elapsed < PARSE_BOUND_SECONDS, f"parse took {elapsed:.2f}s"
    return module


def parse_or_none(text: str) -> dsl.Module | None:
    """The module, or None after checking that every diagnostic is well formed."""
    try:
        return dsl.parse(text)
    except DslError as exc:
        assert exc.diagnostics, "a DslError without diagnostics"
        for d in exc.diagnostics:
            assert d.span.line >= 1 and d.span.column >= 1, d
            assert d.message.strip(), d
        return None


# Generating trees is the slow part; these counts keep the file well under 20 seconds.
ROUND_TRIP = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BROKEN = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@ROUND_TRIP
@given(modules())
def test_round_trip_parse_of_format_is_identity(module: dsl.Module) -> None:
    """Round trip: parse(format(ast)) == ast."""
    assert dsl.parse(format_module(module)) == module


@ROUND_TRIP
@given(modules())
def test_format_is_idempotent(module: dsl.Module) -> None:
    """Idempotence: format(parse(format(ast))) == format(ast)."""
    text = format_module(module)
    assert format_text(text) == text


@BROKEN
@given(messy_programs())
def test_round_trip_on_messy_text_keeps_tree_and_comments(text: str) -> None:
    """Round trip on source text: a valid program with comments, blank lines and odd
    layout parses, formats to text with the same tree and every comment, and formatting
    that text again changes nothing."""
    module = parse_within_bound(text)
    assert module is not None, "a valid program did not parse"
    assert_format_keeps(module)


@BROKEN
@given(broken_programs())
def test_round_trip_on_mutated_text_that_still_parses(text: str) -> None:
    """Round trip on source text: a mutated program that still parses formats to text
    with the same tree and every comment, and formatting it again changes nothing."""
    module = parse_within_bound(text)
    if module is not None:
        assert_format_keeps(module)


def assert_format_keeps(module: dsl.Module) -> None:
    formatted = format_module(module)
    assert dsl.parse(formatted) == module
    for comment in module.comments:
        assert "#" + comment.text in formatted
    assert format_text(formatted) == formatted


@settings(max_examples=500, deadline=None)
@given(any_text())
def test_robustness_arbitrary_text_raises_only_dsl_error(text: str) -> None:
    """Robustness: for arbitrary text, parse returns or raises DslError (never another
    exception) within a second, and every diagnostic has a line, a column and a message."""
    parse_within_bound(text)


@BROKEN
@given(broken_programs())
def test_robustness_broken_programs_raise_only_dsl_error(text: str) -> None:
    """Robustness: valid programs with tokens deleted, inserted or swapped parse or raise
    DslError within a second, with well-formed diagnostics."""
    parse_within_bound(text)


@BROKEN
@given(st.one_of(broken_programs(), any_text(), modules().map(format_module)))
def test_property_2_flow_validation_consistency(text: str) -> None:
    """Property 2: Flow Validation Consistency — parsing the same input twice gives the
    same tree and identical diagnostics."""
    first = dsl.parse_with_diagnostics(text)
    second = dsl.parse_with_diagnostics(text)
    assert first == second
