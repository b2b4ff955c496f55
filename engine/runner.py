"""Runs executions a batch at a time, set-wise, each execution on its own.

For a batch of execution ids the runner, in one transaction, takes their **leases**
(one conditional ``UPDATE ... RETURNING``: only one worker runs an execution at a
time, and a worker killed mid-run loses it when it expires), reads their fans and what
earlier attempts recorded, walks each graph through its conditions to its next action,
and **claims** those actions. Then, wave after wave, it runs the claimed actions and,
in one transaction, writes what they did, walks each execution on to its next action
and claims it, parks those that reached a ``wait`` and finishes those at the end.

Every step is a row in ``execution_steps``, unique per execution and node: the trace,
and for actions the claim — written before the action runs, marked done after — so a
retried execution skips the steps already done and repeats an interrupted one with the
same idempotency key. The engine's own side effects (outbox messages, tags) are
written in the transaction that marks their step done: both or neither.

Each execution stays independent: a failing action marks its step failed and the next
step runs (design property 4); an error in the engine's handling of one execution
takes it out of the batch (its lease expires and the sweep tries it again); a wave's
transaction that fails is tried again for each execution alone.
"""

from __future__ import annotations

import json
import logging
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from weakref import WeakValueDictionary

from pydantic import BaseModel, ValidationError
from sqlalchemy import and_, bindparam, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from dsl.conditions import compile_condition, literal_from_json
from dsl.graph import ActionNode, ConditionNode, RuleGraph
from dsl.templates import render
from dsl.types import literal_value
from engine.exceptions import MessageCapReached
from engine.fans import FanState, change_tags, lock_fans, read_fans, write_tags
from engine.models import (
    AutomationVersion,
    Execution,
    ExecutionStatus,
    StepRun,
    StepStatus,
    new_id,
    utcnow,
)
from engine.outbox import cap_message, existing_messages, insert_messages
from engine.plugin_api import ActionContext, ActionError, ActionResult, Services
from engine.runtime import Runtime

log = logging.getLogger(__name__)
# `current_node` once nothing is left to run (after a wait that ends the run): None
# there means "not started", which would send a resumed run back to its first step.
END = ""
EXECUTIONS = Execution.__table__
STEPS = StepRun.__table__
VERSIONS = AutomationVersion.__table__

# The flat node table of a cached graph: node id -> a tuple, by kind
#   (CONDITION, compiled condition, then, otherwise)
#   (ACTION, action name, validated arguments or the ActionError to fail with, next)
#   (WAIT, seconds, next, None)
CONDITION, ACTION, WAIT = 0, 1, 2


class _Templates:
    """The ``TemplateRenderer`` service: the checker's sandbox."""

    def render(self, template: str, data) -> str:
        return render(template, data)


TEMPLATES = _Templates()


class LoadedGraph:
    """A cached graph: its entry node and its flat node table."""

    __slots__ = ("entry", "nodes", "used")

    def __init__(self, entry: str | None, nodes: dict[str, tuple]) -> None:
        self.entry = entry
        self.nodes = nodes
        self.used = False  # since the cache last passed over it (see GraphCache)


def _name(text: str | None) -> str | None:
    # Node ids and action names repeat across thousands of graphs: one copy of each.
    return None if text is None else sys.intern(text)


