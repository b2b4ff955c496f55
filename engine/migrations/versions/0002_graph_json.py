"""Compiled graphs as JSON, not JSONB, on PostgreSQL: JSONB reordered the graph's nodes

Revision ID: 0002_graph_json
Revises: 0001_engine
Create Date: 2026-11-26 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_graph_json"
down_revision: str | Sequence[str] | None = "0001_engine"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("automations", "automation_versions")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite stores both as the same text
    for table in TABLES:
        op.alter_column(
            table,
            "graph",
            type_=sa.JSON(),
            existing_type=postgresql.JSONB(astext_type=sa.Text()),
            existing_nullable=False,
            postgresql_using="graph::json",
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.alter_column(
            table,
            "graph",
            type_=postgresql.JSONB(astext_type=sa.Text()),
            existing_type=sa.JSON(),
            existing_nullable=False,
            postgresql_using="graph::jsonb",
        )
