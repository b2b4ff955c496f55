"""Durability with real worker processes: SIGKILLed workers, a flushed Redis, and
dispatchers and workers racing on the same event or execution.

Worker processes and this process share the system clock (the virtual clock would
work too, but real waits are what the RQ scheduler and the sweep must get right), a
short lease so that a killed worker's executions are taken over quickly, and the
recovery sweep, which the tests call themselves the way a worker's timer would.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from typing import TypeVar

import pytest
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from sqlalchemy import func, select
from worker_process import WorkerPool, worker_processes

from engine import jobs
from engine.automations import AutomationService
from engine.clock import SystemClock
from engine.creators import create_creator
from engine.dispatch import Dispatcher
from engine.events import TriggerContext
from engine.fans import lock_fans
from engine.models import (
    Event,
    Execution,
    ExecutionStatus,
    Fan,
    OutboxMessage,
    StepRun,
    StepStatus,
    new_id,
)
from engine.outbox import insert_messages
from engine.runtime import Runtime
from engine.settings import Settings

T = TypeVar("T")
LEASE_SECONDS = 2.0
SWEEP_EVERY = 1.0  # seconds between the sweeps these tests run
# For the tests of waits, whose logic does not depend on the database: SQLite under
# several worker processes is tried by the crash test, and CI's time is short.
POSTGRESQL_ONLY = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

CRASH_SOURCE = """\
automation "Crash test" {
  when new_subscriber
  send_message text: "Hi {{ fan.name }}!"
  add_tag tag: "greeted"
  send_message text: "Anything you would like to see, {{ fan.name }}?"
  add_tag tag: "followed_up"
}
"""


@pytest.fixture
def settings(database_url, redis_url, tmp_path) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        queue_name=f"durability-{uuid.uuid4().hex[:8]}",
        lease_seconds=LEASE_SECONDS,
        sweep_seconds=SWEEP_EVERY,
        batch_size=4,
    )


@pytest.fixture
def clock() -> SystemClock:
    # The system clock, not the suite's FixedClock: worker processes read the time too.
    return SystemClock()


@pytest.fixture
def creator_id(runtime) -> str:
    # Several messages per fan and day: the cap is not what these tests are about.
    return runtime.db.run(lambda s: create_creator(s, "Ava", messages_per_fan_per_day=100).id)


@pytest.fixture
def workers_dir(tmp_path):
    return tmp_path / "workers"


# --- Helpers ---------------------------------------------------------------------------


def subscribed(creator_id: str, fan: str, event_id: str | None = None) -> TriggerContext:
    now = datetime.now(UTC)
    data = {"fan": {"name": fan.title(), "username": fan, "subscribed_at": now.isoformat()}}
    return TriggerContext("new_subscriber", creator_id, fan, data, now, event_id)


def statuses(runtime: Runtime) -> Counter:
    rows = runtime.db.run(
        lambda s: s.execute(select(Execution.status, func.count()).group_by(Execution.status)).all()
    )
    return Counter(dict(rows))


def unfinished(runtime: Runtime) -> int:
    counts = statuses(runtime)
    return sum(n for status, n in counts.items() if not ExecutionStatus(status).finished)


def finished(runtime: Runtime) -> int:
    counts = statuses(runtime)
    return sum(n for status, n in counts.items() if ExecutionStatus(status).finished)


def sweep_until(
    runtime: Runtime,
    done: Callable[[], bool],
    timeout: float,
    what: str,
    pool: WorkerPool | None = None,
    soft: bool = False,
    sweep: bool = True,
    poll: float = 0.2,
    every: float = SWEEP_EVERY,
) -> float:
    """Sweep ``every`` so many seconds (unless not ``sweep``) until ``done()``; fail
    after ``timeout`` (or, if ``soft``, just stop). Returns the seconds it took."""
    started = time.monotonic()
    next_sweep = started
    while not done():
        now = time.monotonic()
        if now - started > timeout:
            if soft:
                break
            logs = pool.logs() if pool else ""
            pytest.fail(f"{what}: not done after {timeout:.0f} s; {dict(statuses(runtime))}{logs}")
        if sweep and now >= next_sweep:
            jobs.sweep(runtime)
            next_sweep = now + every
        time.sleep(poll)
    return time.monotonic() - started


def executions(runtime: Runtime) -> list[Execution]:
    return runtime.db.run(lambda s: list(s.scalars(select(Execution))))


def steps(runtime: Runtime) -> list[StepRun]:
    return runtime.db.run(lambda s: list(s.scalars(select(StepRun))))


def messages(runtime: Runtime) -> list[OutboxMessage]:
    return runtime.db.run(lambda s: list(s.scalars(select(OutboxMessage))))


def action_nodes(automations: AutomationService, automation_id: str, name: str) -> list[str]:
    """The node ids of the automation's ``name`` actions."""
    automation = automations.get(automation_id)
    graph = automations.graph_of(automation_id, automation.version)
    return sorted(nid for nid, node in graph["nodes"].items() if node.get("name") == name)


