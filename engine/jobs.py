"""RQ job functions (they take ids, never objects) and the recovery sweep.

One job runs a batch of executions together (``Runner.run_batch``), each on its own:
one that fails is logged and left for the sweep, and the others run. State lives in
the database, so Redis can lose every job and the sweep puts back what is due: waits
whose time has come, executions whose worker died (lease expired), executions whose
job vanished before it started.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from rq import get_current_job
from sqlalchemy import and_, or_, select, update

from engine.models import Execution, ExecutionStatus, utcnow
from engine.runner import Runner
from engine.runtime import Runtime, current

log = logging.getLogger(__name__)

SWEEP_LOCK = "huntaze:sweep"
# A queued pickup job (see enqueue_batches) lets events rely on it for this long at most.
PICKUP_SECONDS = 5
# Delete the pickup key if it still names this job (it may have expired and been set again).
_TAKE_PICKUP = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
# After this many attempts an execution that keeps failing is given up.
MAX_ATTEMPTS = 5

_runners: dict[int, Runner] = {}


def runner_for(runtime: Runtime) -> Runner:
    runner = _runners.get(id(runtime))
    if runner is None:
        runner = Runner(runtime, on_wait=lambda parked: schedule_resumes(runtime, parked))
        _runners.clear()
        _runners[id(runtime)] = runner
    return runner


def run_executions(execution_ids: Sequence[str], room: int = 0) -> dict[str, str | None]:
    """The job: run the executions, and up to ``room`` others that wait for a worker, as
    far as they go. Returns each one's status."""
    runtime = current()
    job = get_current_job()
    if room and job is not None:
        # This job no longer waits: from now on an event queues a job of its own.
        runtime.redis.eval(_TAKE_PICKUP, 1, _pickup_key(runtime), job.id)

    def more() -> None:
        # Its room filled up: more executions may wait, for another job (which another
        # worker may start on while this one runs).
        _queue_jobs(runtime, [], [])

    try:
        return runner_for(runtime).run_batch(execution_ids, steal=room, filled=more)
    except Exception:
        # Nothing was written (the database is out of reach): the sweep tries again, up
        # to MAX_ATTEMPTS.
        log.exception("a batch of %d execution(s) stopped with an error", len(execution_ids))
        return dict.fromkeys(execution_ids, "error")


def enqueue_batches(runtime: Runtime, execution_ids: Sequence[str], pickup: bool = True) -> None:
    """Queue executions, ``batch_size`` to a job, in a round trip or two to Redis.

    A last, partial batch (one event's executions, say) goes to a *pickup* job, which
    also takes other waiting executions, up to ``batch_size`` in all — or to the pickup
    job already queued, if there is one that has not started yet: it will take these
    too. So a busy worker finds one job for many events instead of one job each, and an
    idle one starts on an event at once. Without ``pickup`` (the sweep, which must not
    count on a job Redis may have lost), every batch gets a job of its own."""
    if not execution_ids:
        return
    size = runtime.settings.batch_size
    chunks = [list(execution_ids[i : i + size]) for i in range(0, len(execution_ids), size)]
    partial = chunks.pop() if pickup and len(chunks[-1]) < size else None
    _queue_jobs(runtime, chunks, partial)


def _queue_jobs(runtime: Runtime, chunks: list[list[str]], partial: list[str] | None) -> None:
    """A job per chunk, and a pickup job for ``partial`` (which may be empty) unless one
    is queued already."""
    queue = runtime.queue
    jobs = [queue.prepare_data(run_executions, args=(chunk,)) for chunk in chunks]
    if partial is not None:
        job_id = str(uuid.uuid4())
        # Set before the job is queued, and taken (deleted) by the job before it leases:
        # an event that finds it set was committed before that job's leases, so the job
        # sees its executions. The expiry bounds the wait if Redis loses the job.
        if runtime.redis.set(_pickup_key(runtime), job_id, nx=True, ex=PICKUP_SECONDS):
            room = max(1, runtime.settings.batch_size - len(partial))
            jobs.append(queue.prepare_data(run_executions, args=(partial, room), job_id=job_id))
    if jobs:
        queue.enqueue_many(jobs)


def _pickup_key(runtime: Runtime) -> str:
    return f"huntaze:pickup:{runtime.settings.queue_name}"


def schedule_resumes(runtime: Runtime, parked: Sequence[tuple[str, datetime]]) -> None:
    """Queue the continuations of waits: one job for the executions due in the same
    second. Under the virtual clock the replay's sweep resumes them when the clock
    reaches their time."""
    if runtime.settings.clock == "virtual":
        return
    due: dict[datetime, list[str]] = {}
    for execution_id, resume_at in parked:
        due.setdefault(_next_second(resume_at), []).append(execution_id)
    with runtime.redis.pipeline() as pipeline:
        for moment, ids in sorted(due.items()):
            runtime.queue.enqueue_at(moment, run_executions, ids, pipeline=pipeline)
        pipeline.execute()


def _next_second(moment: datetime) -> datetime:
    """RQ's scheduler keeps whole seconds (it truncates): a job due at 10:00:05.7 would
    run at 10:00:05, before its wait is over, and the runner would refuse it."""
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)


def sweep(runtime: Runtime, limit: int = 5000) -> int:
    """Queue every execution that is due but has no job; give up on those that keep
    failing. Returns how many were queued."""
    now = runtime.clock.now()
    wall = utcnow()
    grace = timedelta(seconds=runtime.settings.pending_grace_seconds)
    clauses = [
        and_(Execution.status == ExecutionStatus.WAITING, Execution.resume_at <= now),
        and_(Execution.status == ExecutionStatus.RUNNING, Execution.lease_until < wall),
    ]
    # A pending execution may simply be behind others in the queue: only once the
    # queue is empty can one still pending (past the grace) have lost its job. This
    # also keeps a backlog from being queued again at every sweep.
    if runtime.queue.count == 0:
        clauses.append(
            and_(Execution.status == ExecutionStatus.PENDING, Execution.executed_at <= now - grace)
        )
    due = or_(*clauses)

    def find(session) -> list[str]:
        session.execute(
            update(Execution)
            .where(due, Execution.attempts >= MAX_ATTEMPTS)
            .values(status=ExecutionStatus.FAILED, lease_until=None, finished_at=now,
                    error=f"gave up after {MAX_ATTEMPTS} attempts")
            .execution_options(synchronize_session=False)
        )  # fmt: skip
        query = select(Execution.id).where(due).order_by(Execution.resume_at).limit(limit)
        return list(session.scalars(query))

    ids = runtime.db.run(find)
    if ids:
        enqueue_batches(runtime, ids, pickup=False)
        log.info("sweep queued %d execution(s)", len(ids))
    return len(ids)


def maybe_sweep(runtime: Runtime) -> int:
    """Sweep unless another process swept within the last interval (a Redis lock)."""
    interval = max(1, int(runtime.settings.sweep_seconds))
    if not runtime.redis.set(SWEEP_LOCK, "1", nx=True, ex=interval):
        return 0
    return sweep(runtime)
