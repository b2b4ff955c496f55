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
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dsl.conditions import literal_from_json
from dsl.types import literal_value
from dsl.values import Money
from engine.events import TriggerContext
from engine.exceptions import InvalidInput, NotFound
from engine.fans import fan_data, upsert_fan
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
        if entries is None:
            entries = self.index.lookup(context.creator_id, context.type)
        result = self._transaction(lambda s: self._record(s, context, model, entries))
        self.enqueue(result.execution_ids)
        return result

    def dispatch_many(self, contexts: Sequence[TriggerContext]) -> list[Dispatched]:
        """Several events, one transaction and pipelined enqueues: for bulk imports."""
        prepared = [
            (c, self.validate(c), self.index.lookup(c.creator_id, c.type)) for c in contexts
        ]
        results = self._transaction(lambda s: [self._record(s, c, m, e) for c, m, e in prepared])
        self.enqueue([i for r in results for i in r.execution_ids])
        return results

    def enqueue(self, execution_ids: Sequence[str]) -> None:
        enqueue_batches(self.runtime, execution_ids)

    def _transaction(self, work: Callable[[Session], T]) -> T:
        """``db.run(work)``, done again when a unique key refuses a row because another
        dispatcher inserted the same event, or the same new fan, at the same moment:
        the next try sees their row (a duplicate event, a fan to update)."""
        attempt = 1
        while True:
            try:
                return self.runtime.db.run(work)
            except IntegrityError:
                if attempt >= RACE_ATTEMPTS:
                    raise
                attempt += 1
                log.info("a concurrent dispatch inserted the same row; trying again")

    # --- In the transaction ------------------------------------------------------------

    def _record(
        self,
        session: Session,
        context: TriggerContext,
        model: BaseModel,
        entries: tuple[IndexEntry, ...],
    ) -> Dispatched:
        if session.get(Creator, context.creator_id) is None:
            raise NotFound(f"no creator `{context.creator_id}`")
        event_id, duplicate = self._log_event(session, context)
        if duplicate:
            # Its first delivery created its executions in the transaction that logged
            # it: a resent event runs nothing, not even automations created since.
            return Dispatched(event_id, (), True)
        fan = upsert_fan(session, context.creator_id, context.fan_id, model.fan)
        data = {**model.model_dump(mode="json"), "fan": fan_data(fan)}
        data = _plain_money(model, data)
        trigger = self.runtime.plugins.triggers[context.type]
        rows = []
        for entry in entries:
            if not trigger.matches(_trigger_config(trigger, entry), model):
                continue
            rows.append(
                {
                    "id": new_id(),
                    "automation_id": entry.automation_id,
                    "automation_version": entry.version,
                    "creator_id": context.creator_id,
                    "fan_id": fan.id,
                    "event_id": event_id,
                    "trigger_type": context.type,
                    "trigger_data": data,
                    "status": ExecutionStatus.PENDING,
                    "steps_executed": 0,
                    "attempts": 0,
                    "executed_at": self.runtime.clock.now(),
                }
            )
        created = self._insert_executions(session, rows)
        return Dispatched(event_id, tuple(created), duplicate)

    def _log_event(self, session: Session, context: TriggerContext) -> tuple[str, bool]:
        if context.event_id is not None:
            existing = session.scalar(
                select(Event.id).where(
                    Event.creator_id == context.creator_id,
                    Event.external_id == context.event_id,
                )
            )
            if existing is not None:
                return existing, True
        event = Event(
            creator_id=context.creator_id,
            external_id=context.event_id,
            type=context.type,
            fan_external_id=context.fan_id,
            # As received; values a Python caller gave (datetime, Decimal) as JSON.
            data=to_jsonable_python(dict(context.data)),
            occurred_at=context.timestamp,
            received_at=self.runtime.clock.now(),
        )
        session.add(event)
        session.flush()
        return event.id, False

    def _insert_executions(self, session: Session, rows: list[dict]) -> list[str]:
        if not rows:
            return []
        insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
        statement = (
            insert(Execution)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["automation_id", "fan_id", "event_id"])
            .returning(Execution.id)
        )
        return list(session.scalars(statement))


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
