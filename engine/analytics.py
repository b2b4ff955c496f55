"""Analytics derived from the execution rows themselves (design property 11: the
success rate is successful executions over finished executions, no counter kept aside).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.models import Execution, ExecutionStatus, OutboxMessage, StepRun, StepStatus

FINISHED = (ExecutionStatus.SUCCESS, ExecutionStatus.FAILED, ExecutionStatus.PARTIAL)


@dataclass(frozen=True)
class AutomationStats:
    automation_id: str
    executions: int  # every execution started in the window, finished or not
    by_status: dict[str, int]
    messages_sent: int
    failures_by_step: dict[str, int] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return sum(self.by_status.get(s, 0) for s in FINISHED)

    @property
    def success_rate(self) -> float | None:
        """Successful over finished executions; None before any has finished."""
        if not self.finished:
            return None
        return self.by_status.get(ExecutionStatus.SUCCESS, 0) / self.finished


def automation_stats(
    session: Session,
    automation_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AutomationStats:
    window = [Execution.automation_id == automation_id]
    if since is not None:
        window.append(Execution.executed_at >= since)
    if until is not None:
        window.append(Execution.executed_at < until)
    by_status = dict(
        session.execute(
            select(Execution.status, func.count()).where(*window).group_by(Execution.status)
        ).all()
    )
    executions = select(Execution.id).where(*window)
    failures = dict(
        session.execute(
            select(StepRun.node_id, func.count())
            .where(StepRun.execution_id.in_(executions), StepRun.status == StepStatus.FAILED)
            .group_by(StepRun.node_id)
        ).all()
    )
    messages = session.scalar(
        select(func.count(OutboxMessage.id)).where(OutboxMessage.execution_id.in_(executions))
    )
    return AutomationStats(
        automation_id=automation_id,
        executions=sum(by_status.values()),
        by_status=by_status,
        messages_sent=messages or 0,
        failures_by_step=failures,
    )
