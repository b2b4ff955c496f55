"""The offers' tables, in a MetaData of their own (entry point ``huntaze.metadata``).

No foreign key reaches the engine's tables: ``creator_id`` and ``fan_id`` are indexed
strings, so the plugin's migrations are an independent Alembic branch. ``fan_id`` is the
platform's id for the fan, the one events carry.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Timezone-aware UTC datetimes on both databases, as the engine stores them.
from engine.plugin_api import NAMING, UTCDateTime

# The engine's naming convention, so that constraints have names Alembic can rely on.
metadata = MetaData(naming_convention=NAMING)

# Money and percentages, to the cent: 9,999,999,999.99 at most.
Amount = Numeric(12, 2)


class Base(DeclarativeBase):
    metadata = metadata
    type_annotation_map: ClassVar = {datetime: UTCDateTime, Decimal: Amount}


class OfferRow(Base):
    """An offer as stored. Its status is not stored: it is derived from ``draft``, the
    clock and the counters when read, so it is never stale."""

    __tablename__ = "offers"
    __table_args__ = (
        Index("ix_offers_creator_created", "creator_id", "created_at"),
        Index("ix_offers_creator_code", "creator_id", "code_key"),
        Index("ix_offers_creator_target", "creator_id", "target_value"),
        # The offer an automation's step created: a retried step finds it again.
        UniqueConstraint("creator_id", "idempotency_key", name="uq_offers_idempotency_key"),
        CheckConstraint("redemption_count >= 0", name="redemption_count_not_negative"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    creator_id: Mapped[str] = mapped_column(String(36))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    discount_type: Mapped[str] = mapped_column(String(16))
    # The percentage (20 for 20%) or the fixed amount off; None for bogo and bundles.
    discount_value: Mapped[Decimal | None]
    currency: Mapped[str] = mapped_column(String(3))
    original_price: Mapped[Decimal | None]
    buy_quantity: Mapped[int | None]
    get_quantity: Mapped[int | None]
    max_free_per_order: Mapped[int | None]
    content_ids: Mapped[list[str]] = mapped_column(JSON)
    bundle_price: Mapped[Decimal | None]
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime | None]
    target_audience: Mapped[str] = mapped_column(String(16))
    target_value: Mapped[str | None] = mapped_column(String(200))
    max_redemptions: Mapped[int | None]
    max_per_fan: Mapped[int | None]
    min_purchase: Mapped[Decimal | None]
    code: Mapped[str | None] = mapped_column(String(40))
    code_key: Mapped[str | None] = mapped_column(String(40))  # the code, lower case
    draft: Mapped[bool] = mapped_column(Boolean)
    # Equal to the number of its redemption rows: both change in one transaction.
    redemption_count: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)  # optimistic locking
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Deleted offers are kept (hidden) so that their redemptions still add up.
    deleted_at: Mapped[datetime | None]


class RedemptionRow(Base):
    """One redemption: the log entry of design property 12."""

    __tablename__ = "offer_redemptions"
    __table_args__ = (
        # The same idempotency key twice is one redemption.
        UniqueConstraint(
            "offer_id", "idempotency_key", name="uq_offer_redemptions_idempotency_key"
        ),
        # The fan's n-th redemption of the offer, when the offer limits them per fan:
        # two redemptions can never both be a fan's first.
        UniqueConstraint("offer_id", "fan_id", "fan_seq", name="uq_offer_redemptions_fan_seq"),
        # Analytics by creator and time. By offer, the two keys above serve (one index
        # fewer to write at each redemption: migration 0003).
        Index("ix_offer_redemptions_creator_time", "creator_id", "redeemed_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    offer_id: Mapped[str] = mapped_column(ForeignKey("offers.id"))
    creator_id: Mapped[str] = mapped_column(String(36))
    fan_id: Mapped[str] = mapped_column(String(200))
    amount: Mapped[Decimal]  # the price before the discount
    discount: Mapped[Decimal]  # the discount given; the fan paid amount - discount
    currency: Mapped[str] = mapped_column(String(3))
    quantity: Mapped[int] = mapped_column(Integer)
    code: Mapped[str | None] = mapped_column(String(40))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    fan_seq: Mapped[int | None]
    redeemed_at: Mapped[datetime]
