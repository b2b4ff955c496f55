"""The engine's clock: what "now" means for waits, offers and daily caps.

Workers and the process that feeds them events must agree on the time. The system
clock agrees by itself; the virtual clock, which a replay moves forward so that waits
of days complete in seconds, lives in Redis where every process reads it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from redis import Redis

VIRTUAL_CLOCK_KEY = "huntaze:clock"


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class VirtualClock:
    """Time that only moves when told to (``set``), shared through Redis."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def now(self) -> datetime:
        value = self.redis.get(VIRTUAL_CLOCK_KEY)
        if value is None:
            raise RuntimeError("the virtual clock has not been set")
        return datetime.fromtimestamp(float(value), UTC)

    def set(self, moment: datetime) -> None:
        self.redis.set(VIRTUAL_CLOCK_KEY, repr(moment.timestamp()))


class FixedClock:
    """A clock for tests: stays where it is put."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def set(self, moment: datetime) -> None:
        self.moment = moment
