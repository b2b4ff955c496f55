"""Analytics from the execution rows themselves (design property 11): counts by status,
success rate, failures by step, messages sent, and time windows."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itest_support import START, context, with_test_plugins
from sqlalchemy import insert

from engine.analytics import automation_stats
from engine.jobs import sweep
from engine.models import Automation, Event, Execution, Fan, OutboxMessage, StepRun

STATUSES = ["pending", "running", "waiting", "success", "failed", "partial"]
FINISHED = {"success", "failed", "partial"}
NODES = ["s1", "s2", "s3.b1.s1"]

rows = st.fixed_dictionaries(
    {
        "status": st.sampled_from(STATUSES),
        "minutes": st.integers(0, 60 * 24 * 10),  # executed within ten days of START
        "failed_steps": st.lists(st.sampled_from(NODES), unique=True, max_size=3),
        "messages": st.integers(0, 3),
    }
)
windows = st.tuples(
    st.none() | st.integers(0, 60 * 24 * 10), st.none() | st.integers(0, 60 * 24 * 10)
)


def _insert(session, creator_id: str, fan_id: str, generated: list[dict]) -> str:
    """An automation with these executions, their failed steps and their messages."""
    automation_id = str(uuid.uuid4())
    session.execute(insert(Automation), [{
        "id": automation_id, "creator_id": creator_id, "name": "A", "source": "",
        "graph": {}, "trigger": "new_subscriber", "status": "active", "version": 1,
    }])  # fmt: skip
    events, executions, steps, messages = [], [], [], []
    for row in generated:
        event_id, execution_id = str(uuid.uuid4()), str(uuid.uuid4())
        events.append({"id": event_id, "creator_id": creator_id, "type": "new_subscriber",
                       "fan_external_id": "f", "data": {}, "occurred_at": START})  # fmt: skip
        executions.append({
            "id": execution_id, "automation_id": automation_id, "automation_version": 1,
            "creator_id": creator_id, "fan_id": fan_id, "event_id": event_id,
            "trigger_type": "new_subscriber", "trigger_data": {}, "status": row["status"],
            "executed_at": START + timedelta(minutes=row["minutes"]),
        })  # fmt: skip
        steps += [{"id": str(uuid.uuid4()), "execution_id": execution_id, "node_id": node,
                   "kind": "action", "name": "x", "status": "failed", "error": "boom"}
                  for node in row["failed_steps"]]  # fmt: skip
        steps.append({"id": str(uuid.uuid4()), "execution_id": execution_id, "node_id": "s9",
                      "kind": "action", "name": "x", "status": "done"})  # fmt: skip
        messages += [{"id": str(uuid.uuid4()), "creator_id": creator_id, "fan_id": fan_id,
                      "execution_id": execution_id, "text": "hi",
                      "idempotency_key": str(uuid.uuid4())}
                     for _ in range(row["messages"])]  # fmt: skip
    for model, values in ((Event, events), (Execution, executions), (StepRun, steps),
                          (OutboxMessage, messages)):  # fmt: skip
        if values:
            session.execute(insert(model), values)
    return automation_id


@pytest.fixture
def fan_id(runtime, creator) -> str:
    def add(session):
        fan = Fan(creator_id=creator.id, external_id="f", name="F", tags=[])
        session.add(fan)
        session.flush()
        return fan.id

    return runtime.db.run(add)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(generated=st.lists(rows, max_size=12), window=windows, decoys=st.lists(rows, max_size=3))
def test_property_11_analytics_metric_consistency(
    runtime, creator, fan_id, generated, window, decoys
):
    """Property 11: Analytics Metric Consistency — for any set of executions, the success
    rate is successful over finished executions, and the counts, failures by step and
    messages sent are those of the executions in the time window."""
    automation_id = runtime.db.run(lambda s: _insert(s, creator.id, fan_id, generated))
    runtime.db.run(lambda s: _insert(s, creator.id, fan_id, decoys))  # another automation's
    since, until = (None if w is None else START + timedelta(minutes=w) for w in window)

    stats = runtime.db.run(lambda s: automation_stats(s, automation_id, since, until))

    inside = [
        row for row in generated
        if (since is None or START + timedelta(minutes=row["minutes"]) >= since)
        and (until is None or START + timedelta(minutes=row["minutes"]) < until)
    ]  # fmt: skip
    by_status = Counter(row["status"] for row in inside)
    finished = sum(by_status[s] for s in FINISHED)
    assert stats.automation_id == automation_id
    assert stats.executions == len(inside)
    assert stats.by_status == dict(by_status)
    assert stats.finished == finished
    if finished:
        assert stats.success_rate == by_status["success"] / finished
        assert 0 <= stats.success_rate <= 1
    else:
        assert stats.success_rate is None
    assert stats.failures_by_step == dict(Counter(n for r in inside for n in r["failed_steps"]))
    assert stats.messages_sent == sum(row["messages"] for row in inside)


def test_stats_of_an_automation_without_executions(runtime, creator):
    stats = runtime.db.run(lambda s: automation_stats(s, "nothing-here"))
    assert (stats.executions, stats.by_status, stats.messages_sent) == (0, {}, 0)
    assert (stats.success_rate, stats.failures_by_step, stats.finished) == (None, {}, 0)


def test_stats_of_real_executions(runtime, creator, automations, dispatcher, drain):
    """The rows the runner writes add up: three fans, one of whom has the failing step."""
    runtime.plugins = with_test_plugins()
    text = (
        'automation "Mixed" {\n  when new_subscriber\n  send_message text: "hi"\n'
        '  if "bad" in fan.tags {\n    fail_step mode: "error"\n  }\n  wait 1d\n'
        '  send_message text: "later"\n}\n'
    )
    saved = automations.create(creator.id, text, status="active")
    for fan_id, tags in (("a", []), ("b", ["bad"]), ("c", [])):
        fan = {"name": fan_id, "username": fan_id, "subscribed_at": START.isoformat(),
               "tags": tags}  # fmt: skip
        dispatcher.dispatch(context("new_subscriber", creator.id, fan_id, fan_fields=fan))
    drain()

    waiting = runtime.db.run(lambda s: automation_stats(s, saved.id))
    assert (waiting.executions, waiting.by_status, waiting.success_rate) == (
        3, {"waiting": 3}, None
    )  # fmt: skip
    assert waiting.messages_sent == 3
    assert waiting.failures_by_step == {"s2.b1.s1": 1}

    runtime.clock.set(START + timedelta(days=1))
    sweep(runtime)
    drain()
    done = runtime.db.run(lambda s: automation_stats(s, saved.id))
    assert done.by_status == {"success": 2, "partial": 1}
    assert done.success_rate == 2 / 3
    assert done.messages_sent == 6
    later = runtime.db.run(
        lambda s: automation_stats(s, saved.id, since=START + timedelta(hours=1))
    )
    assert later.executions == 0  # executions count from when they started
