"""From an event to queued executions.

For each event the dispatcher, in one transaction: logs the event, upserts the fan,
finds the creator's active automations for the trigger in the in-memory index, and
creates one execution per automation that matches — at most one per automation, fan
and event, which the database enforces, so two dispatchers racing on the same event
create each execution once. After the commit it queues the executions in batches (one
RQ job runs many executions, each independently).

On PostgreSQL that transaction is one statement (``_RECORD_PG``: the event, the fan and
the executions as data-modifying CTEs), and ``dispatch`` sends it on its own in
autocommit mode: one round trip and one flushed commit an event, where the statements
one by one took six (``BEGIN``, the event, the fan read and written, the executions,
``COMMIT``). SQLite runs the same steps as separate statements.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python
from sqlalchemy import bindparam, insert, select, text
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
from engine.models import Creator, Event, Execution, ExecutionStatus, new_id, utcnow
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
        self._postgresql = runtime.db.dialect == "postgresql"
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
            lambda c: self._record(c, context, model, matched),
            [context.creator_id],
            # One statement on PostgreSQL: it commits by itself, without BEGIN and COMMIT.
            single=self._postgresql,
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

    def _transaction(
        self, work: Callable[[Connection], T], creators: list[str], single: bool = False
    ) -> T:
        """``db.run_core(work)``, done again when a unique key refuses a row because another
        dispatcher inserted the same event, or the same new fan, at the same moment:
        the next try sees their row (a duplicate event, a fan to update). An event of an
        unknown creator is refused by the events' foreign key: that is checked only
        then, not before every event. ``single``: ``work`` writes with one statement
        (``Database.run_statement``)."""
        run = self.runtime.db.run_statement if single else self.runtime.db.run_core
        attempt = 1
        while True:
            try:
                return run(work)
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
        if self._postgresql:
            return self._record_pg(connection, context, model, matched)
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

    def _record_pg(
        self,
        connection: Connection,
        context: TriggerContext,
        model: BaseModel,
        matched: list[IndexEntry],
    ) -> Dispatched:
        """``_record`` in one statement: the same rows, the fan merged as ``upsert_fan``
        merges it, the executions' context built from the fan as stored."""
        now = self.runtime.clock.now()
        fields: FanFields = model.fan
        given = fields.model_fields_set  # a field the event left out keeps its value
        event_id = new_id()
        ids = [new_id() for _ in matched]
        wall = utcnow()
        row = connection.execute(
            _RECORD_PG,
            {
                "event": event_id,
                "creator": context.creator_id,
                "external": context.event_id,
                "type": context.type,
                "fan_external": context.fan_id,
                # As received; values a Python caller gave (datetime, Decimal) as JSON.
                "data": json.dumps(to_jsonable_python(dict(context.data))),
                "occurred": context.timestamp,
                "now": now,
                "wall": wall,
                "fan": new_id(),
                **{name: getattr(fields, name) for name in _FAN_FIELDS},
                **{f"set_{name}": name in given for name in _FAN_FIELDS},
                "total_spent": fields.total_spent.amount,
                "set_total_spent": "total_spent" in given,
                "tags": json.dumps(sorted(set(fields.tags))),
                "context": json.dumps(_plain_money(model, model.model_dump(mode="json"))),
                "status": ExecutionStatus.PENDING.value,
                "ids": ids,
                "automations": [entry.automation_id for entry in matched],
                "versions": [entry.version for entry in matched],
            },
        ).one()
        if row.event_id is None:
            # Received before: its first delivery created its executions (see _record).
            existing = connection.scalar(
                _EVENT, {"creator": context.creator_id, "external": context.event_id}
            )
            return Dispatched(existing, (), True)
        created = set(row.created)
        return Dispatched(event_id, tuple(i for i in ids if i in created))

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


# The fan's fields an event may give (besides total_spent and tags), as in upsert_fan.
_FAN_FIELDS = ("name", "username", "country", "subscribed_at", "message_count")


def _set(column: str) -> str:
    """The fan's column after the event: the event's value if it gave one."""
    return f"CASE WHEN :set_{column} THEN excluded.{column} ELSE f.{column} END"


_CHANGED = ", ".join(_set(c) for c in (*_FAN_FIELDS, "total_spent"))
_BEFORE = ", ".join(f"f.{c}" for c in (*_FAN_FIELDS, "total_spent"))

