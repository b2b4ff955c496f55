"""Syntax errors: the message, where it points, the hint, and how it is rendered.

Each common mistake a person or an LLM makes has a test that pins its message, line,
column and hint, and reports exactly one problem: the mistake is not reported again as
a cascade of follow-on errors.
"""

from __future__ import annotations

import pytest

from dsl import Diagnostic, DslError, parse, parse_with_diagnostics, render

# Most cases are one line inside this automation, so they are on line 3.
HEAD = 'automation "Welcome" {\n  when new_subscriber\n'


def body(*lines: str) -> str:
    return HEAD + "".join(f"  {line}\n" for line in lines) + "}\n"


def only_error(text: str) -> Diagnostic:
    module, diagnostics = parse_with_diagnostics(text)
    assert module is None
    assert len(diagnostics) == 1, [d.message for d in diagnostics]
    assert diagnostics[0].is_error
    return diagnostics[0]


# (id, text, line, column, message, hint)
MISTAKES = [
    (
        "unclosed string",
        body('send_message text: "Hi there'),
        3,
        22,
        "unclosed string",
        'end the string with `"` on the same line; write \\n for a line break',
    ),
    (
        "missing } at the end of the file",
        HEAD + '  add_tag tag: "new_fan"\n',
        1,
        22,
        'missing `}`: `automation "Welcome"` on line 1 is never closed',
        "add `}` to close the block opened on line 1",
    ),
    (
        "missing } of an if at the end of the file",
        HEAD + '  if fan.total_spent > $10 {\n    add_tag tag: "buyer"\n',
        3,
        28,
        "missing `}`: `if fan.total_spent > $10` on line 3 is never closed",
        "add `}` to close the block opened on line 3",
    ),
    (
        "missing } before the next automation",
        HEAD + '  add_tag tag: "new_fan"\n\nautomation "Thanks" {\n  when purchase_completed\n}\n',
        1,
        22,
        'missing `}`: `automation "Welcome"` on line 1 is never closed',
        "add `}` to close the block opened on line 1",
    ),
    (
        "= instead of ==",
        body("if fan.total_spent = 10 {", "}"),
        3,
        22,
        "`=` is not an operator here; compare with `==`",
        "write `==` to compare, as in `fan.total_spent == 10`; "
        'arguments take a colon, as in `tag: "vip"`',
    ),
    (
        "= instead of : for an argument",
        body('add_tag tag = "vip"'),
        3,
        15,
        "`=` does not give an argument its value; write `:`",
        'write `tag: ...`, as in `tag: "vip"`',
    ),
    (
        "an action before the trigger",
        'automation "Welcome" {\n  add_tag tag: "new_fan"\n  when new_subscriber\n}\n',
        2,
        3,
        "`add_tag` comes before the trigger",
        "an automation starts with its trigger, as in `when new_subscriber`, then its steps",
    ),
    (
        "no trigger at all",
        'automation "Welcome" {\n  add_tag tag: "new_fan"\n}\n',
        1,
        1,
        'automation "Welcome" has no trigger',
        "start it with `when` and a trigger, as in `when new_subscriber`",
    ),
    (
        "an empty automation",
        'automation "Welcome" {\n}\n',
        1,
        1,
        'automation "Welcome" has no trigger',
        "start it with `when` and a trigger, as in `when new_subscriber`",
    ),
    (
        "when without a trigger name",
        'automation "Welcome" {\n  when\n}\n',
        2,
        3,
        "`when` needs a trigger name",
        "name what starts the automation, as in `when new_subscriber`",
    ),
    (
        "when with the trigger name on the next line",
        'automation "Welcome" {\n  when\n  add_tag tag: "new_fan"\n}\n',
        2,
        3,
        "`when` needs a trigger name on the same line",
        "write the trigger right after `when`, as in `when new_subscriber`",
    ),
    (
        "a second when",
        body("when purchase_completed", 'add_tag tag: "buyer"'),
        3,
        3,
        "a second `when`: an automation has exactly one trigger",
        "write one automation per trigger",
    ),
    (
        "braces after the trigger",
        'automation "Welcome" {\n  when new_subscriber {\n    add_tag tag: "x"\n  }\n}\n',
        2,
        23,
        "no `{` after the trigger: the steps follow `when new_subscriber` directly",
        "remove this `{` and its `}`; the automation's braces hold the trigger and the steps",
    ),
    (
        "description after when",
        body('description "Say hi"'),
        3,
        3,
        "`description` comes before `when`",
        'write `description "..."` on the line after `automation "Name" {`',
    ),
    (
        "missing comma between arguments",
        body("create_offer discount: 20% valid_for: 48h"),
        3,
        30,
        "missing `,` before the argument `valid_for`",
        'separate an action\'s arguments with commas: `send_message text: "Hi", delay: 2h`',
    ),
    (
        "missing colon after an argument name",
        body('add_tag tag "vip"'),
        3,
        15,
        "missing `:` after `tag`",
        'arguments are written `name: value`, as in `tag: "vip"`',
    ),
    (
        "a value without an argument name",
        body('send_message "Hi"'),
        3,
        16,
        'missing the argument\'s name before `"Hi"`',
        "arguments are written `name: value`, as in `send_message text: ...`",
    ),
    (
        "an argument without a value",
        body("add_tag tag:"),
        3,
        11,
        "`tag:` has no value",
        'write its value after the colon, as in `tag: "..."`',
    ),
    (
        "trailing comma after the last argument",
        body("create_offer discount: 20%, valid_for: 48h,", 'add_tag tag: "offered"'),
        3,
        45,
        "trailing `,` after the last argument",
        "remove the `,`, or write the next argument after it (`name: value`)",
    ),
    (
        "trailing comma before the closing brace",
        body('add_tag tag: "vip",'),
        3,
        21,
        "trailing `,` after the last argument",
        "remove the `,`, or write the next argument after it (`name: value`)",
    ),
    (
        "a comma followed by a value",
        body('add_tag tag: "vip", "fan"'),
        3,
        23,
        'expected an argument after `,`, found `"fan"`',
        'every argument has a name: `name: value`, as in `tag: "vip"`',
    ),
    (
        "wait with a number and no unit",
        body("wait 3"),
        3,
        8,
        "expected a duration after `wait`, found `3`",
        "expected a duration like 30m, 48h, 2d or 1w",
    ),
    (
        "wait with a spelled-out unit",
        body("wait 2days"),
        3,
        8,
        "`2days` is not a duration",
        "write `2d`",
    ),
    (
        "wait with a unit as a separate word",
        body("wait 2 hours"),
        3,
        8,
        "expected a duration after `wait`, found `2`",
        "write `2h`",
    ),
    (
        "wait with a fraction",
        body("wait 1.5h"),
        3,
        8,
        "`1.5h` is not a duration",
        "a duration is a whole number and a unit, as in 90m, 48h, 2d or 1w",
    ),
    (
        "single quotes",
        body("add_tag tag: 'vip'"),
        3,
        16,
        "strings use double quotes",
        "write \"text\" instead of 'text'",
    ),
    (
        "a name in capitals",
        body('Add_Tag tag: "vip"'),
        3,
        3,
        "`Add_Tag`: names are written in lower case",
        "write `add_tag`",
    ),
    (
        "True instead of true",
        body("if fan.is_vip == True {", "}"),
        3,
        20,
        "`True`: names are written in lower case",
        "write `true`",
    ),
    (
        "an unquoted automation name",
        "automation welcome {\n  when new_subscriber\n}\n",
        1,
        12,
        "expected a quoted name after `automation`, found `welcome`",
        'write `automation "Welcome new fans"`',
    ),
    (
        "an unquoted automation name in capitals",
        "automation Welcome {\n  when new_subscriber\n}\n",
        1,
        12,
        "expected a quoted name after `automation`, found `Welcome`",
        'write `automation "Welcome new fans"`',
    ),
    (
        "missing { after the automation's name",
        'automation "Welcome"\n  when new_subscriber\n}\n',
        1,
        21,
        "missing `{` after the automation's name",
        'an automation reads `automation "Name" {`, its trigger and steps, then `}`',
    ),
    (
        "unknown escape",
        body('send_message text: "Hi\\!"'),
        3,
        25,
        "unknown escape `\\!` in a string",
        'use \\" \\\\ \\n \\t \\r or \\u{1F600}',
    ),
    (
        "unclosed placeholder",
        body('send_message text: "Hi {{ fan.name, welcome!"'),
        3,
        26,
        "unclosed placeholder `{{`",
        "close it with `}}`, as in {{ fan.name }}",
    ),
    (
        "a stray } at the top level",
        HEAD + "}\n}\n",
        4,
        1,
        "expected `automation`, found `}`",
        "this `}` closes nothing; remove it",
    ),
    (
        "a step outside any automation",
        'send_message text: "Hi!"\n',
        1,
        1,
        "expected `automation`, found `send_message`",
        'a file holds automations: automation "Name" { when ... }',
    ),
    (
        "missing { after an if condition",
        body("if fan.total_spent > $10", '  add_tag tag: "buyer"', "}"),
        3,
        27,
        "missing `{` after the condition",
        "a branch reads `if condition {`, then its steps, then `}`",
    ),
    (
        "then after a condition",
        body("if fan.total_spent > $10 then {", "}"),
        3,
        28,
        "`then` is not needed after a condition",
        "a branch reads `if condition {`",
    ),
    (
        "if without a condition",
        body("if {", "}"),
        3,
        6,
        "missing the condition after `if`",
        "write a condition, as in `if fan.total_spent > $10 {`",
    ),
    (
        "else if without a condition",
        body("if fan.total_spent > $10 {", "} else if {", "}"),
        4,
        13,
        "missing the condition after `else if`",
        "write a condition, as in `if fan.total_spent > $10 {`; the last branch may be `} else {`",
    ),
    (
        "elif instead of else if",
        body("if fan.total_spent > $10 {", "} elif fan.total_spent > $5 {", "}"),
        4,
        5,
        "`elif` is written `else if`",
        "write `} else if condition {`",
    ),
    (
        "else without an if",
        body('add_tag tag: "x"', "else {", "}"),
        4,
        3,
        "`else` without an `if`",
        "`else` comes right after the `}` of an `if` block: `} else {`",
    ),
    (
        "a second else",
        body("if fan.total_spent > $10 {", "} else {", "} else {", "}"),
        5,
        5,
        "a second `else`: the `else` branch comes last",
        "add branches before it with `} else if condition {`",
    ),
    (
        "&& instead of and",
        body('if fan.total_spent > $10 && fan.country == "US" {', "}"),
        3,
        28,
        "`&&` is written `and`",
        "conditions use the words `and`, `or` and `not`, as in "
        '`fan.total_spent > $20 and not ("vip" in fan.tags)`',
    ),
    (
        "|| instead of or",
        body('if fan.total_spent > $10 || fan.country == "US" {', "}"),
        3,
        28,
        "`||` is written `or`",
        "conditions use the words `and`, `or` and `not`, as in "
        '`fan.total_spent > $20 and not ("vip" in fan.tags)`',
    ),
    (
        "! instead of not",
        body("if !fan.is_vip {", "}"),
        3,
        6,
        "`!` is written `not`",
        "conditions use the words `and`, `or` and `not`, as in "
        '`fan.total_spent > $20 and not ("vip" in fan.tags)`',
    ),
    (
        "is instead of ==",
        body('if fan.country is "US" {', "}"),
        3,
        18,
        "`is` is not an operator; compare with `==`",
        "write `==` to compare, or `!=` for “is not”",
    ),
    (
        "contains instead of in",
        body('if fan.tags contains "vip" {', "}"),
        3,
        15,
        "`contains` is not an operator; use `in`",
        'write the item first: `"vip" in fan.tags`',
    ),
    (
        "chained comparisons",
        body("if $10 < fan.total_spent < $100 {", "}"),
        3,
        28,
        "comparisons cannot be chained",
        "join two comparisons with `and`, as in `fan.total_spent > $10 and fan.total_spent < $100`",
    ),
    (
        "chained comparisons in an argument",
        body("notify big: $10 < event.amount < $100"),
        3,
        34,
        "comparisons cannot be chained",
        "join two comparisons with `and`, as in `fan.total_spent > $10 and fan.total_spent < $100`",
    ),
    (
        "an unclosed parenthesis",
        body("if not (fan.total_spent > $10 {", "}"),
        3,
        10,
        "missing `)`: the parenthesis is never closed",
        "close it with `)` where the grouped condition ends",
    ),
    (
        "an unclosed list",
        body('if fan.country in ["US", "CA" {', "}"),
        3,
        21,
        "missing `]`: the list is never closed",
        'close the list with `]`, as in `["US", "CA"]`',
    ),
    (
        "missing comma between list items",
        body('if fan.country in ["US" "CA"] {', "}"),
        3,
        27,
        "missing `,` between list items",
        'separate the items with commas: ["US", "CA"]',
    ),
    (
        "JSON-style arguments in braces",
        body('send_message {"text": "Hi"}'),
        3,
        16,
        "an action's arguments are not written in braces",
        'write `send_message text: "Hi"`',
    ),
    (
        "arguments in parentheses",
        body('send_message(text: "Hi")'),
        3,
        15,
        "an action's arguments are not written in parentheses",
        'write `send_message text: "Hi"`',
    ),
    (
        "a currency sign after the amount",
        body("if fan.total_spent > 10$ {", "}"),
        3,
        24,
        "the currency sign goes before the amount",
        "write `$10`",
    ),
    (
        "+ to join text",
        body('send_message text: "Hi " + fan.name'),
        3,
        28,
        "there is no `+` in this language",
        'to put a value into a message, write it in the text: "Hi {{ fan.name }}"',
    ),
    (
        "// comment",
        body("// say hi", 'add_tag tag: "x"'),
        3,
        3,
        "comments start with `#`",
        "write `# comment`",
    ),
    (
        "a semicolon at the end of a step",
        body('add_tag tag: "vip";'),
        3,
        21,
        "`;` is not used in this language",
        "remove it; write each step on its own line",
    ),
    (
        "a Markdown code fence around the file",
        "```\n" + HEAD + "}\n",
        1,
        1,
        "a Markdown code fence is not part of an automation",
        "remove the ``` lines around the automations",
    ),
    (
        "a keyword as an action",
        body("and"),
        3,
        3,
        "`and` is a keyword, not an action",
        'a step is an action (`send_message text: "..."`), `wait 2d`, or `if ... { }`',
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "column", "message", "hint"),
    [pytest.param(*case[1:], id=case[0]) for case in MISTAKES],
)
def test_a_common_mistake_gets_one_clear_error(text, line, column, message, hint):
    diagnostic = only_error(text)
    assert diagnostic.message == message
    assert (diagnostic.span.line, diagnostic.span.column) == (line, column)
    assert diagnostic.hint == hint