class GraphCache:
    """Compiled graphs by (automation, version) — versions never change once saved —,
    those not used lately dropped first: a graph used since the cache last passed over
    it gets a second chance (the CLOCK approximation of least recently used, which
    keeps a hit to one attribute write)."""

    def __init__(self, runtime: Runtime, size: int = 4096) -> None:
        self.runtime = runtime
        self.size = size
        self._graphs: OrderedDict[tuple[str, int], LoadedGraph] = OrderedDict()
        # Validated arguments are immutable and shared by every graph that has the same
        # action with the same arguments.
        self._configs: WeakValueDictionary[tuple, BaseModel] = WeakValueDictionary()

    def get(self, automation_id: str, version: int) -> LoadedGraph:
        loaded = self._graphs.get((automation_id, version))
        if loaded is None:
            key = (automation_id, version)
            return self.runtime.db.run_core(lambda c: self.get_many(c, [key]))[key]
        loaded.used = True
        return loaded

    def get_many(
        self, connection: Connection, keys: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], LoadedGraph]:
        """The graphs of ``keys``; those not cached are read in one query. A key without
        a stored version is left out."""
        graphs = self._graphs
        found, missing = {}, []
        for key in set(keys):
            loaded = graphs.get(key)
            if loaded is None:
                missing.append(key)
            else:
                loaded.used = True
                found[key] = loaded
        if missing:
            query = select(VERSIONS.c.automation_id, VERSIONS.c.version, VERSIONS.c.graph).where(
                tuple_(VERSIONS.c.automation_id, VERSIONS.c.version).in_(missing)
            )
            for automation_id, version, graph in connection.execute(query):
                key = (automation_id, version)
                found[key] = graphs[key] = self.load(graph)
            while len(graphs) > self.size:
                key, oldest = graphs.popitem(last=False)
                if oldest.used:  # a second chance, at the newest end
                    oldest.used = False
                    graphs[key] = oldest
        return found

    def load(self, data: dict[str, Any]) -> LoadedGraph:
        """The flat node table of a stored graph, conditions compiled, arguments
        validated."""
        graph = RuleGraph.from_json(data)
        nodes: dict[str, tuple] = {}
        for node_id, node in graph.nodes.items():
            if isinstance(node, ConditionNode):
                entry = (
                    CONDITION,
                    compile_condition(node.expr),
                    _name(node.then),
                    _name(node.otherwise),
                )
            elif isinstance(node, ActionNode):
                entry = (ACTION, _name(node.name), self._config(node), _name(node.next))
            else:
                entry = (WAIT, node.seconds, _name(node.next), None)
            nodes[_name(node_id)] = entry
        return LoadedGraph(_name(graph.entry), nodes)

    def _config(self, node: ActionNode) -> BaseModel | ActionError:
        action = self.runtime.plugins.actions.get(node.name)
        if action is None:
            return ActionError(f"the action `{node.name}` is not installed")
        key = (action.Config, node.name, json.dumps(node.args, sort_keys=True))
        config = self._configs.get(key)
        if config is None:
            values = {k: literal_value(literal_from_json(v)) for k, v in node.args.items()}
            try:
                config = action.Config.model_validate(values)
            except ValidationError as exc:
                return ActionError(f"invalid arguments: {exc.errors()[0]['msg']}")
            self._configs[key] = config
        return config


# --- One batch ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Step:
    """A step row as the run knows it."""

    kind: str
    status: str
    output: dict
    error: str | None
    started_at: datetime


@dataclass(eq=False, slots=True)
class _Run:
    """One execution of the batch, and what it has to write at the next commit."""

    id: str
    automation_id: str
    creator_id: str
    fan_id: str
    trigger_type: str
    trigger_data: dict[str, Any]
    attempts: int
    resume_at: datetime | None
    graph: LoadedGraph
    node: str | None  # where the walk goes on from
    steps: dict[str, _Step]  # by node id: earlier attempts' rows, then this one's
    services: Services | None = None
    action: str | None = None  # the action claimed for the next wave
    # To write at the next commit: step rows (by node id), messages with their node,
    # tag changes (fan, tag, added), and the execution's row (its outcome, see _outcome).
    rows: dict[str, dict] = field(default_factory=dict)
    messages: list[tuple[str, dict]] = field(default_factory=list)
    tag_changes: list[tuple[str, str, bool]] = field(default_factory=list)
    outcome: tuple | None = None

    def record(
        self,
        node_id: str,
        kind: str,
        name: str,
        status: str,
        now: datetime,
        detail: str = "",
        output: dict | None = None,
        error: str | None = None,
    ) -> None:
        known = self.steps.get(node_id)
        started = now if known is None else known.started_at
        output = output or {}
        self.rows[node_id] = {
            "id": new_id(),
            "execution_id": self.id,
            "node_id": node_id,
            "kind": kind,
            "name": name,
            "status": status,
            "detail": detail,
            "output": output,
            "error": error,
            "started_at": started,
            "finished_at": None if status == StepStatus.RUNNING else now,
        }
        self.steps[node_id] = _Step(kind, status, output, error, started)


