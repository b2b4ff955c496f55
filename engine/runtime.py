"""Everything a process of the engine holds once: settings, database, Redis, queue,
clock, plugins. RQ job functions take ids and find the rest here."""

from __future__ import annotations

from dataclasses import dataclass, field

from redis import Redis
from rq import Queue

from engine.catalogue import LoadedCatalogue, load_catalogue
from engine.clock import Clock, SystemClock, VirtualClock
from engine.db import Database
from engine.queue import EmbeddedRedis, connect, make_queue
from engine.settings import Settings, get_settings


@dataclass
class Runtime:
    settings: Settings
    db: Database
    redis: Redis
    queue: Queue
    clock: Clock
    plugins: LoadedCatalogue
    embedded: EmbeddedRedis | None = field(default=None, repr=False)

    @classmethod
    def start(cls, settings: Settings | None = None, clock: Clock | None = None) -> Runtime:
        settings = settings or get_settings()
        embedded = EmbeddedRedis(settings) if settings.embedded_redis else None
        redis = connect(embedded.url if embedded else settings.redis_url)
        if clock is None:
            clock = VirtualClock(redis) if settings.clock == "virtual" else SystemClock()
        return cls(
            settings=settings,
            db=Database(settings.resolved_database_url(), attempts=settings.db_attempts),
            redis=redis,
            queue=make_queue(redis, settings),
            clock=clock,
            plugins=load_catalogue(),
            embedded=embedded,
        )

    @property
    def redis_url(self) -> str:
        """The URL a worker process started by this one connects to."""
        return self.embedded.url if self.embedded else self.settings.redis_url

    def close(self) -> None:
        self.db.dispose()
        self.redis.close()
        if self.embedded:
            self.embedded.close()


_current: Runtime | None = None


def install(runtime: Runtime | None) -> None:
    """Make ``runtime`` the one job functions use in this process (tests, CLI)."""
    global _current
    _current = runtime


def current() -> Runtime:
    """This process's runtime, started from the environment on first use (workers)."""
    global _current
    if _current is None:
        _current = Runtime.start()
    return _current
