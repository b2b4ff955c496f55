"""From an event to queued executions.

For each event the dispatcher, in one transaction: logs the event, upserts the fan,
finds the creator's active automations for the trigger in the in-memory index, and
creates one execution per automation that matches — at most one per automation, fan
and event, which the database enforces, so two dispatchers racing on the same event
create each execution once. After the commit it queues the executions in batches (one
RQ job runs many executions, each independently).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python
from sqlalchemy import bindparam, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from dsl.conditions import literal_from_json
from dsl.types import literal_value
from dsl.values import Money
from engine.events import TriggerContext
from engine.exceptions import InvalidInput, NotFound
from engine.fans import upsert_fan
from engine.index import AutomationIndex, IndexEntry
from engine.jobs import enqueue_batches
from engine.models import Creator, Event, Execution, ExecutionStatus, new_id
from engine.plugin_api import FanFields, Trigger
from engine.runtime import Runtime

log = logging.getLogger(__name__)
T = TypeVar("T")
# Tries of a dispatch that lost a race on a unique key (see Dispatcher._transaction).
RACE_ATTEMPTS = 3


@dataclass(frozen=True)
class Dispatched:
    event_id: str
    execution_ids: tuple[str, ...]
    duplicate: bool = False  # the event had been received before


class Dispatcher:
    def __init__(self, runtime: Runtime, index: AutomationIndex | None = None) -> None:
        self.runtime = runtime
        # `is None`, not `or`: an index with no entries yet is falsy (it has a __len__).
        self.index = index if index is not None else AutomationIndex(runtime.db, runtime.redis)
        self._insert = _insert_statement(runtime.db.dialect)
        # Validated trigger arguments by (automation, version): versions never change.
        self._configs: dict[tuple[str, int], BaseModel | None] = {}
        # By (creator, trigger): the index's entries and, for each, its arguments.
        self._groups: dict[tuple[str, str], tuple[tuple, tuple]] = {}

    # The EventSystem handler.
    def __call__(self, context: TriggerContext) -> Dispatched:
        return self.dispatch(context)

    def subscribe_to(self, events) -> None:
        for name in self.runtime.plugins.triggers:
            events.subscribe(name, self)

    def validate(self, context: TriggerContext) -> BaseModel:
        """The event's data checked against its trigger's declared context."""
        trigger = self.runtime.plugins.triggers.get(context.type)
        if trigger is None:
            raise InvalidInput(f"unknown trigger `{context.type}`", "type")
        if context.timestamp.tzinfo is None:
            raise InvalidInput("the event's time needs a time zone", "timestamp")
        try:
            model = trigger.Context.model_validate(dict(context.data))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidInput(f"{where}: {first['msg']}", f"data.{where}") from None
        if not isinstance(getattr(model, "fan", None), FanFields):
            raise InvalidInput(f"the trigger `{context.type}` provides no fan", "type")
        return model

    def dispatch(
        self, context: TriggerContext, entries: tuple[IndexEntry, ...] | None = None
    ) -> Dispatched:
        """Log the event and queue an execution per matching automation (by default
        the creator's active automations for the trigger)."""
        model = self.validate(context)
        matched = self.matching(context, model, entries)
        result = self._transaction(
            lambda c: self._record(c, context, model, matched), [context.creator_id]
        )
        self.enqueue(result.execution_ids)
        return result

    def dispatch_many(self, contexts: Sequence[TriggerContext]) -> list[Dispatched]:
        """Several events, one transaction and pipelined enqueues: for bulk imports."""
        models = [(c, self.validate(c)) for c in contexts]
        prepared = [(c, m, self.matching(c, m)) for c, m in models]
        results = self._transaction(
            lambda conn: [self._record(conn, c, m, e) for c, m, e in prepared],
            [c.creator_id for c in contexts],
        )
        self.enqueue([i for r in results for i in r.execution_ids])
        return results

    def matching(
        self,
        context: TriggerContext,
        model: BaseModel,
        entries: tuple[IndexEntry, ...] | None = None,
    ) -> list[IndexEntry]:
        """The automations that run for the event: of ``entries`` (by default the
        creator's active automations for the trigger), those whose trigger arguments
        match it."""
        if entries is None:
            entries = self.index.lookup(context.creator_id, context.type)
        trigger = self.runtime.plugins.triggers[context.type]
        key = (context.creator_id, context.type)
        group = self._groups.get(key)
        if group is None or group[0] is not entries:  # new, or the index was reloaded
            configs = tuple(self._trigger_config(trigger, entry) for entry in entries)
            group = self._groups[key] = (entries, configs)
        return [e for e, config in zip(entries, group[1], strict=True)
                if trigger.matches(config, model)]  # fmt: skip

    def enqueue(self, execution_ids: Sequence[str]) -> None:
        enqueue_batches(self.runtime, execution_ids)

    def _transaction(self, work: Callable[[Connection], T], creators: list[str]) -> T:
        """``db.run_core(work)``, done again when a unique key refuses a row because another
        dispatcher inserted the same event, or the same new fan, at the same moment:
        the next try sees their row (a duplicate event, a fan to update). An event of an
        unknown creator is refused by the events' foreign key: that is checked only
        then, not before every event."""
        attempt = 1
        while True:
            try:
                return self.runtime.db.run_core(work)
            except IntegrityError:
                self._check_creators(creators)
                if attempt >= RACE_ATTEMPTS:
                    raise
                attempt += 1
                log.info("a concurrent dispatch inserted the same row; trying again")

    def _check_creators(self, creators: list[str]) -> None:
        query = select(CREATORS.c.id).where(CREATORS.c.id.in_(set(creators)))
        known = set(self.runtime.db.run_core(lambda c: list(c.scalars(query))))
        for creator_id in creators:
            if creator_id not in known:
                raise NotFound(f"no creator `{creator_id}`")

    # --- In the transaction ------------------------------------------------------------

    def _record(
        self,
        connection: Connection,
        context: TriggerContext,
        model: BaseModel,
        matched: list[IndexEntry],
    ) -> Dispatched:
        now = self.runtime.clock.now()
        event_id, duplicate = self._log_event(connection, context, now)
        if duplicate:
            # Its first delivery created its executions in the transaction that logged
            # it: a resent event runs nothing, not even automations created since.
            return Dispatched(event_id, (), True)
        fan_id, fan = upsert_fan(connection, context.creator_id, context.fan_id, model.fan)
        data = _plain_money(model, {**model.model_dump(mode="json"), "fan": fan})
        rows = [
            {
                "id": new_id(),
                "automation_id": entry.automation_id,
                "automation_version": entry.version,
                "creator_id": context.creator_id,
                "fan_id": fan_id,
                "event_id": event_id,
                "trigger_type": context.type,
                "trigger_data": data,
                "status": ExecutionStatus.PENDING,
                "steps_executed": 0,
                "attempts": 0,
                "executed_at": now,
            }
            for entry in matched
        ]
        created = self._insert_executions(connection, rows)
        return Dispatched(event_id, tuple(created), duplicate)

    def _trigger_config(self, trigger: Trigger, entry: IndexEntry) -> BaseModel | None:
        """The automation's trigger arguments, validated once per version."""
        key = (entry.automation_id, entry.version)
        if key not in self._configs:
            self._configs[key] = _trigger_config(trigger, entry)
        return self._configs[key]

    def _log_event(
        self, connection: Connection, context: TriggerContext, now: datetime
    ) -> tuple[str, bool]:
        if context.event_id is not None:
            existing = connection.scalar(
                _EVENT, {"creator": context.creator_id, "external": context.event_id}
            )
            if existing is not None:
                return existing, True
        event_id = new_id()
        connection.execute(
            insert(EVENTS),
            {
                "id": event_id,
                "creator_id": context.creator_id,
                "external_id": context.event_id,
                "type": context.type,
                "fan_external_id": context.fan_id,
                # As received; values a Python caller gave (datetime, Decimal) as JSON.
                "data": to_jsonable_python(dict(context.data)),
                "occurred_at": context.timestamp,
                "received_at": now,
            },
        )
        return event_id, False

    def _insert_executions(self, connection: Connection, rows: list[dict]) -> list[str]:
        """One statement, built once: its rows go as parameters (SQLAlchemy's
        "insertmanyvalues"), not compiled into a new statement every time."""
        if not rows:
            return []
        return list(connection.scalars(self._insert, rows))


EVENTS = Event.__table__
EXECUTIONS = Execution.__table__
CREATORS = Creator.__table__
_EVENT = select(EVENTS.c.id).where(
    EVENTS.c.creator_id == bindparam("creator"), EVENTS.c.external_id == bindparam("external")
)


def _insert_statement(dialect: str):
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(EXECUTIONS)
        .on_conflict_do_nothing(index_elements=["automation_id", "fan_id", "event_id"])
        .returning(EXECUTIONS.c.id)
    )


def _trigger_config(trigger: Trigger, entry: IndexEntry) -> BaseModel | None:
    if trigger.Config is None:
        return None
    values = {k: literal_value(literal_from_json(v)) for k, v in entry.trigger_args.items()}
    return trigger.Config.model_validate(values)


def _plain_money(model: BaseModel, data: dict) -> dict:
    """Money in the stored context is a plain number: conditions compare it with
    numbers, and the templates' model reads it back as money."""

    def walk(value, dumped):
        if isinstance(value, Money):
            return float(value.amount)
        if isinstance(value, BaseModel) and isinstance(dumped, dict):
            return {k: walk(getattr(value, k, None), v) for k, v in dumped.items()}
        return dumped

    return {k: walk(getattr(model, k, None), v) if k != "fan" else v for k, v in data.items()}
