"""End to end: executions recorded per second from ``emit``, against RQ's own job rate.

Real PostgreSQL, real Redis, real ``rq worker --worker-class rq.SimpleWorker``
processes started with the engine's environment (``DATABASE_URL``, ``REDIS_URL``,
``HUNTAZE_QUEUE_NAME`` ...). 10,000 active automations across 1,000 creators (the set of
``engine_support``), events for random creators' fans in a realistic mix of triggers.
With one worker, then two, each round runs back to back:

- **RQ no-op**: ``enqueue_many`` of no-op jobs on the same queue, the same workers: RQ's
  own rate, from the first enqueue until RQ has recorded every job finished.
- **emit**: events through ``EventSystem.emit`` (the dispatcher subscribed), one at a
  time, as the API receives them; the clock stops when every execution created has been
  recorded by a worker — finished (``success`` / ``partial`` / ``failed``) or parked at a
  ``wait`` with its steps up to it stored. ``emit`` queues each event's executions as one
  job, so ``batch_size`` only splits an event's executions (1 to a job at 1).
- **dispatch_many**: the same events, 100 to a ``Dispatcher.dispatch_many`` call (a bulk
  import, or the recovery sweep): here ``batch_size`` sets how many executions a job runs.

Every trial starts from empty execution, event and fan tables. Then, paced: events
emitted at a fixed rate (50 a second, then 5) for a few seconds, and the latency from
each ``emit`` call to its executions' first action step row (the claim written before
the action runs), p50 / p95 / p99.

Last, where a worker's time goes: the same job function run in this process on one
trial's executions (once to read and compile their graphs, as a worker that has run
them before holds them, then measured), with the time spent in SQL statements and in
commits counted per execution; ``--profile-batch`` sets how many executions a call runs.

``--synchronous-commit off`` runs everything with PostgreSQL's ``synchronous_commit``
off for the engine's connections (the dispatcher's and the workers'): a commit no
longer waits for its WAL to reach the disk, which shows how much of the time is the
disk's. (A crash of the PostgreSQL server, not of a worker, may then lose the last
fraction of a second of commits.)

Figures are medians over rounds, wall seconds (the work is spread over processes).
Run: ``.venv/bin/python bench/bench_executions.py`` (``--help`` for sizes).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from engine_support import (
    DEFAULT_SEED,
    load_automations,
    load_average,
    make_events,
    median,
    noop,
    services,
    table,
    truncate,
    wait_until,
    workers,
)
from rq.registry import FinishedJobRegistry
from sqlalchemy import func, select, update

from engine.dispatch import Dispatcher
from engine.events import EventSystem, TriggerContext
from engine.jobs import run_executions
from engine.models import Creator, Execution, ExecutionStatus, StepRun
from engine.runtime import Runtime, install

TABLES = ("execution_steps", "outbox", "automation_executions", "events", "fans")
RECORDED = (
    ExecutionStatus.SUCCESS,
    ExecutionStatus.PARTIAL,
    ExecutionStatus.FAILED,
    ExecutionStatus.WAITING,
)
DISPATCH_CHUNK = 100
TARGET = 1.0  # executions/s as a multiple of RQ's no-op jobs/s, same workers
LATENCY_TARGET = 0.250  # seconds, p99 from emit to first action


def recorded(runtime: Runtime) -> int:
    query = select(func.count(Execution.id)).where(Execution.status.in_(RECORDED))
    return runtime.db.run(lambda s: s.scalar(query))


def steps_and_status(runtime: Runtime) -> tuple[int, dict[str, int]]:
    def load(session):
        steps = session.scalar(select(func.count(StepRun.id)))
        rows = session.execute(select(Execution.status, func.count()).group_by(Execution.status))
        return steps, dict(rows.all())

    return runtime.db.run(load)


class Trial:
    """One measured run: ``rate`` units a second over ``seconds`` of wall time."""

    def __init__(self, units: int, seconds: float, steps: int = 0) -> None:
        self.units = units
        self.seconds = seconds
        self.steps = steps

    @property
    def rate(self) -> float:
        return self.units / self.seconds


def noop_trial(runtime: Runtime, jobs: int, timeout: float) -> Trial:
    queue = runtime.queue
    registry = FinishedJobRegistry(queue=queue)
    before = registry.count
    started = time.monotonic()
    for i in range(0, jobs, 500):
        queue.enqueue_many([queue.prepare_data(noop) for _ in range(min(500, jobs - i))])
    ended = wait_until(lambda: registry.count - before >= jobs, timeout)
    if ended is None:
        raise SystemExit(f"RQ ran {registry.count - before} of {jobs} no-op jobs in {timeout} s")
    return Trial(jobs, ended - started)


def engine_trial(
    runtime: Runtime,
    send: Callable[[Sequence[TriggerContext]], int],
    events: Sequence[TriggerContext],
    timeout: float,
) -> Trial:
    truncate(runtime, TABLES)
    started = time.monotonic()
    created = send(events)
    ended = wait_until(lambda: recorded(runtime) >= created, timeout, poll=0.05)
    if ended is None:
        raise SystemExit(f"{recorded(runtime)} of {created} executions recorded in {timeout} s")
    steps, statuses = steps_and_status(runtime)
    if sum(statuses.values()) != created:
        raise SystemExit(f"{created} executions created, {statuses} in the database")
    return Trial(created, ended - started, steps)


def api_dispatcher(runtime: Runtime) -> Dispatcher:
    """The dispatcher of a process that receives events: one for the whole run, its
    index loaded before any clock starts (an API process loads it once, and again only
    when automations change)."""
    dispatcher = Dispatcher(runtime)
    len(dispatcher.index)  # loads it
    return dispatcher


def by_emit(dispatcher: Dispatcher) -> Callable[[Sequence[TriggerContext]], int]:
    events = EventSystem()
    dispatcher.subscribe_to(events)

    def send(contexts: Sequence[TriggerContext]) -> int:
        return sum(len(events.emit(c)[0].execution_ids) for c in contexts)

    return send


def by_dispatch_many(dispatcher: Dispatcher) -> Callable[[Sequence[TriggerContext]], int]:
    def send(contexts: Sequence[TriggerContext]) -> int:
        created = 0
        for i in range(0, len(contexts), DISPATCH_CHUNK):
            results = dispatcher.dispatch_many(contexts[i : i + DISPATCH_CHUNK])
            created += sum(len(r.execution_ids) for r in results)
        return created

    return send


def set_batch_size(runtime: Runtime, size: int) -> None:
    # Only the process that queues reads it: workers run whatever a job holds.
    runtime.settings = runtime.settings.model_copy(update={"batch_size": size})


# --- Where a worker's time goes -------------------------------------------------------------


def runner_profile(
    runtime: Runtime, events: Sequence[TriggerContext], batch: int
) -> dict[str, float]:
    """Run the events' executions in this process (the job function a worker runs),
    ``batch`` to a call, counting per execution: statements and commits, and the wall
    time spent in each."""
    install(runtime)
    dispatcher = Dispatcher(runtime)
    dispatcher.enqueue = lambda ids: None  # this process runs them
    for warm in (True, False):  # the first pass reads and compiles the graphs
        truncate(runtime, TABLES)
        ids = [i for c in events for i in dispatcher.dispatch(c).execution_ids]
        if warm:
            run_executions(ids)
    dialect = runtime.db.engine.dialect
    spent = {"statements": 0.0, "commits": 0.0}
    counts = {"statements": 0, "commits": 0}

    def timed(kind: str, method):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                spent[kind] += time.perf_counter() - started
                counts[kind] += 1

        return wrapper

    # Instance attributes shadow the dialect's methods for this engine only.
    dialect.do_commit = timed("commits", dialect.do_commit)
    dialect.do_execute = timed("statements", dialect.do_execute)
    dialect.do_execute_no_params = timed("statements", dialect.do_execute_no_params)
    dialect.do_executemany = timed("statements", dialect.do_executemany)
    try:
        started, started_cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(ids), batch):
            run_executions(ids[i : i + batch])
        wall = time.perf_counter() - started
        cpu = time.process_time() - started_cpu
    finally:
        for name in (
            "do_commit",
            "do_execute",
            "do_execute_no_params",
            "do_executemany",
        ):
            del dialect.__dict__[name]
        install(None)
    n = len(ids)
    return {
        "executions": n,
        "wall_ms": wall / n * 1000,
        "cpu_ms": cpu / n * 1000,
        **{f"{k}_n": v / n for k, v in counts.items()},
        **{f"{k}_ms": v / n * 1000 for k, v in spent.items()},
    }


def transaction_cost(runtime: Runtime, n: int = 300) -> dict[str, tuple[float, float]]:
    """(wall ms, CPU ms) of one ``db.run`` that reads a row by key, and of one that
    updates a row: the fixed price of each of a worker's transactions."""
    truncate(runtime, TABLES)
    creator = runtime.db.run(lambda s: s.scalar(select(Creator.id).limit(1)))
    read = select(Creator.name).where(Creator.id == creator)
    write = update(Creator).where(Creator.id == creator).values(name="Creator")
    costs = {}
    for label, statement in (("read", read), ("write", write)):
        started, started_cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            runtime.db.run(lambda s, st=statement: s.execute(st))
        wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
        costs[label] = (wall / n * 1000, cpu / n * 1000)
    return costs


