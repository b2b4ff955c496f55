"""The compiler: syntax tree → rule graph, and the graph's JSON form."""

from __future__ import annotations

import json

import pytest
from catalog_fixture import CATALOG, compilable_automations
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from dsl import DslError, RuleGraph, compile_automation, compile_text, parse
from dsl.graph import ActionNode, ConditionNode, WaitNode

SMALL = """\
automation "Small" {
  description "One of each"
  when purchase_completed
  if event.amount >= $50 {
    add_tag tag: "big"
  } else if "vip" in fan.tags {
    wait 1d
  } else {
    send_message text: "Thanks {{ fan.name }}!"
  }
  create_offer discount: 20%, valid_for: 48h
}
"""


def graph(text: str, catalog=CATALOG) -> RuleGraph:
    (automation,) = parse(text).automations
    return compile_automation(automation, catalog)


def body(steps: str, trigger: str = "purchase_completed") -> str:
    return f'automation "T" {{\n  when {trigger}\n{steps}\n}}\n'


def edges(g: RuleGraph) -> dict[str, tuple]:
    """Each node's outgoing edges: (then, otherwise) for conditions, (next,) otherwise."""
    return {
        node_id: (node.then, node.otherwise) if isinstance(node, ConditionNode) else (node.next,)
        for node_id, node in g.nodes.items()
    }


# --- The whole graph of a small automation ------------------------------------------------


def test_whole_graph_of_a_small_automation():
    assert graph(SMALL).to_json() == {
        "format": "huntaze.rulegraph",
        "version": 1,
        "name": "Small",
        "description": "One of each",
        "trigger": {"name": "purchase_completed", "args": {}},
        "entry": "s1",
        "nodes": {
            "s1": {
                "id": "s1",
                "kind": "condition",
                "expr": {
                    "op": ">=",
                    "left": {"field": "event.amount", "type": "money"},
                    "right": {"money": "50", "currency": "USD"},
                },
                "then": "s1.b1.s1",
                "otherwise": "s1.b2",
            },
            "s1.b1.s1": {
                "id": "s1.b1.s1",
                "kind": "action",
                "name": "add_tag",
                "args": {"tag": {"text": "big"}},
                "next": "s2",
            },
            "s1.b2": {
                "id": "s1.b2",
                "kind": "condition",
                "expr": {
                    "op": "in",
                    "left": {"text": "vip"},
                    "right": {"field": "fan.tags", "type": "list"},
                },
                "then": "s1.b2.s1",
                "otherwise": "s1.else.s1",
            },
            "s1.b2.s1": {
                "id": "s1.b2.s1",
                "kind": "wait",
                "duration": "1d",
                "seconds": 86400,
                "next": "s2",
            },
            "s1.else.s1": {
                "id": "s1.else.s1",
                "kind": "action",
                "name": "send_message",
                "args": {"text": {"text": "Thanks {{ fan.name }}!"}},
                "next": "s2",
            },
            "s2": {
                "id": "s2",
                "kind": "action",
                "name": "create_offer",
                "args": {"discount": {"percent": "20"}, "valid_for": {"duration": "48h"}},
                "next": None,
            },
        },
    }


def test_node_ids_of_nested_branches_follow_their_position():
    text = body(
        '  add_tag tag: "a"\n'
        "  if fan.message_count > 1 {\n"
        '    add_tag tag: "b"\n'
        '    if "x" in event.text {\n'
        "      wait 1h\n"
        "    } else {\n"
        '      add_tag tag: "c"\n'
        "      wait 2h\n"
        "    }\n"
        "  }\n"
        '  add_tag tag: "d"',
        "message_received",
    )
    assert edges(graph(text)) == {
        "s1": ("s2",),
        "s2": ("s2.b1.s1", "s3"),
        "s2.b1.s1": ("s2.b1.s2",),
        "s2.b1.s2": ("s2.b1.s2.b1.s1", "s2.b1.s2.else.s1"),
        "s2.b1.s2.b1.s1": ("s3",),
        "s2.b1.s2.else.s1": ("s2.b1.s2.else.s2",),
        "s2.b1.s2.else.s2": ("s3",),
        "s3": (None,),
    }


