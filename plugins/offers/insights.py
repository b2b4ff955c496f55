"""A creator's own numbers, computed deterministically before any model sees them.

``analyse`` is pure: from sales (the ``purchase_completed`` events), fans and past
offers it computes, for each item, its price points and volumes; the items the same fans
bought together; the fans by spend and recency, in segments; and how past offers were
redeemed. ``load_insights`` reads those inputs from the database and calls it.

The offer suggestions (``plugins/offers/ai.py``) send these numbers to the model, and
without a model suggest from them directly.

Money is in the creator's currency (the most common one among their sales; sales in
another are left out and counted in ``skipped``), summed exactly and rounded to the cent.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from itertools import combinations
from statistics import median
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import JSON, Integer, Numeric, String, column, select, table
from sqlalchemy.orm import Session

from engine.plugin_api import Database, UTCDateTime
from plugins.offers.models import OfferRow, RedemptionRow

CENT = Decimal("0.01")
NEW_DAYS = 14  # a fan who subscribed this recently and has not bought is "new"
LAPSE_DAYS = 30  # a buyer without a purchase this long is "lapsing"
VIP_PERCENTILE = 90  # buyers at or above this percentile of spend are "vip"
MIN_PAIR_FANS = 2  # items bought together by fewer fans are no pattern
MAX_PAIRS = 20
TOP_TAGS = 5
DEFAULT_CURRENCY = "USD"

SEGMENTS = {
    "new": f"subscribed in the last {NEW_DAYS} days, not bought yet",
    "active": f"bought in the last {LAPSE_DAYS} days",
    "vip": f"bought in the last {LAPSE_DAYS} days, and spent the most "
    f"(top {100 - VIP_PERCENTILE}% of buyers by spend)",
    "lapsing": f"spent before, but bought nothing in the last {LAPSE_DAYS} days",
    "never_bought": f"subscribed over {NEW_DAYS} days ago (or when is not known), never bought",
}


# --- The inputs -------------------------------------------------------------------------


@dataclass(frozen=True)
class Sale:
    """One ``purchase_completed`` event: ``fan_id`` is the platform's id for the fan."""

    fan_id: str
    item: str
    amount: Decimal
    at: datetime
    currency: str = DEFAULT_CURRENCY


@dataclass(frozen=True)
class FanRecord:
    fan_id: str  # the platform's id, as sales have it
    total_spent: Decimal = Decimal(0)
    subscribed_at: datetime | None = None
    tags: tuple[str, ...] = ()
    message_count: int = 0


@dataclass(frozen=True)
class OfferRecord:
    offer_id: str
    name: str
    discount_type: str
    discount_value: Decimal | None
    target_audience: str
    target_value: str | None
    content_ids: tuple[str, ...]
    valid_from: datetime
    valid_until: datetime | None


@dataclass(frozen=True)
class RedemptionRecord:
    offer_id: str
    fan_id: str
    amount: Decimal  # before the discount
    discount: Decimal


# --- The analysis -----------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class PriceLevel(_Frozen):
    """Every sale of an item at one price."""

    price: float
    sales: int
    buyers: int
    revenue: float


class ItemStats(_Frozen):
    item: str
    sales: int
    buyers: int
    revenue: float
    mean_price: float
    median_price: float
    min_price: float
    max_price: float
    current_price: float  # of its latest sale: what it costs now
    levels: list[PriceLevel]  # by price
    last_sold: datetime


class Pair(_Frozen):
    """Two items bought by the same fans (at any time, in any order)."""

    a: str
    b: str
    fans: int  # who bought both
    support: float  # fans / every buyer
    confidence_a_to_b: float  # of a's buyers, the share who also bought b
    confidence_b_to_a: float
    lift: float  # support / (support of a x support of b); above 1: more than by chance


class Segment(_Frozen):
    name: str
    description: str
    fans: int
    share: float  # of every fan
    average_spend: float
    total_spend: float
    average_days_since_purchase: float | None  # None: nobody in it has bought
    average_messages: float
    tags: dict[str, int]  # its fans' most common tags, with how many have each


class OfferPerformance(_Frozen):
    offer_id: str
    name: str
    discount_type: str
    discount_value: float | None
    audience: str  # "all", or "tag: vip", "segment: lapsing", "fan: ..."
    content_ids: list[str]
    redemptions: int
    fans: int
    revenue: float  # what fans paid
    discount_given: float
    days_live: float  # from valid_from to valid_until or as_of, whichever is first
    redemptions_per_day: float | None  # None before it started


