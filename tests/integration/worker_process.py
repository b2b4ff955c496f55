"""Real RQ worker processes for the engine's tests.

Each worker is ``python -m rq.cli worker`` in a process group of its own, with an
environment from which ``engine.runtime.current()`` builds the same runtime as the
test's ``Settings`` (database, Redis, queue, lease, batch size, clock...). The pool is
a context manager that SIGKILLs every process group it started, whatever happens.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from redis import Redis
from rq import Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job

from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def worker_environment(settings: Settings) -> dict[str, str]:
    """The environment that makes a worker's ``Settings()`` equal ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUNTAZE_")}
    for name, value in settings.model_dump().items():
        if name in ("database_url", "redis_url") or value is None:
            continue
        env[f"HUNTAZE_{name.upper()}"] = str(value)
    env["DATABASE_URL"] = settings.resolved_database_url()
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    env["PYTHONPATH"] = str(ROOT)
    return env


class WorkerPool:
    """Worker processes for one ``Settings``; ``start`` more, ``kill`` one."""

    def __init__(self, settings: Settings, log_dir: Path, scheduler: bool = False) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.scheduler = scheduler
        self.processes: dict[str, subprocess.Popen] = {}  # by RQ worker name
        self.kills = 0
        self._env = worker_environment(settings)
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self) -> str:
        """Start one worker; return its RQ name."""
        name = f"w-{uuid.uuid4().hex[:8]}"
        command = [
            sys.executable, "-m", "rq.cli", "worker",
            "--worker-class", "rq.SimpleWorker",
            "--url", self.settings.redis_url or "",
            "--name", name,
            *(["--with-scheduler"] if self.scheduler else []),
            self.settings.queue_name,
        ]  # fmt: skip
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
        try:
            # A session of its own: a kill takes the scheduler child with it, as when
            # a machine dies.
            self.processes[name] = subprocess.Popen(
                command, env=self._env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()
        return name

    def alive(self) -> list[str]:
        return [name for name, p in self.processes.items() if p.poll() is None]

    def current_jobs(self, redis: Redis) -> dict[str, Job]:
        """The job each live worker is running now, by worker name."""
        alive = set(self.alive())
        running = {}
        for worker in Worker.all(connection=redis):
            if worker.name not in alive or worker.get_state() != "busy":
                continue
            job_id = worker.get_current_job_id()
            if job_id is None:
                continue
            try:
                running[worker.name] = Job.fetch(job_id, connection=redis)
            except NoSuchJobError:  # it ended meanwhile
                continue
        return running

    def ready(self, redis: Redis) -> list[str]:
        """The live workers registered with RQ (started and listening)."""
        alive = set(self.alive())
        return [w.name for w in Worker.all(connection=redis) if w.name in alive]

    def wait_ready(self, redis: Redis, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.ready(redis)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} worker(s) not ready after {timeout} s{self.logs()}")
            time.sleep(0.05)

    def kill(self, name: str) -> None:
        """SIGKILL the worker's whole process group, and reap it."""
        process = self.processes[name]
        _kill_group(process)
        self.kills += 1

    def close(self) -> None:
        for process in self.processes.values():
            _kill_group(process)

    def logs(self, tail: int = 2000, workers: int = 4) -> str:
        """The end of the latest workers' logs, for a failure message."""
        parts = []
        paths = sorted(self.log_dir.glob("*.log"), key=lambda p: p.stat().st_mtime)
        for path in paths[-workers:]:
            text = path.read_text(errors="replace")[-tail:]
            parts.append(f"\n--- {path.name} ---\n{text}")
        return "".join(parts)


def _kill_group(process: subprocess.Popen) -> None:
    # Only while the leader is unreaped: its pid (the group's id) is then still ours.
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@contextmanager
def worker_processes(
    settings: Settings, log_dir: Path, count: int = 1, scheduler: bool = False
) -> Iterator[WorkerPool]:
    """``count`` worker processes, killed (all of them, and any started later) on exit."""
    pool = WorkerPool(settings, log_dir, scheduler)
    try:
        for _ in range(count):
            pool.start()
        yield pool
    finally:
        pool.close()