def test_if_else_if_else_edges_meet_at_the_step_after():
    text = body(
        '  if fan.name == "a" {\n    add_tag tag: "1"\n    add_tag tag: "2"\n'
        '  } else if fan.name == "b" {\n    add_tag tag: "3"\n'
        '  } else if fan.name == "c" {\n    add_tag tag: "4"\n'
        '  } else {\n    add_tag tag: "5"\n  }\n'
        '  add_tag tag: "after"'
    )
    g = graph(text)
    assert g.entry == "s1"
    assert edges(g) == {
        "s1": ("s1.b1.s1", "s1.b2"),
        "s1.b1.s1": ("s1.b1.s2",),
        "s1.b1.s2": ("s2",),
        "s1.b2": ("s1.b2.s1", "s1.b3"),
        "s1.b2.s1": ("s2",),
        "s1.b3": ("s1.b3.s1", "s1.else.s1"),
        "s1.b3.s1": ("s2",),
        "s1.else.s1": ("s2",),
        "s2": (None,),
    }


def test_without_else_a_condition_that_fails_goes_to_the_step_after():
    g = graph(body('  if fan.name == "a" {\n    add_tag tag: "1"\n  }\n  wait 1d'))
    assert edges(g) == {"s1": ("s1.b1.s1", "s2"), "s1.b1.s1": ("s2",), "s2": (None,)}
    assert isinstance(g.nodes["s2"], WaitNode)
    assert g.nodes["s2"].seconds == 86400


def test_an_if_at_the_end_ends_the_run_either_way():
    g = graph(body('  if fan.name == "a" {\n    add_tag tag: "1"\n  }'))
    assert edges(g) == {"s1": ("s1.b1.s1", None), "s1.b1.s1": (None,)}


# --- Empty bodies ---------------------------------------------------------------------------


def test_an_automation_without_steps_has_no_entry():
    g = graph(body(""))
    assert (g.entry, g.nodes) == (None, {})


def test_empty_branches_go_straight_to_what_follows():
    g = graph(
        body(
            '  if fan.name == "a" {\n  } else if fan.name == "b" {\n    add_tag tag: "1"\n'
            '  } else {\n  }\n  add_tag tag: "2"'
        )
    )
    assert edges(g) == {
        "s1": ("s2", "s1.b2"),
        "s1.b2": ("s1.b2.s1", "s2"),
        "s1.b2.s1": ("s2",),
        "s2": (None,),
    }


def test_an_empty_if_at_the_end():
    g = graph(body('  if fan.name == "a" {\n  } else {\n  }'))
    assert edges(g) == {"s1": (None, None)}


# --- Values and types ----------------------------------------------------------------------


def test_field_types_are_attached_when_a_catalogue_is_given():
    text = body(
        '  if fan.total_spent > 10 and "a" in event.text {\n    add_tag tag: "x"\n  }',
        "message_received",
    )
    typed = graph(text).nodes["s1"].expr
    assert typed["and"][0]["left"] == {"field": "fan.total_spent", "type": "money"}
    assert typed["and"][1]["right"] == {"field": "event.text", "type": "text"}
    untyped = graph(text, catalog=None).nodes["s1"].expr
    assert untyped["and"][0]["left"] == {"field": "fan.total_spent"}
    assert untyped["and"][1]["right"] == {"field": "event.text"}


def test_an_unknown_field_or_trigger_gets_no_type():
    expr = graph(body('  if fan.nope == 1 {\n    add_tag tag: "x"\n  }')).nodes["s1"].expr
    assert expr["left"] == {"field": "fan.nope"}
    text = body('  if fan.name == "a" {\n    add_tag tag: "x"\n  }', "no_such_trigger")
    assert graph(text).nodes["s1"].expr["left"] == {"field": "fan.name"}


