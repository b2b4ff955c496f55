"""From events to queued executions: the in-memory index, validation, the event log, fan
upserts, duplicate events, trigger arguments, and bulk dispatch."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from itest_support import EVENTS, START, context, execution, fan
from sqlalchemy import event, func, select

from engine.creators import create_creator
from engine.dispatch import Dispatcher
from engine.exceptions import InvalidInput, NotFound
from engine.fans import fan_data
from engine.index import AutomationIndex
from engine.models import Event, Execution, Fan


def text(name: str, trigger: str = "new_subscriber", steps: str = '  add_tag tag: "t"') -> str:
    return f'automation "{name}" {{\n  when {trigger}\n{steps}\n}}\n'


def count(runtime, model) -> int:
    return runtime.db.run(lambda s: s.scalar(select(func.count()).select_from(model)))


def executions_of(runtime, event_id: str) -> set[str]:
    return set(
        runtime.db.run(
            lambda s: s.scalars(
                select(Execution.automation_id).where(Execution.event_id == event_id)
            )
        )
    )


# --- The index ------------------------------------------------------------------------------


@pytest.fixture
def mixed(runtime, creator, automations):
    """Automations of every status and trigger, for this creator and another."""
    other = runtime.db.run(lambda s: create_creator(s, "Other"))
    return {
        "active": automations.create(creator.id, text("A1"), status="active").id,
        "active2": automations.create(creator.id, text("A2"), status="active").id,
        "paused": automations.create(creator.id, text("P"), status="paused").id,
        "draft": automations.create(creator.id, text("D")).id,
        "purchase": automations.create(
            creator.id, text("B", "purchase_completed"), status="active"
        ).id,
        "other": automations.create(other.id, text("O"), status="active").id,
        "other_creator": other.id,
    }


def test_only_active_automations_of_the_creator_and_trigger_run(
    runtime, creator, dispatcher, mixed
):
    entries = dispatcher.index.lookup(creator.id, "new_subscriber")
    assert {e.automation_id for e in entries} == {mixed["active"], mixed["active2"]}
    assert all(e.version == 1 for e in entries)

    result = dispatcher.dispatch(context("new_subscriber", creator.id))
    assert executions_of(runtime, result.event_id) == {mixed["active"], mixed["active2"]}
    assert len(result.execution_ids) == 2

    result = dispatcher.dispatch(context("new_subscriber", mixed["other_creator"]))
    assert executions_of(runtime, result.event_id) == {mixed["other"]}


def test_dispatch_reads_no_automation_rows(runtime, creator, dispatcher, mixed):
    """The index answers: dispatching an event queries no automations (once it is warm)."""
    dispatcher.index.lookup(creator.id, "new_subscriber")
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(runtime.db.engine, "before_cursor_execute", record)
    try:
        for i in range(3):
            dispatcher.dispatch(context("new_subscriber", creator.id, f"fan-{i}"))
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", record)
    assert statements
    assert not [s for s in statements if "FROM automations" in s], statements


def test_a_change_is_seen_at_once_here_and_after_the_ttl_elsewhere(
    runtime, creator, automations, dispatcher, mixed
):
    assert dispatcher.index is automations.index  # the fixture shares it, even while empty
    elsewhere = AutomationIndex(runtime.db, runtime.redis, ttl=0.2)
    ids = lambda index: {e.automation_id for e in index.lookup(creator.id, "new_subscriber")}  # noqa: E731
    assert ids(dispatcher.index) == ids(elsewhere) == {mixed["active"], mixed["active2"]}

    automations.update(mixed["active"], status="paused")
    automations.update(mixed["draft"], status="active")
    new = automations.create(creator.id, text("N"), status="active").id
    automations.delete(mixed["active2"])
    expected = {mixed["draft"], new}
    assert ids(dispatcher.index) == expected  # the same process: at once
    time.sleep(0.25)
    assert ids(elsewhere) == expected  # another process: once the ttl has passed

    automations.update(new, source=text("N", steps='  add_tag tag: "u"'))
    time.sleep(0.25)
    # Every save makes a version, a change of status too: executions run the latest.
    versions = {e.automation_id: e.version for e in elsewhere.lookup(creator.id, "new_subscriber")}
    assert versions == {mixed["draft"]: 2, new: 2}
    result = dispatcher.dispatch(context("new_subscriber", creator.id))
    started = runtime.db.run(
        lambda s: dict(
            s.execute(
                select(Execution.automation_id, Execution.automation_version).where(
                    Execution.event_id == result.event_id
                )
            ).all()
        )
    )
    assert started == versions


# --- Validation -----------------------------------------------------------------------------


INVALID = [
    ("purchase_completed", {"amount": "lots", "item": "post"}, fan(), "data.event.amount"),
    ("purchase_completed", {"amount": 5}, fan(), "data.event.item"),
    ("message_received", None, fan(), "data.event"),
    ("new_subscriber", None, {"name": "Mia", "username": "mia"}, "data.fan.subscribed_at"),
    ("new_subscriber", None, fan(tags="vip"), "data.fan.tags"),
    ("new_subscriber", None, fan(subscribed_at="2026-10-01T12:00:00"), "data.fan.subscribed_at"),
    ("subscription_expiring", {"days_left": -1, "renewal_price": 5}, fan(),
     "data.event.days_left"),
]  # fmt: skip


def test_invalid_event_data_is_refused_naming_the_field(runtime, creator, dispatcher):
    for trigger, event_data, fan_fields, field in INVALID:
        ctx = context(trigger, creator.id, event=event_data, fan_fields=fan_fields)
        with pytest.raises(InvalidInput) as caught:
            dispatcher.dispatch(ctx)
        assert caught.value.field == field
        assert field.removeprefix("data.") in str(caught.value)
    assert (count(runtime, Event), count(runtime, Fan)) == (0, 0)


def test_an_event_time_without_a_time_zone_is_refused(runtime, creator, dispatcher):
    naive = context("new_subscriber", creator.id, timestamp=START.replace(tzinfo=None))
    with pytest.raises(InvalidInput) as caught:
        dispatcher.dispatch(naive)
    assert caught.value.field == "timestamp"
    assert count(runtime, Event) == 0


def test_python_values_in_an_event_are_logged_as_json(runtime, creator, dispatcher):
    """A caller in Python may hand over datetimes and Decimals, not only JSON."""
    ctx = context("purchase_completed", creator.id, fan_fields=fan(subscribed_at=START),
                  event={"amount": Decimal("9.99"), "item": "post"})  # fmt: skip
    result = dispatcher.dispatch(ctx)
    row = runtime.db.run(lambda s: s.get(Event, result.event_id))
    assert row.data["fan"]["subscribed_at"] == "2026-11-02T09:00:00Z"
    assert row.data["event"] == {"amount": "9.99", "item": "post"}


def test_unknown_trigger_and_unknown_creator(runtime, creator, dispatcher):
    with pytest.raises(InvalidInput, match="unknown trigger `new_subscribr`") as caught:
        dispatcher.dispatch(context("new_subscribr", creator.id))
    assert caught.value.field == "type"
    with pytest.raises(NotFound, match="no creator"):
        dispatcher.dispatch(context("new_subscriber", "no-such-creator"))
    assert (count(runtime, Event), count(runtime, Fan)) == (0, 0)


# --- The event log, duplicates and fans ----------------------------------------------------


def test_each_event_is_logged_as_received(runtime, creator, dispatcher):
    ctx = context("purchase_completed", creator.id, "fan-7", event={"amount": "9.99", "item": "x"},
                  event_id="evt-1", timestamp=START - timedelta(minutes=5))  # fmt: skip
    result = dispatcher.dispatch(ctx)
    row = runtime.db.run(lambda s: s.get(Event, result.event_id))
    assert (row.type, row.external_id, row.fan_external_id) == (
        "purchase_completed", "evt-1", "fan-7"
    )  # fmt: skip
    assert row.data == dict(ctx.data)
    assert row.occurred_at == START - timedelta(minutes=5)
    assert row.received_at == START  # the engine's clock
    assert not result.duplicate


def test_a_duplicate_event_id_creates_no_new_executions(runtime, creator, automations, dispatcher):
    automations.create(creator.id, text("A"), status="active")
    first = dispatcher.dispatch(context("new_subscriber", creator.id, event_id="evt-1"))
    again = dispatcher.dispatch(context("new_subscriber", creator.id, event_id="evt-1"))
    assert len(first.execution_ids) == 1
    assert (again.event_id, again.execution_ids, again.duplicate) == (first.event_id, (), True)
    # The same id from another creator is another event.
    other = runtime.db.run(lambda s: create_creator(s, "Other"))
    assert not dispatcher.dispatch(context("new_subscriber", other.id, event_id="evt-1")).duplicate
    assert (count(runtime, Event), count(runtime, Execution)) == (2, 1)
    # Without an id, every event is new.
    dispatcher.dispatch(context("new_subscriber", creator.id))
    dispatcher.dispatch(context("new_subscriber", creator.id))
    assert count(runtime, Execution) == 3


def test_a_duplicate_event_after_an_automation_is_added_still_runs_nothing(
    runtime, creator, automations, dispatcher
):
    dispatcher.dispatch(context("new_subscriber", creator.id, event_id="evt-1"))
    automations.create(creator.id, text("Late"), status="active")
    assert dispatcher.dispatch(context("new_subscriber", creator.id, event_id="evt-1")).duplicate
    assert count(runtime, Execution) == 0


def test_the_fan_is_upserted_tags_merged_and_unspecified_fields_kept(runtime, creator, dispatcher):
    first = fan(name="Mia", tags=["a", "b"], country="US", total_spent=12.5, message_count=3)
    dispatcher.dispatch(context("new_subscriber", creator.id, "fan-1", fan_fields=first))
    second = fan(name="Mia R.", tags=["c", "a"])  # no country, spend or message count
    dispatcher.dispatch(context("new_subscriber", creator.id, "fan-1", fan_fields=second))

    row = runtime.db.run(lambda s: s.scalar(select(Fan).where(Fan.external_id == "fan-1")))
    assert (row.name, row.username, row.tags) == ("Mia R.", "mia", ["a", "b", "c"])
    assert (row.country, row.total_spent, row.message_count) == ("US", Decimal("12.50"), 3)
    assert row.subscribed_at.isoformat() == "2026-10-01T12:00:00+00:00"
    assert count(runtime, Fan) == 1

    third = fan(total_spent="40", country=None)  # given, even as null, they change
    dispatcher.dispatch(context("new_subscriber", creator.id, "fan-1", fan_fields=third))
    row = runtime.db.run(lambda s: s.scalar(select(Fan).where(Fan.external_id == "fan-1")))
    assert (row.country, row.total_spent, row.tags) == (None, Decimal("40.00"), ["a", "b", "c"])


def test_the_same_fan_id_of_two_creators_is_two_fans(runtime, creator, dispatcher):
    other = runtime.db.run(lambda s: create_creator(s, "Other"))
    dispatcher.dispatch(context("new_subscriber", creator.id, "fan-1", fan_fields=fan(tags=["a"])))
    dispatcher.dispatch(context("new_subscriber", other.id, "fan-1", fan_fields=fan(tags=["b"])))
    tags = runtime.db.run(lambda s: sorted(map(tuple, s.scalars(select(Fan.tags)))))
    assert tags == [("a",), ("b",)]


def test_trigger_data_holds_the_event_and_the_fan_as_stored(
    runtime, creator, automations, dispatcher
):
    automations.create(creator.id, text("B", "purchase_completed"), status="active")
    dispatcher.dispatch(context("new_subscriber", creator.id, fan_fields=fan(tags=["old"])))
    ctx = context("purchase_completed", creator.id, event={"amount": "9.99", "item": "post"})
    (execution_id,) = dispatcher.dispatch(ctx).execution_ids
    data = execution(runtime, execution_id).trigger_data
    assert data["event"] == {"amount": 9.99, "item": "post"}
    assert data["fan"]["tags"] == ["old"] and data["fan"]["name"] == "Mia"
    assert execution(runtime, execution_id).trigger_type == "purchase_completed"


def test_trigger_data_holds_the_fan_as_stored_after_the_merge(
    runtime, creator, automations, dispatcher
):
    """The fan in an execution's context is the row the upsert left (fan_data of it):
    tags merged and sorted by code point, fields the event left out kept, money as a
    float, the subscription time in UTC with its microseconds."""
    automations.create(creator.id, text("B", "purchase_completed"), status="active")
    first = fan(tags=["b", "é"], country="US", total_spent="12.50", message_count=4,
                subscribed_at="2026-10-01T12:00:00.250000+00:00")  # fmt: skip
    dispatcher.dispatch(context("new_subscriber", creator.id, "fan-1", fan_fields=first))
    second = fan(name="Mia R.", tags=["B", "a", "b"], subscribed_at="2026-10-01T12:00:00.250000Z")
    ctx = context("purchase_completed", creator.id, "fan-1", fan_fields=second,
                  event={"amount": "9.99", "item": "post"})  # fmt: skip
    (execution_id,) = dispatcher.dispatch(ctx).execution_ids
    row = runtime.db.run(lambda s: s.scalar(select(Fan).where(Fan.external_id == "fan-1")))
    data = execution(runtime, execution_id).trigger_data
    assert data["fan"] == fan_data(row)
    assert data["fan"] == {
        "name": "Mia R.", "username": "mia", "total_spent": 12.5, "tags": ["B", "a", "b", "é"],
        "country": "US", "subscribed_at": "2026-10-01T12:00:00.250000+00:00", "message_count": 4,
    }  # fmt: skip
    assert data["event"] == {"amount": 9.99, "item": "post"}


def test_the_fan_row_is_touched_only_when_the_event_changes_it(runtime, creator, dispatcher):
    def updated_at():
        return runtime.db.run(
            lambda s: s.scalar(select(Fan.updated_at).where(Fan.external_id == "fan-1"))
        )

    fields = fan(tags=["a", "b"], country="US", total_spent="5")
    dispatcher.dispatch(context("new_subscriber", creator.id, "fan-1", fan_fields=fields))
    created = updated_at()
    same = fan(tags=["b"], total_spent="5.00")  # nothing new; country left out
    dispatcher.dispatch(context("new_subscriber", creator.id, "fan-1", fan_fields=same))
    assert updated_at() == created
    dispatcher.dispatch(context("new_subscriber", creator.id, "fan-1", fan_fields=fan(tags=["c"])))
    assert updated_at() > created


def test_the_postgresql_statement_is_short_enough_for_psycopg_to_cache():
    """psycopg converts the placeholders of a query of up to 4,096 characters once, of a
    longer one at every execution: a third of a dispatch's CPU time, measured."""
    from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH
    from sqlalchemy.dialects.postgresql import psycopg

    from engine.dispatch import _RECORD_PG

    compiled = str(_RECORD_PG.compile(dialect=psycopg.dialect()))
    assert len(compiled) <= MAX_CACHED_STATEMENT_LENGTH


