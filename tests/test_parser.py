"""The parser: text → syntax tree, with the source span of every node."""

from __future__ import annotations

from decimal import Decimal

import pytest

from dsl import DslError, parse
from dsl.ast import (
    Action,
    Argument,
    Automation,
    Boolean,
    BoolOp,
    Branch,
    Compare,
    Duration,
    Field,
    If,
    ListExpr,
    Module,
    Money,
    Not,
    Number,
    Percent,
    String,
    Trigger,
    Wait,
)

HEAD = 'automation "A" {\n  when new_subscriber\n'


def steps(*lines: str):
    """The steps parsed from ``lines`` inside a minimal automation."""
    text = HEAD + "".join(f"  {line}\n" for line in lines) + "}\n"
    return parse(text).automations[0].body


def value(expr_text: str):
    """The value of one argument written as ``expr_text``."""
    (action,) = steps(f"act v: {expr_text}")
    return action.arguments[0].value


def condition(expr_text: str):
    (if_step,) = steps(f"if {expr_text} {{", "}")
    return if_step.branches[0].condition


def source(text: str, span) -> str:
    return text[span.start : span.end]


# --- Automations, description, trigger ------------------------------------------


def test_empty_text_is_an_empty_module():
    assert parse("") == Module(())
    assert parse("# only a comment\n").automations == ()


def test_several_automations_in_order_with_their_spans():
    text = (
        'automation "Welcome" {\n  when new_subscriber\n}\n\n'
        'automation "Thanks" {\n  when purchase_completed\n  add_tag tag: "buyer"\n}\n'
    )
    module = parse(text)
    assert [a.name for a in module.automations] == ["Welcome", "Thanks"]
    first, second = module.automations
    assert (first.span.line, first.span.column, first.span.end_line) == (1, 1, 3)
    assert (second.span.line, second.span.end_line, second.span.end_column) == (5, 8, 2)
    assert source(text, second.span).startswith('automation "Thanks" {')
    assert source(text, second.span).endswith("}")
    assert module.span.to(second.span) == module.span


def test_automation_name_is_a_decoded_string():
    (automation,) = parse('automation "Say \\"hi\\" 👋" {\n  when new_subscriber\n}\n').automations
    assert automation.name == 'Say "hi" 👋'


def test_description_is_optional_and_comes_first():
    text = 'automation "A" {\n  description "Greets fans"\n  when new_subscriber\n}\n'
    assert parse(text).automations[0].description == "Greets fans"
    assert parse(HEAD + "}\n").automations[0].description is None


def test_trigger_without_arguments():
    text = HEAD + "}\n"
    trigger = parse(text).automations[0].trigger
    assert trigger == Trigger("new_subscriber")
    assert source(text, trigger.span) == "when new_subscriber"


def test_trigger_with_arguments():
    text = 'automation "A" {\n  when purchase_completed min_amount: $10, item: "Video"\n}\n'
    trigger = parse(text).automations[0].trigger
    assert trigger == Trigger(
        "purchase_completed",
        (Argument("min_amount", Money(Decimal(10))), Argument("item", String("Video"))),
    )
    assert source(text, trigger.span) == 'when purchase_completed min_amount: $10, item: "Video"'
    assert source(text, trigger.arguments[1].span) == 'item: "Video"'


def test_newlines_are_not_significant():
    """One automation written over odd lines parses to the same tree as the tidy one."""
    tidy = HEAD + '  send_message text: "Hi", delay: 2h\n  wait 1d\n}\n'
    odd = 'automation "A"\n{ when new_subscriber send_message text:\n"Hi",\n delay: 2h wait 1d }'
    assert parse(odd) == parse(tidy)


# --- Steps -------------------------------------------------------------------------


def test_action_with_arguments_in_the_order_written():
    text = HEAD + '  create_offer discount: 20%, valid_for: 48h, name: "Welcome 20%"\n}\n'
    (action,) = parse(text).automations[0].body
    assert action == Action(
        "create_offer",
        (
            Argument("discount", Percent(Decimal(20))),
            Argument("valid_for", Duration(48, "h")),
            Argument("name", String("Welcome 20%")),
        ),
    )
    assert source(text, action.span) == (
        'create_offer discount: 20%, valid_for: 48h, name: "Welcome 20%"'
    )
    assert [source(text, a.value.span) for a in action.arguments] == ["20%", "48h", '"Welcome 20%"']


