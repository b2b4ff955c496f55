"""What the offers tests share: generated valid offers, and redemptions that fit them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st
from sqlalchemy import event

from engine.db import Database
from engine.migrate import upgrade
from plugins.offers.service import Offer
from plugins.offers.validation import Audience, DiscountType, OfferData

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # the `clock` fixture's time
DAY = timedelta(days=1)
FAN = {"name": "Mia", "username": "mia", "subscribed_at": "2026-10-01T12:00:00+00:00"}


def open_database(kind: str, request, tmp_path_factory) -> Database:
    """The database of that ``kind`` ("sqlite" or "postgresql"), migrated, for a
    whole test module: its tests keep apart by using creators of their own.

    Commits do not wait for the disk (``synchronous_commit=off``, SQLite's
    ``synchronous=OFF``): what these tests check is what other transactions see, not
    what survives a power cut, and the flushes would be most of their time."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('offers') / 'offers.sqlite3'}"
    else:
        schema_url = request.getfixturevalue("postgres_schema")
        url = schema_url.replace("?options=", "?options=-csynchronous_commit%3Doff%20")
    database = Database(url)
    if kind == "sqlite":
        event.listen(database.engine, "connect", _no_sync)
        upgrade(database.engine)
    return database


def _no_sync(dbapi_connection, _record) -> None:
    dbapi_connection.execute("PRAGMA synchronous=OFF")


def offer_fields(**fields: Any) -> dict[str, Any]:
    """A valid 20% offer for every fan, active from START for two days."""
    return {
        "name": "Welcome 20%",
        "discount_type": "percentage",
        "discount_value": Decimal(20),
        "valid_from": START,
        "valid_until": START + 2 * DAY,
        **fields,
    }


def new_creator() -> str:
    """A creator id of its own for each example: no offer of another example is seen."""
    return str(uuid.uuid4())


def cents(low: str = "0.01", high: str = "99999.99") -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=Decimal(low), max_value=Decimal(high), places=2)


# Any printable text, emoji and accents included.
TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=30
).filter(str.strip)
MOMENTS = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
)
CODES = st.from_regex(r"[A-Za-z0-9_-]{3,12}", fullmatch=True)


@st.composite
def discounts(draw) -> dict[str, Any]:
    """The fields of one discount type, valid together."""
    kind = draw(st.sampled_from(DiscountType))
    if kind == DiscountType.PERCENTAGE:
        return {"discount_type": kind, "discount_value": draw(cents("0.01", "100"))}
    if kind == DiscountType.FIXED:
        value = draw(cents())
        original = draw(st.none() | cents("0", "1000").map(lambda extra: value + extra))
        return {"discount_type": kind, "discount_value": value, "original_price": original}
    if kind == DiscountType.BOGO:
        return {
            "discount_type": kind,
            "buy_quantity": draw(st.integers(1, 5)),
            "get_quantity": draw(st.integers(1, 3)),
            "max_free_per_order": draw(st.none() | st.integers(1, 10)),
        }
    original = draw(cents("0.02"))
    return {
        "discount_type": kind,
        "content_ids": tuple(draw(st.lists(TEXT, min_size=2, max_size=4, unique=True))),
        "original_price": original,
        "bundle_price": draw(cents("0.01", str(original - Decimal("0.01")))),
    }


@st.composite
def offers(draw, published: bool | None = None, ends: bool | None = None) -> OfferData:
    """Valid offer data of every kind; ``published`` / ``ends`` force those choices."""
    valid_from = draw(MOMENTS)
    ends = draw(st.booleans()) if ends is None else ends
    length = st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=400))
    audience = draw(st.sampled_from(Audience))
    draft = draw(st.booleans()) if published is None else not published
    return OfferData(
        name=draw(TEXT),
        description=draw(st.none() | TEXT),
        **draw(discounts()),
        currency=draw(st.sampled_from(["USD", "EUR", "GBP"])),
        valid_from=valid_from,
        valid_until=valid_from + draw(length) if ends else None,
        target_audience=audience,
        target_value=None if audience == Audience.ALL else draw(TEXT),
        max_redemptions=draw(st.none() | st.integers(1, 5)),
        max_per_fan=draw(st.none() | st.integers(1, 3)),
        min_purchase=draw(st.none() | cents("0", "500")),
        code=draw(st.none() | CODES),
        draft=draft,
    )


def fitting(offer: Offer | OfferData, fan_id: str = "fan-1", amount: Decimal | None = None):
    """Keyword arguments of ``redeem`` (but the key) that this offer accepts from
    ``fan_id`` — the offer's own fan for a personal offer — while it is active."""
    if offer.target_audience == Audience.FAN:
        fan_id = offer.target_value
    tags = [offer.target_value] if offer.target_audience == Audience.TAG else []
    amount = amount if amount is not None else Decimal("600.00")
    if offer.min_purchase is not None:
        amount = max(amount, offer.min_purchase)
    quantity = 1
    if offer.discount_type == DiscountType.BOGO:
        quantity = offer.buy_quantity + offer.get_quantity
    return {
        "fan_id": fan_id,
        "amount": amount,
        "fan": {**FAN, "tags": tags},
        "quantity": quantity,
    }
