"""The runner, through real RQ jobs: whole traces, failing actions (design property 4),
waits and their resumption, the daily message cap, retried executions that never send
a message twice, conditions that see the fan as they are now, and message templates."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itest_support import (
    START,
    CrashOnce,
    SimulatedCrash,
    context,
    execution,
    fan,
    steps_of,
    trace,
    with_test_plugins,
)
from sqlalchemy import func, select, update

from engine.catalogue import LoadedCatalogue
from engine.creators import create_creator, set_policy
from engine.exceptions import InvalidAutomation
from engine.jobs import run_executions, runner_for, sweep
from engine.models import Execution, Fan, OutboxMessage, StepRun, utcnow
from engine.runner import GraphCache

NESTED = """\
automation "Nested" {
  when purchase_completed
  if event.amount >= $50 {
    add_tag tag: "big"
  } else if "vip" in fan.tags {
    if fan.country == "US" {
      add_tag tag: "vip-us"
    } else {
      add_tag tag: "vip-elsewhere"
    }
    send_message text: "Thanks, {{ fan.name }}!"
  } else {
    add_tag tag: "small"
  }
  add_tag tag: "buyer"
}
"""


def automation(name: str, trigger: str, *steps: str) -> str:
    body = "\n".join(f"  {step}" for step in steps)
    return f'automation "{name}" {{\n  when {trigger}\n{body}\n}}\n'


def outbox(runtime, fan_id: str | None = None) -> list[str]:
    query = select(OutboxMessage.text).order_by(OutboxMessage.created_at, OutboxMessage.text)
    if fan_id is not None:
        query = query.where(OutboxMessage.fan_id == fan_id)
    return runtime.db.run(lambda s: list(s.scalars(query)))


def tags_of(runtime, creator_id: str, fan_external_id: str) -> list[str]:
    return runtime.db.run(
        lambda s: s.scalar(
            select(Fan.tags).where(Fan.creator_id == creator_id, Fan.external_id == fan_external_id)
        )
    )


def purchase(creator_id: str, fan_id: str = "fan-1", amount=9.99, **fan_fields):
    return context("purchase_completed", creator_id, fan_id, fan_fields=fan(**fan_fields),
                   event={"amount": amount, "item": "post"})  # fmt: skip


# --- Whole traces ---------------------------------------------------------------------------


# For each purchase: the trace, what each condition found (its detail), the fan's tags.
NESTED_RUNS = {
    "big": (
        60, {},
        [("s1", "condition", "if", "done"),
         ("s1.b1.s1", "action", "add_tag", "done"),
         ("s2", "action", "add_tag", "done")],
        {"s1": "true"},
        ["big", "buyer"],
    ),
    "vip-elsewhere": (
        10, {"tags": ["vip"], "country": "FR"},
        [("s1", "condition", "if", "done"),
         ("s1.b2", "condition", "if", "done"),
         ("s1.b2.s1", "condition", "if", "done"),
         ("s1.b2.s1.else.s1", "action", "add_tag", "done"),
         ("s1.b2.s2", "action", "send_message", "done"),
         ("s2", "action", "add_tag", "done")],
        {"s1": "false", "s1.b2": "true", "s1.b2.s1": "false"},
        ["buyer", "vip", "vip-elsewhere"],
    ),
    "vip-us": (
        10, {"tags": ["vip"], "country": "US"},
        [("s1", "condition", "if", "done"),
         ("s1.b2", "condition", "if", "done"),
         ("s1.b2.s1", "condition", "if", "done"),
         ("s1.b2.s1.b1.s1", "action", "add_tag", "done"),
         ("s1.b2.s2", "action", "send_message", "done"),
         ("s2", "action", "add_tag", "done")],
        {"s1": "false", "s1.b2": "true", "s1.b2.s1": "true"},
        ["buyer", "vip", "vip-us"],
    ),
    "small": (
        10, {},
        [("s1", "condition", "if", "done"),
         ("s1.b2", "condition", "if", "done"),
         ("s1.else.s1", "action", "add_tag", "done"),
         ("s2", "action", "add_tag", "done")],
        {"s1": "false", "s1.b2": "false"},
        ["buyer", "small"],
    ),
}  # fmt: skip


def test_nested_branches_leave_the_whole_trace(runtime, creator, automations, dispatcher, drain):
    automations.create(creator.id, NESTED, status="active")
    executions = {
        fan_id: dispatcher.dispatch(purchase(creator.id, fan_id, amount, **fields)).execution_ids[0]
        for fan_id, (amount, fields, *_) in NESTED_RUNS.items()
    }
    drain()

    for fan_id, (_, _, expected, conditions, tags) in NESTED_RUNS.items():
        execution_id = executions[fan_id]
        assert trace(runtime, execution_id) == expected, fan_id
        found = {node: step.detail for node, step in steps_of(runtime, execution_id).items()
                 if step.kind == "condition"}  # fmt: skip
        assert found == conditions, fan_id
        assert tags_of(runtime, creator.id, fan_id) == tags
        done = execution(runtime, execution_id)
        actions = sum(1 for _, kind, *_ in expected if kind == "action")
        assert (done.status, done.steps_executed, done.error) == ("success", actions, None)
        assert (done.finished_at, done.current_node, done.lease_until, done.attempts) == (
            START, None, None, 1
        )  # fmt: skip
    assert outbox(runtime) == ["Thanks, Mia!"] * 2


# --- Property 4 -----------------------------------------------------------------------------

FAILURES = {
    "error": "step {i} refused",
    "raise": "ZeroDivisionError: step {i} divided by zero",
    "result": "step {i} reported a failure",
}


@pytest.fixture
def with_plugins(runtime):
    """The runtime with the test-only actions installed beside the real ones."""
    runtime.plugins = with_test_plugins()
    return runtime


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plan=st.lists(
        st.sampled_from(["tag", "send", "error", "raise", "result"]), min_size=1, max_size=7
    ).filter(lambda plan: plan.count("send") <= 5)
)  # the daily cap
def test_property_4_action_execution_resilience(with_plugins, creator, automations, plan):
    """Property 4: Action Execution Resilience — for any sequence of actions where some
    fail, every action after a failing one still runs, each failing step is marked failed
    with its error, and the execution ends partial (failed if every action failed,
    success if none did)."""
    runtime = with_plugins
    steps = [
        f'add_tag tag: "t{i}"' if kind == "tag"
        else f'send_message text: "m{i}"' if kind == "send"
        else f'fail_step mode: "{kind}", n: {i}'
        for i, kind in enumerate(plan)
    ]  # fmt: skip
    saved = automations.create(creator.id, automation("P4", "new_subscriber", *steps))
    fan_id = f"fan-{uuid.uuid4().hex[:8]}"
    (execution_id,) = automations.execute(saved.id, context("new_subscriber", creator.id, fan_id))

    status = run_executions([execution_id])[execution_id]

    def outcome(session):  # everything the property looks at, in one transaction
        fan_row = session.scalar(select(Fan).where(Fan.external_id == fan_id))
        steps = session.scalars(select(StepRun).where(StepRun.execution_id == execution_id))
        texts = session.scalars(
            select(OutboxMessage.text).where(OutboxMessage.fan_id == fan_row.id)
        )
        return (session.get(Execution, execution_id), {s.node_id: s for s in steps},
                sorted(fan_row.tags), sorted(texts))  # fmt: skip

    done, recorded, tags, texts = runtime.db.run(outcome)
    assert len(recorded) == len(plan)  # every step ran
    errors = []
    for i, kind in enumerate(plan):
        step = recorded[f"s{i + 1}"]
        if kind in ("tag", "send"):
            assert (step.status, step.error) == ("done", None)
        else:
            errors.append(FAILURES[kind].format(i=i))
            assert (step.status, step.error) == ("failed", errors[-1])
    assert tags == sorted(f"t{i}" for i, kind in enumerate(plan) if kind == "tag")
    assert texts == sorted(f"m{i}" for i, kind in enumerate(plan) if kind == "send")
    failed = len(errors)
    expected = "success" if not failed else "failed" if failed == len(plan) else "partial"
    assert (status, done.status, done.steps_executed) == (expected, expected, len(plan))
    # Every error is in the execution's; their order is the steps' start times, which a
    # fixed clock makes all equal.
    assert sorted((done.error or "").split("; ")) == sorted(errors or [""])


def test_a_failing_action_through_rq(with_plugins, creator, automations, dispatcher, drain):
    runtime = with_plugins
    text = automation("F", "new_subscriber", 'add_tag tag: "a"', 'fail_step mode: "raise"',
                      'send_message text: "still here"')  # fmt: skip
    automations.create(creator.id, text, status="active")
    (execution_id,) = dispatcher.dispatch(context("new_subscriber", creator.id)).execution_ids
    drain()
    assert [status for *_, status in trace(runtime, execution_id)] == ["done", "failed", "done"]
    assert outbox(runtime) == ["still here"]
    assert execution(runtime, execution_id).status == "partial"


def test_an_action_whose_plugin_is_gone_fails_its_step_only(
    with_plugins, creator, automations, dispatcher, drain
):
    runtime = with_plugins
    text = automation("G", "new_subscriber", 'fail_step mode: "error"', 'add_tag tag: "b"')
    automations.create(creator.id, text, status="active")
    runtime.plugins = LoadedCatalogue(
        runtime.plugins.catalog,
        runtime.plugins.triggers,
        {k: v for k, v in runtime.plugins.actions.items() if k != "fail_step"},
    )
    (execution_id,) = dispatcher.dispatch(context("new_subscriber", creator.id)).execution_ids
    drain()
    steps = steps_of(runtime, execution_id)
    assert steps["s1"].status == "failed" and "not installed" in steps["s1"].error
    assert steps["s2"].status == "done"
    assert execution(runtime, execution_id).status == "partial"


# --- Waits ----------------------------------------------------------------------------------


def test_a_wait_parks_the_execution_and_the_sweep_resumes_it(
    runtime, clock, creator, automations, dispatcher, drain
):
    text = automation("W", "new_subscriber", 'send_message text: "before"', "wait 2d",
                      'send_message text: "after"')  # fmt: skip
    automations.create(creator.id, text, status="active")
    (execution_id,) = dispatcher.dispatch(context("new_subscriber", creator.id)).execution_ids
    drain()

    parked = execution(runtime, execution_id)
    due = START + timedelta(days=2)
    assert (parked.status, parked.resume_at, parked.current_node) == ("waiting", due, "s3")
    assert parked.lease_until is None
    assert trace(runtime, execution_id) == [
        ("s1", "action", "send_message", "done"),
        ("s2", "wait", "wait", "done"),
    ]
    assert steps_of(runtime, execution_id)["s2"].detail == f"until {due.isoformat()}"
    assert outbox(runtime) == ["before"]
    # The continuation is scheduled with RQ's scheduler for the resume time.
    assert runtime.queue.scheduled_job_registry.count == 1

    clock.set(due - timedelta(seconds=1))
    assert sweep(runtime) == 0
    assert run_executions([execution_id]) == {execution_id: None}  # not due: nothing runs
    assert execution(runtime, execution_id).status == "waiting"

    clock.set(due)
    assert sweep(runtime) == 1
    drain()
    done = execution(runtime, execution_id)
    assert (done.status, done.steps_executed, done.resume_at) == ("success", 2, None)
    assert done.finished_at == due
    assert outbox(runtime) == ["before", "after"]
    assert [node for node, *_ in trace(runtime, execution_id)] == ["s1", "s2", "s3"]
    assert sweep(runtime) == 0
    assert run_executions([execution_id]) == {execution_id: None}  # finished: nothing runs
    assert outbox(runtime) == ["before", "after"]


def test_conditions_see_the_fans_tags_as_they_are_after_a_wait(
    runtime, clock, creator, automations, dispatcher, drain
):
    automations.create(creator.id, automation(
        "Later", "new_subscriber", "wait 1d",
        'if "vip" in fan.tags {', '  add_tag tag: "saw-vip"', "} else {",
        '  add_tag tag: "no-vip"', "}",
    ), status="active")  # fmt: skip
    automations.create(
        creator.id, automation("Buy", "purchase_completed", 'add_tag tag: "vip"'), status="active"
    )
    (waiting,) = dispatcher.dispatch(context("new_subscriber", creator.id)).execution_ids
    drain()
    assert execution(runtime, waiting).trigger_data["fan"]["tags"] == []
    clock.set(START + timedelta(hours=3))
    dispatcher.dispatch(purchase(creator.id))  # another automation tags the fan meanwhile
    drain()
    assert tags_of(runtime, creator.id, "fan-1") == ["vip"]

    clock.set(START + timedelta(days=1))
    sweep(runtime)
    drain()
    assert tags_of(runtime, creator.id, "fan-1") == ["saw-vip", "vip"]
    assert steps_of(runtime, waiting)["s2"].detail == "true"


# --- The daily message cap ------------------------------------------------------------------


def test_the_daily_cap_stops_the_next_message_and_the_trace_says_so(
    runtime, clock, automations, dispatcher, drain
):
    capped = runtime.db.run(lambda s: create_creator(s, "Capped", messages_per_fan_per_day=2))
    # The policy refuses to save an automation that alone goes beyond the cap: lift it,
    # so that the cap itself is what stops the message here.
    runtime.db.run(lambda s: set_policy(s, capped.id, {"max_messages_per_fan_per_day": 10}))
    text = automation("Three", "new_subscriber", 'send_message text: "one"',
                      'send_message text: "two"', 'send_message text: "three"',
                      'add_tag tag: "after"')  # fmt: skip
    automations.create(capped.id, text, status="active")
    (first,) = dispatcher.dispatch(context("new_subscriber", capped.id)).execution_ids
    drain()

    assert trace(runtime, first) == [
        ("s1", "action", "send_message", "done"),
        ("s2", "action", "send_message", "done"),
        ("s3", "action", "send_message", "skipped"),
        ("s4", "action", "add_tag", "done"),
    ]
    skipped = steps_of(runtime, first)["s3"]
    assert "daily message cap reached: 2 of 2" in skipped.detail
    assert skipped.error is None
    assert outbox(runtime) == ["one", "two"]
    assert execution(runtime, first).status == "success"

    # Within 24 hours of the first two, even another automation's message waits.
    clock.set(START + timedelta(hours=23, minutes=59))
    (second,) = dispatcher.dispatch(context("new_subscriber", capped.id)).execution_ids
    drain()
    assert [status for *_, status in trace(runtime, second)] == ["skipped"] * 3 + ["done"]
    # Other fans have their own cap.
    dispatcher.dispatch(context("new_subscriber", capped.id, "fan-2"))
    drain()
    assert len(outbox(runtime)) == 4

    clock.set(START + timedelta(days=1, seconds=1))
    (third,) = dispatcher.dispatch(context("new_subscriber", capped.id)).execution_ids
    drain()
    assert [status for *_, status in trace(runtime, third)] == ["done", "done", "skipped", "done"]


def test_the_engine_default_cap_applies_without_the_creators_own(
    runtime, creator, automations, dispatcher, drain
):
    limit = runtime.settings.messages_per_fan_per_day
    sends = [f'send_message text: "m{i}"' for i in range(limit + 1)]
    # As above: the policy would refuse this automation; the cap is under test here.
    runtime.db.run(lambda s: set_policy(s, creator.id, {"max_messages_per_fan_per_day": 99}))
    automations.create(creator.id, automation("Many", "new_subscriber", *sends), status="active")
    (execution_id,) = dispatcher.dispatch(context("new_subscriber", creator.id)).execution_ids
    drain()
    statuses = [status for *_, status in trace(runtime, execution_id)]
    assert statuses == ["done"] * limit + ["skipped"]


def test_a_third_party_message_action_is_held_to_the_policy_and_the_cap(
    with_plugins, clock, automations, dispatcher, drain
):
    """`text_fan` declares `sends_message`: saving counts it toward the policy's messages
    per day, and what it writes through the outbox counts against the daily cap."""
    runtime = with_plugins
    capped = runtime.db.run(lambda s: create_creator(s, "Capped", messages_per_fan_per_day=2))
    text = automation("Texts", "new_subscriber", 'text_fan text: "one"',
                      'send_message text: "two"', 'text_fan text: "three"')  # fmt: skip
    with pytest.raises(InvalidAutomation) as caught:
        automations.create(capped.id, text, status="active")
    [diagnostic] = caught.value.diagnostics
    assert (diagnostic.code, diagnostic.span.line) == ("policy.messages-per-day", 5)

    runtime.db.run(lambda s: set_policy(s, capped.id, {"max_messages_per_fan_per_day": 10}))
    automations.create(capped.id, text, status="active")
    (execution_id,) = dispatcher.dispatch(context("new_subscriber", capped.id)).execution_ids
    drain()
    assert [status for *_, status in trace(runtime, execution_id)] == ["done", "done", "skipped"]
    assert "daily message cap reached: 2 of 2" in steps_of(runtime, execution_id)["s3"].detail
    assert outbox(runtime) == ["sms: one", "two"]


# --- Retries: side effects happen once ------------------------------------------------------


def _expire_lease(runtime, execution_id: str) -> None:
    """What the passing of lease_seconds does to a dead worker's lease."""
    runtime.db.run(
        lambda s: s.execute(
            update(Execution)
            .where(Execution.id == execution_id)
            .values(lease_until=utcnow() - timedelta(seconds=1))
        )
    )


