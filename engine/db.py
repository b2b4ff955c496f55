"""Connections, sessions and retries, the same on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from engine.settings import normalise_database_url

log = logging.getLogger(__name__)
T = TypeVar("T")


def make_engine(url: str) -> Engine:
    url = normalise_database_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # No ping at each checkout (a round trip per transaction): a connection the server
    # dropped fails its first statement, which Database.run tries again on a new one.
    return create_engine(url, pool_size=10, max_overflow=20)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers run beside the one writer; the engine runs workers as processes.
    dbapi_connection.isolation_level = None  # transactions are begun in _sqlite_begin
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # With WAL, NORMAL loses no committed transaction when the process crashes (only on
    # power loss) and saves an fsync per commit: about a third of a replay's time.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection) -> None:
    # Take the write lock at the start: a transaction that reads, then writes, could
    # otherwise fail with "database is locked" instead of waiting its turn.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """One engine and its session factory."""

    def __init__(self, url: str, attempts: int = 3) -> None:
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.attempts = attempts
        # The same pool, its connections in autocommit mode while they are out (see
        # run_statement); SQLite has no use for it.
        self._autocommit = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT")
            if self.dialect == "postgresql"
            else self.engine
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed at the end, rolled back on error."""
        with self.sessions.begin() as session:
            yield session

    def run(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in a transaction, retried with exponential backoff when the
        database fails for a transient reason (at most ``attempts`` tries)."""
        return retry_transient(lambda: self._once(work), self.attempts)

    def _once(self, work: Callable[[Session], T]) -> T:
        with self.session() as session:
            return work(session)

    def run_core(self, work: Callable[[Connection], T]) -> T:
        """``run`` on a bare connection (SQLAlchemy Core), for the hot paths that use no
        ORM: the same transaction and retries without a session's bookkeeping."""
        return retry_transient(lambda: self._once_core(work), self.attempts)

    def _once_core(self, work: Callable[[Connection], T]) -> T:
        with self.engine.begin() as connection:
            return work(connection)

    def run_statement(self, work: Callable[[Connection], T]) -> T:
        """``run_core`` for work that writes with a single statement, which is atomic by
        itself: on PostgreSQL it runs in autocommit mode, the statement committed on its
        own — no ``BEGIN`` and ``COMMIT`` round trips, the same flushed commit. ``work``
        may read after it, not write again. Elsewhere, ``run_core``."""
        if self._autocommit is self.engine:
            return self.run_core(work)
        return retry_transient(lambda: self._once_statement(work), self.attempts)

    def _once_statement(self, work: Callable[[Connection], T]) -> T:
        with self._autocommit.connect() as connection:
            return work(connection)

    def dispose(self) -> None:
        self.engine.dispose()


def is_transient(exc: BaseException) -> bool:
    """Lost connections, serialisation failures, deadlocks, a busy SQLite file."""
    if isinstance(exc, OperationalError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        code = getattr(exc.orig, "sqlstate", None)
        return code in ("40001", "40P01")
    return False


def retry_transient(work: Callable[[], T], attempts: int = 3, base_delay: float = 0.05) -> T:
    attempt = 1
    while True:
        try:
            return work()
        except DBAPIError as exc:
            if attempt >= attempts or not is_transient(exc):
                raise
            log.warning("database error (attempt %d of %d), retrying: %s", attempt, attempts, exc)
            time.sleep(base_delay * 2 ** (attempt - 1))
            attempt += 1