def test_every_mistake_has_its_own_code():
    """Named messages carry a code an editor can key on, not the generic one."""
    generic = {"syntax", "syntax/token", "syntax/character", "syntax/step"}
    codes = {case[0]: only_error(case[1]).code for case in MISTAKES}
    assert not {mistake for mistake, code in codes.items() if code in generic}


def test_several_errors_are_reported_in_one_run():
    text = (
        HEAD
        + "  wait 3\n"
        + '  add_tag tag "vip"\n'
        + "  if fan.total_spent = 10 {\n"
        + '    add_tag tag: "big"\n'
        + "  }\n"
        + "}\n"
        + "\n"
        + 'automation "Thanks" {\n'
        + "  when purchase_completed\n"
        + "  add_tag tag: 'buyer'\n"
        + '  if fan.total_spent > $10 && fan.country == "US" {\n'
        + "  }\n"
        + "}\n"
    )
    module, diagnostics = parse_with_diagnostics(text)
    assert module is None
    assert [(d.span.line, d.span.column, d.code) for d in diagnostics] == [
        (3, 8, "syntax/duration"),
        (4, 15, "syntax/missing-colon"),
        (5, 22, "syntax/single-equals"),
        (12, 16, "syntax/quote"),
        (13, 28, "syntax/operator-word"),
    ]


