"""Runs one execution: walks its rule graph from where it stands.

A worker first takes the execution's lease (a conditional UPDATE: only one worker runs
an execution at a time, and a worker killed mid-run loses it when it expires). Every
step is recorded in ``execution_steps``, keyed by the graph's node id: that row is the
trace, and for actions it is also the claim — written before the action runs, marked
done after — so a retried execution skips the steps already done and repeats an
interrupted one with the same idempotency key. A failing action marks its step failed
and the next step runs (design property 4). ``wait`` parks the execution with its
position and resume time and schedules the continuation.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from dsl.conditions import Condition, compile_condition, literal_from_json
from dsl.graph import ActionNode, ConditionNode, RuleGraph, WaitNode
from dsl.templates import render
from dsl.types import literal_value
from engine.exceptions import MessageCapReached
from engine.fans import SqlFanStore, fan_data
from engine.models import (
    AutomationVersion,
    Execution,
    ExecutionStatus,
    Fan,
    StepRun,
    StepStatus,
    utcnow,
)
from engine.outbox import SqlOutbox
from engine.plugin_api import ActionContext, ActionError, ActionResult, Services
from engine.runtime import Runtime

log = logging.getLogger(__name__)
# `current_node` once nothing is left to run (after a wait that ends the run): None
# there means "not started", which would send a resumed run back to its first step.
END = ""


class _Templates:
    """The ``TemplateRenderer`` service: the checker's sandbox."""

    def render(self, template: str, data) -> str:
        return render(template, data)


TEMPLATES = _Templates()


@dataclass(frozen=True)
class LoadedGraph:
    graph: RuleGraph
    conditions: dict[str, Condition]
    configs: dict[str, BaseModel | Exception]  # each action's validated arguments


class GraphCache:
    """Compiled graphs by (automation, version), the least recently used dropped first:
    versions never change once saved."""

    def __init__(self, runtime: Runtime, size: int = 4096) -> None:
        self.runtime = runtime
        self.size = size
        self._graphs: OrderedDict[tuple[str, int], LoadedGraph] = OrderedDict()

    def get(self, automation_id: str, version: int) -> LoadedGraph:
        key = (automation_id, version)
        loaded = self._graphs.get(key)
        if loaded is not None:
            self._graphs.move_to_end(key)
        else:
            data = self.runtime.db.run(
                lambda s: s.get(AutomationVersion, {"automation_id": automation_id,
                                                    "version": version}).graph
            )  # fmt: skip
            loaded = self._load(RuleGraph.from_json(data))
            self._graphs[key] = loaded
            if len(self._graphs) > self.size:
                self._graphs.popitem(last=False)
        return loaded

    def _load(self, graph: RuleGraph) -> LoadedGraph:
        conditions, configs = {}, {}
        for node in graph.nodes.values():
            if isinstance(node, ConditionNode):
                conditions[node.id] = compile_condition(node.expr)
            elif isinstance(node, ActionNode):
                configs[node.id] = self._config(node)
        return LoadedGraph(graph, conditions, configs)

    def _config(self, node: ActionNode) -> BaseModel | Exception:
        action = self.runtime.plugins.actions.get(node.name)
        if action is None:
            return ActionError(f"the action `{node.name}` is not installed")
        values = {k: literal_value(literal_from_json(v)) for k, v in node.args.items()}
        try:
            return action.Config.model_validate(values)
        except ValidationError as exc:
            return ActionError(f"invalid arguments: {exc.errors()[0]['msg']}")