class Insights(_Frozen):
    creator_id: str
    as_of: datetime  # recency is measured from here
    currency: str
    sales: int
    revenue: float
    buyers: int
    fans: int
    skipped: int  # purchase events that are no readable sale in the currency
    items: list[ItemStats]  # most revenue first
    pairs: list[Pair]  # most fans first
    vip_threshold: float | None  # the spend from which a recent buyer is "vip"
    segments: list[Segment]
    offers: list[OfferPerformance]  # most redeemed first

    def item(self, name: str) -> ItemStats | None:
        return next((stats for stats in self.items if stats.item == name), None)

    def prices(self) -> dict[str, float]:
        """Each item's current price."""
        return {stats.item: stats.current_price for stats in self.items}

    def segment(self, name: str) -> Segment | None:
        return next((segment for segment in self.segments if segment.name == name), None)


def analyse(
    sales: Iterable[Sale],
    fans: Iterable[FanRecord] = (),
    offers: Iterable[OfferRecord] = (),
    redemptions: Iterable[RedemptionRecord] = (),
    *,
    as_of: datetime,
    creator_id: str = "",
    skipped: int = 0,
) -> Insights:
    """The insights of one creator's history, as of ``as_of``."""
    sales = list(sales)
    currency = _currency(sales)
    counted = [sale for sale in sales if sale.currency == currency and sale.amount > 0]
    skipped += len(sales) - len(counted)
    by_item: dict[str, list[Sale]] = defaultdict(list)
    for sale in counted:
        by_item[sale.item].append(sale)
    items = sorted(
        (_item_stats(item, item_sales) for item, item_sales in by_item.items()),
        key=lambda stats: (-stats.revenue, stats.item),
    )
    segments, threshold, fan_count = _segments(counted, list(fans), as_of)
    return Insights(
        creator_id=creator_id,
        as_of=as_of,
        currency=currency,
        sales=len(counted),
        revenue=_float(sum((sale.amount for sale in counted), Decimal(0))),
        buyers=len({sale.fan_id for sale in counted}),
        fans=fan_count,
        skipped=skipped,
        items=items,
        pairs=_pairs(counted),
        vip_threshold=threshold,
        segments=segments,
        offers=_offers(list(offers), list(redemptions), as_of),
    )


def _currency(sales: list[Sale]) -> str:
    counts = Counter(sale.currency for sale in sales)
    if not counts:
        return DEFAULT_CURRENCY
    return min(counts, key=lambda currency: (-counts[currency], currency))


def _float(amount: Decimal) -> float:
    return float(amount.quantize(CENT))


def _item_stats(item: str, sales: list[Sale]) -> ItemStats:
    amounts = [sale.amount for sale in sales]
    by_price: dict[Decimal, list[Sale]] = defaultdict(list)
    for sale in sales:
        by_price[sale.amount].append(sale)
    levels = [
        PriceLevel(
            price=_float(price),
            sales=len(level),
            buyers=len({sale.fan_id for sale in level}),
            revenue=_float(price * len(level)),
        )
        for price, level in sorted(by_price.items())
    ]
    latest = max(sales, key=lambda sale: (sale.at, sale.amount))
    total = sum(amounts, Decimal(0))
    return ItemStats(
        item=item,
        sales=len(sales),
        buyers=len({sale.fan_id for sale in sales}),
        revenue=_float(total),
        mean_price=_float(total / len(amounts)),
        median_price=_float(median(amounts)),
        min_price=_float(min(amounts)),
        max_price=_float(max(amounts)),
        current_price=_float(latest.amount),
        levels=levels,
        last_sold=latest.at,
    )


def _pairs(sales: list[Sale]) -> list[Pair]:
    bought: dict[str, set[str]] = defaultdict(set)
    for sale in sales:
        bought[sale.fan_id].add(sale.item)
    buyers = len(bought)
    item_fans = Counter(item for items in bought.values() for item in items)
    together = Counter(pair for items in bought.values() for pair in combinations(sorted(items), 2))
    pairs = []
    for (a, b), fans in together.items():
        if fans < MIN_PAIR_FANS:
            continue
        support = fans / buyers
        lift = support / ((item_fans[a] / buyers) * (item_fans[b] / buyers))
        pairs.append(
            Pair(
                a=a,
                b=b,
                fans=fans,
                support=round(support, 4),
                confidence_a_to_b=round(fans / item_fans[a], 4),
                confidence_b_to_a=round(fans / item_fans[b], 4),
                lift=round(lift, 4),
            )
        )
    pairs.sort(key=lambda pair: (-pair.fans, -pair.lift, pair.a, pair.b))
    return pairs[:MAX_PAIRS]