def test_errors_in_later_automations_survive_an_unclosed_one():
    text = (
        'automation "A" {\n  when new_subscriber\n  if fan.total_spent > $10 {\n\n'
        'automation "B" {\n  when new_subscriber\n  wait 3\n}\n'
    )
    _, diagnostics = parse_with_diagnostics(text)
    assert [(d.span.line, d.code) for d in diagnostics] == [
        (3, "syntax/unclosed-block"),
        (7, "syntax/duration"),
    ]


def test_a_name_in_capitals_on_the_trigger_line_does_not_hide_later_errors():
    text = 'automation "A" {\n  when New_Subscriber\n  wait 3\n}\n'
    _, diagnostics = parse_with_diagnostics(text)
    assert [(d.span.line, d.code) for d in diagnostics] == [
        (2, "syntax/case"),
        (3, "syntax/duration"),
    ]


def test_rendered_error_has_header_source_line_caret_and_hint():
    text = body('add_tag tag "vip"')
    rendered = render(only_error(text), text, "welcome.hz")
    assert rendered == (
        "welcome.hz:3:15: error: missing `:` after `tag`\n"
        '    3 |   add_tag tag "vip"\n'
        "      |               ^^^^^\n"
        '  hint: arguments are written `name: value`, as in `tag: "vip"`'
    )


