"""Which active automations listen to which (creator, trigger): kept in memory.

The dispatcher looks an event's automations up here — one dict lookup — instead of
querying or scanning automations per event. Every change to automations bumps a
generation counter in Redis; a process rebuilds its index when it sees the counter
move (checked at most every ``ttl`` seconds, and at once after a change made in this
process).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from redis import Redis
from sqlalchemy import select

from engine.db import Database
from engine.models import Automation, AutomationStatus

GENERATION_KEY = "huntaze:automations:generation"


@dataclass(frozen=True)
class IndexEntry:
    automation_id: str
    version: int
    trigger_args: dict[str, Any]


class AutomationIndex:
    def __init__(self, db: Database, redis: Redis, ttl: float = 1.0) -> None:
        self.db = db
        self.redis = redis
        self.ttl = ttl
        self._entries: dict[tuple[str, str], tuple[IndexEntry, ...]] = {}
        self._generation: bytes | None = None
        self._checked = 0.0
        self._stale = True
        self._lock = threading.Lock()

    def lookup(self, creator_id: str, trigger: str) -> tuple[IndexEntry, ...]:
        self._refresh_if_needed()
        return self._entries.get((creator_id, trigger), ())

    def changed(self) -> None:
        """Tell every process (this one at once) that automations changed."""
        self.redis.incr(GENERATION_KEY)
        self._stale = True

    def __len__(self) -> int:
        self._refresh_if_needed()
        return sum(len(entries) for entries in self._entries.values())

    def _refresh_if_needed(self) -> None:
        now = time.monotonic()
        if not self._stale and now - self._checked < self.ttl:
            return
        with self._lock:
            generation = self.redis.get(GENERATION_KEY)
            self._checked = now
            if self._stale or generation != self._generation:
                self._entries = self._load()
                self._generation = generation
                self._stale = False

    def _load(self) -> dict[tuple[str, str], tuple[IndexEntry, ...]]:
        query = select(
            Automation.id,
            Automation.creator_id,
            Automation.trigger,
            Automation.version,
            Automation.graph["trigger"]["args"],
        ).where(Automation.status == AutomationStatus.ACTIVE)
        grouped: dict[tuple[str, str], list[IndexEntry]] = {}
        with self.db.session() as session:
            for automation_id, creator_id, trigger, version, args in session.execute(query):
                entry = IndexEntry(automation_id, version, args or {})
                grouped.setdefault((creator_id, trigger), []).append(entry)
        return {key: tuple(entries) for key, entries in grouped.items()}
