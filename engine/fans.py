"""Fans as the engine keeps them: upserted from events, changed by actions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db import Database
from engine.models import Fan
from engine.plugin_api import FanFields


def upsert_fan(session: Session, creator_id: str, external_id: str, fields: FanFields) -> Fan:
    """The fan with what the event says about them. Tags are merged (tags that
    automations added stay); every other field the event gives takes its value."""
    fan = session.scalars(
        select(Fan).where(Fan.creator_id == creator_id, Fan.external_id == external_id)
        .with_for_update()
    ).first()  # fmt: skip
    if fan is None:
        fan = Fan(creator_id=creator_id, external_id=external_id, tags=[])
        session.add(fan)
    given = fields.model_fields_set  # a field the event left out keeps its value
    for name in ("name", "username", "country", "subscribed_at", "message_count"):
        if name in given or fan.id is None:
            setattr(fan, name, getattr(fields, name))
    if "total_spent" in given or fan.id is None:
        fan.total_spent = fields.total_spent.amount
    fan.tags = sorted(set(fan.tags or ()) | set(fields.tags))
    session.flush()
    return fan


def fan_data(fan: Fan) -> dict[str, Any]:
    """The ``fan`` part of a trigger's context, as JSON."""
    return {
        "name": fan.name,
        "username": fan.username,
        "total_spent": float(fan.total_spent),
        "tags": list(fan.tags or ()),
        "country": fan.country,
        "subscribed_at": _iso(fan.subscribed_at),
        "message_count": fan.message_count,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


class SqlFanStore:
    """The ``FanStore`` service: tag changes, each in its own short transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add_tag(self, creator_id: str, fan_id: str, tag: str) -> bool:
        return self.db.run(lambda s: _change_tags(s, fan_id, tag, add=True))

    def remove_tag(self, creator_id: str, fan_id: str, tag: str) -> bool:
        return self.db.run(lambda s: _change_tags(s, fan_id, tag, add=False))


def _change_tags(session: Session, fan_id: str, tag: str, add: bool) -> bool:
    fan = session.get(Fan, fan_id, with_for_update=True)
    tags = list(fan.tags or ())
    if (tag in tags) == add:
        return False
    fan.tags = sorted([*tags, tag]) if add else [t for t in tags if t != tag]
    return True