def test_a_crashed_execution_resumes_without_repeating_done_steps(
    with_plugins, creator, automations, dispatcher, drain
):
    runtime = with_plugins
    text = automation("Crash", "new_subscriber", 'send_message text: "one"', "crash_once",
                      'send_message text: "two"')  # fmt: skip
    automations.create(creator.id, text, status="active")
    (execution_id,) = dispatcher.dispatch(context("new_subscriber", creator.id)).execution_ids
    runtime.queue.empty()  # this test runs the first attempt itself
    CrashOnce.seen.clear()

    with pytest.raises(SimulatedCrash):
        runner_for(runtime).run(execution_id)  # the worker dies inside crash_once
    crashed = execution(runtime, execution_id)
    assert (crashed.status, crashed.current_node) == ("running", "s2")
    assert [status for *_, status in trace(runtime, execution_id)] == ["done", "running"]
    first_send = steps_of(runtime, execution_id)["s1"]
    assert run_executions([execution_id]) == {execution_id: None}  # its lease still holds

    _expire_lease(runtime, execution_id)
    assert sweep(runtime) == 1
    drain()

    done = execution(runtime, execution_id)
    assert (done.status, done.attempts, done.steps_executed) == ("success", 2, 3)
    assert outbox(runtime) == ["one", "two"]
    steps = steps_of(runtime, execution_id)
    assert steps["s1"].finished_at == first_send.finished_at
    assert steps["s1"].output == first_send.output
    # The interrupted step ran again with the same idempotency key.
    assert CrashOnce.seen == [f"{execution_id}:s2"] * 2