@dataclass(slots=True)
class _Written:
    """What a commit found out that the runs did not know: steps the daily cap
    stopped after all, message ids another attempt had written, claims it lost."""

    capped: dict[tuple[str, str], str] = field(default_factory=dict)  # -> the cap's message
    message_ids: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)  # executions
    tags: dict[str, list[str]] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)


class _Batch:
    """The runs of one batch and the fans they share."""

    def __init__(
        self,
        runner: Runner,
        runs: list[_Run],
        fans: dict[str, FanState],
        messages: dict[str, str],
        dropped: list[str],
    ) -> None:
        self.runner = runner
        self.runs = runs
        self.fans = fans
        self.messages = messages  # idempotency key -> id, written or to be written
        self.dropped = dropped
        self.stolen = 0  # leased without being asked for: they waited for a worker

    def fan(self, fan_id: str) -> FanState:
        """A fan of the batch; another fan (a plugin may change any of the creator's)
        is read on first use."""
        state = self.fans.get(fan_id)
        if state is None:
            runner = self.runner
            now = runner.runtime.clock.now()
            cap = runner.runtime.settings.messages_per_fan_per_day
            read = runner.runtime.db.run_core(lambda c: read_fans(c, [fan_id], now, cap))
            state = self.fans[fan_id] = read[fan_id]
        return state


class _RunOutbox:
    """The ``Outbox`` service of one run: messages are checked against the daily cap
    now and written with the step that sent them."""

    def __init__(self, batch: _Batch, run: _Run) -> None:
        self.batch = batch
        self.run = run

    def send(self, *, creator_id: str, fan_id: str, text: str, idempotency_key: str) -> str:
        known = self.batch.messages.get(idempotency_key)
        if known is not None:
            return known
        fan = self.batch.fan(fan_id)
        if fan.sent >= fan.cap:
            raise MessageCapReached(cap_message(fan.sent, fan.cap))
        fan.sent += 1
        message_id = new_id()
        self.batch.messages[idempotency_key] = message_id
        self.run.messages.append(
            (
                self.run.action,
                {
                    "id": message_id,
                    "creator_id": creator_id,
                    "fan_id": fan_id,
                    "execution_id": self.run.id,
                    "text": text,
                    "idempotency_key": idempotency_key,
                    "status": "pending",
                    "created_at": self.batch.runner.runtime.clock.now(),
                    "sent_at": None,
                },
            )
        )
        return message_id


class _RunFans:
    """The ``FanStore`` service of one run: tags change in memory at once (the next
    conditions see them) and are written with the step that changed them."""

    def __init__(self, batch: _Batch, run: _Run) -> None:
        self.batch = batch
        self.run = run

    def add_tag(self, creator_id: str, fan_id: str, tag: str) -> bool:
        return self._change(fan_id, tag, add=True)

    def remove_tag(self, creator_id: str, fan_id: str, tag: str) -> bool:
        return self._change(fan_id, tag, add=False)

    def _change(self, fan_id: str, tag: str, add: bool) -> bool:
        fan = self.batch.fan(fan_id)
        tags = change_tags(fan.data["tags"], tag, add)
        if tags is None:
            return False
        fan.data["tags"] = tags
        self.run.tag_changes.append((fan_id, tag, add))
        return True