@dataclass
class _Fan:
    spend: Decimal
    subscribed_at: datetime | None
    last_purchase: datetime | None
    tags: tuple[str, ...] = ()
    messages: int = 0


def _segments(
    sales: list[Sale], fans: list[FanRecord], as_of: datetime
) -> tuple[list[Segment], float | None, int]:
    spent: dict[str, Decimal] = defaultdict(Decimal)
    last: dict[str, datetime] = {}
    for sale in sales:
        spent[sale.fan_id] += sale.amount
        last[sale.fan_id] = max(sale.at, last.get(sale.fan_id, sale.at))
    known: dict[str, _Fan] = {}
    for fan in fans:
        # The platform's total counts purchases from before the events were recorded.
        spend = max(fan.total_spent, spent.get(fan.fan_id, Decimal(0)))
        known[fan.fan_id] = _Fan(
            spend, fan.subscribed_at, last.get(fan.fan_id), fan.tags, fan.message_count
        )
    for fan_id, amount in spent.items():
        known.setdefault(fan_id, _Fan(amount, None, last[fan_id]))
    spends = sorted(fan.spend for fan in known.values() if fan.spend > 0)
    threshold = spends[math.ceil(len(spends) * VIP_PERCENTILE / 100) - 1] if spends else None
    members: dict[str, list[_Fan]] = {name: [] for name in SEGMENTS}
    for fan in known.values():
        members[_segment_of(fan, threshold, as_of)].append(fan)
    segments = [
        _segment(name, group, as_of, len(known)) for name, group in members.items() if group
    ]
    return segments, None if threshold is None else _float(threshold), len(known)


def _segment_of(fan: _Fan, threshold: Decimal | None, as_of: datetime) -> str:
    if fan.spend <= 0:
        new = fan.subscribed_at is not None and as_of - fan.subscribed_at <= timedelta(NEW_DAYS)
        return "new" if new else "never_bought"
    if fan.last_purchase is None or as_of - fan.last_purchase > timedelta(LAPSE_DAYS):
        return "lapsing"
    return "vip" if threshold is not None and fan.spend >= threshold else "active"


def _segment(name: str, group: list[_Fan], as_of: datetime, everyone: int) -> Segment:
    total = sum((fan.spend for fan in group), Decimal(0))
    days = [(as_of - fan.last_purchase) / timedelta(days=1) for fan in group if fan.last_purchase]
    return Segment(
        name=name,
        description=SEGMENTS[name],
        fans=len(group),
        share=round(len(group) / everyone, 4),
        average_spend=_float(total / len(group)),
        total_spend=_float(total),
        average_days_since_purchase=round(sum(days) / len(days), 1) if days else None,
        average_messages=round(sum(fan.messages for fan in group) / len(group), 1),
        tags=dict(_top(Counter(tag for fan in group for tag in set(fan.tags)), TOP_TAGS)),
    )


def _top(counts: Counter[str], n: int) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda entry: (-entry[1], entry[0]))[:n]


def _offers(
    offers: list[OfferRecord], redemptions: list[RedemptionRecord], as_of: datetime
) -> list[OfferPerformance]:
    by_offer: dict[str, list[RedemptionRecord]] = defaultdict(list)
    for redemption in redemptions:
        by_offer[redemption.offer_id].append(redemption)
    performance = [_performance(offer, by_offer.get(offer.offer_id, []), as_of) for offer in offers]
    return sorted(performance, key=lambda p: (-p.redemptions, p.name, p.offer_id))


def _performance(
    offer: OfferRecord, done: list[RedemptionRecord], as_of: datetime
) -> OfferPerformance:
    end = min(offer.valid_until or as_of, as_of)
    days = max((end - offer.valid_from) / timedelta(days=1), 0.0)
    value = offer.discount_value
    audience = offer.target_audience
    if offer.target_value is not None:
        audience = f"{audience}: {offer.target_value}"
    return OfferPerformance(
        offer_id=offer.offer_id,
        name=offer.name,
        discount_type=offer.discount_type,
        discount_value=None if value is None else float(value),
        audience=audience,
        content_ids=list(offer.content_ids),
        redemptions=len(done),
        fans=len({r.fan_id for r in done}),
        revenue=_float(sum((r.amount - r.discount for r in done), Decimal(0))),
        discount_given=_float(sum((r.discount for r in done), Decimal(0))),
        days_live=round(days, 1),
        redemptions_per_day=round(len(done) / max(days, 1.0), 2) if days > 0 else None,
    )


