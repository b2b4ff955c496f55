"""The design document's flow format: export from a rule graph, import back to the language."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from catalog_fixture import CATALOG, compilable_automations
from hypothesis import given, settings

from dsl import (
    FlowError,
    analyse,
    ast,
    compile_automation,
    export_flow,
    format_module,
    import_flow,
    parse,
)

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.hz"))
EXAMPLE_AUTOMATIONS = [
    pytest.param(automation, id=f"{path.name}:{automation.name}")
    for path in EXAMPLES
    for automation in parse(path.read_text(encoding="utf-8"), str(path)).automations
]

WELCOME = """\
automation "Welcome" {
  description "Hello, then an offer"
  when new_subscriber
  send_message text: "Hi {{ fan.name }}!"
  wait 2d
  if fan.total_spent < $10 and "buyer" not in fan.tags {
    create_offer discount: 20%, valid_for: 48h, name: "Welcome 20%"
  } else {
    add_tag tag: "regular"
  }
  add_tag tag: "welcomed"
}
"""


def export(automation: ast.Automation, catalog=CATALOG) -> dict:
    return export_flow(compile_automation(automation, catalog))


def through_text(automation: ast.Automation) -> ast.Automation:
    """What a person gets to read and edit: the canonical text, parsed again."""
    (again,) = parse(format_module(ast.Module((automation,)))).automations
    return again


def normalise(automation: ast.Automation) -> ast.Automation:
    """The tree as the flow format can say it. A graph does not tell `else { if ... }`
    from `else if ...` (both are a condition reached when another fails) nor an empty
    `else {}` from none, so import reads them as `else if` and no `else`."""
    return replace(automation, body=_steps(automation.body))


def _steps(steps: tuple[ast.Step, ...]) -> tuple[ast.Step, ...]:
    return tuple(_step(step) for step in steps)


def _step(step: ast.Step) -> ast.Step:
    if not isinstance(step, ast.If):
        return step
    branches = tuple(replace(b, body=_steps(b.body)) for b in step.branches)
    else_body = _steps(step.else_body) if step.else_body else None
    if else_body is not None and len(else_body) == 1 and isinstance(else_body[0], ast.If):
        inner = else_body[0]
        branches, else_body = branches + inner.branches, inner.else_body
    return ast.If(branches, else_body)


# --- Export ------------------------------------------------------------------------------


def test_export_of_a_compiled_automation():
    (automation,) = parse(WELCOME).automations
    flow = export(automation)
    assert (flow["name"], flow["description"]) == ("Welcome", "Hello, then an offer")
    steps = {step["id"]: step for step in flow["steps"]}
    assert list(steps) == ["trigger", "s1", "s2", "s3", "s3.b1.s1", "s3.else.s1", "s4"]
    assert steps["trigger"] == {
        "id": "trigger",
        "type": "trigger",
        "name": "new_subscriber",
        "config": {},
    }
    assert steps["s1"] == {
        "id": "s1",
        "type": "action",
        "name": "send_message",
        "config": {"text": "Hi {{ fan.name }}!"},
    }
    assert steps["s2"] == {
        "id": "s2",
        "type": "action",
        "name": "wait",
        "config": {"duration": "2d"},
    }
    assert steps["s3"] == {
        "id": "s3",
        "type": "condition",
        "name": "if",
        "config": {"expression": 'fan.total_spent < $10 and "buyer" not in fan.tags'},
        "then": "s3.b1.s1",
        "else": "s3.else.s1",
    }
    # Values are written as in the language; `next` only where the run does not simply
    # continue with the following step.
    assert steps["s3.b1.s1"] == {
        "id": "s3.b1.s1",
        "type": "action",
        "name": "create_offer",
        "config": {"discount": "20%", "valid_for": "48h", "name": "Welcome 20%"},
        "next": "s4",
    }
    assert "next" not in steps["s3.else.s1"]
    assert "next" not in steps["s4"]
    assert json.loads(json.dumps(flow)) == flow


def test_export_writes_plain_json_values():
    text = (
        'automation "Values" {\n  when subscription_expiring days_before: 7\n'
        "  create_offer discount: €9.50, valid_for: 1w\n"
        '  odd_action n: 3, x: 2.5, yes: true, many: ["a", 1, $2]\n}\n'
    )
    (automation,) = parse(text).automations
    flow = export(automation)
    assert flow["steps"][0]["config"] == {"days_before": 7}
    assert flow["steps"][1]["config"] == {"discount": "€9.50", "valid_for": "1w"}
    assert flow["steps"][2]["config"] == {"n": 3, "x": 2.5, "yes": True, "many": ["a", 1, "$2"]}


def test_an_action_that_ends_the_run_says_so():
    text = (
        'automation "End" {\n  when new_subscriber\n'
        '  if "a" in fan.tags {\n    add_tag tag: "x"\n  } else {\n    add_tag tag: "y"\n  }\n}\n'
    )
    (automation,) = parse(text).automations
    steps = export(automation)["steps"]
    assert steps[2] == {
        "id": "s1.b1.s1",
        "type": "action",
        "name": "add_tag",
        "config": {"tag": "x"},
        "next": None,
    }


# --- Round trips ---------------------------------------------------------------------------


def round_trip(automation: ast.Automation, catalog) -> tuple[ast.Automation, dict, dict]:
    """text → compile → export → import → text → compile → export."""
    first = export(automation, catalog)
    imported = import_flow(json.loads(json.dumps(first)), catalog)
    again = through_text(imported)
    return again, first, export(again, catalog)


@pytest.mark.parametrize("automation", EXAMPLE_AUTOMATIONS)
def test_every_example_round_trips_through_the_flow_format(automation):
    again, first, second = round_trip(automation, CATALOG)
    assert second == export(normalise(automation))
    assert again == normalise(automation)
    if normalise(automation) == automation:
        assert second == first


def test_else_if_nesting_comes_back_as_else_if():
    text = (
        'automation "Nested" {\n  when new_subscriber\n'
        '  if "a" in fan.tags {\n    add_tag tag: "a"\n'
        '  } else {\n    if "b" in fan.tags {\n      add_tag tag: "b"\n    }\n  }\n}\n'
    )
    (automation,) = parse(text).automations
    again, first, second = round_trip(automation, CATALOG)
    assert format_module(ast.Module((again,))) == (
        'automation "Nested" {\n  when new_subscriber\n'
        '  if "a" in fan.tags {\n    add_tag tag: "a"\n'
        '  } else if "b" in fan.tags {\n    add_tag tag: "b"\n  }\n}\n'
    )
    assert first != second  # the ids differ: s1.else.s1 became s1.b2
    assert round_trip(again, CATALOG)[2] == second


def _stays_text(value: str) -> bool:
    """Whether import reads ``value`` back as text when it knows nothing about the
    argument (text spelling money, a percentage or a duration is read as one)."""
    flow = {
        "steps": [
            {"id": "t", "type": "trigger", "name": "t"},
            {"id": "a", "type": "action", "name": "a", "config": {"v": value}},
        ]
    }
    return import_flow(flow).body[0].arguments[0].value == ast.String(value)


def _strings(automation: ast.Automation):
    def of_value(value):
        if isinstance(value, ast.String):
            yield value.value
        elif isinstance(value, ast.ListExpr):
            for item in value.items:
                yield from of_value(item)

    def of_steps(steps):
        for step in steps:
            for argument in getattr(step, "arguments", ()):
                yield from of_value(argument.value)
            for branch in getattr(step, "branches", ()):
                yield from of_steps(branch.body)
            yield from of_steps(getattr(step, "else_body", None) or ())

    for argument in automation.trigger.arguments:
        yield from of_value(argument.value)
    yield from of_steps(automation.body)


def _round_trippable(automation: ast.Automation) -> bool:
    # An empty name or description reads back as the default name / no description.
    return (
        automation.name != ""
        and automation.description != ""
        and all(_stays_text(s) for s in _strings(automation))
    )


@settings(max_examples=120, deadline=None)
@given(compilable_automations().filter(_round_trippable))
def test_property_1_automation_flow_round_trip_through_the_flow_format(automation):
    """Property 1: Automation Flow Round Trip — a compiled automation exported to the
    flow format, imported, printed as text and compiled again exports the same flow,
    once `else { if }` nesting is read as the `else if` it is in the graph."""
    again, _first, second = round_trip(automation, None)
    assert again == normalise(automation)
    assert second == export(normalise(automation), None)
    assert round_trip(again, None)[2] == second  # a fixpoint after one pass


# --- Import of a plain, seed-style flow ------------------------------------------------------

SEED_FLOW = {
    "name": "Welcome new fans",
    "description": "Greet, wait, offer",
    "steps": [
        {"id": "step-1", "type": "trigger", "name": "new_subscriber", "config": {}},
        {
            "id": "step-2",
            "type": "action",
            "name": "send_message",
            "config": {"text": "Hey {{ fan.name }}, welcome! Everything is $10 this week"},
        },
        {"id": "step-3", "type": "action", "name": "wait", "config": {"duration": "2d"}},
        {
            "id": "step-4",
            "type": "condition",
            "name": "has not bought yet",
            "config": {"field": "fan.total_spent", "operator": "<", "value": "$10"},
        },
        {
            "id": "step-5",
            "type": "condition",
            "name": "in north america",
            "config": {"field": "fan.country", "operator": "in", "value": ["US", "CA"]},
        },
        {
            "id": "step-6",
            "type": "action",
            "name": "create_offer",
            "config": {"discount": "20%", "valid_for": "48h", "name": "Welcome 20%"},
        },
        {"id": "step-7", "type": "action", "name": "add_tag", "config": {"tag": "welcomed"}},
    ],
}

SEED_TEXT = """\
automation "Welcome new fans" {
  description "Greet, wait, offer"
  when new_subscriber
  send_message text: "Hey {{ fan.name }}, welcome! Everything is $10 this week"
  wait 2d
  if fan.total_spent < $10 {
    if fan.country in ["US", "CA"] {
      create_offer discount: 20%, valid_for: 48h, name: "Welcome 20%"
      add_tag tag: "welcomed"
    }
  }
}
"""


def test_a_linear_seed_style_flow_imports_as_nested_conditions():
    """Steps run in order, and a condition that does not hold ends the run."""
    automation = import_flow(SEED_FLOW, CATALOG)
    text = format_module(ast.Module((automation,)))
    assert text == SEED_TEXT
    _module, found = analyse(text, CATALOG)
    assert found == []


def test_values_are_typed_by_the_catalogue():
    flow = {
        "steps": [
            {"id": "t", "type": "trigger", "name": "new_subscriber"},
            {"id": "a", "type": "action", "name": "add_tag", "config": {"tag": "48h"}},
            {"id": "b", "type": "action", "name": "create_offer",
             "config": {"discount": "$5", "valid_for": "1w", "name": "20%"}},
        ]
    }  # fmt: skip
    typed = import_flow(flow, CATALOG)
    assert typed.name == "Imported flow"
    assert typed.body[0].arguments[0].value == ast.String("48h")
    assert [a.value for a in typed.body[1].arguments] == [
        ast.Money(Decimal("5")),
        ast.Duration(1, "w"),
        ast.String("20%"),
    ]
    # Without a catalogue, text that spells a typed value is read as one.
    untyped = import_flow(flow)
    assert untyped.body[0].arguments[0].value == ast.Duration(48, "h")
    assert untyped.body[1].arguments[2].value == ast.Percent(Decimal("20"))


def test_a_condition_with_an_expression_and_explicit_edges():
    flow = {
        "name": "Edges",
        "steps": [
            {"id": "t", "type": "trigger", "name": "purchase_completed"},
            {"id": "c", "type": "condition", "name": "big",
             "config": {"expression": "event.amount >= $50"}, "then": "big", "else": "small"},
            {"id": "big", "type": "action", "name": "add_tag", "config": {"tag": "big"},
             "next": "done"},
            {"id": "small", "type": "action", "name": "add_tag", "config": {"tag": "small"}},
            {"id": "done", "type": "action", "name": "add_tag", "config": {"tag": "done"}},
        ],
    }  # fmt: skip
    assert format_module(ast.Module((import_flow(flow, CATALOG),))) == (
        'automation "Edges" {\n  when purchase_completed\n'
        '  if event.amount >= $50 {\n    add_tag tag: "big"\n'
        '  } else {\n    add_tag tag: "small"\n  }\n'
        '  add_tag tag: "done"\n}\n'
    )


# --- Flows that cannot be read ------------------------------------------------------------

TRIGGER = {"id": "t", "type": "trigger", "name": "new_subscriber"}


def tag(step_id: str, **extra) -> dict:
    return {"id": step_id, "type": "action", "name": "add_tag", "config": {"tag": "x"}, **extra}


def condition(config: dict, **extra) -> dict:
    return {"id": "c", "type": "condition", "name": "if", "config": config, **extra}


@pytest.mark.parametrize(
    ("steps", "field", "message"),
    [
        pytest.param([], "steps", "a flow needs a list of steps", id="no-steps"),
        pytest.param("steps", "steps", "a flow needs a list of steps", id="not-a-list"),
        pytest.param([tag("a")], "steps[0].type", "the first step must be", id="no-trigger"),
        pytest.param(
            [TRIGGER, tag("a"), {**TRIGGER, "id": "t2"}],
            "steps[2].type",
            "exactly one trigger",
            id="two-triggers",
        ),
        pytest.param(
            [TRIGGER, tag("a"), tag("a")], "steps[2].id", "`a` is used twice", id="duplicate-id"
        ),
        pytest.param([TRIGGER, {"type": "action"}], "steps[1].id", "needs a text id", id="no-id"),
        pytest.param(
            [TRIGGER, tag("a", next="zz")], "steps[1].next", "no step has the id `zz`", id="next"
        ),
        pytest.param(
            [TRIGGER, tag("a", next="t")],
            "steps[1].next",
            "no step has the id `t`",
            id="to-trigger",
        ),
        pytest.param(
            [TRIGGER, condition({"expression": 'fan.name == "x"'}, then="zz")],
            "steps[1].then",
            "no step has the id `zz`",
            id="then",
        ),
        pytest.param(
            [TRIGGER, condition({"expression": 'fan.name == "x"'}, **{"else": "zz"})],
            "steps[1].else",
            "no step has the id `zz`",
            id="else",
        ),
        pytest.param(
            [TRIGGER, tag("a", next="b"), tag("b", next="a")],
            "steps[1]",
            "the steps form a loop",
            id="loop",
        ),
        pytest.param(
            [
                TRIGGER,
                condition({"expression": 'fan.name == "x"'}, then="a", **{"else": "c"}),
                tag("a"),
            ],
            "steps[1]",
            "the steps form a loop",
            id="condition-loop",
        ),
        pytest.param(
            [
                TRIGGER,
                {"id": "w", "type": "action", "name": "wait", "config": {"duration": "2 days"}},
            ],
            "steps[1].config.duration",
            "must be a duration like 2d or 48h",
            id="bad-duration",
        ),
        pytest.param(
            [TRIGGER, {"id": "w", "type": "action", "name": "wait", "config": {}}],
            "steps[1].config.duration",
            "must be a duration",
            id="no-duration",
        ),
        pytest.param(
            [TRIGGER, condition({"expression": "fan.name =="})],
            "steps[1].config.expression",
            "",
            id="bad-expression",
        ),
        pytest.param(
            [TRIGGER, condition({"expression": 5})],
            "steps[1].config.expression",
            "must be text",
            id="expression-not-text",
        ),
        pytest.param(
            [TRIGGER, condition({"field": "fan.name", "operator": "contains", "value": "x"})],
            "steps[1].config.operator",
            "must be one of !=, <, <=, ==, >, >=, in, not in",
            id="bad-operator",
        ),
        pytest.param(
            [TRIGGER, condition({"value": "x"})],
            "steps[1].config",
            "needs an `expression`, or a `field`",
            id="no-field",
        ),
        pytest.param(
            [TRIGGER, condition({"field": "fan.name", "value": {"a": 1}})],
            "steps[1].config.value",
            "must be text, a number, true/false or a list",
            id="bad-value",
        ),
        pytest.param(
            [TRIGGER, {**tag("a"), "config": {"tag": float("nan")}}],
            "steps[1].config.tag",
            "must be a finite number",
            id="nan",
        ),
        pytest.param(
            [TRIGGER, {**tag("a"), "type": "loop"}],
            "steps[1].type",
            "must be `trigger`, `condition` or `action`",
            id="bad-type",
        ),
        pytest.param(
            [TRIGGER, {**tag("a"), "name": "Add Tag"}],
            "steps[1].name",
            "must be a lower-case name",
            id="bad-name",
        ),
        pytest.param(
            [TRIGGER, {**tag("a"), "config": {"Tag": "x"}}],
            "steps[1].config.Tag",
            "argument names are lower-case words",
            id="bad-argument-name",
        ),
    ],
)
def test_flow_errors_name_the_field(steps, field, message):
    with pytest.raises(FlowError) as caught:
        import_flow({"name": "Broken", "steps": steps}, CATALOG)
    assert caught.value.field == field
    assert message in caught.value.message
    assert str(caught.value).startswith(f"{field}: ")


def test_a_bad_expression_reports_the_parser_message():
    with pytest.raises(FlowError) as caught:
        import_flow({"steps": [TRIGGER, condition({"expression": "fan.total_spent = 10"})]})
    assert caught.value.field == "steps[1].config.expression"
    assert "==" in caught.value.message


def test_a_name_that_is_not_text():
    with pytest.raises(FlowError) as caught:
        import_flow({"name": 5, "steps": [TRIGGER]})
    assert caught.value.field == "name"