def test_arguments_compile_to_tagged_literals():
    text = body(
        '  create_offer discount: €9.50, valid_for: 1w, name: "VIP"\n'
        '  add_tag tag: "x"\n  wait 90m',
        "subscription_expiring days_before: 7",
    )
    g = graph(text)
    assert g.trigger.model_dump() == {
        "name": "subscription_expiring",
        "args": {"days_before": {"number": "7"}},
    }
    assert g.nodes["s1"] == ActionNode(
        id="s1",
        name="create_offer",
        args={
            "discount": {"money": "9.50", "currency": "EUR"},
            "valid_for": {"duration": "1w"},
            "name": {"text": "VIP"},
        },
        next="s2",
    )
    assert g.nodes["s3"] == WaitNode(id="s3", duration="90m", seconds=5400, next=None)


# --- The JSON form -------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(compilable_automations(), st.sampled_from([CATALOG, None]))
def test_property_1_automation_flow_round_trip_in_memory(automation, catalog):
    """Property 1: Automation Flow Round Trip (in-memory half) — a compiled graph,
    serialised to JSON text and read back, is equal to the original."""
    g = compile_automation(automation, catalog)
    text = json.dumps(g.to_json())
    again = RuleGraph.from_json(json.loads(text))
    assert again == g
    assert json.dumps(again.to_json()) == text


@settings(max_examples=100, deadline=None)
@given(compilable_automations())
def test_compiled_graphs_are_well_formed(automation):
    """Every edge leads to a node of the graph, and every node is reached from the entry."""
    g = compile_automation(automation)
    targets = {t for out in edges(g).values() for t in out} | {g.entry}
    assert targets - {None} <= set(g.nodes)
    assert all(node_id == node.id for node_id, node in g.nodes.items())
    reached, todo = set(), [g.entry]
    while todo:
        node_id = todo.pop()
        if node_id is not None and node_id not in reached:
            reached.add(node_id)
            todo.extend(edges(g)[node_id])
    assert reached == set(g.nodes)


def test_graph_json_names_its_format_and_version():
    data = graph(SMALL).to_json()
    assert (data["format"], data["version"]) == ("huntaze.rulegraph", 1)


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"format": "something.else"},
        {"surprise": True},
        {"nodes": {"s1": {"id": "s1", "kind": "teleport"}}},
    ],
    ids=["version", "format", "extra-key", "unknown-node-kind"],
)
def test_graph_json_from_another_format_is_refused(change):
    data = {**graph(SMALL).to_json(), **change}
    with pytest.raises(ValidationError):
        RuleGraph.from_json(data)


# --- The pipeline ---------------------------------------------------------------------------


def test_compile_text_returns_graphs_and_warnings():
    text = SMALL + "\n" + SMALL
    graphs, warnings = compile_text(text, CATALOG)
    assert [g.name for g in graphs] == ["Small", "Small"]
    assert graphs[0] == graph(SMALL)
    assert [w.code for w in warnings] == ["duplicate-name"]


def test_compile_text_refuses_text_with_errors():
    with pytest.raises(DslError) as caught:
        compile_text(body('  send_mesage text: "x"\n  add_tag tag: 1'), CATALOG, "bad.hz")
    assert [d.code for d in caught.value.diagnostics] == ["unknown-action", "argument/type"]
    assert "bad.hz:3:3: error: unknown action `send_mesage`" in str(caught.value)
    with pytest.raises(DslError):
        compile_text('automation "x" {', CATALOG)


def test_condition_nodes_hold_the_condition_json():
    g = graph(SMALL)
    assert isinstance(g.nodes["s1"], ConditionNode)
    assert [type(n).__name__ for n in g.nodes.values()] == [
        "ConditionNode",
        "ActionNode",
        "ConditionNode",
        "WaitNode",
        "ActionNode",
        "ActionNode",
    ]
