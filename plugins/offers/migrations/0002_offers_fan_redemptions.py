"""offers_fan_redemptions(offer_id, fan_id): a fan's redemptions of an offer (PostgreSQL)

Revision ID: 0002_offers_fan_redemptions
Revises: 0001_offers
Create Date: 2026-11-26 19:00:00.000000

The one-statement redemption (``FAST_REDEEM`` in ``plugins/offers/redemption.py``) calls
it for an offer with a limit per fan, and only then: a subquery in its place would be set
up by the executor on every redemption, used or not. Being VOLATILE, it reads with a
snapshot of its own, taken when it is called — after the offer's row is locked when it
numbers the fan's redemption. SQLite has no functions of this kind and needs none: it
redeems in a transaction (``redeem``).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_offers_fan_redemptions"
down_revision: str | Sequence[str] | None = "0001_offers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION offers_fan_redemptions(p_offer_id text, p_fan_id text)
        RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            RETURN (SELECT count(*) FROM offer_redemptions
                    WHERE offer_id = p_offer_id AND fan_id = p_fan_id);
        END
        $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION offers_fan_redemptions(text, text)")