def test_a_send_interrupted_after_writing_its_message_does_not_write_it_again(
    runtime, creator, automations, dispatcher, drain
):
    text = automation("Two", "new_subscriber", 'send_message text: "one"',
                      'send_message text: "two"')  # fmt: skip
    automations.create(creator.id, text, status="active")
    (execution_id,) = dispatcher.dispatch(context("new_subscriber", creator.id)).execution_ids
    drain()
    message_id = steps_of(runtime, execution_id)["s2"].output["message_id"]

    # As if the worker died after the outbox write, before marking the step done.
    def crash(session):
        session.execute(
            update(StepRun)
            .where(StepRun.execution_id == execution_id, StepRun.node_id == "s2")
            .values(status="running", finished_at=None, output={})
        )
        session.execute(
            update(Execution)
            .where(Execution.id == execution_id)
            .values(status="running", current_node="s2", finished_at=None,
                    lease_until=utcnow() - timedelta(seconds=1))
        )  # fmt: skip

    runtime.db.run(crash)
    assert sweep(runtime) == 1
    drain()

    assert outbox(runtime) == ["one", "two"]
    steps = steps_of(runtime, execution_id)
    assert (steps["s2"].status, steps["s2"].output["message_id"]) == ("done", message_id)
    assert execution(runtime, execution_id).status == "success"
    keys = runtime.db.run(lambda s: sorted(s.scalars(select(OutboxMessage.idempotency_key))))
    assert keys == [f"{execution_id}:s1", f"{execution_id}:s2"]


