"""The engine's tables (SQLAlchemy 2). The same models run on SQLite and PostgreSQL.

Names follow the design document where it names them (``automations``,
``automation_executions`` with ``trigger_type``, ``trigger_data``, ``status``,
``steps_executed``, ``error``, ``executed_at``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both databases (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the engine stores UTC times only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")
# A compiled graph keeps its nodes in source order, which the flow export (the design's
# list of steps) and traces read. JSONB reorders an object's keys; JSON keeps the text.
GraphJSON = JSON()

# Constraint names that Alembic can rely on (and SQLite's batch mode needs).
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar = {datetime: UTCDateTime, dict[str, Any]: JSONType}


class AutomationStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    DRAFT = "draft"


class ExecutionStatus(StrEnum):
    PENDING = "pending"  # created, its job queued
    RUNNING = "running"  # a worker holds its lease
    WAITING = "waiting"  # parked at a `wait` until resume_at
    SUCCESS = "success"
    FAILED = "failed"
    PARTIAL = "partial"  # some steps failed, the others ran

    @property
    def finished(self) -> bool:
        return self in (ExecutionStatus.SUCCESS, ExecutionStatus.FAILED, ExecutionStatus.PARTIAL)


class StepStatus(StrEnum):
    RUNNING = "running"  # claimed: its side effect may or may not have happened
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"  # e.g. stopped by the daily message cap


class Creator(Base):
    __tablename__ = "creators"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    # None: the engine-wide default (Settings.messages_per_fan_per_day).
    messages_per_fan_per_day: Mapped[int | None]
    # The creator's guardrails (dsl.policy.Policy), only the settings they changed;
    # None: the defaults. Read and written through engine.creators.
    policy: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    creator_id: Mapped[str] = mapped_column(ForeignKey("creators.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    # SHA-256 of the token: the token itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]


class Automation(Base):
    __tablename__ = "automations"
    __table_args__ = (Index("ix_automations_dispatch", "creator_id", "trigger", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    creator_id: Mapped[str] = mapped_column(ForeignKey("creators.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    graph: Mapped[dict[str, Any]] = mapped_column(GraphJSON)
    trigger: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=AutomationStatus.DRAFT)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __mapper_args__: ClassVar = {"version_id_col": version}


class AutomationVersion(Base):
    """Every saved version's graph, immutable: an execution runs the version it started
    with, even if the automation is edited while it waits."""

    __tablename__ = "automation_versions"

    automation_id: Mapped[str] = mapped_column(
        ForeignKey("automations.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    graph: Mapped[dict[str, Any]] = mapped_column(GraphJSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Fan(Base):
    __tablename__ = "fans"
    __table_args__ = (UniqueConstraint("creator_id", "external_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    creator_id: Mapped[str] = mapped_column(ForeignKey("creators.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200), default="")
    username: Mapped[str] = mapped_column(String(200), default="")
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    total_spent: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal(0))
    country: Mapped[str | None] = mapped_column(String(8))
    message_count: Mapped[int] = mapped_column(default=0)
    subscribed_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Event(Base):
    """Every event received, as received: the log that backtesting replays."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("creator_id", "external_id"),
        Index("ix_events_creator_time", "creator_id", "occurred_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    creator_id: Mapped[str] = mapped_column(ForeignKey("creators.id", ondelete="CASCADE"))
    # The sender's own id for the event, if it gives one: a resent event is recognised.
    external_id: Mapped[str | None] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(64))
    fan_external_id: Mapped[str] = mapped_column(String(200))
    data: Mapped[dict[str, Any]]
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Execution(Base):
    __tablename__ = "automation_executions"
    __table_args__ = (
        # An automation runs at most once per fan per triggering event.
        UniqueConstraint("automation_id", "fan_id", "event_id"),
        Index("ix_automation_executions_due", "status", "resume_at"),
        Index("ix_automation_executions_automation_time", "automation_id", "executed_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    automation_id: Mapped[str] = mapped_column(ForeignKey("automations.id", ondelete="CASCADE"))
    automation_version: Mapped[int]
    creator_id: Mapped[str] = mapped_column(String(36))
    fan_id: Mapped[str] = mapped_column(ForeignKey("fans.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    trigger_type: Mapped[str] = mapped_column(String(64))
    trigger_data: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default=ExecutionStatus.PENDING)
    steps_executed: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    # Where a waiting (or interrupted) execution goes on, and when.
    current_node: Mapped[str | None] = mapped_column(String(200))
    resume_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    executed_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class StepRun(Base):
    """One step of one execution: the trace, and the claim that makes side effects
    happen once (a step is claimed here before its action runs)."""

    __tablename__ = "execution_steps"
    __table_args__ = (UniqueConstraint("execution_id", "node_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    execution_id: Mapped[str] = mapped_column(
        ForeignKey("automation_executions.id", ondelete="CASCADE")
    )
    node_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # action, condition, wait
    name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=StepStatus.RUNNING)
    detail: Mapped[str] = mapped_column(Text, default="")
    output: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class OutboxMessage(Base):
    """A message for a fan, waiting for a delivery plugin to send it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_fan_time", "creator_id", "fan_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    creator_id: Mapped[str] = mapped_column(String(36))
    fan_id: Mapped[str] = mapped_column(ForeignKey("fans.id", ondelete="CASCADE"))
    execution_id: Mapped[str | None] = mapped_column(String(36))
    text: Mapped[str] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
