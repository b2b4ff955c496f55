"""RQ job functions (they take ids, never objects) and the recovery sweep.

One job runs a batch of executions, each on its own: one that fails is logged and left
for the sweep, and the others run. State lives in the database, so Redis can lose
every job and the sweep puts back what is due: waits whose time has come, executions
whose worker died (lease expired), executions whose job vanished before it started.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update

from engine.models import Execution, ExecutionStatus, utcnow
from engine.runner import Runner
from engine.runtime import Runtime, current

log = logging.getLogger(__name__)

SWEEP_LOCK = "huntaze:sweep"
# After this many attempts an execution that keeps failing is given up.
MAX_ATTEMPTS = 5

_runners: dict[int, Runner] = {}


def runner_for(runtime: Runtime) -> Runner:
    runner = _runners.get(id(runtime))
    if runner is None:
        runner = Runner(runtime, on_wait=lambda eid, at: schedule_resume(runtime, eid, at))
        _runners.clear()
        _runners[id(runtime)] = runner
    return runner


def run_executions(execution_ids: Sequence[str]) -> dict[str, str | None]:
    """The job: run each execution as far as it goes. Returns each one's status."""
    runner = runner_for(current())
    results: dict[str, str | None] = {}
    for execution_id in execution_ids:
        try:
            results[execution_id] = runner.run(execution_id)
        except Exception:
            # Its lease expires and the sweep tries again, up to MAX_ATTEMPTS.
            log.exception("execution %s stopped with an error", execution_id)
            results[execution_id] = "error"
    return results


def enqueue_batches(runtime: Runtime, execution_ids: Sequence[str]) -> None:
    """Queue executions, ``batch_size`` to a job, in one round trip to Redis."""
    if not execution_ids:
        return
    size = runtime.settings.batch_size
    queue = runtime.queue
    queue.enqueue_many(
        [
            queue.prepare_data(run_executions, args=(list(execution_ids[i : i + size]),))
            for i in range(0, len(execution_ids), size)
        ]
    )


def schedule_resume(runtime: Runtime, execution_id: str, resume_at: datetime) -> None:
    """Queue the continuation of a wait. Under the virtual clock the replay's sweep
    resumes it when the clock reaches ``resume_at``."""
    if runtime.settings.clock == "virtual":
        return
    runtime.queue.enqueue_at(_next_second(resume_at), run_executions, [execution_id])


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
        enqueue_batches(runtime, ids)
        log.info("sweep queued %d execution(s)", len(ids))
    return len(ids)


def maybe_sweep(runtime: Runtime) -> int:
    """Sweep unless another process swept within the last interval (a Redis lock)."""
    interval = max(1, int(runtime.settings.sweep_seconds))
    if not runtime.redis.set(SWEEP_LOCK, "1", nx=True, ex=interval):
        return 0
    return sweep(runtime)