def assert_once_each(runtime: Runtime, expected_steps: int, send_nodes: list[str]) -> None:
    """Every execution succeeded with every action step done once, and wrote exactly one
    message per send step, under that step's idempotency key."""
    runs = executions(runtime)
    failed = [(e.id, e.status, e.error) for e in runs if e.status != ExecutionStatus.SUCCESS]
    assert not failed, f"{len(failed)} execution(s) did not succeed: {failed[:5]}"
    actions = [s for s in steps(runtime) if s.kind == "action"]
    per_execution = Counter(s.execution_id for s in actions)
    assert set(per_execution) == {e.id for e in runs}
    assert set(per_execution.values()) == {expected_steps}
    assert {s.status for s in actions} == {StepStatus.DONE}
    sent = messages(runtime)
    keys = Counter(m.idempotency_key for m in sent)
    assert [k for k, n in keys.items() if n > 1] == []
    expected_keys = {f"{e.id}:{node}" for e in runs for node in send_nodes}
    assert set(keys) == expected_keys
    assert len(sent) == len(runs) * len(send_nodes)
    assert all(m.idempotency_key.startswith(f"{m.execution_id}:") for m in sent)


# --- 1. Crash test ---------------------------------------------------------------------

CRASH_EXECUTIONS = 200
CRASH_FANS = 50
CRASH_KILLS = 24
CRASH_WORKERS = 3
CRASH_SECONDS = 150  # the whole test, kills and recovery
# A webhook step that takes this long to answer: the engine's own steps take a few
# milliseconds a batch, too short a window to kill a worker in reliably.
HOOK_SECONDS = 0.03