def test_action_without_arguments_followed_by_another_action():
    """An argument name is known by its colon, so a bare action ends where the next begins."""
    text = HEAD + '  notify_me\n  add_tag tag: "x"\n  archive_chat\n}\n'
    body = parse(text).automations[0].body
    assert body == (
        Action("notify_me"),
        Action("add_tag", (Argument("tag", String("x")),)),
        Action("archive_chat"),
    )
    assert source(text, body[0].span) == "notify_me"
    assert (body[2].span.line, body[2].span.column) == (5, 3)


def test_arguments_may_continue_on_the_next_line_after_a_comma():
    assert steps("create_offer discount: 20%,", "  valid_for: 48h") == (
        Action(
            "create_offer",
            (Argument("discount", Percent(Decimal(20))), Argument("valid_for", Duration(48, "h"))),
        ),
    )


def test_wait():
    text = HEAD + "  wait 2d\n}\n"
    (wait,) = parse(text).automations[0].body
    assert wait == Wait(Duration(2, "d"))
    assert wait.duration.seconds == 2 * 86400
    assert source(text, wait.span) == "wait 2d"
    assert source(text, wait.duration.span) == "2d"


def test_nested_if_else_if_else():
    text = HEAD + (
        "  if fan.total_spent > $100 {\n"
        '    add_tag tag: "vip"\n'
        '    if "new" in fan.tags {\n'
        "      wait 1h\n"
        "    }\n"
        "  } else if fan.total_spent > $10 {\n"
        '    add_tag tag: "buyer"\n'
        "  } else {\n"
        "    wait 1d\n"
        "  }\n"
        "}\n"
    )
    (if_step,) = parse(text).automations[0].body
    inner = If(
        (Branch(Compare("in", String("new"), Field(("fan", "tags"))), (Wait(Duration(1, "h")),)),)
    )
    assert if_step == If(
        (
            Branch(
                Compare(">", Field(("fan", "total_spent")), Money(Decimal(100))),
                (Action("add_tag", (Argument("tag", String("vip")),)), inner),
            ),
            Branch(
                Compare(">", Field(("fan", "total_spent")), Money(Decimal(10))),
                (Action("add_tag", (Argument("tag", String("buyer")),)),),
            ),
        ),
        else_body=(Wait(Duration(1, "d")),),
    )
    first, second = if_step.branches
    # A branch's span runs from `if` (or `else`) to its closing brace; the If's to the last.
    assert (first.span.line, first.span.column, first.span.end_line) == (3, 3, 8)
    assert source(text, second.span).startswith("else if fan.total_spent > $10 {")
    assert (second.span.end_line, second.span.end_column) == (10, 4)
    assert (if_step.span.line, if_step.span.end_line, if_step.span.end_column) == (3, 12, 4)


def test_if_without_else_has_no_else_body():
    (if_step,) = steps("if true {", "}")
    assert if_step.else_body is None
    assert if_step.branches[0].body == ()


def test_empty_else_is_kept_apart_from_no_else():
    (if_step,) = steps("if true {", "} else {", "}")
    assert if_step.else_body == ()


