"""Fans as the engine keeps them: upserted from events, changed by actions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from engine.models import Creator, Fan, new_id
from engine.outbox import day_start, sent_today
from engine.plugin_api import FanFields

FANS = Fan.__table__
CREATORS = Creator.__table__


_FIELDS = ("name", "username", "country", "subscribed_at", "message_count")
_FAN = (
    select(FANS)
    .where(FANS.c.creator_id == bindparam("creator"), FANS.c.external_id == bindparam("external"))
    .with_for_update()
)


def upsert_fan(
    session: Connection | Session, creator_id: str, external_id: str, fields: FanFields
) -> tuple[str, dict[str, Any]]:
    """The fan with what the event says about them: their id and ``fan_data``. Tags are
    merged (tags that automations added stay); every other field the event gives takes
    its value. (On PostgreSQL the dispatcher does the same in SQL, in its one statement
    an event: ``engine.dispatch._RECORD_PG``; a change here belongs there too.)"""
    row = session.execute(_FAN, {"creator": creator_id, "external": external_id}).first()
    if row is None:
        values = {name: getattr(fields, name) for name in _FIELDS}
        values.update(
            id=new_id(),
            creator_id=creator_id,
            external_id=external_id,
            total_spent=fields.total_spent.amount,
            tags=sorted(set(fields.tags)),
        )
        session.execute(insert(FANS), values)
        return values["id"], fan_data(SimpleNamespace(**values))
    given = fields.model_fields_set  # a field the event left out keeps its value
    values = {name: getattr(fields, name) for name in _FIELDS if name in given}
    if "total_spent" in given:
        values["total_spent"] = fields.total_spent.amount
    values["tags"] = sorted(set(row.tags or ()) | set(fields.tags))
    changed = {name: value for name, value in values.items() if getattr(row, name) != value}
    if changed:
        session.execute(update(FANS).where(FANS.c.id == row.id), changed)
    return row.id, fan_data(SimpleNamespace(**{**row._asdict(), **values}))


def fan_data(fan: Any) -> dict[str, Any]:
    """The ``fan`` part of a trigger's context, as JSON (from a ``Fan`` or a row)."""
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


# --- A batch's fans ----------------------------------------------------------------------


@dataclass(slots=True)
class FanState:
    """A fan as a batch of executions sees them: read once, changed by the batch's
    actions in memory, written with the steps that changed them."""

    id: str
    external_id: str
    data: dict[str, Any]  # what conditions and templates see (``fan_data``)
    cap: int  # messages a day
    sent: int  # messages in the last 24 hours, as far as the batch knows


_READ = (
    select(
        FANS.c.id,
        FANS.c.external_id,
        FANS.c.name,
        FANS.c.username,
        FANS.c.total_spent,
        FANS.c.tags,
        FANS.c.country,
        FANS.c.subscribed_at,
        FANS.c.message_count,
        CREATORS.c.messages_per_fan_per_day.label("cap"),
        sent_today().label("sent"),
    )
    .join(CREATORS, CREATORS.c.id == FANS.c.creator_id)
    .where(FANS.c.id.in_(bindparam("ids", expanding=True)))
)
# Locks the rows, in a fixed order (two batches sharing fans cannot deadlock), for the
# read-modify-write of tags and the daily count of messages.
_LOCK = (
    select(FANS.c.id, FANS.c.tags, sent_today().label("sent"))
    .where(FANS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(FANS.c.id)
    .with_for_update(of=FANS)
)
_WRITE_TAGS = (
    update(FANS)
    .where(FANS.c.id == bindparam("fan"))
    .values(tags=bindparam("new_tags"), updated_at=bindparam("now"))
)


def read_fans(
    connection: Connection, ids: Iterable[str], now: datetime, default_cap: int
) -> dict[str, FanState]:
    rows = connection.execute(_READ, {"ids": list(ids), "since": day_start(now)})
    return {
        row.id: FanState(
            row.id,
            row.external_id,
            fan_data(row),
            default_cap if row.cap is None else row.cap,
            row.sent,
        )
        for row in rows
    }


def lock_fans(
    connection: Connection, ids: Iterable[str], now: datetime
) -> dict[str, tuple[list[str], int]]:
    """Each fan's tags and messages of the last 24 hours, their rows locked until the
    transaction ends."""
    rows = connection.execute(_LOCK, {"ids": sorted(set(ids)), "since": day_start(now)})
    return {row.id: (list(row.tags or ()), row.sent) for row in rows}


def change_tags(tags: Sequence[str], tag: str, add: bool) -> list[str] | None:
    """The tags with ``tag`` added or removed, or None if that changes nothing."""
    if (tag in tags) == add:
        return None
    return sorted([*tags, tag]) if add else [t for t in tags if t != tag]


def write_tags(connection: Connection, tags: dict[str, list[str]], now: datetime) -> None:
    if tags:
        connection.execute(
            _WRITE_TAGS, [{"fan": fan, "new_tags": t, "now": now} for fan, t in tags.items()]
        )