def test_missing_brace_at_the_end_of_the_file_shows_the_unclosed_line():
    text = HEAD + '  add_tag tag: "new_fan"\n'
    rendered = render(only_error(text), text, "welcome.hz")
    assert rendered.splitlines()[1:3] == [
        '    1 | automation "Welcome" {',
        "      |                      ^",
    ]


def test_parse_raises_the_language_error_with_every_diagnostic_rendered():
    text = body("wait 3", 'add_tag tag "vip"')
    with pytest.raises(DslError) as caught:
        parse(text, "welcome.hz")
    assert len(caught.value.diagnostics) == 2
    assert str(caught.value).startswith("welcome.hz:3:8: error: expected a duration")
    assert "welcome.hz:4:15: error: missing `:` after `tag`" in str(caught.value)


def test_to_dict_is_what_json_output_carries():
    diagnostic = only_error(body("wait 3"))
    assert diagnostic.to_dict("welcome.hz") == {
        "file": "welcome.hz",
        "line": 3,
        "column": 8,
        "end_line": 3,
        "end_column": 9,
        "severity": "error",
        "code": "syntax/duration",
        "message": "expected a duration after `wait`, found `3`",
        "hint": "expected a duration like 30m, 48h, 2d or 1w",
    }


def test_valid_text_has_no_diagnostics():
    module, diagnostics = parse_with_diagnostics(body('add_tag tag: "vip"'))
    assert module is not None
    assert diagnostics == []
