"""The formatter: canonical layout, comments and blank lines kept, escapes, parentheses."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

import dsl
from dsl import DslError, ast, format_module, format_text
from dsl.formatter import expression

EXAMPLE_FILES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.hz"))


def f(*path: str) -> ast.Field:
    return ast.Field(path)


A, B, C = f("a"), f("b"), f("c")


def test_messy_layout_becomes_canonical() -> None:
    messy = (
        '   automation   "Messy"{\n'
        'description "Thank buyers"\n'
        '        when   purchase_completed   minimum:$5,currency :"USD"\n'
        "\n\n\n"
        '  send_message   text:"Thanks!" ,  delay:2h\n'
        "      wait 1d\n"
        "\n\n\n"
        '  if event.amount>=$50 and(fan.country=="US"or fan.country=="CA"){\n'
        'add_tag tag:"big spender"\n'
        "\n"
        "  }\n"
        '     else{ add_tag tag:"buyer" }\n'
        '}    automation "Second" { when new_subscriber add_tag tag: ["new",  "fan",] }'
    )
    assert format_text(messy) == (
        'automation "Messy" {\n'
        '  description "Thank buyers"\n'
        '  when purchase_completed minimum: $5, currency: "USD"\n'
        '  send_message text: "Thanks!", delay: 2h\n'
        "  wait 1d\n"
        "\n"
        '  if event.amount >= $50 and (fan.country == "US" or fan.country == "CA") {\n'
        '    add_tag tag: "big spender"\n'
        "  } else {\n"
        '    add_tag tag: "buyer"\n'
        "  }\n"
        "}\n"
        "\n"
        'automation "Second" {\n'
        "  when new_subscriber\n"
        '  add_tag tag: ["new", "fan"]\n'
        "}\n"
    )


CANONICAL_WITH_COMMENTS = """\
# File header

# Second paragraph of the header
automation "A" {  # on the header
  # before the trigger
  when new_subscriber  # on the trigger
  # before the first step
  send_message text: "hi # not a comment"  # on a step

  # after a blank line
  if fan.vip {  # on an if
    # inside the branch
    add_tag tag: "vip"
    # before a branch's closing brace
  } else if fan.new {  # on an else if
    wait 1d
  } else {  # on an else
    add_tag tag: "regular"
  }  # on a closing brace
  # before the automation's closing brace
}

# between automations, after A

# between automations, before B
automation "B" {
  when new_subscriber
}

