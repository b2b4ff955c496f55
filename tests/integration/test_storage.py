"""Storage: migrations on empty databases, the models on both databases, and the retry of
transient database errors — provoked for real (a locked SQLite file, a PostgreSQL lock
timeout, a PostgreSQL connection killed mid-transaction), never mocked."""

from __future__ import annotations

import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, func, inspect, select, text
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError

from engine.db import Database, is_transient, retry_transient
from engine.migrate import alembic_config, current, target_metadata, upgrade
from engine.models import (
    Automation,
    Creator,
    Event,
    Execution,
    Fan,
    OutboxMessage,
    StepRun,
)

TABLES = {
    "alembic_version",
    "api_tokens",
    "automation_executions",
    "automation_versions",
    "automations",
    "creators",
    "events",
    "execution_steps",
    "fans",
    "outbox",
}
MOMENT = datetime(2026, 11, 2, 9, 30, 15, 123456, tzinfo=UTC)


# --- Migrations -----------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    """An empty database: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    # The session's schema URL (this skips when PostgreSQL is unreachable), minus the schema.
    server = request.getfixturevalue("postgres_schema").split("?")[0]
    schema = f"huntaze_empty_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield f"{server}?options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def test_migrations_apply_on_an_empty_database_and_reach_head(empty_url):
    db = Database(empty_url)
    try:
        assert set(inspect(db.engine).get_table_names()) == set()
        upgrade(db.engine)
        heads = set(ScriptDirectory.from_config(alembic_config(db.engine)).get_heads())
        assert heads and current(db.engine) == heads
        tables = set(inspect(db.engine).get_table_names())
        # The engine's tables, and those of any installed plugin that brings its own.
        assert tables >= TABLES
        assert tables == {t for md in target_metadata() for t in md.tables} | {"alembic_version"}
        upgrade(db.engine)  # a second upgrade has nothing to do
        assert current(db.engine) == heads
    finally:
        db.dispose()


def test_migrated_schema_matches_the_models(empty_url):
    """Autogenerate finds nothing to do: the migrations build what the models declare."""
    db = Database(empty_url)
    try:
        upgrade(db.engine)
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, target_metadata()) == []
    finally:
        db.dispose()


# --- Models round trip ----------------------------------------------------------------------


@pytest.fixture
def db(database_url):
    database = Database(database_url)
    yield database
    database.dispose()


def _rows(session) -> dict:
    creator = Creator(name="Ava", messages_per_fan_per_day=3, created_at=MOMENT)
    session.add(creator)
    session.flush()
    graph = {"name": "A", "nodes": {"s1": {"id": "s1", "kind": "action", "args": {"x": [1]}}}}
    automation = Automation(
        creator_id=creator.id, name="A", source='automation "A" {}', graph=graph,
        trigger="new_subscriber", status="active",
    )  # fmt: skip
    fan = Fan(
        creator_id=creator.id, external_id="fan-1", name="Zoë 🌸", tags=["vip", "b"],
        total_spent=Decimal("1234.56"), country="FR", subscribed_at=MOMENT,
    )  # fmt: skip
    log = Event(
        creator_id=creator.id, external_id="e-1", type="new_subscriber",
        fan_external_id="fan-1", data={"fan": {"name": "Zoë 🌸"}}, occurred_at=MOMENT,
    )  # fmt: skip
    session.add_all([automation, fan, log])
    session.flush()
    execution = Execution(
        automation_id=automation.id, automation_version=automation.version,
        creator_id=creator.id, fan_id=fan.id, event_id=log.id, trigger_type="new_subscriber",
        trigger_data={"fan": {"total_spent": 9.99}}, resume_at=MOMENT + timedelta(days=2),
    )  # fmt: skip
    session.add(execution)
    session.flush()
    session.add_all(
        [
            StepRun(
                execution_id=execution.id,
                node_id="s1",
                kind="action",
                name="add_tag",
                output={"changed": True},
            ),
            OutboxMessage(
                creator_id=creator.id,
                fan_id=fan.id,
                execution_id=execution.id,
                text="Hi 👋",
                idempotency_key=f"{execution.id}:s1",
            ),
        ]
    )
    return {"creator": creator.id, "automation": automation.id, "fan": fan.id,
            "execution": execution.id}  # fmt: skip


def test_models_round_trip(db):
    ids = db.run(_rows)
    with db.session() as session:
        creator = session.get(Creator, ids["creator"])
        assert (creator.messages_per_fan_per_day, creator.created_at) == (3, MOMENT)
        automation = session.get(Automation, ids["automation"])
        assert automation.graph["nodes"]["s1"]["args"] == {"x": [1]}
        assert (automation.version, automation.status) == (1, "active")
        assert automation.created_at.tzinfo is not None
        fan = session.get(Fan, ids["fan"])
        assert (fan.name, fan.tags, fan.total_spent) == ("Zoë 🌸", ["vip", "b"], Decimal("1234.56"))
        assert fan.subscribed_at == MOMENT and fan.subscribed_at.utcoffset() == timedelta(0)
        execution = session.get(Execution, ids["execution"])
        assert execution.trigger_data == {"fan": {"total_spent": 9.99}}
        assert (execution.status, execution.steps_executed, execution.attempts) == ("pending", 0, 0)
        assert execution.resume_at == MOMENT + timedelta(days=2)
        step = session.scalar(select(StepRun).where(StepRun.execution_id == execution.id))
        assert (step.status, step.output, step.error) == ("running", {"changed": True}, None)
        message = session.scalar(select(OutboxMessage))
        assert (message.text, message.status) == ("Hi 👋", "pending")


