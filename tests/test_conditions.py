"""Conditions: their JSON form, the fast generated callable and the precise evaluator."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import expressions, literals

from dsl import ast, parse_expression
from dsl.catalog import ValueType
from dsl.conditions import compile_condition, evaluate, from_json, to_json

# The fields conditions are drawn over, with their declared types.
FIELDS = {
    "fan.name": ValueType.TEXT,
    "fan.country": ValueType.TEXT,
    "fan.tags": ValueType.LIST,
    "fan.total_spent": ValueType.MONEY,
    "fan.message_count": ValueType.NUMBER,
    "event.text": ValueType.TEXT,
    "event.amount": ValueType.MONEY,
}


def both(text: str, ctx: dict, typed: bool = True) -> bool:
    """The answer of both forms, after asserting that they agree."""
    data = to_json(parse_expression(text), FIELDS if typed else None)
    fast, precise = compile_condition(data)(ctx), evaluate(data, ctx)
    assert fast is precise, (text, ctx, fast, precise)
    return fast


# --- JSON form ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(expressions())
def test_json_round_trip(expr):
    """An expression survives its JSON form, through JSON text, exactly."""
    data = json.loads(json.dumps(to_json(expr)))
    assert from_json(data) == expr
    assert to_json(from_json(data)) == data


def test_json_form_of_a_condition():
    expr = parse_expression('fan.total_spent >= $9.50 and not ("vip" in fan.tags)')
    assert to_json(expr, FIELDS) == {
        "and": [
            {
                "op": ">=",
                "left": {"field": "fan.total_spent", "type": "money"},
                "right": {"money": "9.50", "currency": "USD"},
            },
            {
                "not": {
                    "op": "in",
                    "left": {"text": "vip"},
                    "right": {"field": "fan.tags", "type": "list"},
                }
            },
        ]
    }


def test_json_form_of_literals_is_exact():
    expr = parse_expression("[1000, 0.000001, -3, €2.5, 12.5%, 90m, true]")
    assert expr.items[0] == ast.Number(Decimal("1E+3"))
    assert to_json(expr) == {
        "list": [
            {"number": "1000"},
            {"number": "0.000001"},
            {"number": "-3"},
            {"money": "2.5", "currency": "EUR"},
            {"percent": "12.5"},
            {"duration": "90m"},
            {"bool": True},
        ]
    }


# --- The fast form agrees with the precise one --------------------------------------------

_FIELD_NODES = st.sampled_from([*sorted(FIELDS), "fan.unknown", "fan", "fan.name.first"]).map(
    lambda path: ast.Field(tuple(path.split(".")))
)
_WORDS = st.sampled_from(["vip", "VIP", "price", "US", "ca", "", "Ann"])
_NUMBERS = st.sampled_from([0, 1, 10, 9.99, 50, -3, 100.5, Decimal("9.99"), Decimal(10)])
_LITERALS = st.one_of(
    literals(),
    _WORDS.map(ast.String),
    _NUMBERS.map(lambda n: ast.Number(Decimal(str(n)))),
)
# Lists hold literals only: the checker rejects anything else in a list.
_LEAVES = st.one_of(
    _FIELD_NODES,
    _LITERALS,
    st.builds(ast.ListExpr, st.lists(_LITERALS, max_size=3).map(tuple)),
)


def _conditions() -> st.SearchStrategy[ast.Expr]:
    def extend(children):
        return st.one_of(
            st.builds(ast.Not, children),
            st.builds(ast.BoolOp, st.sampled_from(["and", "or"]), children, children),
            st.builds(ast.Compare, st.sampled_from(ast.COMPARISON_OPERATORS), children, children),
        )

    return st.recursive(_LEAVES, extend, max_leaves=6)


_RIGHT_VALUES: dict[ValueType, st.SearchStrategy] = {
    ValueType.TEXT: _WORDS | st.text(max_size=6),
    ValueType.LIST: st.lists(_WORDS, max_size=3),
    ValueType.MONEY: _NUMBERS,
    ValueType.NUMBER: _NUMBERS,
}
# Anything a sloppy event might carry instead (but see the xfail below for text in a list).
_WRONG_VALUES = st.one_of(
    st.none(), _WORDS, _NUMBERS, st.booleans(), st.lists(_NUMBERS, max_size=2), st.just({"a": 1})
)


@st.composite
def contexts(draw) -> dict:
    """Contexts with fields present, missing, null or holding a value of the wrong type;
    sometimes a whole group is missing or is not a mapping."""
    ctx: dict = {}
    for path, kind in FIELDS.items():
        group, name = path.split(".")
        choice = draw(st.sampled_from(["right", "right", "missing", "none", "wrong"]))
        if choice == "missing":
            ctx.setdefault(group, {})
            continue
        if choice == "right":
            value = draw(_RIGHT_VALUES[kind])
        elif choice == "none":
            value = None
        else:
            value = draw(_WRONG_VALUES.filter(lambda v, k=kind: not _text_for_a_list(k, v)))
        ctx.setdefault(group, {})[name] = value
    for group in ("fan", "event"):
        odd = draw(st.sampled_from([None, None, None, "drop", "text", "list"]))
        if odd == "drop":
            ctx.pop(group, None)
        elif odd == "text":
            ctx[group] = "not a mapping"
        elif odd == "list":
            ctx[group] = [1, 2]
    return ctx


def _text_for_a_list(kind: ValueType, value: object) -> bool:
    # Text where a list is declared is the one known disagreement (xfail test below).
    return kind is ValueType.LIST and isinstance(value, str)


@settings(max_examples=300, deadline=None)
@given(_conditions(), contexts(), st.booleans())
def test_compiled_conditions_agree_with_the_precise_evaluator(expr, ctx, typed):
    """Compiled conditions agree with the precise evaluator, on any context: fields
    missing, null or of the wrong type, with or without declared field types."""
    data = to_json(expr, FIELDS if typed else None)
    assert compile_condition(data)(ctx) is evaluate(data, ctx)


def test_conditions_of_one_shape_share_their_code():
    """The generated text holds no constant: one code object per shape, each condition a
    function over it with its own constants."""

    def compiled(text: str):
        return compile_condition(to_json(parse_expression(text), FIELDS))

    cheap = compiled('fan.total_spent >= 10 and fan.country == "US"')
    dear = compiled('fan.total_spent >= 500 and fan.country == "FR"')
    other = compiled("fan.total_spent >= 10")
    assert cheap.__code__ is dear.__code__ and other.__code__ is not cheap.__code__
    fan = {"fan": {"total_spent": 50, "country": "US"}}
    assert (cheap(fan), dear(fan)) == (True, False)
    # The precise form is shared as well, with the same constants.
    incomplete = {"fan": {"total_spent": 50}}
    assert (cheap(incomplete), dear(incomplete)) == (False, False)
    assert not cheap({"fan": {"total_spent": 50, "country": None}})


def test_an_unknown_operator_is_refused():
    data = {"op": "or __import__('os') or", "left": {"number": "1"}, "right": {"number": "1"}}
    with pytest.raises(ValueError, match="not a comparison"):
        compile_condition(data)


@pytest.mark.xfail(strict=True, reason="fast `in` trusts a list-typed field to hold a list")
def test_text_in_a_list_typed_field_agrees():
    both('"VIP" in fan.tags', {"fan": {"tags": "vip, buyer"}})


def test_and_or_compared_as_a_value_are_booleans():
    # Found while writing these tests: the fast form compared `and`'s last operand
    # (None here), not the bool the precise form compares.
    ctx = {"fan": {"name": "a", "verified": None}}
    assert both('false == (fan.name == "a" and fan.verified)', ctx) is True
    assert both('true == (fan.verified or fan.name == "a")', ctx) is True


def test_user_text_is_never_run_as_code():
    # Keys and constants are parameters of the generated function, never spliced in.
    sneaky = "x'] or __import__('os') or ctx['"
    data = {
        "op": "==",
        "left": {"field": f"fan.{sneaky}"},
        "right": {"text": "') or True or ('"},
    }
    assert compile_condition(data)({"fan": {}}) is False
    assert compile_condition(data)({"fan": {sneaky: "') or True or ('"}}) is True


# --- Missing fields -----------------------------------------------------------------------

MISSING_CONTEXTS = [
    pytest.param({"fan": {}, "event": {}}, id="absent"),
    pytest.param(
        {"fan": dict.fromkeys(["name", "country", "tags", "total_spent"]), "event": {}},
        id="null",
    ),
    pytest.param({}, id="no-group"),
]


@pytest.mark.parametrize("ctx", MISSING_CONTEXTS)
@pytest.mark.parametrize("typed", [True, False], ids=["typed", "untyped"])
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('fan.country == "US"', False),
        ('fan.country != "US"', True),
        ('fan.country in ["US", "CA"]', False),
        ('fan.country not in ["US", "CA"]', True),
        ('"vip" in fan.tags', False),
        ('"vip" not in fan.tags', True),
        ('"us" in fan.country', False),
        ('fan.name in "Annabel"', False),
        ('fan.name not in "Annabel"', True),
        ("fan.total_spent < 10", False),
        ("fan.total_spent <= 10", False),
        ("fan.total_spent > 10", False),
        ("fan.total_spent >= $10", False),
        ('not (fan.country == "US")', True),
        ('not (fan.country != "US")', False),
        ("not (fan.total_spent < 10)", True),
        ("not fan.country", True),
    ],
)
def test_missing_field_semantics(text, expected, ctx, typed):
    """A missing value equals nothing and orders against nothing (docs/language.md)."""
    assert both(text, ctx, typed) is expected


@pytest.mark.xfail(strict=True, reason="None == None: two missing values compare equal")
def test_two_missing_values_are_not_equal():
    assert both("fan.country == fan.name", {"fan": {}}) is False


# --- Text and money -------------------------------------------------------------------------


@pytest.mark.parametrize("typed", [True, False], ids=["typed", "untyped"])
@pytest.mark.parametrize(
    ("text", "message", "expected"),
    [
        ('"price" in event.text', "What's the PRICE list?", True),
        ('"PRICE" in event.text', "prices please", True),
        ('"how much" in event.text', "How Much is it", True),
        ('"menu" in event.text', "men u", False),
        ('"price" not in event.text', "Price?", False),
        ('"" in event.text', "anything", True),
        ('event.text in "hello there"', "THERE", True),
    ],
)
def test_in_on_text_is_a_case_insensitive_substring_test(text, message, expected, typed):
    assert both(text, {"event": {"text": message}}, typed) is expected


def test_in_on_a_list_is_exact_membership():
    ctx = {"fan": {"tags": ["vip", "buyer"], "country": "us"}}
    assert both('"vip" in fan.tags', ctx) is True
    assert both('"VIP" in fan.tags', ctx) is False
    assert both('"vi" in fan.tags', ctx) is False
    assert both('fan.country in ["US", "CA"]', ctx) is False


@pytest.mark.parametrize(
    ("text", "spent", "expected"),
    [
        ("fan.total_spent >= 100", 150, True),
        ("fan.total_spent >= 100", 100, True),
        ("fan.total_spent >= $100", 99.5, False),
        ("fan.total_spent == $10", 10, True),
        ("fan.total_spent == $10", 10.0, True),
        ("fan.total_spent == 10", Decimal(10), True),
        ("fan.total_spent < $9.99", 9.98, True),
        ("fan.total_spent == $9.99", 9.99, True),
        ("fan.total_spent > 0.5", Decimal("0.75"), True),
        ("fan.total_spent >= $1000", 0, False),
    ],
)
def test_money_compares_with_plain_numbers(text, spent, expected):
    assert both(text, {"fan": {"total_spent": spent}}) is expected


def test_and_or_not_with_fields():
    ctx = {"fan": {"total_spent": 120, "tags": ["vip"], "country": "FR"}}
    assert both('fan.total_spent > 100 and "vip" in fan.tags', ctx) is True
    assert both('fan.total_spent > 500 or fan.country in ["FR", "BE"]', ctx) is True
    assert both('not (fan.total_spent > 100) or "x" in fan.tags', ctx) is False