def print_profile(profiles: list[dict[str, float]], args: argparse.Namespace) -> None:
    def mid(key: str) -> float:
        return median([p[key] for p in profiles])

    wall = mid("wall_ms")
    rows = [
        [kind, f"{mid(kind + '_n'):.1f}", f"{mid(kind + '_ms'):.1f}",
         f"{mid(kind + '_ms') / wall:.0%}"]
        for kind in ("statements", "commits")
    ]  # fmt: skip
    measured = sum(mid(k + "_ms") for k in ("statements", "commits"))
    rest = wall - measured
    label = "the rest: Python (SQLAlchemy, pydantic, actions), waits for a core"
    rows.append([label, "", f"{rest:.1f}", f"{rest / wall:.0%}"])
    rows.append(["an execution, in all", "", f"{wall:.1f} (CPU {mid('cpu_ms'):.1f})", "100%"])
    print(
        f"\nwhere a worker's time goes: {profiles[0]['executions']:.0f} executions run by "
        f"run_executions in this process, {args.profile_batch} to a call, medians of "
        f"{len(profiles)} rounds, per execution:\n"
    )
    print(table(["", "calls", "wall ms", "share"], rows))
    for label in ("read", "write"):
        wall, cpu = (median([p[f"{label}_{i}"] for p in profiles]) for i in (0, 1))
        print(f"\none db.run, a single {label} by key: {wall:.2f} ms wall, {cpu:.2f} ms CPU")