class _SlowHook(BaseHTTPRequestHandler):
    keys: list[str]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(HOOK_SECONDS)
        self.keys.append(self.headers["Idempotency-Key"])
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def slow_hook() -> Iterator[tuple[str, list[str]]]:
    """A webhook receiver on 127.0.0.1 (the installed example plugin posts to it): its
    URL and the idempotency keys it received."""
    handler = type("Hook", (_SlowHook,), {"keys": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", handler.keys
    server.shutdown()
    server.server_close()


def test_sigkilled_workers_lose_no_execution_and_send_no_message_twice(
    runtime, automations, creator_id, workers_dir, monkeypatch, slow_hook
):
    """At least 20 SIGKILLs of worker processes in the middle of an execution, over 200
    executions of five steps: every execution ends `success`, every step is done once,
    no message is written twice, every webhook is posted (again, with the same key,
    after a kill)."""
    # A killed job's executions that had not started yet are PENDING without a lease:
    # the sweep takes them back after this grace (60 s in production; the test has no
    # minute to spare per kill).
    monkeypatch.setattr(runtime.settings, "pending_grace_seconds", 5)
    url, hooked = slow_hook
    source = CRASH_SOURCE.replace(
        '  add_tag tag: "greeted"\n',
        f'  add_tag tag: "greeted"\n  post_webhook url: "{url}", label: "{{{{ fan.name }}}}"\n',
    )
    automation = automations.create(creator_id, source, status="active")
    dispatcher = Dispatcher(runtime, automations.index)
    contexts = [
        subscribed(creator_id, f"fan{i % CRASH_FANS}", event_id=f"e{i}")
        for i in range(CRASH_EXECUTIONS)
    ]
    chunk = CRASH_EXECUTIONS // CRASH_KILLS + 1
    started = time.monotonic()
    with worker_processes(runtime.settings, workers_dir, count=CRASH_WORKERS) as pool:
        pool.wait_ready(runtime.redis, CRASH_WORKERS)
        while contexts or pool.kills < CRASH_KILLS:
            if time.monotonic() - started > CRASH_SECONDS * 2 / 3:
                break
            # The others get on with it between two kills (the killed job's executions
            # wait for their leases to expire meanwhile): kills spread over the run.
            target = finished(runtime) + chunk // 2
            dispatcher.dispatch_many(contexts[:chunk])
            del contexts[:chunk]
            victim = _mid_execution(pool, runtime, timeout=5.0)
            if victim is not None:
                pool.kill(victim)
                pool.start()
            progressed = lambda target=target: finished(runtime) >= target  # noqa: E731
            sweep_until(runtime, progressed, 4.0, "", soft=True)
        killing = time.monotonic() - started
        assert pool.kills >= 20, f"only {pool.kills} kills landed in the middle of an execution"
        assert not contexts, "the kills took so long that not every event was sent"
        recovery = sweep_until(
            runtime, lambda: unfinished(runtime) == 0, CRASH_SECONDS - killing, "crash test", pool
        )
    assert_once_each(runtime, 5, action_nodes(automations, automation.id, "send_message"))
    runs = executions(runtime)
    assert len(runs) == CRASH_EXECUTIONS
    (hook,) = action_nodes(automations, automation.id, "post_webhook")
    assert set(hooked) == {f"{e.id}:{hook}" for e in runs}
    # Killed in the middle of an execution: it was taken over once its lease expired.
    retried = [e for e in runs if e.attempts > 1]
    assert len(retried) >= pool.kills // 2, f"{len(retried)} executions were taken over"
    fans = runtime.db.run(lambda s: list(s.scalars(select(Fan))))
    assert len(fans) == CRASH_FANS
    assert all({"greeted", "followed_up"} <= set(f.tags) for f in fans)
    print(
        f"\ncrash test ({runtime.db.dialect}): {pool.kills} kills in {killing:.1f} s, "
        f"recovered in {recovery:.1f} s; {len(retried)} executions taken over after a kill, "
        f"attempts {dict(sorted(Counter(e.attempts for e in runs).items()))}"
    )


def _mid_execution(pool: WorkerPool, runtime: Runtime, timeout: float) -> str | None:
    """A worker that holds the lease of an execution it is running (not one still
    starting up, or between two executions), if one does within ``timeout``. Not one
    whose executions were taken over twice already: a kill costs each execution of the
    job an attempt, and a job retried slowly (its webhook again) is the likeliest
    victim — killed five times, its executions would be given up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # A job of a few executions runs for tens of milliseconds: poll often, asking the
        # database first (cheap), the workers only when some execution is leased.
        if _leased(runtime):
            for name, job in pool.current_jobs(runtime.redis).items():
                if _leased(runtime, list(job.args[0]) if job.args else [], below=3):
                    return name
        time.sleep(0.01)
    return None


def _leased(
    runtime: Runtime, execution_ids: list[str] | None = None, below: int = jobs.MAX_ATTEMPTS
) -> bool:
    """Whether any of the executions (any at all, without ids) is leased and running,
    and none of those leased has had ``below`` attempts or more."""
    query = select(func.count(), func.max(Execution.attempts)).where(
        Execution.status == ExecutionStatus.RUNNING,
        Execution.lease_until > datetime.now(UTC),
    )
    if execution_ids is not None:
        if not execution_ids:
            return False
        query = query.where(Execution.id.in_(execution_ids))
    leased, attempts = runtime.db.run(lambda s: s.execute(query).one())
    return leased > 0 and attempts < below


# --- 2. Waits: a flushed Redis, the RQ scheduler, the sweep ------------------------------

WAIT_SOURCE = """\
automation "Wait test" {
  when new_subscriber
  send_message text: "Hi {{ fan.name }}!"
  wait WAIT
  send_message text: "Still here, {{ fan.name }}?"
}
"""


def park(runtime, automations, creator_id, count: int, wait: str, pool: WorkerPool):
    """``count`` executions run to their wait; returns the automation and when each
    execution is due to resume."""
    source = WAIT_SOURCE.replace("WAIT", wait)
    automation = automations.create(creator_id, source, status="active")
    dispatcher = Dispatcher(runtime, automations.index)
    dispatcher.dispatch_many([subscribed(creator_id, f"fan{i}") for i in range(count)])
    pool.wait_ready(runtime.redis, len(pool.alive()))
    sweep_until(runtime, lambda: statuses(runtime)[ExecutionStatus.WAITING] == count, 60,
                "running to the wait", pool)  # fmt: skip
    return automation, {e.id: e.resume_at for e in executions(runtime)}


def assert_resumed_on_time(
    runtime, automations, automation, due: dict[str, datetime], late: float
) -> None:
    """The step after each execution's wait started at its resume time or at most
    ``late`` seconds after it."""
    after = action_nodes(automations, automation.id, "send_message")[-1]
    started = {s.execution_id: s.started_at for s in steps(runtime) if s.node_id == after}
    assert started.keys() == due.keys()
    early = {i: (due[i], started[i]) for i in due if started[i] < due[i]}
    assert early == {}
    slow = {i: (due[i], started[i]) for i in due if started[i] > due[i] + timedelta(seconds=late)}
    assert slow == {}


@POSTGRESQL_ONLY
def test_waits_resume_on_time_and_once_after_redis_is_flushed(
    runtime, automations, creator_id, workers_dir, monkeypatch
):
    """Redis loses every job (FLUSHDB) while 30 executions wait and 60 more are
    queued or running: the sweep puts them back, the scheduler goes on with the waits
    begun after the flush; every execution runs each step once, and each wait ends
    not before its time and at most a sweep interval (plus 5 s) after it."""
    # Executions whose queued job vanished are taken back after this grace (60 s in
    # production, too long for a test).
    monkeypatch.setattr(runtime.settings, "pending_grace_seconds", 3)
    waiting, more = 30, 60
    with worker_processes(runtime.settings, workers_dir, count=2, scheduler=True) as pool:
        automation, due = park(runtime, automations, creator_id, waiting, "6s", pool)
        scheduled = ScheduledJobRegistry(queue=runtime.queue)
        # One job resumes the executions due in the same second.
        jobs_ = Job.fetch_many(scheduled.get_job_ids(), connection=runtime.redis)
        assert sorted(i for job in jobs_ for i in job.args[0]) == sorted(due)
        contexts = [subscribed(creator_id, f"late{i}") for i in range(more)]
        Dispatcher(runtime, automations.index).dispatch_many(contexts)
        time.sleep(0.5)  # some of them running, the others queued
        runtime.redis.flushdb()
        assert (scheduled.count, runtime.queue.count) == (0, 0)

        def done() -> bool:
            # Note when each wait ends: a finished execution forgets it.
            for execution in executions(runtime):
                if execution.status == ExecutionStatus.WAITING:
                    due[execution.id] = execution.resume_at
            return unfinished(runtime) == 0

        sweep_until(runtime, done, 60, "resuming", pool)
    assert len(due) == waiting + more
    assert_once_each(runtime, 2, action_nodes(automations, automation.id, "send_message"))
    assert_resumed_on_time(runtime, automations, automation, due, late=SWEEP_EVERY + 5)


@POSTGRESQL_ONLY
def test_waits_resume_through_the_rq_scheduler_on_time_without_a_sweep(
    runtime, automations, creator_id, workers_dir
):
    """With Redis intact, the RQ scheduler of a `--with-scheduler` worker alone resumes
    every wait: not before its time, and within 4 s of it (its 1 s polling, RQ's whole
    seconds, a worker's turn)."""
    count = 20
    with worker_processes(runtime.settings, workers_dir, count=2, scheduler=True) as pool:
        automation, due = park(runtime, automations, creator_id, count, "3s", pool)
        wait_until = lambda: unfinished(runtime) == 0  # noqa: E731
        sweep_until(runtime, wait_until, 30, "resuming by the scheduler", pool, sweep=False)
    assert_once_each(runtime, 2, action_nodes(automations, automation.id, "send_message"))
    assert_resumed_on_time(runtime, automations, automation, due, late=4)


@POSTGRESQL_ONLY
def test_an_execution_resumed_by_the_sweep_at_every_wait_completes(
    runtime, automations, creator_id, workers_dir
):
    """Five waits in a row, each resumed by the sweep alone (no scheduler, as when
    Redis loses the scheduled jobs every time, or under the virtual clock): resuming
    is not a failed attempt, and the execution completes."""
    waits = 5
    body = "\n".join(f'  send_message text: "Part {i}"\n  wait 1s' for i in range(waits))
    source = (
        f'automation "Serial" {{\n  when new_subscriber\n{body}\n  send_message text: "End"\n}}\n'
    )
    automation = automations.create(creator_id, source, status="active")
    dispatcher = Dispatcher(runtime, automations.index)
    count = 10
    with worker_processes(runtime.settings, workers_dir, count=2) as pool:
        dispatcher.dispatch_many([subscribed(creator_id, f"fan{i}") for i in range(count)])
        all_done = lambda: unfinished(runtime) == 0  # noqa: E731
        sweep_until(runtime, all_done, 60, "resuming by the sweep", pool, every=0.5, poll=0.1)
    assert_once_each(runtime, waits + 1, action_nodes(automations, automation.id, "send_message"))


# --- 3. Dispatchers racing on one event --------------------------------------------------

RACE_SOURCES = [
    'automation "Race A" {\n  when new_subscriber\n  send_message text: "A"\n}\n',
    'automation "Race B" {\n  when new_subscriber\n  send_message text: "B"\n'
    '  add_tag tag: "b"\n}\n',
]
RACE_ROUNDS = 20


def race(*calls: Callable[[], T]) -> list[T | Exception]:
    """Run the calls in threads released at the same moment; their results or errors."""
    barrier = threading.Barrier(len(calls))
    results: list[T | Exception] = [RuntimeError("did not run")] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def count(runtime: Runtime, model) -> int:
    return runtime.db.run(lambda s: s.scalar(select(func.count()).select_from(model)))


def assert_once_per_fan_and_event(runtime: Runtime, automations: int) -> None:
    """One execution per automation, fan and event, each run once."""
    runs = executions(runtime)
    keys = Counter((e.automation_id, e.fan_id, e.event_id) for e in runs)
    assert set(keys.values()) == {1}
    assert len({(e.fan_id, e.event_id) for e in runs}) * automations == len(runs)
    assert {e.status for e in runs} == {ExecutionStatus.SUCCESS}
    assert count(runtime, OutboxMessage) == len(runs)
    assert len({m.idempotency_key for m in messages(runtime)}) == len(runs)


def test_two_dispatchers_racing_on_one_event_run_each_automation_once(
    settings, runtime, automations, creator_id, drain
):
    """Two dispatchers (each its own runtime: connections, index) receive the same
    event (same event_id) at the same moment: one records it, the other sees a
    duplicate, neither fails, and each automation runs once for the fan."""
    for source in RACE_SOURCES:
        automations.create(creator_id, source, status="active")
    other = Runtime.start(settings)
    try:
        first, second = Dispatcher(runtime, automations.index), Dispatcher(other)
        outcomes = []
        for i in range(RACE_ROUNDS):
            event = subscribed(creator_id, f"fan{i}", event_id=f"evt{i}")
            outcomes.append(race(lambda e=event: first.dispatch(e),
                                 lambda e=event: second.dispatch(e)))  # fmt: skip
    finally:
        other.close()
    errors = [repr(r) for pair in outcomes for r in pair if isinstance(r, Exception)]
    assert errors == []
    for pair in outcomes:
        assert len({r.event_id for r in pair}) == 1
        assert sorted(r.duplicate for r in pair) == [False, True]
        assert sum(len(r.execution_ids) for r in pair) == len(RACE_SOURCES)
    drain()
    assert count(runtime, Event) == RACE_ROUNDS
    assert count(runtime, Execution) == RACE_ROUNDS * len(RACE_SOURCES)
    assert_once_per_fan_and_event(runtime, len(RACE_SOURCES))


def test_one_event_without_id_dispatched_twice_at_once_runs_once_per_dispatch(
    runtime, automations, creator_id, drain
):
    """An event without an id, dispatched twice at the same moment through one
    dispatcher (to a fan not seen before): without an id they are two events, and
    each automation runs once per fan and event — one fan, no error."""
    for source in RACE_SOURCES:
        automations.create(creator_id, source, status="active")
    dispatcher = Dispatcher(runtime, automations.index)
    outcomes = []
    for i in range(RACE_ROUNDS):
        event = subscribed(creator_id, f"fan{i}")
        outcomes.append(race(lambda e=event: dispatcher.dispatch(e),
                             lambda e=event: dispatcher.dispatch(e)))  # fmt: skip
    errors = [repr(r) for pair in outcomes for r in pair if isinstance(r, Exception)]
    assert errors == []
    drain()
    assert count(runtime, Fan) == RACE_ROUNDS
    assert count(runtime, Event) == RACE_ROUNDS * 2
    assert count(runtime, Execution) == RACE_ROUNDS * 2 * len(RACE_SOURCES)
    assert_once_per_fan_and_event(runtime, len(RACE_SOURCES))


# --- 4. Workers racing on one execution --------------------------------------------------

COPIES = 3


def test_workers_racing_on_one_execution_run_it_once(runtime, automations, creator_id, workers_dir):
    """Each execution queued three times, next to each other, for three worker
    processes: one job runs it (one lease taken), the others find it taken or done;
    every step and message happens once."""
    automation = automations.create(creator_id, CRASH_SOURCE, status="active")
    dispatched = Dispatcher(runtime, automations.index)
    dispatched.enqueue = lambda ids: None  # this test queues them itself
    events = [subscribed(creator_id, f"fan{n}") for n in range(30)]
    ids = [i for r in dispatched.dispatch_many(events) for i in r.execution_ids]
    queued = [runtime.queue.enqueue(jobs.run_executions, [i]) for i in ids for _ in range(COPIES)]
    with worker_processes(runtime.settings, workers_dir, count=COPIES) as pool:
        all_ran = lambda: all(j.is_finished for j in Job.fetch_many(  # noqa: E731
            [j.id for j in queued], connection=runtime.redis))  # fmt: skip
        sweep_until(runtime, all_ran, 60, "racing workers", pool, sweep=False)
    assert_once_each(runtime, 4, action_nodes(automations, automation.id, "send_message"))
    assert {e.attempts for e in executions(runtime)} == {1}
    ran = Counter()
    for job in queued:
        ((execution_id, status),) = job.return_value(refresh=True).items()
        ran[execution_id] += status is not None
    assert ran == dict.fromkeys(ids, 1)
    # They did race: jobs of one execution ran at the same time.
    assert _overlaps(queued) > 0


def _overlaps(queued: list[Job]) -> int:
    """How many executions had two of their jobs running at the same time."""
    spans: dict[str, list[tuple[datetime, datetime]]] = {}
    for job in queued:
        job.refresh()
        spans.setdefault(job.args[0][0], []).append((job.started_at, job.ended_at))
    overlapping = 0
    for runs in spans.values():
        runs.sort()
        overlapping += any(b[0] < a[1] for a, b in pairwise(runs))
    return overlapping


def test_two_sends_racing_on_one_idempotency_key_write_one_message(runtime, creator_id):
    """Two workers writing the same step's message at once (a lease that expired under a
    slow worker): both writes succeed and agree on one message, written once."""
    fan_id = runtime.db.run(lambda s: _new_fan(s, creator_id))
    now = runtime.clock.now()
    for i in range(RACE_ROUNDS):

        def send(key=f"race:{i}") -> str:
            row = {"id": new_id(), "creator_id": creator_id, "fan_id": fan_id,
                   "execution_id": None, "text": "Hi", "idempotency_key": key,
                   "status": "pending", "created_at": now, "sent_at": None}  # fmt: skip

            def write(session) -> str:
                lock_fans(session, [fan_id], now)  # as the runner does before it writes
                return insert_messages(session, [row])[key]

            return runtime.db.run_core(write)

        results = race(send, send)
        assert [r for r in results if isinstance(r, Exception)] == []
        assert len(set(results)) == 1
    assert count(runtime, OutboxMessage) == RACE_ROUNDS


def _new_fan(session, creator_id: str) -> str:
    fan = Fan(creator_id=creator_id, external_id="fan", name="Fan", tags=[])
    session.add(fan)
    session.flush()
    return fan.id
