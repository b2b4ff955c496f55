"""``create_offer``: an offer made by an automation, for the fan it runs for (or for all
fans), valid from the moment the step runs."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.plugin_api import (
    Action,
    ActionContext,
    ActionError,
    ActionResult,
    InvalidInput,
    Money,
    Percentage,
)
from plugins.offers.service import OffersService
from plugins.offers.validation import Audience, DiscountType, OfferData, amount_problem

# Longer than a year is surely a mistake for an offer made by an automation.
MAX_VALID_FOR = timedelta(days=365)


class CreateOfferConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    discount: Percentage | Money = Field(description="20% off, or a fixed amount off: $10.")
    valid_for: timedelta = Field(description="How long the offer lasts from when it is made.")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    min_purchase: Money | None = None
    uses: int = Field(default=1, ge=1, le=1000, description="Redemptions allowed per fan.")
    audience: Literal["fan", "all"] = "fan"

    @field_validator("discount")
    @classmethod
    def _discount(cls, discount: Percentage | Money) -> Percentage | Money:
        if isinstance(discount, Percentage):
            if not 0 < discount.value <= 100:
                raise ValueError("a percentage discount must be more than 0% and at most 100%")
            if discount.value != discount.value.quantize(Decimal("0.01")):
                raise ValueError("a percentage discount has at most two decimal places")
        else:
            _amount(discount, "the discount")
        return discount

    @field_validator("valid_for")
    @classmethod
    def _valid_for(cls, valid_for: timedelta) -> timedelta:
        if not timedelta(0) < valid_for <= MAX_VALID_FOR:
            raise ValueError("an offer lasts more than 0s and at most 365 days")
        return valid_for

    @field_validator("min_purchase")
    @classmethod
    def _min_purchase(cls, minimum: Money | None) -> Money | None:
        if minimum is not None:
            _amount(minimum, "the minimum purchase", allow_zero=True)
        return minimum

    @model_validator(mode="after")
    def _one_currency(self) -> CreateOfferConfig:
        discount, minimum = self.discount, self.min_purchase
        if isinstance(discount, Money) and minimum and minimum.currency != discount.currency:
            raise ValueError("the discount and the minimum purchase are in different currencies")
        return self

    @property
    def currency(self) -> str:
        for money in (self.discount, self.min_purchase):
            if isinstance(money, Money):
                return money.currency
        return "USD"


def _amount(money: Money, what: str, allow_zero: bool = False) -> None:
    problem = amount_problem(money.amount, allow_zero)
    if problem:
        raise ValueError(f"{what} {problem}")


def offer_data(config: CreateOfferConfig, now: datetime, fan_id: str) -> OfferData:
    """The offer a step makes at ``now``, for the fan ``fan_id`` (the platform's id)."""
    discount = config.discount
    percent = isinstance(discount, Percentage)
    personal = config.audience == "fan"
    return OfferData(
        name=config.name or f"{discount} off",
        discount_type=DiscountType.PERCENTAGE if percent else DiscountType.FIXED,
        discount_value=discount.value if percent else discount.amount,
        currency=config.currency,
        valid_from=now,
        valid_until=now + config.valid_for,
        target_audience=Audience.FAN if personal else Audience.ALL,
        target_value=fan_id if personal else None,
        max_redemptions=config.uses if personal else None,
        max_per_fan=config.uses,
        min_purchase=config.min_purchase.amount if config.min_purchase else None,
    )


class CreateOffer(Action):
    description = (
        "Create a discount for the fan, valid from now for valid_for: discount is a "
        "percentage (20%) or an amount ($10); uses is how many times the fan may redeem it "
        '(1 by default); audience: "all" makes it an offer for every fan instead.'
    )
    side_effects = False  # it changes Huntaze's own data; tell the fan with send_message
    Config = CreateOfferConfig
    # What the creator's policy caps: max_discount ... and max_offer_validity.
    discount_argument = "discount"
    validity_argument = "valid_for"

    def run(self, ctx: ActionContext, config: CreateOfferConfig) -> ActionResult:
        database = ctx.services.database
        if database is None:
            raise ActionError("create_offer needs the engine's database, and got none")
        if config.audience == "fan" and not ctx.fan_external_id:
            raise ActionError("the engine did not say which fan the offer is for")
        data = offer_data(config, ctx.now, ctx.fan_external_id)
        service = OffersService(database, now=lambda: ctx.now)
        try:
            # The step's key: a retried step finds the offer it made the first time.
            offer = service.create(ctx.creator_id, data, idempotency_key=ctx.idempotency_key)
        except InvalidInput as exc:
            raise ActionError(str(exc)) from exc
        until = offer.valid_until.strftime("%Y-%m-%d %H:%M UTC")
        return ActionResult(
            detail=f"offer {offer.name!r}: {config.discount} off until {until}",
            output={
                "offer_id": offer.id,
                "name": offer.name,
                "discount": str(config.discount),
                "valid_until": offer.valid_until.isoformat(),
            },
        )