# --- From the database ------------------------------------------------------------------

# The engine's tables, by the columns this module reads (engine/models.py: Event, Fan).
_EVENTS = table(
    "events",
    column("creator_id", String),
    column("type", String),
    column("fan_external_id", String),
    column("data", JSON),
    column("occurred_at", UTCDateTime),
)
_FANS = table(
    "fans",
    column("creator_id", String),
    column("external_id", String),
    column("total_spent", Numeric(14, 2)),
    column("subscribed_at", UTCDateTime),
    column("tags", JSON),
    column("message_count", Integer),
)
PURCHASE = "purchase_completed"


def load_insights(database: Database, creator_id: str, as_of: datetime | None = None) -> Insights:
    """The insights of ``creator_id``'s history in the database. ``as_of`` defaults to
    the time of their latest event (so the same history always gives the same numbers),
    or now when they have none."""

    def work(session: Session) -> Insights:
        sales, skipped, latest = _sales(session, creator_id)
        when = as_of or latest or datetime.now(UTC)
        return analyse(
            sales,
            _fans(session, creator_id),
            _offer_records(session, creator_id),
            _redemptions(session, creator_id),
            as_of=when,
            creator_id=creator_id,
            skipped=skipped,
        )

    return database.run(work)


def _sales(session: Session, creator_id: str) -> tuple[list[Sale], int, datetime | None]:
    query = select(_EVENTS.c.fan_external_id, _EVENTS.c.data, _EVENTS.c.occurred_at).where(
        _EVENTS.c.creator_id == creator_id, _EVENTS.c.type == PURCHASE
    )
    sales, skipped = [], 0
    for fan_id, data, at in session.execute(query):
        sale = sale_from_event(fan_id, data, at)
        if sale is None:
            skipped += 1
        else:
            sales.append(sale)
    latest = session.scalar(
        select(_EVENTS.c.occurred_at)
        .where(_EVENTS.c.creator_id == creator_id)
        .order_by(_EVENTS.c.occurred_at.desc())
        .limit(1)
    )
    return sales, skipped, latest


def sale_from_event(fan_id: str, data: Any, at: datetime) -> Sale | None:
    """The sale a ``purchase_completed`` event's data records, or None if it records
    none that can be read (no item, an amount that is no positive number)."""
    event = data.get("event") if isinstance(data, Mapping) else None
    if not isinstance(event, Mapping):
        return None
    item, amount, currency = event.get("item"), event.get("amount"), DEFAULT_CURRENCY
    if isinstance(amount, Mapping):  # Money, as a Python caller's event is stored
        amount, currency = amount.get("amount"), amount.get("currency") or DEFAULT_CURRENCY
    if not isinstance(item, str) or not item.strip() or not isinstance(currency, str):
        return None
    if isinstance(amount, bool) or not isinstance(amount, int | float | str):
        return None
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return None
    if not value.is_finite() or value <= 0:
        return None
    return Sale(fan_id, item, value.quantize(CENT), at, currency)


def _fans(session: Session, creator_id: str) -> list[FanRecord]:
    query = select(
        _FANS.c.external_id,
        _FANS.c.total_spent,
        _FANS.c.subscribed_at,
        _FANS.c.tags,
        _FANS.c.message_count,
    ).where(_FANS.c.creator_id == creator_id)
    return [
        FanRecord(fan_id, Decimal(spent or 0), subscribed, tuple(tags or ()), messages or 0)
        for fan_id, spent, subscribed, tags, messages in session.execute(query)
    ]


def _offer_records(session: Session, creator_id: str) -> list[OfferRecord]:
    query = select(OfferRow).where(OfferRow.creator_id == creator_id, OfferRow.draft.is_(False))
    return [_offer_record(row) for row in session.scalars(query)]


def _offer_record(row: OfferRow) -> OfferRecord:
    return OfferRecord(
        offer_id=row.id,
        name=row.name,
        discount_type=row.discount_type,
        discount_value=row.discount_value,
        target_audience=row.target_audience,
        target_value=row.target_value,
        content_ids=tuple(row.content_ids or ()),
        valid_from=row.valid_from,
        valid_until=row.valid_until,
    )


def _redemptions(session: Session, creator_id: str) -> list[RedemptionRecord]:
    query = select(
        RedemptionRow.offer_id, RedemptionRow.fan_id, RedemptionRow.amount, RedemptionRow.discount
    ).where(RedemptionRow.creator_id == creator_id)
    return [RedemptionRecord(*row) for row in session.execute(query)]
