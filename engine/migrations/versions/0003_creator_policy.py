"""A creator's guardrails (dsl.policy.Policy) as JSON; NULL keeps the defaults

Revision ID: 0003_creator_policy
Revises: 0002_graph_json
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_creator_policy"
down_revision: str | Sequence[str] | None = "0002_graph_json"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "creators",
        sa.Column(
            "policy",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
    )


def downgrade() -> None:
    with op.batch_alter_table("creators") as batch:
        batch.drop_column("policy")
