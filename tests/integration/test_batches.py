"""The runner's batches: the executions of one job run set-wise, in as many transactions
as the longest of them has actions (plus one), and each stays on its own; pickup jobs
that take the executions of events that came while they waited; a database connection
lost between two transactions."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

import pytest
from itest_support import START, context, execution, fan, steps_of, trace
from pydantic import BaseModel
from sqlalchemy import create_engine, delete, event, select, text, update

from engine.catalogue import ACTIONS, TRIGGERS, build_catalogue
from engine.creators import create_creator
from engine.jobs import run_executions, runner_for
from engine.models import Execution, Fan, OutboxMessage, StepRun
from engine.plugin_api import Action, ActionContext, ActionResult

POSTGRESQL_ONLY = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

GREET = """\
automation "Greet" {
  when new_subscriber
  if fan.total_spent >= $0 {
    send_message text: "Hi {{ fan.name }}!"
  }
  add_tag tag: "greeted"
}
"""
GREET_TRACE = [
    ("s1", "condition", "if", "done"),
    ("s1.b1.s1", "action", "send_message", "done"),
    ("s2", "action", "add_tag", "done"),
]


def automation(name: str, *steps: str) -> str:
    body = "\n".join(f"  {step}" for step in steps)
    return f'automation "{name}" {{\n  when new_subscriber\n{body}\n}}\n'


def dispatch_held(dispatcher, contexts) -> list[str]:
    """Dispatch without queueing: the test runs the job itself."""
    dispatcher.enqueue = lambda ids: None
    return [i for r in dispatcher.dispatch_many(contexts) for i in r.execution_ids]


def new_fans(creator_id: str, count: int, **fields):
    return [
        context("new_subscriber", creator_id, f"fan-{i}", fan_fields=fan(**fields))
        for i in range(count)
    ]


class Counted:
    """Statements and commits on the engine's connections while it is active."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.statements = 0
        self.commits = 0

    def _statement(self, *_args) -> None:
        self.statements += 1

    def _commit(self, _connection) -> None:
        self.commits += 1

    def __enter__(self) -> Counted:
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(self.engine, "commit", self._commit)
        return self

    def __exit__(self, *_exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "commit", self._commit)


# --- Set-wise ---------------------------------------------------------------------------------


def test_a_batch_runs_set_wise_in_a_transaction_per_wave(runtime, creator, automations, dispatcher):
    """Twenty executions of a condition and two actions: one transaction for the leases
    and the first claims, one per wave of actions after; as many statements as one
    execution alone takes."""
    automations.create(creator.id, GREET, status="active")
    warm, *one = dispatch_held(
        dispatcher, [context("new_subscriber", creator.id, f) for f in ("warm", "one")]
    )
    run_executions([warm])  # reads and compiles the graph once
    many = dispatch_held(dispatcher, new_fans(creator.id, 20))
    counted = {}
    for label, ids in (("one", one), ("many", many)):
        with Counted(runtime.db.engine) as counted[label]:
            assert run_executions(ids) == dict.fromkeys(ids, "success")
    assert counted["many"].commits == counted["one"].commits == 3
    assert counted["many"].statements == counted["one"].statements
    for execution_id in many:
        assert trace(runtime, execution_id) == GREET_TRACE
        done = execution(runtime, execution_id)
        assert (done.status, done.steps_executed, done.attempts) == ("success", 2, 1)
    texts = runtime.db.run(lambda s: list(s.scalars(select(OutboxMessage.text))))
    assert sorted(texts) == ["Hi Mia!"] * 22
    fans = runtime.db.run(lambda s: list(s.scalars(select(Fan.tags))))
    assert fans == [["greeted"]] * 22


def test_the_daily_cap_holds_for_executions_of_one_fan_in_one_batch(
    runtime, automations, dispatcher
):
    capped = runtime.db.run(lambda s: create_creator(s, "Capped", messages_per_fan_per_day=2))
    automations.create(capped.id, automation("Hi", 'send_message text: "hi"'), status="active")
    events = [context("new_subscriber", capped.id, "fan-1", event_id=f"e{i}") for i in range(4)]
    first, second, third, fourth = dispatch_held(dispatcher, events)
    results = run_executions([first, second, third])
    assert sorted(results.values()) == ["success"] * 3  # a skipped message is no failure
    statuses = sorted(steps_of(runtime, i)["s1"].status for i in (first, second, third))
    assert statuses == ["done", "done", "skipped"]
    assert run_executions([fourth]) == {fourth: "success"}
    skipped = steps_of(runtime, fourth)["s1"]
    assert (skipped.status, skipped.detail) == (
        "skipped", "daily message cap reached: 2 of 2 messages in 24 hours"
    )  # fmt: skip
    assert len(runtime.db.run(lambda s: list(s.scalars(select(OutboxMessage.id))))) == 2


def test_tags_that_executions_of_one_batch_change_on_one_fan_all_land(
    runtime, creator, automations, dispatcher
):
    for name, step in (("A", 'add_tag tag: "a"'), ("B", 'add_tag tag: "b"'),
                       ("X", 'remove_tag tag: "x"')):  # fmt: skip
        automations.create(creator.id, automation(name, step), status="active")
    ids = dispatch_held(dispatcher, new_fans(creator.id, 1, tags=["x", "y"]))
    assert run_executions(ids) == dict.fromkeys(ids, "success")
    tags = runtime.db.run(lambda s: s.scalar(select(Fan.tags)))
    assert tags == ["a", "b", "y"]


# --- Each execution on its own ----------------------------------------------------------------


