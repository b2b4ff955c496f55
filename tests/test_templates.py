"""Message templates: placeholders checked at save time, rendered in Jinja2's sandbox."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import pytest
from catalog_fixture import CATALOG
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl import check, parse
from dsl.ast import Placeholder
from dsl.catalog import ValueType
from dsl.templates import ALLOWED_FILTERS, check_placeholder, render
from dsl.values import Money

FIELDS = CATALOG.triggers["purchase_completed"].fields


def problems(expression: str) -> list:
    return check_placeholder(Placeholder(expression), FIELDS)


def context(path: str, value: object) -> dict:
    group, name = path.split(".")
    return {group: {name: value}}


# --- Property 5, the valid half: known fields through allowed filters -----------------

_WORD = st.from_regex(r"[A-Za-z][A-Za-z0-9 ]{0,8}", fullmatch=True)

# Values a field of each type holds at run time.
_VALUES: dict[ValueType, st.SearchStrategy] = {
    ValueType.TEXT: st.text(st.characters(codec="utf-8", exclude_characters="{}"), max_size=12),
    ValueType.NUMBER: st.integers(-(10**6), 10**6)
    | st.floats(-1e6, 1e6).map(lambda f: round(f, 3)),
    ValueType.MONEY: st.decimals(0, 10**5, places=2).map(Money),
    ValueType.LIST: st.lists(_WORD, max_size=4),
    ValueType.DATETIME: st.datetimes(min_value=datetime(2000, 1, 1)),
}

# Filters by the type they apply to: (text in the template, Python equivalent, type after).
Filter = tuple[str, Callable[[object], object], ValueType]
_TEXT_FILTERS: list[Filter] = [
    ("upper", str.upper, ValueType.TEXT),
    ("lower", str.lower, ValueType.TEXT),
    ("capitalize", str.capitalize, ValueType.TEXT),
    ("trim", str.strip, ValueType.TEXT),
]
_FILTERS: dict[ValueType, list[Filter]] = {
    ValueType.TEXT: _TEXT_FILTERS,
    ValueType.NUMBER: [
        ("round", lambda n: round(n, 0), ValueType.NUMBER),
        ("int", int, ValueType.NUMBER),
    ],
    ValueType.LIST: [('join(", ")', lambda items: ", ".join(items), ValueType.TEXT)],
    ValueType.MONEY: [],
    ValueType.DATETIME: [],
}


@st.composite
def valid_placeholders(draw) -> tuple[str, dict, str]:
    """A placeholder over a known field with allowed filters; its context; the output."""
    path = draw(st.sampled_from(sorted(FIELDS)))
    kind = FIELDS[path]
    value = draw(_VALUES[kind])
    expression, expected = path, value
    for _ in range(draw(st.integers(0, 3))):
        choices = [*_FILTERS[kind], ('default("there")', lambda v: v, kind)]
        text, apply, kind = draw(st.sampled_from(choices))
        expression += draw(st.sampled_from([" | ", "|"])) + text
        expected = apply(expected)
    return expression, context(path, value), str(expected)


@settings(max_examples=200, deadline=None)
@given(valid_placeholders(), _WORD, _WORD)
def test_property_5_template_placeholder_validity_known_fields(placeholder, before, after):
    """Property 5: Template Placeholder Validity — a placeholder naming a field the
    trigger provides, through allowed filters, checks clean and renders the value."""
    expression, ctx, expected = placeholder
    assert problems(expression) == []
    for spaces in ["", " ", "  "]:
        text = f"{before}{{{{{spaces}{expression}{spaces}}}}}{after}"
        assert render(text, ctx) == before + expected + after


# --- Property 5, the invalid half: junk never checks clean, never raises ------------------

_PATHS = st.sampled_from(sorted(FIELDS))
_IDENTIFIERS = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True)


def _junk_text() -> st.SearchStrategy[str]:
    # Without "fan" or "event" no expression can name a known field, so none is valid.
    return st.text(max_size=30).filter(lambda t: "fan" not in t and "event" not in t)


def _dunder() -> st.SearchStrategy[str]:
    dunder = st.sampled_from(["__class__", "__mro__", "__globals__", "__init__", "__dict__"])
    root = st.sampled_from(["''", "fan", "cycler", "event.amount", "()", "fan.name"]) | _PATHS
    return st.builds(lambda r, d, rest: f"{r}.{d}{rest}", root, dunder, st.sampled_from(["", ".x"]))


def _call() -> st.SearchStrategy[str]:
    args = st.sampled_from(["", "1", "'x'", "fan.name", "*x", "x=1"])
    return st.builds(lambda p, a: f"{p}({a})", _PATHS | _IDENTIFIERS, args)


def _index() -> st.SearchStrategy[str]:
    key = st.sampled_from(["0", "'name'", "-1", "1:2", "fan.name"])
    return st.builds(lambda p, k: f"{p}[{k}]", _PATHS | st.just("fan"), key)


def _unknown_filter() -> st.SearchStrategy[str]:
    name = _IDENTIFIERS.filter(lambda n: n not in ALLOWED_FILTERS) | st.sampled_from(
        ["attr", "map", "format", "pprint", "safe", "e", "string", "list"]
    )
    args = st.sampled_from(["", "('x')", "(1)"])
    return st.builds(lambda p, n, a: f"{p} | {n}{a}", _PATHS, name, args)


def _unknown_field() -> st.SearchStrategy[str]:
    paths = st.lists(_IDENTIFIERS, min_size=1, max_size=3).map(".".join)
    return paths.filter(lambda p: p not in FIELDS)


def _non_constant_filter_argument() -> st.SearchStrategy[str]:
    argument = st.sampled_from(["fan.name", "x", "''.__class__", "x=1", "*x"])
    return st.builds(lambda p, a: f"{p} | default({a})", _PATHS, argument)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        _junk_text(),
        _dunder(),
        _call(),
        _index(),
        _unknown_filter(),
        _unknown_field(),
        _non_constant_filter_argument(),
    )
)
def test_property_5_template_placeholder_validity_junk(expression):
    """Property 5: Template Placeholder Validity — anything but a known field through
    allowed filters is reported (and checking never raises)."""
    found = problems(expression)
    assert found, expression
    assert all(d.is_error and d.code.startswith("template") for d in found)


# --- Explicit cases -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "code"),
    [
        ("''.__class__", "template/expression"),
        ("fan.__class__.__mro__", "template/expression"),
        ("cycler.__init__.__globals__", "template/expression"),
        ('fan.name | attr("x")', "template/filter"),
        ("fan.name()", "template/expression"),
        ("fan['name']", "template/expression"),
        ("fan._private", "template/expression"),
        ("fan", "template/field"),
        ("fan.name.first", "template/field"),
        ("", "template"),
        ("fan.name }} {{ ''.__class__", "template/expression"),
        ("fan.name | default(fan.username)", "template/filter"),
    ],
)
def test_placeholders_that_reach_beyond_a_field_are_rejected(expression, code):
    found = problems(expression)
    assert [d.code for d in found] == [code]


def test_unknown_field_in_a_placeholder_suggests_the_closest():
    (found,) = problems("fan.nmae")
    assert found.message == "unknown field `fan.nmae` in placeholder"
    assert found.hint.startswith("did you mean `fan.name`")


def test_an_unknown_filter_lists_the_allowed_ones():
    (found,) = problems("fan.name | capitalise")
    assert found.message == "unknown filter `capitalise` in placeholder"
    assert found.hint == "filters: " + ", ".join(sorted(ALLOWED_FILTERS))


def test_the_checker_rejects_a_placeholder_reaching_python_internals():
    text = (
        'automation "Sneaky" {\n  when new_subscriber\n'
        "  send_message text: \"{{ ''.__class__ }} {{ fan.name | attr('x') }}\"\n}\n"
    )
    assert [d.code for d in check(parse(text), CATALOG)] == [
        "template/expression",
        "template/filter",
    ]


@pytest.mark.parametrize(
    "text",
    ["{{ ''.__class__.__mro__ }}", "{{ fan.__class__.__mro__ }}", "{{ fan.name.__class__.x }}"],
)
def test_the_sandbox_refuses_internals_at_render_time_too(text):
    # The sandbox treats an unsafe attribute as missing: it renders as nothing.
    assert render(text, {"fan": {"name": "Ann"}}) == ""


@pytest.mark.parametrize(
    ("ctx", "expected"),
    [
        ({"fan": {"name": "Ann"}}, "Hi Ann!"),
        ({"fan": {}}, "Hi there!"),
        ({"fan": {"name": None}}, "Hi there!"),
    ],
)
def test_default_gives_a_fallback_for_a_missing_name(ctx, expected):
    assert render('Hi {{ fan.name | default("there") }}!', ctx) == expected


@pytest.mark.parametrize("ctx", [{"fan": {}}, {"fan": {"name": None}}])
def test_a_missing_field_renders_as_nothing(ctx):
    # Found while writing these tests: a null field rendered as "None" in the message.
    assert render("Hi {{ fan.name }}!", ctx) == "Hi !"


def test_block_and_comment_markers_stay_literal_text():
    text = "{% if fan.vip %}50% off{% endif %} {# not a comment #} {{ fan.name }}"
    expected = "{% if fan.vip %}50% off{% endif %} {# not a comment #} Ann"
    assert render(text, {"fan": {"name": "Ann"}}) == expected
    assert render("{% raw %} {#", {}) == "{% raw %} {#"


def test_values_render_as_written_in_the_language():
    ctx = {"event": {"amount": Money(Decimal("9.99"))}, "fan": {"tags": ["a", "b"]}}
    assert render("{{ event.amount }} {{ fan.tags | join(', ') }}", ctx) == "$9.99 a, b"


# --- Known gaps (reported; remove the marker when fixed) ---------------------------------


def _check_message(literal: str) -> list:
    text = f'automation "T" {{\n  when new_subscriber\n  send_message text: "{literal}"\n}}\n'
    return [d.code for d in check(parse(text), CATALOG)]


def test_a_placeholder_spelled_with_an_escape_is_checked():
    # "{\u{7B}" is "{{" once decoded, and render() treats it as a placeholder.
    assert _check_message("{\\u{7B} fan.nmae }}") == ["template/field"]


def test_statements_cannot_be_smuggled_into_a_message():
    literal = "{{ fan.name }}{\\u{0}% for c in fan.name %\\u{0}}!{\\u{0}% endfor %\\u{0}}"
    value = (
        parse(f'automation "T" {{\n  when new_subscriber\n  send_message text: "{literal}"\n}}\n')
        .automations[0]
        .body[0]
        .arguments[0]
        .value.value
    )
    assert _check_message(literal) != [] or "!!!" not in render(value, {"fan": {"name": "Ann"}})


def test_a_quoted_default_inside_a_message_checks_clean():
    assert _check_message('Hi {{ fan.name | default(\\"there\\") }}') == []