class Runner:
    def __init__(
        self, runtime: Runtime, on_wait: Callable[[list[tuple[str, datetime]]], None]
    ) -> None:
        self.runtime = runtime
        self.graphs = GraphCache(runtime)
        # Called with (execution id, resume time) of the executions a commit parked.
        self.on_wait = on_wait
        postgresql = runtime.db.dialect == "postgresql"
        self._lease, self._steal = _lease_statements(postgresql)
        self._upsert_steps = _upsert_steps_statement(pg_insert if postgresql else sqlite_insert)

    def run(self, execution_id: str) -> str | None:
        """Run one execution as far as it goes; see ``run_batch``."""
        return self.run_batch([execution_id])[execution_id]

    def run_batch(
        self,
        execution_ids: Sequence[str],
        steal: int = 0,
        filled: Callable[[], None] | None = None,
    ) -> dict[str, str | None]:
        """Run the executions, and up to ``steal`` others that wait for a worker, as far
        as they go; ``filled`` is called once the leases are taken if ``steal`` others
        were (more may wait). Returns each one's status: None when it was not runnable
        here (another worker holds it, it is not due, or it is done), "error" when the
        engine failed on it (it is tried again later)."""
        ids = list(dict.fromkeys(execution_ids))
        try:
            return self._run(ids, steal, filled)
        except Exception:
            if len(ids) == 1 and not steal:
                raise
            # The first transaction failed, so nothing was written: each one alone.
            log.warning("a batch of %d executions failed to start; one at a time", len(ids))
            results: dict[str, str | None] = {}
            for execution_id in ids:
                try:
                    results.update(self._run([execution_id], 0, None))
                except Exception:
                    log.exception("execution %s stopped with an error", execution_id)
                    results[execution_id] = "error"
            return results

    def _run(
        self, ids: list[str], steal: int, filled: Callable[[], None] | None
    ) -> dict[str, str | None]:
        results: dict[str, str | None] = dict.fromkeys(ids)
        batch, written = self.runtime.db.run_core(lambda c: self._start(c, ids, steal))
        if filled is not None and steal and batch.stolen >= steal:
            filled()
        for execution_id in batch.dropped:
            results[execution_id] = "error"
        runs = self._committed(batch, batch.runs, written, results)
        while runs:
            acted = []
            for run in runs:
                try:
                    self._act(batch, run)
                except Exception:
                    log.exception("execution %s stopped with an error", run.id)
                    results[run.id] = "error"
                else:
                    acted.append(run)
            runs = self._commit(batch, acted, results)
        return results

    # --- The first transaction: leases, reads, claims --------------------------------------

    def _start(self, connection: Connection, ids: list[str], steal: int) -> tuple[_Batch, _Written]:
        settings = self.runtime.settings
        wall, now = utcnow(), self.runtime.clock.now()
        times = {"wall": wall, "now": now,
                 "until": wall + timedelta(seconds=settings.lease_seconds)}  # fmt: skip
        leased = connection.execute(self._lease, {"ids": ids, **times}).all()
        stolen = connection.execute(self._steal, {"room": steal, **times}).all() if steal else []
        leased += stolen
        if not leased:
            return _Batch(self, [], {}, {}, []), _Written()
        graphs = self.graphs.get_many(
            connection, {(r.automation_id, r.automation_version) for r in leased}
        )
        fans = read_fans(
            connection, {r.fan_id for r in leased}, now, settings.messages_per_fan_per_day
        )
        # Only an execution that ran before (resumed after a wait, or tried again) has
        # step rows, and only an interrupted action may have written its message.
        earlier = _earlier_steps(
            connection, [r.id for r in leased if r.current_node is not None or r.attempts > 1]
        )
        interrupted = [
            f"{eid}:{node}"
            for eid, steps in earlier.items()
            for node, step in steps.items()
            if step.status == StepStatus.RUNNING
        ]
        batch = _Batch(self, [], fans, existing_messages(connection, interrupted), [])
        batch.stolen = len(stolen)
        for row in leased:
            try:
                run = self._new_run(row, graphs, earlier.get(row.id, {}))
                run.services = Services(
                    outbox=_RunOutbox(batch, run),
                    fans=_RunFans(batch, run),
                    templates=TEMPLATES,
                    database=self.runtime.db,
                )
                self._walk(run, fans[row.fan_id], now)
            except Exception:
                log.exception("execution %s stopped with an error", row.id)
                batch.dropped.append(row.id)
            else:
                batch.runs.append(run)
        return batch, self._write(connection, batch, batch.runs, now, first=True)

    def _new_run(self, row, graphs: dict, steps: dict[str, _Step]) -> _Run:
        graph = graphs[(row.automation_id, row.automation_version)]
        position = row.current_node
        return _Run(
            id=row.id,
            automation_id=row.automation_id,
            creator_id=row.creator_id,
            fan_id=row.fan_id,
            trigger_type=row.trigger_type,
            trigger_data=row.trigger_data,
            attempts=row.attempts,
            resume_at=row.resume_at,
            graph=graph,
            node=graph.entry if position is None else position or None,
            steps=steps,
        )

    # --- Walking: conditions to the next action, a wait or the end --------------------------

    def _walk(self, run: _Run, fan: FanState, now: datetime) -> None:
        """Walk from ``run.node`` through conditions (what conditions see: the event as
        it was, the fan as they are now) to the next action, claimed for the next wave;
        or to a wait, where the run parks; or to the end, where it finishes."""
        context = None
        nodes = run.graph.nodes
        node_id = run.node
        lease = utcnow() + timedelta(seconds=self.runtime.settings.lease_seconds)
        while node_id is not None:
            kind, a, b, c = nodes[node_id]
            step = run.steps.get(node_id)
            if kind == CONDITION:
                if step is not None:
                    result = bool(step.output.get("result"))
                else:
                    if context is None:
                        context = {**run.trigger_data, "fan": fan.data}
                    result = a(context)
                    run.record(
                        node_id,
                        "condition",
                        "if",
                        StepStatus.DONE,
                        now,
                        detail=str(result).lower(),
                        output={"result": result},
                    )
                node_id = b if result else c
            elif kind == ACTION:
                if step is not None and step.status != StepStatus.RUNNING:
                    node_id = c  # done by an earlier attempt
                    continue
                if step is None:
                    run.record(node_id, "action", a, StepStatus.RUNNING, now)  # the claim
                run.node = run.action = node_id
                # The position is saved with every claim: a retry starts from here, and
                # the step rows tell it what of the current step was done.
                run.outcome = (
                    ExecutionStatus.RUNNING,
                    node_id,
                    run.resume_at,
                    lease,
                    run.attempts,
                    None,
                )
                return
            else:
                self._park(run, node_id, a, b, step, now)
                return
        run.node = None
        run.outcome = (None, None, None, None, run.attempts, now)  # finished: see _outcome

    def _park(
        self,
        run: _Run,
        node_id: str,
        seconds: int,
        after: str | None,
        step: _Step | None,
        now: datetime,
    ) -> None:
        resume_at = now + timedelta(seconds=seconds)
        if step is None:
            run.record(
                node_id,
                "wait",
                "wait",
                StepStatus.DONE,
                now,
                detail=f"until {resume_at.isoformat()}",
            )
        # attempts counts the tries of the stretch up to here; a resume starts a new
        # one (else an execution with five waits would be given up at the fifth).
        run.node = None
        run.resume_at = resume_at
        run.outcome = (
            ExecutionStatus.WAITING,
            END if after is None else after,
            resume_at,
            None,
            0,
            None,
        )

    # --- Actions -----------------------------------------------------------------------------

    def _act(self, batch: _Batch, run: _Run) -> None:
        """Run the run's claimed action, then walk on to what follows it."""
        node_id = run.action
        _, name, config, after = run.graph.nodes[node_id]
        fan = batch.fan(run.fan_id)
        status, detail, output, error = self._run_action(run, node_id, name, config, fan)
        now = self.runtime.clock.now()
        run.record(node_id, "action", name, status, now, detail, output, error)
        run.action, run.node = None, after
        self._walk(run, fan, now)

    def _run_action(self, run: _Run, node_id: str, name: str, config, fan: FanState):
        if isinstance(config, Exception):
            return StepStatus.FAILED, "", {}, str(config)
        action = self.runtime.plugins.actions[name]
        data = self._template_data(run, fan)
        context = ActionContext(
            creator_id=run.creator_id,
            fan_id=run.fan_id,
            fan=dict(fan.data),
            trigger=run.trigger_type,
            trigger_data=data,
            idempotency_key=f"{run.id}:{node_id}",
            services=run.services,
            now=self.runtime.clock.now(),
            fan_external_id=fan.external_id,
        )
        try:
            result = action.run(context, config)
        except MessageCapReached as exc:
            return StepStatus.SKIPPED, str(exc), {}, None
        except ActionError as exc:
            return StepStatus.FAILED, "", {}, str(exc) or type(exc).__name__
        except Exception as exc:
            log.exception("action %s failed in execution %s", name, run.id)
            return StepStatus.FAILED, "", {}, f"{type(exc).__name__}: {exc}"
        if not isinstance(result, ActionResult):
            return StepStatus.FAILED, "", {}, f"`{name}` returned {type(result).__name__}"
        status = StepStatus.DONE if result.ok else StepStatus.FAILED
        error = None if result.ok else (result.detail or "the action reported a failure")
        return status, result.detail, _json_safe(result.output), error

    def _template_data(self, run: _Run, fan: FanState) -> dict[str, Any]:
        """The context as the trigger's own model (money prints as $9.99), with the
        fan as they are now."""
        data = {**run.trigger_data, "fan": {**fan.data, "tags": list(fan.data["tags"])}}
        trigger = self.runtime.plugins.triggers.get(run.trigger_type)
        if trigger is None:
            return data
        try:
            model = trigger.Context.model_validate(data)
        except ValidationError:
            return data
        return {name: getattr(model, name) for name in type(model).model_fields}

    # --- Commits -----------------------------------------------------------------------------

    def _commit(self, batch: _Batch, runs: list[_Run], results: dict) -> list[_Run]:
        """Write what the runs did in one transaction (each run alone if that fails);
        return the runs with an action claimed for the next wave."""
        if not runs:
            return []
        now = self.runtime.clock.now()
        try:
            written = self.runtime.db.run_core(lambda c: self._write(c, batch, runs, now))
        except Exception:
            if len(runs) == 1:
                log.exception("execution %s stopped with an error", runs[0].id)
                results[runs[0].id] = "error"
                return []
            log.warning("writing a wave of %d executions failed; one at a time", len(runs))
            going = []
            for run in runs:
                going += self._commit(batch, [run], results)
            return going
        return self._committed(batch, runs, written, results)

    def _write(
        self,
        connection: Connection,
        batch: _Batch,
        runs: list[_Run],
        now: datetime,
        first: bool = False,
    ) -> _Written:
        """The runs' pending rows, set-wise. Changes nothing in the runs or the batch: a
        transaction tried again after a transient error must write the same. In the
        ``first`` transaction the leases were just taken: a run that claimed an action
        keeps its old position (a retry walks on from it past this walk's step rows)."""
        written = _Written()
        messages = [(run, node, m) for run in runs for node, m in run.messages]
        changes = [change for run in runs for change in run.tag_changes]
        if messages or changes:
            touched = {m["fan_id"] for *_, m in messages} | {fan for fan, *_ in changes}
            locked = lock_fans(connection, touched, now)
            written.sent = {fan: sent for fan, (_, sent) in locked.items()}
            accepted = []
            for run, node, message in messages:  # the daily cap, against the locked counts
                fan, cap = message["fan_id"], batch.fans[message["fan_id"]].cap
                if written.sent.get(fan, 0) >= cap:
                    written.capped[(run.id, node)] = cap_message(written.sent.get(fan, 0), cap)
                else:
                    written.sent[fan] = written.sent.get(fan, 0) + 1
                    accepted.append((run, node, message))
            stored = insert_messages(connection, [m for _, _, m in accepted])
            for run, node, message in accepted:
                if stored[message["idempotency_key"]] != message["id"]:  # another attempt's
                    written.message_ids[(run.id, node)] = {
                        message["id"]: stored[message["idempotency_key"]]
                    }
            written.tags = _final_tags(changes, locked)
            write_tags(
                connection,
                {fan: tags for fan, tags in written.tags.items() if tags != locked[fan][0]},
                now,
            )
        rows = {(run.id, node): row for run in runs for node, row in run.rows.items()}
        if rows:
            patched = [_patched(key, row, written) for key, row in rows.items()]
            if connection.execute(self._upsert_steps, patched).rowcount < len(patched):
                written.lost = _lost_claims(connection, rows)
        outcomes = [
            _outcome(run, written)
            for run in runs
            if run.outcome is not None
            and run.id not in written.lost
            and not (first and run.action is not None)
        ]
        if outcomes:
            connection.execute(_UPDATE_EXECUTION, outcomes)
        return written

    def _committed(
        self, batch: _Batch, runs: list[_Run], written: _Written, results: dict
    ) -> list[_Run]:
        """The runs after their commit: what it found out applied, those parked
        scheduled, their results noted; returns those with an action claimed."""
        by_id = {run.id: run for run in runs}
        for execution_id, node in written.capped:
            steps = by_id[execution_id].steps
            steps[node] = _Step("action", StepStatus.SKIPPED, {}, None, steps[node].started_at)
        for fan, tags in written.tags.items():
            batch.fans[fan].data["tags"] = tags
        for fan, sent in written.sent.items():
            batch.fans[fan].sent = sent
        going, parked = [], []
        for run in runs:
            outcome = run.outcome
            run.rows, run.messages, run.tag_changes, run.outcome = {}, [], [], None
            if run.id in written.lost:
                results[run.id] = None  # another attempt holds it: its lease had expired
            elif run.action is not None:
                going.append(run)
            elif outcome[0] == ExecutionStatus.WAITING:
                results[run.id] = ExecutionStatus.WAITING
                parked.append((run.id, run.resume_at))
            else:
                results[run.id] = _finish(run.steps.values())[0]
        if parked:
            try:
                self.on_wait(parked)
            except Exception:  # Redis out of reach: the sweep queues due waits anyway
                log.exception("scheduling the resumption of %d execution(s) failed", len(parked))
        return going