def test_running_a_finished_execution_again_does_nothing(
    runtime, creator, automations, dispatcher, drain
):
    text = automation("Once", "new_subscriber", 'send_message text: "once"', 'add_tag tag: "x"')
    automations.create(creator.id, text, status="active")
    (execution_id,) = dispatcher.dispatch(context("new_subscriber", creator.id)).execution_ids
    drain()
    before = trace(runtime, execution_id)
    runtime.queue.enqueue(run_executions, [execution_id])
    runtime.queue.enqueue(run_executions, [execution_id])
    drain()
    assert run_executions([execution_id, execution_id]) == {execution_id: None}
    assert trace(runtime, execution_id) == before
    assert outbox(runtime) == ["once"]
    assert execution(runtime, execution_id).attempts == 1
    count = runtime.db.run(lambda s: s.scalar(select(func.count(StepRun.id))))
    assert count == 2


# --- Templates ------------------------------------------------------------------------------


TEMPLATES = [
    ("Thanks for {{ event.amount }}!", "Thanks for $9.99!"),
    ("{{ fan.name }} bought {{ event.item }}", "Zoë bought post"),
    ('Hi {{ fan.country | default(\\"there\\") }}', "Hi there"),
    ('{{ fan.name | upper }}: {{ fan.tags | join(\\", \\") }}', "ZOË: a, b"),
]