def test_an_automation_update_bumps_its_version(db):
    ids = db.run(_rows)

    def rename(session):
        session.get(Automation, ids["automation"]).name = "B"

    db.run(rename)
    with db.session() as session:
        assert session.get(Automation, ids["automation"]).version == 2


def test_naive_datetimes_are_refused(db):
    def naive(session):
        session.add(Creator(name="X", created_at=datetime(2026, 1, 1)))
        session.flush()

    with pytest.raises(StatementError, match="naive datetime"):
        db.run(naive)
    with db.session() as session:
        assert session.scalar(select(func.count(Creator.id))) == 0


def test_outbox_idempotency_key_is_unique(db):
    ids = db.run(_rows)

    def again(session):
        session.add(OutboxMessage(creator_id=ids["creator"], fan_id=ids["fan"], text="again",
                                  idempotency_key=f"{ids['execution']}:s1"))  # fmt: skip
        session.flush()

    with pytest.raises(IntegrityError):
        db.run(again)


def test_deleting_a_creator_cascades(db):
    ids = db.run(_rows)
    db.run(lambda s: s.delete(s.get(Creator, ids["creator"])))
    with db.session() as session:
        for model in (Automation, Fan, Event, Execution, StepRun, OutboxMessage):
            assert session.scalar(select(func.count()).select_from(model)) == 0, model


# --- Transient errors -----------------------------------------------------------------------


class Counted:
    """Database work that counts its attempts."""

    def __init__(self, work) -> None:
        self.work = work
        self.calls = 0

    def __call__(self, session):
        self.calls += 1
        return self.work(session, self.calls)


def _count_creators(session, _attempt):
    return session.scalar(select(func.count(Creator.id)))


@pytest.fixture
def impatient_sqlite(tmp_path):
    """A SQLite database whose connections wait 1 ms for a lock instead of 30 s, and a
    second connection, outside the engine, that can hold the write lock."""
    path = tmp_path / "locked.sqlite3"
    db = Database(f"sqlite:///{path}")
    upgrade(db.engine)

    @event.listens_for(db.engine, "connect")
    def _impatient(dbapi_connection, _record):
        dbapi_connection.execute("PRAGMA busy_timeout=1")

    db.engine.dispose()  # new connections get the short timeout
    holder = sqlite3.connect(path, isolation_level=None, timeout=0)
    yield db, holder
    holder.close()
    db.dispose()


def test_sqlite_locked_file_is_retried_three_times_with_backoff_then_raises(impatient_sqlite):
    db, holder = impatient_sqlite
    holder.execute("BEGIN IMMEDIATE")  # holds the write lock
    work = Counted(_count_creators)
    started = time.perf_counter()
    with pytest.raises(OperationalError, match="locked") as caught:
        db.run(work)
    elapsed = time.perf_counter() - started
    assert is_transient(caught.value)
    assert work.calls == 3
    assert elapsed >= 0.05 + 0.10  # the backoff: 50 ms, then 100 ms


def test_sqlite_lock_released_between_attempts_succeeds(impatient_sqlite):
    db, holder = impatient_sqlite
    holder.execute("BEGIN IMMEDIATE")

    def work(session, attempt):
        if attempt == 2:
            holder.execute("ROLLBACK")
        return session.scalar(select(func.count(Creator.id)))

    counted = Counted(work)
    assert db.run(counted) == 0
    assert counted.calls == 2


def test_permanent_errors_are_not_retried(db):
    ids = db.run(_rows)

    def duplicate(session, _attempt):
        session.add(Fan(creator_id=ids["creator"], external_id="fan-1", name="x", tags=[]))
        session.flush()

    work = Counted(duplicate)
    with pytest.raises(IntegrityError):
        db.run(work)
    assert work.calls == 1


def test_retry_transient_gives_up_after_the_attempts_it_is_given(tmp_path):
    """An OperationalError from a real failed connection: a file that cannot be opened."""
    missing = create_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.sqlite3'}")
    calls = []

    def connect():
        calls.append(1)
        with missing.connect():
            pass

    with pytest.raises(OperationalError):
        retry_transient(connect, attempts=2, base_delay=0.001)
    assert len(calls) == 2
    missing.dispose()


@pytest.fixture
def postgres_db(postgres_schema):
    db = Database(postgres_schema)
    admin = create_engine(postgres_schema)
    yield db, admin
    admin.dispose()
    db.dispose()


def test_postgres_lock_timeout_is_retried_three_times_then_raises(postgres_db):
    db, admin = postgres_db
    db.run(lambda s: s.add(Creator(id="locked", name="L")))

    def update(session, _attempt):
        session.execute(text("SET LOCAL lock_timeout = '20ms'"))
        session.get(Creator, "locked", with_for_update=True)

    work = Counted(update)
    try:
        with admin.begin() as holder:
            holder.execute(text("SELECT * FROM creators WHERE id = 'locked' FOR UPDATE"))
            with pytest.raises(OperationalError, match="lock") as caught:
                db.run(work)
    finally:
        db.run(lambda s: s.delete(s.get(Creator, "locked")))
    assert getattr(caught.value.orig, "sqlstate", None) == "55P03"
    assert work.calls == 3


def test_postgres_killed_connection_is_retried_on_a_new_one(postgres_db):
    db, admin = postgres_db

    def work(session, attempt):
        pid = session.scalar(text("SELECT pg_backend_pid()"))
        if attempt == 1:
            with admin.begin() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        return session.scalar(text("SELECT 1")), pid

    counted = Counted(work)
    assert db.run(counted)[0] == 1
    assert counted.calls == 2