# --- Statements, built once ----------------------------------------------------------------


_DUE = and_(
    or_(EXECUTIONS.c.lease_until.is_(None), EXECUTIONS.c.lease_until < bindparam("wall")),
    or_(EXECUTIONS.c.resume_at.is_(None), EXECUTIONS.c.resume_at <= bindparam("now")),
)
_RUNNABLE = [ExecutionStatus.PENDING, ExecutionStatus.WAITING, ExecutionStatus.RUNNING]


def _lease_statements(postgresql: bool):
    """The leases of the batch's own executions, and of up to ``room`` others that wait
    for a worker (pending, oldest first)."""
    c = EXECUTIONS.c
    own = select(c.id).where(c.id.in_(bindparam("ids", expanding=True)), c.status.in_(_RUNNABLE),
                             _DUE)  # fmt: skip
    others = (
        select(c.id)
        .where(c.status == ExecutionStatus.PENDING, _DUE)
        .order_by(c.executed_at)
        .limit(bindparam("room"))
    )
    if postgresql:
        # Rows that another worker is leasing at this moment are skipped, not waited for.
        own, others = (q.with_for_update(skip_locked=True) for q in (own, others))
    lease = (
        update(EXECUTIONS)
        .values(status=ExecutionStatus.RUNNING, lease_until=bindparam("until"),
                attempts=c.attempts + 1)
        .returning(c.id, c.automation_id, c.automation_version, c.creator_id, c.fan_id,
                   c.trigger_type, c.trigger_data, c.current_node, c.attempts, c.resume_at)
    )  # fmt: skip
    return lease.where(c.id.in_(own)), lease.where(c.id.in_(others))