# at the end
"""


def test_comments_in_canonical_places_stay_put() -> None:
    assert format_text(CANONICAL_WITH_COMMENTS) == CANONICAL_WITH_COMMENTS


def test_comments_are_reindented_and_trailing_ones_get_two_spaces() -> None:
    text = (
        "        #top\n"
        'automation "A" { # header\n'
        "when t\n"
        "if x {\n"
        "      # inside\n"
        "a # after a\n"
        "# before brace\n"
        "}\n"
        "}\n"
        "    # end"
    )
    assert format_text(text) == (
        "#top\n"
        'automation "A" {  # header\n'
        "  when t\n"
        "  if x {\n"
        "    # inside\n"
        "    a  # after a\n"
        "    # before brace\n"
        "  }\n"
        "}\n"
        "\n"
        "# end\n"
    )


def test_trailing_comment_of_a_multiline_statement_goes_to_its_line() -> None:
    text = 'automation "A" {\n  when t\n  send text: "a",  # first\n    tag: "b"\n}\n'
    assert format_text(text) == (
        'automation "A" {\n  when t\n  send text: "a", tag: "b"  # first\n}\n'
    )


def test_blank_lines_between_steps_collapse_to_one_and_vanish_elsewhere() -> None:
    text = 'automation "A" {\n\n\n  when t\n\n\n  a\n\n\n\n  b\n  c\n\n\n}\n\n\n\n'
    text += 'automation "B" {\n  when t\n}\n\n\n'
    assert format_text(text) == (
        'automation "A" {\n  when t\n  a\n\n  b\n  c\n}\n\nautomation "B" {\n  when t\n}\n'
    )


def test_empty_module_formats_to_empty_text() -> None:
    assert format_text("") == ""
    assert format_text("\n\n  \n") == ""
    assert format_module(ast.Module(())) == ""


def test_syntax_error_raises_dsl_error() -> None:
    with pytest.raises(DslError) as caught:
        format_text('automation "A" {\n  when t\n  wait 2x\n}\n', "bad.hz")
    assert caught.value.filename == "bad.hz"
    assert caught.value.diagnostics[0].span.line == 3


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_examples_are_idempotent(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    once = format_text(text)
    assert format_text(once) == once
    assert dsl.parse(once) == dsl.parse(text)


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ('say "hi"', r'"say \"hi\""'),
        ("back\\slash", r'"back\\slash"'),
        ("line\nbreak\ttab\rreturn", r'"line\nbreak\ttab\rreturn"'),
        ("nul\x00 bell\x07 del\x7f c1\x85", r'"nul\u{0} bell\u{7} del\u{7f} c1\u{85}"'),
        ("émoji 😀 # {{ fan.name }}", '"émoji 😀 # {{ fan.name }}"'),
    ],
)
def test_string_escapes(value: str, literal: str) -> None:
    assert expression(ast.String(value)) == literal
    assert dsl.parse(f"automation {literal} {{ when t }}").automations[0].name == value


@pytest.mark.parametrize(
    ("node", "text"),
    [
        (ast.BoolOp("and", ast.BoolOp("or", A, B), C), "(a or b) and c"),
        (ast.BoolOp("or", ast.BoolOp("and", A, B), C), "a and b or c"),
        (ast.BoolOp("or", A, ast.BoolOp("and", B, C)), "a or b and c"),
        (ast.BoolOp("and", ast.BoolOp("and", A, B), C), "a and b and c"),
        (ast.BoolOp("and", A, ast.BoolOp("and", B, C)), "a and (b and c)"),
        (ast.BoolOp("or", A, ast.BoolOp("or", B, C)), "a or (b or c)"),
        (ast.Not(ast.BoolOp("or", A, B)), "not (a or b)"),
        (ast.Not(ast.Compare("==", A, B)), "not (a == b)"),
        (ast.Not(ast.Not(A)), "not not a"),
        (ast.BoolOp("and", ast.Not(A), ast.Not(B)), "not a and not b"),
        (ast.Compare("==", ast.Not(A), B), "(not a) == b"),
        (ast.Compare("<", ast.Compare("<", A, B), C), "(a < b) < c"),
        (ast.Compare("not in", A, ast.BoolOp("or", B, C)), "a not in (b or c)"),
        (ast.ListExpr((ast.BoolOp("or", A, B), ast.Not(C))), "[a or b, not c]"),
    ],
)
def test_parentheses_only_where_precedence_needs_them(node: ast.Expr, text: str) -> None:
    assert expression(node) == text
    module = dsl.parse(f'automation "x" {{ when t\n if {text} {{ }} }}')
    assert module.automations[0].body[0].branches[0].condition == node


def test_redundant_parentheses_are_dropped() -> None:
    text = 'automation "x" {\n  when t\n  if ((a)) and (not (b == [(1)])) {\n  }\n}\n'
    assert "  if a and not (b == [1]) {\n" in format_text(text)


@pytest.mark.parametrize(
    ("node", "text"),
    [
        (ast.Number(Decimal("1E+3")), "1000"),
        (ast.Number(Decimal("-0.50")), "-0.50"),
        (ast.Number(Decimal("1.5E-7")), "0.00000015"),
        (ast.Money(Decimal("9.99")), "$9.99"),
        (ast.Money(Decimal("1E+1"), "EUR"), "€10"),
        (ast.Money(Decimal("0.5"), "GBP"), "£0.5"),
        (ast.Percent(Decimal("12.5")), "12.5%"),
        (ast.Duration(48, "h"), "48h"),
        (ast.Boolean(False), "false"),
        (f("fan", "total_spent"), "fan.total_spent"),
        (ast.ListExpr(()), "[]"),
    ],
)
def test_literals(node: ast.Expr, text: str) -> None:
    assert expression(node) == text


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(ValueError, match="JPY"):
        expression(ast.Money(Decimal(5), "JPY"))


def test_in_memory_module_formats_with_description_and_trigger_arguments() -> None:
    module = ast.Module(
        (
            ast.Automation(
                "Win back",
                ast.Trigger(
                    "subscription_expiring", (ast.Argument("days", ast.Number(Decimal(3))),)
                ),
                (ast.Wait(ast.Duration(2, "d")), ast.Action("send_message")),
                description="Before they go",
            ),
        )
    )
    assert format_module(module) == (
        'automation "Win back" {\n'
        '  description "Before they go"\n'
        "  when subscription_expiring days: 3\n"
        "  wait 2d\n"
        "  send_message\n"
        "}\n"
    )


def test_a_long_chain_of_alternatives_formats_without_exhausting_the_stack() -> None:
    # Left-associative `or` makes a tree as deep as the chain is long. The parser
    # refuses such text (too deep for the checker), but a tree built in memory — by
    # an import, say — must still print.
    compares = [
        ast.Compare("==", ast.Field(("fan", "country")), ast.String(f"C{i}")) for i in range(3000)
    ]
    condition = compares[0]
    for right in compares[1:]:
        condition = ast.BoolOp("or", condition, right)
    module = ast.Module(
        (ast.Automation("x", ast.Trigger("t"), (ast.If((ast.Branch(condition, ()),)),)),)
    )
    text = format_module(module)
    assert text.count(" or ") == 2999
    assert text.startswith('automation "x" {\n  when t\n  if fan.country == "C0" or ')