def test_messages_render_their_templates(runtime, creator, automations, dispatcher, drain):
    sends = [f'send_message text: "{template}"' for template, _ in TEMPLATES]
    automations.create(creator.id, automation("T", "purchase_completed", *sends), status="active")
    dispatcher.dispatch(purchase(creator.id, "fan-1", 9.99, name="Zoë", tags=["b", "a"]))
    dispatcher.dispatch(purchase(creator.id, "fan-2", "9.99", name="Zoë", tags=["a", "b"]))
    drain()
    fans = runtime.db.run(lambda s: dict(s.execute(select(Fan.external_id, Fan.id)).all()))
    expected = [text for _, text in TEMPLATES]
    assert sorted(outbox(runtime, fans["fan-1"])) == sorted(expected)
    assert sorted(outbox(runtime, fans["fan-2"])) == sorted(expected)


def test_money_renders_with_cents(runtime, creator, automations, dispatcher, drain):
    text = automation("C", "purchase_completed", 'send_message text: "{{ fan.total_spent }}"')
    automations.create(creator.id, text, status="active")
    dispatcher.dispatch(purchase(creator.id, amount=1, total_spent=12.5))
    drain()
    assert outbox(runtime) == ["$12.50"]


# --- Waits at the end, and edits while waiting ------------------------------------------------


