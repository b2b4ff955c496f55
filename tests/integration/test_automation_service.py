"""AutomationService against the real databases: create, read, update, delete, list;
the checker guards every save; optimistic locking; every version kept; and design
property 1 (Automation Flow Round Trip)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from itest_support import automation_texts, context, execution
from sqlalchemy import func, select

from dsl import RuleGraph, compile_automation, export_flow, parse
from engine.catalogue import load_catalogue
from engine.creators import create_creator, set_policy
from engine.exceptions import Conflict, InvalidAutomation, InvalidInput, NotFound
from engine.models import Automation, AutomationVersion

WELCOME = """\
automation "Welcome" {
  description "Say hello"
  when new_subscriber
  if fan.total_spent < $10 {
    send_message text: "Hi {{ fan.name }}!"
  }
  add_tag tag: "welcomed"
}
"""
THANKS = """\
automation "Thanks" {
  when purchase_completed
  send_message text: "Thanks for {{ event.amount }}"
}
"""


def _counts(runtime) -> tuple[int, int]:
    return runtime.db.run(
        lambda s: (
            s.scalar(select(func.count(Automation.id))),
            s.scalar(select(func.count()).select_from(AutomationVersion)),
        )
    )


def _graph(text: str) -> dict:
    (automation,) = parse(text).automations
    return compile_automation(automation, load_catalogue().catalog).to_json()


# --- CRUD -----------------------------------------------------------------------------------


def test_create_then_get(automations, creator):
    saved = automations.create(creator.id, WELCOME, status="active")
    got = automations.get(saved.id)
    assert (got.name, got.description, got.trigger) == ("Welcome", "Say hello", "new_subscriber")
    assert (got.status, got.version, got.creator_id) == ("active", 1, creator.id)
    assert got.source == WELCOME
    assert got.graph == _graph(WELCOME)
    assert got.created_at.tzinfo is not None


def test_new_automations_are_drafts(automations, creator):
    assert automations.create(creator.id, WELCOME).status == "draft"


def test_update_source_and_status(automations, creator):
    saved = automations.create(creator.id, WELCOME)
    updated = automations.update(saved.id, source=THANKS, status="paused")
    got = automations.get(saved.id)
    assert updated.version == got.version == 2
    assert (got.name, got.trigger, got.status, got.source) == (
        "Thanks", "purchase_completed", "paused", THANKS
    )  # fmt: skip
    assert got.graph == _graph(THANKS)
    assert got.description is None


def test_delete(automations, creator, runtime):
    saved = automations.create(creator.id, WELCOME)
    automations.delete(saved.id)
    with pytest.raises(NotFound):
        automations.get(saved.id)
    assert _counts(runtime) == (0, 0)  # its versions go with it
    with pytest.raises(NotFound):
        automations.delete(saved.id)


def test_unknown_ids_are_not_found(automations, creator):
    with pytest.raises(NotFound):
        automations.get("nope")
    with pytest.raises(NotFound):
        automations.update("nope", status="active")
    with pytest.raises(NotFound):
        automations.create("no-such-creator", WELCOME)


def test_list_and_list_by_status(automations, creator, runtime):
    other = runtime.db.run(lambda s: create_creator(s, "Other"))
    a = automations.create(creator.id, WELCOME, status="active")
    b = automations.create(creator.id, THANKS, status="paused")
    c = automations.create(creator.id, WELCOME.replace('"Welcome"', '"Draft"'))
    automations.create(other.id, WELCOME, status="active")
    assert {x.id for x in automations.list(creator.id)} == {a.id, b.id, c.id}
    assert [x.id for x in automations.list(creator.id, "active")] == [a.id]
    assert [x.id for x in automations.list(creator.id, "paused")] == [b.id]
    assert [x.id for x in automations.list(creator.id, "draft")] == [c.id]
    with pytest.raises(InvalidInput) as caught:
        automations.list(creator.id, "running")
    assert caught.value.field == "status"


def test_invalid_status_is_refused_and_nothing_written(automations, creator, runtime):
    with pytest.raises(InvalidInput) as caught:
        automations.create(creator.id, WELCOME, status="on")
    assert caught.value.field == "status"
    assert _counts(runtime) == (0, 0)


# --- The checker guards every save ----------------------------------------------------------

BROKEN = """\
automation "Broken" {
  when new_subscribr
  send_mesage text: "hi"
  add_tag tag: 1
}
"""


def test_text_with_errors_is_refused_with_its_diagnostics(automations, creator, runtime):
    with pytest.raises(InvalidAutomation) as caught:
        automations.create(creator.id, BROKEN)
    error = caught.value
    assert error.field == "source" and error.source == BROKEN
    assert [(d.span.line, d.is_error) for d in error.diagnostics] == [
        (2, True), (3, True), (4, True)
    ]  # fmt: skip
    assert "new_subscriber" in (error.diagnostics[0].hint or "")
    assert _counts(runtime) == (0, 0)


def test_text_that_does_not_parse_is_refused(automations, creator, runtime):
    with pytest.raises(InvalidAutomation) as caught:
        automations.create(creator.id, 'automation "X" {\n  when new_subscriber\n')
    assert caught.value.diagnostics
    assert _counts(runtime) == (0, 0)


def test_update_with_errors_changes_nothing(automations, creator, runtime):
    saved = automations.create(creator.id, WELCOME)
    with pytest.raises(InvalidAutomation):
        automations.update(saved.id, source=BROKEN, status="active")
    got = automations.get(saved.id)
    assert (got.source, got.status, got.version) == (WELCOME, "draft", 1)
    assert _counts(runtime) == (1, 1)


def test_more_than_one_automation_in_a_text_is_refused(automations, creator, runtime):
    with pytest.raises(InvalidInput, match="2 automations") as caught:
        automations.create(creator.id, WELCOME + "\n" + THANKS)
    assert caught.value.field == "source"
    assert _counts(runtime) == (0, 0)


def test_warnings_do_not_stop_a_save(automations, creator):
    text = WELCOME.replace("fan.total_spent < $10", "1 < 2")
    assert any(not d.is_error for d in automations.check(text))
    assert automations.create(creator.id, text).source == text


# --- Versions -------------------------------------------------------------------------------


def test_stale_expected_version_is_a_conflict_naming_the_current_version(automations, creator):
    saved = automations.create(creator.id, WELCOME)
    automations.update(saved.id, status="active", expected_version=1)
    with pytest.raises(Conflict, match="version 2") as caught:
        automations.update(saved.id, source=THANKS, expected_version=1)
    assert caught.value.current_version == 2
    assert caught.value.status_code == 409
    got = automations.get(saved.id)
    assert (got.source, got.version) == (WELCOME, 2)


def test_every_version_is_kept(automations, creator, runtime):
    saved = automations.create(creator.id, WELCOME)
    automations.update(saved.id, source=THANKS)
    automations.update(saved.id, status="active")
    rows = runtime.db.run(
        lambda s: [
            (v.version, v.source)
            for v in s.scalars(
                select(AutomationVersion)
                .where(AutomationVersion.automation_id == saved.id)
                .order_by(AutomationVersion.version)
            )
        ]
    )
    assert rows == [(1, WELCOME), (2, THANKS), (3, THANKS)]
    assert automations.graph_of(saved.id, 1) == _graph(WELCOME)
    assert automations.graph_of(saved.id, 2) == _graph(THANKS)
    with pytest.raises(NotFound):
        automations.graph_of(saved.id, 4)


def test_save_all_creates_then_replaces_by_name(automations, creator):
    first = automations.save_all(creator.id, [WELCOME, THANKS])
    again = automations.save_all(creator.id, [WELCOME, THANKS.replace("Thanks for", "Ta for")])
    assert [a.id for a in again] == [a.id for a in first]
    assert [a.version for a in again] == [1, 2]
    assert len(automations.list(creator.id)) == 2


# --- Property 1 -----------------------------------------------------------------------------


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=automation_texts(load_catalogue().catalog))
def test_property_1_automation_flow_round_trip(automations, creator, data):
    """Property 1: Automation Flow Round Trip — for any valid automation, saving it to the
    database and getting it back gives the same source, graph and steps."""
    text = data
    # The generated texts may send many messages a day: storage, not policy, is tested.
    automations.runtime.db.run(
        lambda s: set_policy(s, creator.id, {"max_messages_per_fan_per_day": 99})
    )
    expected = RuleGraph.from_json(_graph(text))
    saved = automations.create(creator.id, text, status="active")
    got = automations.get(saved.id)
    assert got.source == text
    assert got.graph == expected.to_json()
    assert export_flow(RuleGraph.from_json(got.graph)) == export_flow(expected)
    assert (got.name, got.description, got.trigger) == (
        expected.name, expected.description, expected.trigger.name
    )  # fmt: skip
    assert automations.graph_of(saved.id, got.version) == got.graph


# --- Execute --------------------------------------------------------------------------------


def test_execute_runs_one_automation_whatever_its_status(runtime, automations, creator, drain):
    draft = automations.create(creator.id, WELCOME)
    automations.create(creator.id, WELCOME.replace('"Welcome"', '"Other"'), status="active")
    (execution_id,) = automations.execute(draft.id, context("new_subscriber", creator.id))
    drain()
    done = execution(runtime, execution_id)
    assert (done.automation_id, done.status, done.steps_executed) == (draft.id, "success", 2)
    with pytest.raises(InvalidInput) as caught:
        automations.execute(draft.id, context("purchase_completed", creator.id,
                                              event={"amount": 1, "item": "x"}))  # fmt: skip
    assert caught.value.field == "type"