# --- Trigger arguments ----------------------------------------------------------------------


def test_days_before_matches_only_that_many_days_left(runtime, creator, automations, dispatcher):
    three = automations.create(
        creator.id,
        text("Three", "subscription_expiring days_before: 3"),
        status="active",
    ).id
    every = automations.create(creator.id, text("Any", "subscription_expiring"), status="active").id
    ran = {}
    for days in (0, 2, 3, 4, 30):
        ctx = context("subscription_expiring", creator.id, f"fan-{days}",
                      event={"days_left": days, "renewal_price": 9})  # fmt: skip
        ran[days] = executions_of(runtime, dispatcher.dispatch(ctx).event_id)
    assert ran == {0: {every}, 2: {every}, 3: {three, every}, 4: {every}, 30: {every}}


def test_trigger_arguments_changed_by_an_edit_apply_to_the_next_event(
    runtime, creator, automations, dispatcher
):
    """The dispatcher validates an automation's trigger arguments once per version."""
    saved = automations.create(
        creator.id, text("Soon", "subscription_expiring days_before: 3"), status="active"
    )

    def runs(days: int) -> bool:
        ctx = context("subscription_expiring", creator.id, f"fan-{uuid.uuid4().hex[:6]}",
                      event={"days_left": days, "renewal_price": 9})  # fmt: skip
        return bool(dispatcher.dispatch(ctx).execution_ids)

    assert (runs(3), runs(5)) == (True, False)
    automations.update(saved.id, source=text("Soon", "subscription_expiring days_before: 5"))
    assert (runs(3), runs(5)) == (False, True)