class Vanish(Action):
    """Deletes its own execution, as an operator might while it runs: the rows its step
    leaves cannot be written (tests only)."""

    description = "Delete this execution (tests only)."
    side_effects = False

    def run(self, ctx: ActionContext, config: BaseModel) -> ActionResult:
        execution_id = ctx.idempotency_key.split(":")[0]
        ctx.services.database.run(
            lambda s: s.execute(delete(Execution).where(Execution.id == execution_id))
        )
        return ActionResult(detail="gone")


@pytest.fixture
def with_vanish(runtime):
    ours = EntryPoint("vanish", f"{__name__}:Vanish", ACTIONS)
    runtime.plugins = build_catalogue(
        entry_points(group=TRIGGERS), [*entry_points(group=ACTIONS), ours]
    )
    return runtime


def test_an_execution_the_engine_fails_on_leaves_the_batch(
    runtime, creator, automations, dispatcher
):
    automations.create(creator.id, GREET, status="active")
    good, bad, other = dispatch_held(dispatcher, new_fans(creator.id, 3))
    # A version that was never saved: the engine cannot find its graph.
    runtime.db.run(
        lambda s: s.execute(
            update(Execution).where(Execution.id == bad).values(automation_version=99)
        )
    )
    results = run_executions([good, bad, other])
    assert results == {good: "success", bad: "error", other: "success"}
    assert trace(runtime, good) == trace(runtime, other) == GREET_TRACE
    # Leased and left: the sweep tries it again once the lease has expired.
    assert (execution(runtime, bad).status, steps_of(runtime, bad)) == ("running", {})


def test_a_wave_that_cannot_be_written_is_written_one_execution_at_a_time(
    with_vanish, creator, automations, dispatcher
):
    runtime = with_vanish
    automations.create(creator.id, GREET, status="active")
    automations.create(creator.id, automation("V", 'add_tag tag: "v"', "vanish"), status="active")
    ids = dispatch_held(dispatcher, new_fans(creator.id, 2))
    results = run_executions(ids)
    gone = [i for i in ids if runtime.db.run(lambda s, i=i: s.get(Execution, i)) is None]
    assert len(gone) == 2
    assert {results[i] for i in gone} == {"error"}
    for execution_id in set(ids) - set(gone):
        assert results[execution_id] == "success"
        assert trace(runtime, execution_id) == GREET_TRACE


def test_a_claim_that_meets_another_attempts_leaves_the_execution_to_it(
    runtime, creator, automations, dispatcher
):
    """A step claimed by another attempt of the execution (a lease that expired under a
    slow worker): this attempt writes nothing more and leaves the execution alone."""
    automations.create(creator.id, automation("One", 'send_message text: "once"'), status="active")
    (execution_id,) = dispatch_held(dispatcher, new_fans(creator.id, 1))
    theirs = StepRun(execution_id=execution_id, node_id="s1", kind="action",
                     name="send_message", status="running", started_at=START)  # fmt: skip
    runtime.db.run(lambda s: s.add(theirs))
    assert run_executions([execution_id]) == {execution_id: None}
    step = steps_of(runtime, execution_id)["s1"]
    assert (step.id, step.status) == (theirs.id, "running")
    assert runtime.db.run(lambda s: list(s.scalars(select(OutboxMessage.id)))) == []


# --- Pickup jobs ------------------------------------------------------------------------------


def test_events_that_come_while_a_job_waits_join_it(
    runtime, creator, automations, dispatcher, drain
):
    """Three events, the workers busy: the first event queues a pickup job, the next
    two find it queued and leave their executions to it."""
    automations.create(creator.id, GREET, status="active")
    for event_ in new_fans(creator.id, 3):
        dispatcher.dispatch(event_)
    assert runtime.queue.count == 1
    (job,) = runtime.queue.jobs
    drain()
    assert sorted(job.return_value(refresh=True).values()) == ["success"] * 3
    # Once it started, the next event queues a job of its own.
    dispatcher.dispatch(context("new_subscriber", creator.id, "fan-3"))
    assert runtime.queue.count == 1


def test_a_pickup_job_whose_room_is_full_queues_another(
    runtime, creator, automations, dispatcher, drain, monkeypatch
):
    monkeypatch.setattr(runtime.settings, "batch_size", 2)
    automations.create(creator.id, GREET, status="active")
    ids = [dispatcher.dispatch(e).execution_ids[0] for e in new_fans(creator.id, 7)]
    assert runtime.queue.count == 1  # a pickup job with room for one more
    drain()
    statuses = {i: execution(runtime, i).status for i in ids}
    assert statuses == dict.fromkeys(ids, "success")


# --- A lost connection ------------------------------------------------------------------------


@POSTGRESQL_ONLY
def test_a_connection_the_server_dropped_is_replaced(runtime, creator, automations, dispatcher):
    """No ping before each transaction: the dropped connection fails its first
    statement, and the transaction is tried again on a new one."""
    automations.create(creator.id, GREET, status="active")
    (execution_id,) = dispatch_held(dispatcher, new_fans(creator.id, 1))
    runner_for(runtime)  # its pool holds the connection that is dropped next
    pids = runtime.db.run(lambda s: [s.scalar(text("SELECT pg_backend_pid()"))])
    admin = create_engine(runtime.settings.resolved_database_url())
    with admin.begin() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pids[0]})
    admin.dispose()
    assert run_executions([execution_id]) == {execution_id: "success"}
    assert trace(runtime, execution_id) == GREET_TRACE
    assert runtime.db.run(lambda s: s.scalar(text("SELECT pg_backend_pid()"))) != pids[0]