def _upsert_steps_statement(insert):
    """Step rows, new or finished, in one statement (executed for many rows: the
    driver sends them together). A new row is inserted. A finished step's row replaces
    its claim (a row still ``running``). A claim that meets a row already there writes
    nothing: the step is another attempt's, and the statement's row count falls short."""
    statement = insert(STEPS)
    finished = ("status", "detail", "output", "error", "finished_at")
    return statement.on_conflict_do_update(
        index_elements=["execution_id", "node_id"],
        set_={name: statement.excluded[name] for name in finished},
        where=and_(
            STEPS.c.status == StepStatus.RUNNING, statement.excluded.status != StepStatus.RUNNING
        ),
    ).execution_options(preserve_rowcount=True)  # SQLAlchemy drops an INSERT's otherwise


def _lost_claims(connection: Connection, rows: dict[tuple[str, str], dict]) -> set[str]:
    """The executions whose claim met another attempt's: their rows are not there."""
    claims = {row["id"]: eid for (eid, _), row in rows.items()
              if row["status"] == StepStatus.RUNNING}  # fmt: skip
    if not claims:
        return set()
    ours = set(connection.scalars(select(STEPS.c.id).where(STEPS.c.id.in_(list(claims)))))
    return {eid for row_id, eid in claims.items() if row_id not in ours}


