"""The outbox: messages for fans, written once, capped per fan per day.

Delivering them to a platform is a delivery plugin's job (docs/operations.md): it
reads ``pending`` rows and marks them ``sent``. Writing here is idempotent on the
step's key, so a retried step never queues the same message twice.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.clock import Clock
from engine.db import Database
from engine.exceptions import MessageCapReached
from engine.models import Creator, Fan, OutboxMessage


class SqlOutbox:
    """The ``Outbox`` service for one execution."""

    def __init__(
        self, db: Database, clock: Clock, default_cap: int, execution_id: str | None = None
    ) -> None:
        self.db = db
        self.clock = clock
        self.default_cap = default_cap
        self.execution_id = execution_id

    def send(self, *, creator_id: str, fan_id: str, text: str, idempotency_key: str) -> str:
        return self.db.run(lambda s: self._send(s, creator_id, fan_id, text, idempotency_key))

    def _send(self, session: Session, creator_id: str, fan_id: str, text: str, key: str) -> str:
        # Locking the fan serialises this fan's sends, so two executions cannot both
        # take the last message of the day, and two tries of one step (a lease that
        # expired under a slow worker) cannot both miss the key and both insert it.
        session.get(Fan, fan_id, with_for_update=True)
        existing = session.scalar(
            select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key)
        )
        if existing is not None:
            return existing
        now = self.clock.now()
        cap = session.scalar(
            select(Creator.messages_per_fan_per_day).where(Creator.id == creator_id)
        )
        cap = self.default_cap if cap is None else cap
        sent_today = session.scalar(
            select(func.count(OutboxMessage.id)).where(
                OutboxMessage.creator_id == creator_id,
                OutboxMessage.fan_id == fan_id,
                OutboxMessage.created_at > now - timedelta(days=1),
            )
        )
        if sent_today >= cap:
            raise MessageCapReached(
                f"daily message cap reached: {sent_today} of {cap} messages in 24 hours"
            )
        message = OutboxMessage(
            creator_id=creator_id,
            fan_id=fan_id,
            execution_id=self.execution_id,
            text=text,
            idempotency_key=key,
            created_at=now,
        )
        session.add(message)
        session.flush()
        return message.id