# _record on PostgreSQL, one statement. The event inserted (nothing if the sender's id
# for it is known: a duplicate); then, only for a new event, the fan upserted as
# upsert_fan does it (every field the event gives takes its value, tags are merged and
# sorted, updated_at moves only if something changed); then an execution per matching
# automation, its context holding the fan as stored (fan_data in SQL: total_spent as a
# float, subscribed_at in isoformat's UTC form). Unique keys make a racing dispatcher's
# rows conflicts, not errors; the foreign keys are checked at the end of the statement,
# when the event and the fan are there. ``p``: the parameters, each typed once (psycopg
# sends text untyped, datetimes and decimals typed). The flags saying which fields the
# event gives go to the upsert's SET (which cannot read a CTE) as booleans, typed too.
# Sent with its spaces collapsed: psycopg converts a query's placeholders once if it has
# at most 4,096 characters, else at every execution (a test keeps it under).
_RECORD_PG = text(
    " ".join(
        f"""
WITH p AS (
    SELECT CAST(:event AS varchar) AS event, CAST(:creator AS varchar) AS creator,
           CAST(:external AS varchar) AS external, CAST(:type AS varchar) AS type,
           CAST(:fan_external AS varchar) AS fan_external, CAST(:data AS jsonb) AS data,
           :occurred AS occurred, :now AS now, :wall AS wall, CAST(:fan AS varchar) AS fan,
           CAST(:name AS varchar) AS name, CAST(:username AS varchar) AS username,
           CAST(:country AS varchar) AS country, :subscribed_at AS subscribed_at,
           CAST(:message_count AS integer) AS message_count, :total_spent AS total_spent,
           CAST(:tags AS jsonb) AS tags, CAST(:context AS jsonb) AS context,
           CAST(:status AS varchar) AS status
), ev AS (
    INSERT INTO events (id, creator_id, external_id, type, fan_external_id, data,
                        occurred_at, received_at)
    SELECT event, creator, external, type, fan_external, data, occurred, now FROM p
    ON CONFLICT (creator_id, external_id) DO NOTHING
    RETURNING id
), fan AS (
    INSERT INTO fans AS f (id, creator_id, external_id, name, username, tags, total_spent,
                           country, message_count, subscribed_at, created_at, updated_at)
    SELECT fan, creator, fan_external, name, username, tags, total_spent, country,
           message_count, subscribed_at, wall, wall
    FROM p, ev
    ON CONFLICT (creator_id, external_id) DO UPDATE SET
        name = {_set("name")},
        username = {_set("username")},
        total_spent = {_set("total_spent")},
        country = {_set("country")},
        subscribed_at = {_set("subscribed_at")},
        message_count = {_set("message_count")},
        tags = (
            SELECT coalesce(jsonb_agg(tag ORDER BY tag COLLATE "C"), '[]'::jsonb)
            FROM (SELECT jsonb_array_elements_text(coalesce(f.tags, '[]'::jsonb))
                  UNION SELECT jsonb_array_elements_text(excluded.tags)) AS merged (tag)
        ),
        updated_at = CASE
            WHEN ({_CHANGED}) IS DISTINCT FROM ({_BEFORE})
              OR NOT coalesce(f.tags, '[]'::jsonb) @> excluded.tags
            THEN excluded.updated_at ELSE f.updated_at END
    RETURNING f.id, f.name, f.username, f.total_spent, f.tags, f.country, f.subscribed_at,
              f.message_count
), ex AS (
    INSERT INTO automation_executions (id, automation_id, automation_version, creator_id,
                                       fan_id, event_id, trigger_type, trigger_data, status,
                                       steps_executed, attempts, executed_at)
    SELECT run.id, run.automation_id, run.version, p.creator, fan.id, ev.id, p.type,
           p.context || jsonb_build_object('fan', jsonb_build_object(
               'name', fan.name,
               'username', fan.username,
               'total_spent', CAST(fan.total_spent AS double precision),
               'tags', coalesce(fan.tags, '[]'::jsonb),
               'country', fan.country,
               'subscribed_at',
                   to_char(fan.subscribed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
                   || CASE WHEN date_trunc('second', fan.subscribed_at) = fan.subscribed_at
                      THEN '' ELSE to_char(fan.subscribed_at AT TIME ZONE 'UTC', '.US') END
                   || '+00:00',
               'message_count', fan.message_count)),
           p.status, 0, 0, p.now
    FROM p, ev, fan,
         unnest(CAST(:ids AS varchar[]), CAST(:automations AS varchar[]),
                CAST(:versions AS integer[])) AS run (id, automation_id, version)
    ON CONFLICT (automation_id, fan_id, event_id) DO NOTHING
    RETURNING id
)
SELECT (SELECT id FROM ev) AS event_id, ARRAY(SELECT id FROM ex) AS created
""".split()
    )
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
