"""The outbox: messages for fans, written once, capped per fan per day.

Delivering them to a platform is a delivery plugin's job (docs/operations.md): it
reads ``pending`` rows and marks them ``sent``. The runner writes a wave's messages
together, in the transaction that marks their steps done, with the fans' rows locked
(so two executions cannot both take a fan's last message of the day); a message whose
idempotency key is already there is not written again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from engine.models import Fan, OutboxMessage

OUTBOX = OutboxMessage.__table__
DAY = timedelta(days=1)


def cap_message(sent: int, cap: int) -> str:
    return f"daily message cap reached: {sent} of {cap} messages in 24 hours"


def day_start(now: datetime) -> datetime:
    """Messages after this moment count against the daily cap at ``now``."""
    return now - DAY


def sent_today() -> ColumnElement[int]:
    """Per fan row of the enclosing query: its messages since the bind ``since``."""
    fans = Fan.__table__
    return (
        select(func.count(OUTBOX.c.id))
        .where(
            OUTBOX.c.creator_id == fans.c.creator_id,
            OUTBOX.c.fan_id == fans.c.id,
            OUTBOX.c.created_at > bindparam("since"),
        )
        .scalar_subquery()
    )


def _insert_statement(insert):
    return (
        insert(OUTBOX)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .execution_options(preserve_rowcount=True)  # SQLAlchemy drops an INSERT's otherwise
    )


_INSERT = {"postgresql": _insert_statement(pg_insert), "sqlite": _insert_statement(sqlite_insert)}


def insert_messages(connection: Connection, rows: Sequence[dict]) -> dict[str, str]:
    """Write ``rows`` (outbox columns) in one statement; return the id stored under each
    idempotency key — another attempt's, where its message was already there."""
    if not rows:
        return {}
    statement = _INSERT[connection.dialect.name]
    stored = {row["idempotency_key"]: row["id"] for row in rows}
    if connection.execute(statement, list(rows)).rowcount < len(rows):
        stored.update(existing_messages(connection, list(stored)))
    return stored


def existing_messages(connection: Connection, keys: Sequence[str]) -> dict[str, str]:
    """The ids of messages already written under these idempotency keys."""
    if not keys:
        return {}
    query = select(OUTBOX.c.idempotency_key, OUTBOX.c.id).where(
        OUTBOX.c.idempotency_key.in_(list(keys))
    )
    return {key: message_id for key, message_id in connection.execute(query)}