_UPDATE_EXECUTION = (
    update(EXECUTIONS)
    .where(EXECUTIONS.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        current_node=bindparam("b_node"),
        resume_at=bindparam("b_resume_at"),
        lease_until=bindparam("b_lease"),
        attempts=bindparam("b_attempts"),
        steps_executed=bindparam("b_steps"),
        error=bindparam("b_error"),
        finished_at=bindparam("b_finished_at"),
    )
)


def _earlier_steps(connection: Connection, ids: list[str]) -> dict[str, dict[str, _Step]]:
    if not ids:
        return {}
    query = (
        select(
            STEPS.c.execution_id,
            STEPS.c.node_id,
            STEPS.c.kind,
            STEPS.c.status,
            STEPS.c.output,
            STEPS.c.error,
            STEPS.c.started_at,
        )
        .where(STEPS.c.execution_id.in_(ids))
        .order_by(STEPS.c.started_at)
    )
    steps: dict[str, dict[str, _Step]] = {}
    for eid, node, kind, status, output, error, started in connection.execute(query):
        steps.setdefault(eid, {})[node] = _Step(kind, status, output or {}, error, started)
    return steps


# --- What a commit writes --------------------------------------------------------------------


def _patched(key: tuple[str, str], row: dict, written: _Written) -> dict:
    """A step's row with what the commit found out: stopped by the cap after all, or
    the message id another attempt had written."""
    if key in written.capped:
        return {
            **row,
            "status": StepStatus.SKIPPED,
            "detail": written.capped[key],
            "output": {},
            "error": None,
        }
    ids = written.message_ids.get(key)
    if ids:
        return {
            **row,
            "output": {
                k: ids.get(v, v) if isinstance(v, str) else v for k, v in row["output"].items()
            },
        }
    return row