# --- Bulk -----------------------------------------------------------------------------------


def test_dispatch_many_records_every_event_and_queues_the_executions(
    runtime, creator, automations, dispatcher, drain
):
    ids = {
        trigger: automations.create(creator.id, text(trigger, trigger), status="active").id
        for trigger in EVENTS
    }
    contexts = [
        context(trigger, creator.id, f"fan-{i}", event=data, event_id=f"e-{i}")
        for i, (trigger, data) in enumerate(EVENTS.items())
    ]
    contexts.append(context("new_subscriber", creator.id, "fan-0", event_id="e-0"))  # again

    results = Dispatcher(runtime, automations.index).dispatch_many(contexts)

    assert [len(r.execution_ids) for r in results] == [1, 1, 1, 1, 0]
    assert [r.duplicate for r in results] == [False] * 4 + [True]
    for result, trigger in zip(results, EVENTS, strict=False):
        assert executions_of(runtime, result.event_id) == {ids[trigger]}
    assert runtime.queue.count >= 1
    drain()
    statuses = runtime.db.run(lambda s: list(s.scalars(select(Execution.status))))
    assert statuses == ["success"] * 4
    assert runtime.queue.count == 0


def test_dispatch_many_refuses_the_batch_if_one_event_is_invalid(runtime, creator, dispatcher):
    contexts = [
        context("new_subscriber", creator.id, "fan-1"),
        context("purchase_completed", creator.id, "fan-2", event={"amount": "x", "item": "y"}),
    ]
    with pytest.raises(InvalidInput):
        dispatcher.dispatch_many(contexts)
    assert count(runtime, Event) == 0
