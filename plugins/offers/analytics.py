"""Offers analytics, summed from the redemption rows themselves: redemptions, the
amount before discounts, the discount given and the revenue (what fans paid), by offer
and by period. Amounts in different currencies are never added together."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from engine.plugin_api import Database, InvalidInput
from plugins.offers.models import OfferRow, RedemptionRow

PERIODS = ("day", "week", "month")  # a week starts on Monday; all periods are UTC
# SQLite has no date_trunc: the start of the period as text, from strftime.
_SQLITE_PERIODS = {
    "day": ("%Y-%m-%d 00:00:00",),
    "week": ("%Y-%m-%d 00:00:00", "weekday 0", "-6 days"),
    "month": ("%Y-%m-01 00:00:00",),
}


@dataclass(frozen=True)
class Totals:
    redemptions: int
    amount: Decimal  # before discounts
    discount: Decimal  # given
    currency: str

    @property
    def revenue(self) -> Decimal:
        """What fans paid."""
        return self.amount - self.discount


@dataclass(frozen=True)
class OfferTotals(Totals):
    offer_id: str = ""
    name: str = ""


@dataclass(frozen=True)
class PeriodTotals(Totals):
    start: datetime | None = None  # the first moment of the period, UTC


def _sums(query: Select) -> Select:
    return query.add_columns(
        func.count(RedemptionRow.id),
        func.coalesce(func.sum(RedemptionRow.amount), 0),
        func.coalesce(func.sum(RedemptionRow.discount), 0),
        RedemptionRow.currency,
    ).group_by(RedemptionRow.currency)


def _window(
    query: Select, creator_id: str, since: datetime | None, until: datetime | None
) -> Select:
    query = query.where(RedemptionRow.creator_id == creator_id)
    if since is not None:
        query = query.where(RedemptionRow.redeemed_at >= since)
    if until is not None:
        query = query.where(RedemptionRow.redeemed_at < until)
    return query


def by_offer(
    database: Database,
    creator_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[OfferTotals]:
    """Totals of each offer redeemed in ``[since, until)``, most redeemed first."""
    query = _sums(select(RedemptionRow.offer_id, OfferRow.name)).join(
        OfferRow, OfferRow.id == RedemptionRow.offer_id
    )
    query = _window(query, creator_id, since, until).group_by(RedemptionRow.offer_id, OfferRow.name)
    rows = database.run(lambda s: s.execute(query).all())
    totals = [
        OfferTotals(count, _money(amount), _money(discount), currency, offer_id, name)
        for offer_id, name, count, amount, discount, currency in rows
    ]
    return sorted(totals, key=lambda t: (-t.redemptions, t.name, t.offer_id, t.currency))


def by_period(
    database: Database,
    creator_id: str,
    period: str = "day",
    since: datetime | None = None,
    until: datetime | None = None,
    offer_id: str | None = None,
) -> list[PeriodTotals]:
    """Totals per day, week or month in ``[since, until)`` (of one offer, if given),
    in time order; periods without redemptions are left out."""
    if period not in PERIODS:
        raise InvalidInput(f"period must be one of {', '.join(PERIODS)}, not {period!r}", "period")

    def work(session: Session) -> list[PeriodTotals]:
        start = _period_start(session, period)
        query = _window(_sums(select(start.label("start"))), creator_id, since, until)
        if offer_id is not None:
            query = query.where(RedemptionRow.offer_id == offer_id)
        rows = session.execute(query.group_by(start)).all()
        return [
            PeriodTotals(count, _money(amount), _money(discount), currency, _utc(begin))
            for begin, count, amount, discount, currency in rows
        ]

    return sorted(database.run(work), key=lambda t: (t.start, t.currency))


def _period_start(session: Session, period: str):
    if session.bind.dialect.name == "postgresql":
        return func.date_trunc(period, func.timezone("UTC", RedemptionRow.redeemed_at))
    return func.strftime(_SQLITE_PERIODS[period][0], RedemptionRow.redeemed_at,
                         *_SQLITE_PERIODS[period][1:])  # fmt: skip


def _money(value: Decimal | float | int) -> Decimal:
    # SQLite sums NUMERIC columns as floats: back to cents.
    return Decimal(str(value)).quantize(Decimal("0.01"))


def _utc(moment: datetime | str) -> datetime:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