# --- Paced latency -------------------------------------------------------------------------


def paced_latencies(
    runtime: Runtime,
    dispatcher: Dispatcher,
    events: Sequence[TriggerContext],
    rate: float,
    timeout: float,
) -> tuple[list[float], int, int]:
    """Emit ``events`` at ``rate`` a second; return the latencies (s) from each emit to
    its executions' first action step, the executions created, and those with no action
    before a wait (or none at all), which have no such latency."""
    truncate(runtime, TABLES)
    send = EventSystem()
    dispatcher.subscribe_to(send)
    emitted: dict[str, datetime] = {}
    created = 0
    start = time.monotonic()
    for i, context in enumerate(events):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        moment = datetime.now(UTC)
        dispatched = send.emit(context)[0]
        emitted[dispatched.event_id] = moment
        created += len(dispatched.execution_ids)
    if wait_until(lambda: recorded(runtime) >= created, timeout, poll=0.05) is None:
        raise SystemExit(f"{recorded(runtime)} of {created} executions recorded in {timeout} s")

    def first_actions(session):
        query = (
            select(Execution.event_id, func.min(StepRun.started_at))
            .join(StepRun, StepRun.execution_id == Execution.id)
            .where(StepRun.kind == "action")
            .group_by(Execution.id, Execution.event_id)
        )
        return session.execute(query).all()

    rows = runtime.db.run(first_actions)
    latencies = [(first - emitted[event_id]).total_seconds() for event_id, first in rows]
    return latencies, created, created - len(rows)


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# --- The report ----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> None:
    print(f"load average at start: {load_average()}")
    with services() as settings:
        if args.synchronous_commit == "off":
            url = settings.database_url + "%20-csynchronous_commit%3Doff"  # in `options`
            settings = settings.model_copy(update={"database_url": url})
        runtime = Runtime.start(settings)
        try:
            report(runtime, args)
        finally:
            runtime.close()