def test_a_wait_at_the_end_of_the_run_finishes_when_it_is_over(
    runtime, clock, creator, automations, dispatcher, drain
):
    text = automation("Tail", "new_subscriber", 'if "vip" in fan.tags {',
                      '  send_message text: "vip"', "  wait 1d", "}")  # fmt: skip
    automations.create(creator.id, text, status="active")
    ctx = context("new_subscriber", creator.id, fan_fields=fan(tags=["vip"]))
    (execution_id,) = dispatcher.dispatch(ctx).execution_ids
    drain()
    assert execution(runtime, execution_id).status == "waiting"

    clock.set(START + timedelta(days=1))
    assert sweep(runtime) == 1
    drain()
    done = execution(runtime, execution_id)
    assert (done.status, done.steps_executed) == ("success", 1)
    assert [node for node, *_ in trace(runtime, execution_id)] == ["s1", "s1.b1.s1", "s1.b1.s2"]
    clock.set(START + timedelta(days=3))
    assert sweep(runtime) == 0
    assert outbox(runtime) == ["vip"]


def test_an_execution_resumes_the_version_it_started_with(
    runtime, clock, creator, automations, dispatcher, drain
):
    text = automation("V", "new_subscriber", "wait 1h", 'send_message text: "old"')
    saved = automations.create(creator.id, text, status="active")
    (execution_id,) = dispatcher.dispatch(context("new_subscriber", creator.id)).execution_ids
    drain()
    automations.update(saved.id, source=text.replace('"old"', '"new"'))

    clock.set(START + timedelta(hours=1))
    sweep(runtime)
    drain()
    assert outbox(runtime) == ["old"]
    assert execution(runtime, execution_id).automation_version == 1


# --- The graph cache -------------------------------------------------------------------------


def test_the_graph_cache_drops_the_least_recently_used_graph(runtime, creator, automations):
    cache = GraphCache(runtime, size=2)
    saved = [
        automations.create(creator.id, automation(name, "new_subscriber", f'add_tag tag: "{name}"'))
        for name in ("A", "B", "C")
    ]
    a, b, c = ((s.id, s.version) for s in saved)
    cache.get(*a)
    cache.get(*b)
    assert cache.get(*a) is cache.get(*a)  # a hit makes A the most recently used
    cache.get(*c)
    assert set(cache._graphs) == {a, c}
