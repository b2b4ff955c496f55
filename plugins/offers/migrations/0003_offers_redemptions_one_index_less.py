"""offer_redemptions: drop ix_offer_redemptions_offer_time

Revision ID: 0003_offers_one_index_less
Revises: 0002_offers_fan_redemptions
Create Date: 2026-11-26 19:30:00.000000

Every redemption wrote five index entries; a query by offer is served as well by the two
unique keys that begin with offer_id ((offer_id, idempotency_key) and (offer_id, fan_id,
fan_seq)), and one by time by (creator_id, redeemed_at). The fourth cost about a tenth of
the server's CPU per redemption (docs/performance.md, Redemptions).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_offers_one_index_less"
down_revision: str | Sequence[str] | None = "0002_offers_fan_redemptions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("offer_redemptions", schema=None) as batch_op:
        batch_op.drop_index("ix_offer_redemptions_offer_time")


def downgrade() -> None:
    with op.batch_alter_table("offer_redemptions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_offer_redemptions_offer_time", ["offer_id", "redeemed_at"], unique=False
        )