# --- Literals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ('"plain"', "plain"),
        ('"say \\"hi\\""', 'say "hi"'),
        ('"back\\\\slash"', "back\\slash"),
        ('"two\\nlines"', "two\nlines"),
        ('"tab\\there"', "tab\there"),
        ('"cr\\r"', "cr\r"),
        ('"smile \\u{1F600}"', "smile 😀"),
        ('"\\u{41}"', "A"),
        ('"raw 😀 and é"', "raw 😀 and é"),
        ('""', ""),
        ('"# not a comment"', "# not a comment"),
    ],
)
def test_strings_and_every_escape(written, expected):
    assert value(written) == String(expected)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("10", Number(Decimal(10))),
        ("-3", Number(Decimal(-3))),
        ("9.99", Number(Decimal("9.99"))),
        ("0", Number(Decimal(0))),
        ("$10", Money(Decimal(10), "USD")),
        ("$9.99", Money(Decimal("9.99"), "USD")),
        ("€5", Money(Decimal(5), "EUR")),
        ("£2.5", Money(Decimal("2.5"), "GBP")),
        ("20%", Percent(Decimal(20))),
        ("12.5%", Percent(Decimal("12.5"))),
        ("45s", Duration(45, "s")),
        ("30m", Duration(30, "m")),
        ("48h", Duration(48, "h")),
        ("2d", Duration(2, "d")),
        ("1w", Duration(1, "w")),
        ("true", Boolean(True)),
        ("false", Boolean(False)),
    ],
)
def test_every_kind_of_literal(written, expected):
    parsed = value(written)
    assert parsed == expected
    # repr also tells Decimal('10') from 10 and Decimal('2.5') from Decimal('2.50').
    assert repr(parsed) == repr(expected)


def test_decimals_are_exact():
    assert value("0.1").value + value("0.2").value == Decimal("0.3")


def test_durations_in_seconds():
    assert [value(d).seconds for d in ("45s", "30m", "48h", "2d", "1w")] == [
        45,
        1800,
        172800,
        172800,
        604800,
    ]


def test_lists_including_empty_nested_and_trailing_comma():
    assert value('["US", "CA"]') == ListExpr((String("US"), String("CA")))
    assert value('["US", "CA",]') == value('["US", "CA"]')
    assert value("[]") == ListExpr(())
    assert value("[[1], $2, fan.x]") == ListExpr(
        (ListExpr((Number(Decimal(1)),)), Money(Decimal(2)), Field(("fan", "x")))
    )


def test_list_span_covers_the_brackets():
    text = HEAD + '  act v: ["a",\n    "b"]\n}\n'
    list_expr = parse(text).automations[0].body[0].arguments[0].value
    assert source(text, list_expr.span) == '["a",\n    "b"]'
    assert (list_expr.span.line, list_expr.span.end_line) == (3, 4)


# --- Placeholders --------------------------------------------------------------------


def test_placeholders_are_parsed_with_their_spans():
    text = HEAD + '  send_message text: "Hi {{ fan.name }}, you spent {{event.amount}}!"\n}\n'
    string = parse(text).automations[0].body[0].arguments[0].value
    assert string.value == "Hi {{ fan.name }}, you spent {{event.amount}}!"
    assert [p.expression for p in string.placeholders] == ["fan.name", "event.amount"]
    first, second = string.placeholders
    assert source(text, first.span) == "{{ fan.name }}"
    assert source(text, second.span) == "{{event.amount}}"
    assert (first.span.line, first.span.column, first.span.end_column) == (3, 26, 40)


def test_placeholders_do_not_take_part_in_equality():
    """Placeholders are derived from the text, which already decides equality."""
    assert value('"{{ a }}"') == String("{{ a }}")


def test_a_string_without_braces_has_no_placeholders():
    assert value('"{ single } braces"').placeholders == ()


# --- Expressions ---------------------------------------------------------------------


def test_comparisons_and_membership():
    assert condition("fan.total_spent >= $10") == Compare(
        ">=", Field(("fan", "total_spent")), Money(Decimal(10))
    )
    for op in ("==", "!=", "<", "<=", ">", ">="):
        assert condition(f"fan.x {op} 1").op == op
    assert condition('"vip" in fan.tags') == Compare("in", String("vip"), Field(("fan", "tags")))
    assert condition('"vip" not in fan.tags').op == "not in"


def test_precedence_is_or_then_and_then_not_then_comparison():
    x, y, z = (Field((n,)) for n in "xyz")
    assert condition("x or y and z") == BoolOp("or", x, BoolOp("and", y, z))
    assert condition("not x == 1 and y") == BoolOp(
        "and", Not(Compare("==", x, Number(Decimal(1)))), y
    )
    assert condition("not not x") == Not(Not(x))


