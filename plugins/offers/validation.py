"""What an offer may be: its data model and every rule, each broken rule naming its field.

``parse_offer`` checks the shape first (pydantic: types, required fields), then the
rules between fields (a percentage from 0 to 100, a fixed discount no larger than the
original price, a window that ends after it starts, a bundle of two or more items
priced below their sum ...). Every problem of a stage is reported at once, in an
:class:`InvalidOffer` — an ``InvalidInput`` (HTTP 422) whose ``field`` is the first.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError, field_validator

from engine.plugin_api import InvalidInput

MAX_AMOUNT = Decimal("9999999999.99")  # what Numeric(12, 2) holds
MAX_COUNT = 2**31 - 1  # what an INTEGER column holds
CODE_RE = re.compile(r"[A-Za-z0-9_-]{3,40}")
CURRENCY_RE = re.compile(r"[A-Z]{3}")
CENT = Decimal("0.01")
AMOUNTS = ("discount_value", "original_price", "bundle_price", "min_purchase")


class DiscountType(StrEnum):
    PERCENTAGE = "percentage"  # discount_value percent off
    FIXED = "fixed"  # discount_value off, in the offer's currency
    BOGO = "bogo"  # buy buy_quantity, get get_quantity free
    BUNDLE = "bundle"  # content_ids together for bundle_price instead of original_price


class Audience(StrEnum):
    ALL = "all"
    TAG = "tag"  # fans with the tag target_value
    SEGMENT = "segment"  # the segment named target_value
    FAN = "fan"  # one fan, target_value: a personal offer


class OfferStatus(StrEnum):
    DRAFT = "draft"  # not published: never redeemable
    SCHEDULED = "scheduled"  # published, before valid_from
    ACTIVE = "active"
    EXPIRED = "expired"  # at or after valid_until
    EXHAUSTED = "exhausted"  # max_redemptions reached


class OfferData(BaseModel):
    """Everything a creator sets on an offer: all but its id, counters and timestamps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str | None = None
    discount_type: DiscountType
    discount_value: Decimal | None = None
    currency: str = "USD"
    original_price: Decimal | None = None
    buy_quantity: int | None = None
    get_quantity: int | None = None
    max_free_per_order: int | None = None
    content_ids: tuple[str, ...] = ()
    bundle_price: Decimal | None = None
    valid_from: AwareDatetime
    valid_until: AwareDatetime | None = None
    target_audience: Audience = Audience.ALL
    target_value: str | None = None
    max_redemptions: int | None = None
    max_per_fan: int | None = None
    min_purchase: Decimal | None = None
    code: str | None = None
    draft: bool = False

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _utc(cls, moment: datetime | None) -> datetime | None:
        return None if moment is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidOffer(InvalidInput):
    """Offer data that breaks one rule or more; ``errors`` names every field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("invalid offer: " + "; ".join(map(str, errors)), errors[0].field)
        self.errors = tuple(errors)


def parse_offer(values: OfferData | Mapping[str, Any]) -> OfferData:
    """``values`` as valid offer data, or :class:`InvalidOffer` naming every problem."""
    if isinstance(values, OfferData):
        data = values
    else:
        try:
            data = OfferData.model_validate(dict(values))
        except ValidationError as exc:
            raise InvalidOffer([_field_error(e) for e in exc.errors()]) from None
    errors = list(offer_errors(data))
    if errors:
        raise InvalidOffer(errors)
    # To the cent, as stored: what is returned compares and prints as what is read back.
    cents = {f: getattr(data, f).quantize(CENT) for f in AMOUNTS if getattr(data, f) is not None}
    return data.model_copy(update=cents)


def _field_error(error: Mapping[str, Any]) -> FieldError:
    field = ".".join(str(part) for part in error["loc"]) or "offer"
    return FieldError(field, error["msg"])


def offer_errors(data: OfferData) -> Iterator[FieldError]:
    """Every rule the data breaks."""
    yield from _texts(data)
    yield from _amounts(data)
    yield from _discount(data)
    yield from _window(data)
    yield from _audience(data)
    yield from _limits(data)


def _texts(data: OfferData) -> Iterator[FieldError]:
    for field, allowed in (("name", ""), ("description", "\n\r\t"), ("target_value", "")):
        text = getattr(data, field)
        if text is not None and has_control(text, allowed):
            yield FieldError(field, "cannot contain control characters")
    if any(has_control(item) for item in data.content_ids):
        yield FieldError("content_ids", "cannot contain control characters")
    if not data.name.strip():
        yield FieldError("name", "an offer needs a name")
    elif len(data.name) > 200:
        yield FieldError("name", "at most 200 characters")
    if data.description is not None and len(data.description) > 2000:
        yield FieldError("description", "at most 2000 characters")
    if not CURRENCY_RE.fullmatch(data.currency):
        yield FieldError("currency", "a three-letter currency code in capitals, such as USD")
    if data.code is not None and not CODE_RE.fullmatch(data.code):
        yield FieldError("code", "3 to 40 letters, digits, _ or -")


def has_control(text: str, allowed: str = "") -> bool:
    """Whether ``text`` holds a control character (or half a surrogate pair) other than
    ``allowed``: PostgreSQL cannot even store NUL, and the others are surely mistakes."""
    return any(unicodedata.category(c) in ("Cc", "Cs") and c not in allowed for c in text)


def _amounts(data: OfferData) -> Iterator[FieldError]:
    for field in AMOUNTS:
        value = getattr(data, field)
        if value is None:
            continue
        problem = amount_problem(value, allow_zero=field == "min_purchase")
        if problem:
            yield FieldError(field, problem)


def amount_problem(value: Decimal, allow_zero: bool = False) -> str | None:
    """Why ``value`` is no amount an offer can hold, or None."""
    if not value.is_finite():
        return "must be a number"
    if value < 0 or (value == 0 and not allow_zero):
        return "cannot be negative" if value < 0 else "must be more than 0"
    if value > MAX_AMOUNT:
        return f"at most {MAX_AMOUNT}"
    if value != value.quantize(CENT):
        return "at most two decimal places"
    return None


def _discount(data: OfferData) -> Iterator[FieldError]:
    kind = data.discount_type
    needed = {
        DiscountType.PERCENTAGE: ("discount_value",),
        DiscountType.FIXED: ("discount_value",),
        DiscountType.BOGO: ("buy_quantity", "get_quantity"),
        DiscountType.BUNDLE: ("content_ids", "bundle_price", "original_price"),
    }[kind]
    for field in needed:
        if getattr(data, field) in (None, ()):
            yield FieldError(field, f"required for a {kind} offer")
    own = {"discount_value", "buy_quantity", "get_quantity", "max_free_per_order",
           "content_ids", "bundle_price"}  # fmt: skip
    allowed = {*needed, "max_free_per_order"} if kind == DiscountType.BOGO else set(needed)
    for field in sorted(own - allowed):
        if getattr(data, field) not in (None, ()):
            yield FieldError(field, f"not used by a {kind} offer")
    if kind == DiscountType.PERCENTAGE and data.discount_value is not None:
        if not 0 < data.discount_value <= 100:
            yield FieldError("discount_value", "a percentage must be more than 0 and at most 100")
    elif kind == DiscountType.FIXED:
        value, original = data.discount_value, data.original_price
        if value is not None and original is not None and value > original:
            yield FieldError(
                "discount_value",
                f"the discount ({value}) is more than the original price ({original})",
            )
    elif kind == DiscountType.BOGO:
        for field in ("buy_quantity", "get_quantity", "max_free_per_order"):
            count = getattr(data, field)
            if count is not None and not 1 <= count <= 1000:
                yield FieldError(field, "from 1 to 1000 items")
    elif kind == DiscountType.BUNDLE:
        yield from _bundle(data)


def _bundle(data: OfferData) -> Iterator[FieldError]:
    items = data.content_ids
    if items and len(set(items)) < 2:
        yield FieldError("content_ids", "a bundle needs at least two different items")
    elif len(set(items)) != len(items):
        yield FieldError("content_ids", "an item appears more than once")
    if any(not item.strip() or len(item) > 200 for item in items):
        yield FieldError("content_ids", "each item is an id of 1 to 200 characters")
    price, original = data.bundle_price, data.original_price
    if price is not None and original is not None and price >= original:
        yield FieldError(
            "bundle_price",
            f"a bundle must cost less than its items bought one by one ({original}), not {price}",
        )


def _window(data: OfferData) -> Iterator[FieldError]:
    if data.valid_until is not None and data.valid_until <= data.valid_from:
        yield FieldError("valid_until", "must be after valid_from")


def _audience(data: OfferData) -> Iterator[FieldError]:
    value = data.target_value
    if data.target_audience == Audience.ALL:
        if value is not None:
            yield FieldError("target_value", "an offer for all fans names no tag, segment or fan")
    elif value is None or not value.strip():
        yield FieldError("target_value", f"name the {data.target_audience} the offer is for")
    elif len(value) > 200:
        yield FieldError("target_value", "at most 200 characters")


def _limits(data: OfferData) -> Iterator[FieldError]:
    for field in ("max_redemptions", "max_per_fan"):
        limit = getattr(data, field)
        if limit is not None and not 1 <= limit <= MAX_COUNT:
            yield FieldError(field, f"from 1 to {MAX_COUNT}, or none for no limit")