def _outcome(run: _Run, written: _Written) -> dict[str, Any]:
    """The execution's row after this commit: running on at its claimed action,
    parked, or finished (``status`` None in ``run.outcome``)."""
    status, node, resume_at, lease, attempts, finished_at = run.outcome
    steps, error = 0, None
    if status is None:
        capped = {node for eid, node in written.capped if eid == run.id}
        status, steps, error = _finish(
            _Step(s.kind, StepStatus.SKIPPED, {}, None, s.started_at) if n in capped else s
            for n, s in run.steps.items()
        )
    return {
        "b_id": run.id,
        "b_status": status,
        "b_node": node,
        "b_resume_at": resume_at,
        "b_lease": lease,
        "b_attempts": attempts,
        "b_steps": steps,
        "b_error": error,
        "b_finished_at": finished_at,
    }


def _finish(steps: Iterable[_Step]) -> tuple[str, int, str | None]:
    """An execution's status, steps executed and error, from all its steps' rows."""
    actions = [s for s in steps if s.kind == "action"]
    done = sum(s.status == StepStatus.DONE for s in actions)
    failed = sorted(
        (s for s in actions if s.status == StepStatus.FAILED), key=lambda s: s.started_at
    )
    if not failed:
        status = ExecutionStatus.SUCCESS
    elif done or any(s.status == StepStatus.SKIPPED for s in actions):
        status = ExecutionStatus.PARTIAL
    else:
        status = ExecutionStatus.FAILED
    error = "; ".join(s.error for s in failed if s.error) or None
    return status, done + len(failed), error


def _final_tags(
    changes: list[tuple[str, str, bool]], locked: dict[str, tuple[list[str], int]]
) -> dict[str, list[str]]:
    """Each changed fan's tags: the runs' changes applied, in order, to the tags as
    they are now (another worker may have changed them since the batch read them)."""
    final: dict[str, list[str]] = {}
    for fan, tag, add in changes:
        if fan in locked:
            tags = final.get(fan, locked[fan][0])
            changed = change_tags(tags, tag, add)
            final[fan] = tags if changed is None else changed
    return final


def _json_safe(output) -> dict:
    try:
        json.dumps(dict(output))
    except (TypeError, ValueError):
        return {"repr": repr(dict(output))}
    return dict(output)