class Runner:
    def __init__(self, runtime: Runtime, on_wait: Callable[[str, datetime], None]) -> None:
        self.runtime = runtime
        self.graphs = GraphCache(runtime)
        self.fans = SqlFanStore(runtime.db)
        # Called with (execution id, resume time) when an execution parks at a wait.
        self.on_wait = on_wait

    # --- Lease -----------------------------------------------------------------------

    def run(self, execution_id: str) -> str | None:
        """Run the execution as far as it goes; return its status, or None when it was
        not runnable here (another worker holds it, it is not due, or it is done)."""
        if not self._take_lease(execution_id):
            return None
        execution = self.runtime.db.run(lambda s: s.get(Execution, execution_id))
        loaded = self.graphs.get(execution.automation_id, execution.automation_version)
        position = execution.current_node
        node_id = loaded.graph.entry if position is None else position or None
        while node_id is not None:
            node = loaded.graph.nodes[node_id]
            if isinstance(node, WaitNode):
                return self._park(execution, node)
            if isinstance(node, ConditionNode):
                node_id = self._condition(execution, loaded, node)
            else:
                node_id = self._action(execution, loaded, node)
        return self._finish(execution.id)

    def _take_lease(self, execution_id: str) -> bool:
        wall = utcnow()
        until = wall + timedelta(seconds=self.runtime.settings.lease_seconds)
        now = self.runtime.clock.now()
        statement = (
            update(Execution)
            .where(
                Execution.id == execution_id,
                Execution.status.in_(
                    [ExecutionStatus.PENDING, ExecutionStatus.WAITING, ExecutionStatus.RUNNING]
                ),
                or_(Execution.lease_until.is_(None), Execution.lease_until < wall),
                or_(Execution.resume_at.is_(None), Execution.resume_at <= now),
            )
            .values(
                status=ExecutionStatus.RUNNING,
                lease_until=until,
                attempts=Execution.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        )
        return self.runtime.db.run(lambda s: s.execute(statement).rowcount) == 1

    def _advance(self, execution_id: str, node_id: str | None, step=None) -> str | None:
        """Move the execution to ``node_id``, in the same transaction as ``step`` (a
        function writing the finished step's row), and return ``node_id``.

        The position is saved after every step: a retry starts from here, and the step
        rows tell it what of the current step was done."""
        lease = utcnow() + timedelta(seconds=self.runtime.settings.lease_seconds)

        def advance(session) -> None:
            if step is not None:
                step(session)
            session.execute(
                update(Execution)
                .where(Execution.id == execution_id)
                .values(current_node=END if node_id is None else node_id, lease_until=lease)
            )

        self.runtime.db.run(advance)
        return node_id

    # --- Steps ---------------------------------------------------------------------------

    def _context(self, execution: Execution, fan: Fan | None = None) -> dict[str, Any]:
        """What conditions see: the event as it was, the fan as they are now."""
        if fan is None:
            fan = self.runtime.db.run(lambda s: s.get(Fan, execution.fan_id))
        return {**execution.trigger_data, "fan": fan_data(fan)}

    def _condition(self, execution: Execution, loaded: LoadedGraph, node: ConditionNode):
        existing, fan = self._step_and_fan(execution, node.id)
        if existing is not None:
            result = bool(existing.output.get("result"))
            return self._advance(execution.id, node.then if result else node.otherwise)
        result = loaded.conditions[node.id](self._context(execution, fan))
        row = self._row(execution.id, node, "condition", "if", StepStatus.DONE,
                        detail=str(result).lower(), output={"result": result})  # fmt: skip
        return self._advance(execution.id, node.then if result else node.otherwise, row.add)

    def _action(self, execution: Execution, loaded: LoadedGraph, node: ActionNode) -> str | None:
        step, fan = self._step_and_fan(execution, node.id)
        if step is not None and step.status != StepStatus.RUNNING:
            return self._advance(execution.id, node.next)  # done by an earlier attempt
        if step is None and not self._claim(execution.id, node):
            return self._advance(execution.id, node.next)  # claimed by another attempt
        status, detail, output, error = self._run_action(execution, loaded, node, fan)
        finished = (
            update(StepRun)
            .where(StepRun.execution_id == execution.id, StepRun.node_id == node.id)
            .values(status=status, detail=detail, output=output, error=error,
                    finished_at=self.runtime.clock.now())
        )  # fmt: skip
        return self._advance(execution.id, node.next, lambda s: s.execute(finished))

    def _run_action(self, execution: Execution, loaded: LoadedGraph, node: ActionNode, fan: Fan):
        config = loaded.configs[node.id]
        if isinstance(config, Exception):
            return StepStatus.FAILED, "", {}, str(config)
        action = self.runtime.plugins.actions[node.name]
        context = self._action_context(execution, node, fan)
        try:
            result = action.run(context, config)
        except MessageCapReached as exc:
            return StepStatus.SKIPPED, str(exc), {}, None
        except ActionError as exc:
            return StepStatus.FAILED, "", {}, str(exc) or type(exc).__name__
        except Exception as exc:
            log.exception("action %s failed in execution %s", node.name, execution.id)
            return StepStatus.FAILED, "", {}, f"{type(exc).__name__}: {exc}"
        if not isinstance(result, ActionResult):
            return StepStatus.FAILED, "", {}, f"`{node.name}` returned {type(result).__name__}"
        status = StepStatus.DONE if result.ok else StepStatus.FAILED
        error = None if result.ok else (result.detail or "the action reported a failure")
        return status, result.detail, _json_safe(result.output), error

    def _action_context(self, execution: Execution, node: ActionNode, fan: Fan) -> ActionContext:
        settings = self.runtime.settings
        data = self._template_data(execution, fan)
        services = Services(
            outbox=SqlOutbox(self.runtime.db, self.runtime.clock,
                             settings.messages_per_fan_per_day, execution.id),
            fans=self.fans,
            templates=TEMPLATES,
            database=self.runtime.db,
        )  # fmt: skip
        return ActionContext(
            creator_id=execution.creator_id,
            fan_id=execution.fan_id,
            fan=data["fan"],
            trigger=execution.trigger_type,
            trigger_data=data,
            idempotency_key=f"{execution.id}:{node.id}",
            services=services,
            now=self.runtime.clock.now(),
            fan_external_id=fan.external_id,
        )

    def _template_data(self, execution: Execution, fan: Fan) -> dict[str, Any]:
        """The context as the trigger's own model (money prints as $9.99), with the
        fan as they are now."""
        data = self._context(execution, fan)
        trigger = self.runtime.plugins.triggers.get(execution.trigger_type)
        if trigger is None:
            return data
        try:
            model = trigger.Context.model_validate(data)
        except ValidationError:
            return data
        return {name: getattr(model, name) for name in type(model).model_fields}

    def _park(self, execution: Execution, node: WaitNode) -> str:
        now = self.runtime.clock.now()
        resume_at = now + timedelta(seconds=node.seconds)
        if self._step(execution.id, node.id) is None:
            self._record(execution.id, node, "wait", "wait", StepStatus.DONE,
                         detail=f"until {resume_at.isoformat()}")  # fmt: skip
        # attempts counts the tries of the stretch up to here; a resume starts a new
        # one (else an execution with five waits would be given up at the fifth).
        self.runtime.db.run(
            lambda s: s.execute(
                update(Execution)
                .where(Execution.id == execution.id)
                .values(status=ExecutionStatus.WAITING,
                        current_node=END if node.next is None else node.next,
                        resume_at=resume_at, lease_until=None, attempts=0)
            )
        )  # fmt: skip
        self.on_wait(execution.id, resume_at)
        return ExecutionStatus.WAITING

    def _finish(self, execution_id: str) -> str:
        def finish(session) -> str:
            counts = dict(
                session.execute(
                    select(StepRun.status, func.count())
                    .where(StepRun.execution_id == execution_id, StepRun.kind == "action")
                    .group_by(StepRun.status)
                ).all()
            )
            done = counts.get(StepStatus.DONE, 0)
            failed = counts.get(StepStatus.FAILED, 0)
            errors = session.scalars(
                select(StepRun.error)
                .where(StepRun.execution_id == execution_id, StepRun.status == StepStatus.FAILED)
                .order_by(StepRun.started_at)
            ).all()
            if not failed:
                status = ExecutionStatus.SUCCESS
            elif done or counts.get(StepStatus.SKIPPED, 0):
                status = ExecutionStatus.PARTIAL
            else:
                status = ExecutionStatus.FAILED
            session.execute(
                update(Execution)
                .where(Execution.id == execution_id)
                .values(status=status, steps_executed=done + failed, lease_until=None,
                        resume_at=None, error="; ".join(e for e in errors if e) or None,
                        current_node=None, finished_at=self.runtime.clock.now())
            )  # fmt: skip
            return status

        return self.runtime.db.run(finish)

    # --- Step rows -----------------------------------------------------------------------

    def _step_and_fan(self, execution: Execution, node_id: str) -> tuple[StepRun | None, Fan]:
        """The step's row, if any, and the fan as they are now: one transaction."""

        def read(session) -> tuple[StepRun | None, Fan]:
            step = session.scalar(
                select(StepRun).where(
                    StepRun.execution_id == execution.id, StepRun.node_id == node_id
                )
            )
            return step, session.get(Fan, execution.fan_id)

        return self.runtime.db.run(read)

    def _step(self, execution_id: str, node_id: str) -> StepRun | None:
        return self.runtime.db.run(
            lambda s: s.scalar(
                select(StepRun).where(
                    StepRun.execution_id == execution_id, StepRun.node_id == node_id
                )
            )
        )

    def _claim(self, execution_id: str, node: ActionNode) -> bool:
        try:
            self._record(execution_id, node, "action", node.name, StepStatus.RUNNING)
        except IntegrityError:
            return False
        return True

    def _record(
        self,
        execution_id: str,
        node: ActionNode | ConditionNode | WaitNode,
        kind: str,
        name: str,
        status: StepStatus,
        detail: str = "",
    ) -> None:
        row = self._row(execution_id, node, kind, name, status, detail)
        self.runtime.db.run(row.add)

    def _row(
        self,
        execution_id: str,
        node: ActionNode | ConditionNode | WaitNode,
        kind: str,
        name: str,
        status: StepStatus,
        detail: str = "",
        output: dict | None = None,
    ) -> _StepRow:
        now = self.runtime.clock.now()
        return _StepRow(
            StepRun(
                execution_id=execution_id, node_id=node.id, kind=kind, name=name,
                status=status, detail=detail, output=output or {}, started_at=now,
                finished_at=None if status == StepStatus.RUNNING else now,
            )
        )  # fmt: skip


@dataclass(frozen=True)
class _StepRow:
    """A step's new row, written by ``add`` inside whichever transaction needs it."""

    row: StepRun

    def add(self, session) -> None:
        session.add(self.row)


def _json_safe(output) -> dict:
    try:
        json.dumps(dict(output))
    except (TypeError, ValueError):
        return {"repr": repr(dict(output))}
    return dict(output)