def test_and_or_fold_to_the_left():
    x, y, z = (Field((n,)) for n in "xyz")
    assert condition("x and y and z") == BoolOp("and", BoolOp("and", x, y), z)
    assert condition("x or y or z") == BoolOp("or", BoolOp("or", x, y), z)


def test_parentheses_group_and_leave_no_node():
    x, y, z = (Field((n,)) for n in "xyz")
    assert condition("(x or y) and z") == BoolOp("and", BoolOp("or", x, y), z)
    assert condition("((x))") == x


def test_expression_spans():
    text = HEAD + '  if fan.total_spent > $10 and "vip" not in fan.tags {\n  }\n}\n'
    cond = parse(text).automations[0].body[0].branches[0].condition
    assert source(text, cond.span) == 'fan.total_spent > $10 and "vip" not in fan.tags'
    assert source(text, cond.left.span) == "fan.total_spent > $10"
    assert source(text, cond.right.span) == '"vip" not in fan.tags'
    assert source(text, cond.left.left.span) == "fan.total_spent"


def test_field_paths():
    assert condition("event.amount") == Field(("event", "amount"))
    assert condition("fan.profile.country").dotted == "fan.profile.country"


# --- Keywords and names --------------------------------------------------------------


def test_keywords_are_names_where_no_keyword_can_stand():
    """The contextual lexer reads `description`, `when` or `if` after a dot, or before the
    colon of an argument, as ordinary names, so fields and arguments may use them."""
    assert condition("event.description == event.when").left == Field(("event", "description"))
    assert condition("event.description == event.when").right == Field(("event", "when"))
    (action,) = steps('create_offer description: "x", if: 1, wait: 2d')
    assert [a.name for a in action.arguments] == ["description", "if", "wait"]


def test_a_keyword_where_a_step_goes_is_an_error_not_an_action():
    for line in ("when purchase_completed", "description", "else", "and"):
        with pytest.raises(DslError):
            steps(line, 'add_tag tag: "x"')


def test_names_with_digits_and_underscores():
    (action,) = steps("send_message_v2 _private_arg: 1")
    assert action.name == "send_message_v2"
    assert action.arguments[0].name == "_private_arg"


# --- Comments --------------------------------------------------------------------------


def test_comments_are_collected_with_their_spans():
    text = (
        "# File header\n"
        'automation "A" {  # after the brace\n'
        "  when new_subscriber\n"
        "  #no space\n"
        '  add_tag tag: "#not-a-comment"  # trailing\n'
        "}\n"
    )
    module = parse(text)
    assert [c.text for c in module.comments] == [
        " File header",
        " after the brace",
        "no space",
        " trailing",
    ]
    assert [(c.span.line, c.span.column) for c in module.comments] == [
        (1, 1),
        (2, 19),
        (4, 3),
        (5, 34),
    ]
    assert all(source(text, c.span) == "#" + c.text for c in module.comments)


def test_comments_do_not_change_the_tree():
    plain = HEAD + '  add_tag tag: "x"\n}\n'
    commented = "# hi\n" + HEAD + '  # before\n  add_tag tag: "x"  # after\n}\n'
    assert parse(commented).automations == parse(plain).automations


# --- Whole files ------------------------------------------------------------------------


def test_windows_line_endings_parse_with_the_same_lines():
    text = HEAD + '  add_tag tag: "x"\n}\n'
    crlf = parse(text.replace("\n", "\r\n"))
    assert crlf == parse(text)
    assert crlf.automations[0].body[0].span.line == 3


def test_spans_are_excluded_from_equality():
    a = parse(HEAD + '  add_tag tag: "x"\n}\n')
    b = parse('\n\n   automation "A"{when new_subscriber add_tag tag:"x"}')
    assert a == b
    assert a.automations[0].span != b.automations[0].span


def test_parse_returns_frozen_nodes():
    automation = parse(HEAD + "}\n").automations[0]
    assert isinstance(automation, Automation)
    with pytest.raises(AttributeError):
        automation.name = "B"  # type: ignore[misc]