def report(runtime: Runtime, args: argparse.Namespace) -> None:
    loaded = load_automations(runtime, args.creators, args.automations, args.seed)
    print(f"{args.automations:,} automations for {args.creators:,} creators loaded")
    per_trial = args.events
    paced_total = sum(int(rate * seconds) for rate, seconds in args.paced)
    events = make_events(loaded.creators, per_trial + paced_total, args.seed)
    trial_events = events[:per_trial]
    dispatcher = api_dispatcher(runtime)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    figures = {}
    for count in [] if args.profile_only else args.workers:
        with workers(runtime.settings, count, log_dir):
            results: dict[str, list[Trial]] = {}
            for round_ in range(args.rounds):
                results.setdefault("noop", []).append(
                    noop_trial(runtime, args.noop_jobs, args.timeout)
                )
                for size in args.batch_sizes:
                    set_batch_size(runtime, size)
                    for how, make in (("emit", by_emit), ("dispatch_many", by_dispatch_many)):
                        trial = engine_trial(runtime, make(dispatcher), trial_events, args.timeout)
                        results.setdefault(f"{how}|{size}", []).append(trial)
                load = load_average()
                print(f"{count} worker(s): round {round_ + 1} of {args.rounds} (load {load})")
            set_batch_size(runtime, args.paced_batch)
            paced, offset = [], per_trial
            for rate, seconds in args.paced:
                chunk = events[offset : offset + int(rate * seconds)]
                offset += len(chunk)
                latencies = paced_latencies(runtime, dispatcher, chunk, rate, args.timeout)
                paced.append((rate, seconds, *latencies))
        figures[count] = (results, paced)
    set_batch_size(runtime, args.paced_batch)
    profiles = []
    for _ in range(args.rounds):
        profile = runner_profile(runtime, trial_events, args.profile_batch)
        for label, costs in transaction_cost(runtime).items():
            profile.update({f"{label}_{i}": value for i, value in enumerate(costs)})
        profiles.append(profile)
    if figures:
        print_rates(figures, args)
        print_latencies(figures, args)
    print_profile(profiles, args)
    print(f"\nworker logs: {log_dir}")


def print_rates(figures: dict, args: argparse.Namespace) -> None:
    rows = []
    for count, (results, _) in figures.items():
        noop_rate = median([t.rate for t in results["noop"]])
        rows.append([f"RQ no-op jobs, {count} worker(s)", "—", f"{noop_rate:,.0f} jobs/s",
                     "1.00x", "", ""])  # fmt: skip
        for key, trials in results.items():
            if key == "noop":
                continue
            how, size = key.split("|")
            rate = median([t.rate for t in trials])
            steps = sum(t.steps for t in trials) / sum(t.units for t in trials)
            ratio = rate / noop_rate
            met = "yes" if ratio >= TARGET else "**no**"
            rows.append([f"engine, {how}, {count} worker(s)", size,
                         f"{rate:,.1f} executions/s ({steps:.1f} steps each)",
                         f"{ratio:.2f}x", f">= {TARGET}x", met])  # fmt: skip
    print()
    print(table(["contender", "batch size", "median rate", "vs RQ no-op", "target", "met"], rows))
    executions = figures[args.workers[0]][0][f"emit|{args.batch_sizes[0]}"][0].units
    print(
        f"\nmedians of {args.rounds} rounds; {args.events} events a trial ({executions} "
        f"executions); {args.noop_jobs} no-op jobs a trial; load average: {load_average()}"
    )


def print_latencies(figures: dict, args: argparse.Namespace) -> None:
    for count, (_, paced) in figures.items():
        for rate, seconds, latencies, created, without in paced:
            p99 = percentile(latencies, 0.99)
            met = "met" if p99 < LATENCY_TARGET else "**missed**"
            verdict = f"target p99 < {LATENCY_TARGET * 1000:.0f} ms: {met}"
            if rate != 50:
                verdict = "for comparison: the target is set at 50 events/s"
            print(
                f"\npaced, {count} worker(s), {rate:g} events/s for {seconds:g} s, batch size "
                f"{args.paced_batch}: {created} executions, {len(latencies)} with an action before "
                f"any wait ({without} without); emit → first action step: "
                f"p50 {percentile(latencies, 0.5) * 1000:,.0f} ms, "
                f"p95 {percentile(latencies, 0.95) * 1000:,.0f} ms, p99 {p99 * 1000:,.0f} ms, "
                f"max {max(latencies) * 1000:,.0f} ms ({verdict})"
            )


def sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def paced_runs(text: str) -> list[tuple[float, float]]:
    return [tuple(float(x) for x in part.split(":")) for part in text.split(",")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creators", type=int, default=1_000)
    parser.add_argument("--automations", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=30, help="events a trial")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=sizes, default=[1, 2], help="worker counts: 1,2")
    parser.add_argument("--batch-sizes", type=sizes, default=[1, 20, 50])
    parser.add_argument("--noop-jobs", type=int, default=500)
    parser.add_argument(
        "--paced", type=paced_runs, default=[(50.0, 4.0), (5.0, 12.0)],
        help="paced runs, rate:seconds,... (events/s for so many seconds)",
    )  # fmt: skip
    parser.add_argument("--paced-batch", type=int, default=20)
    parser.add_argument("--profile-only", action="store_true", help="no workers: the profile")
    parser.add_argument(
        "--profile-batch", type=int, default=3, help="executions a job runs in the profile"
    )
    parser.add_argument("--synchronous-commit", choices=("on", "off"), default="on")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a trial at most")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
