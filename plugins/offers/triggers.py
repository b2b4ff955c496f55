"""``offer_redeemed``: emitted by ``OffersService.redeem`` after every redemption."""

from __future__ import annotations

from pydantic import BaseModel

from engine.plugin_api import FanFields, MoneyAmount, Trigger


class RedemptionEvent(BaseModel):
    offer_id: str
    offer_name: str
    amount: MoneyAmount  # the price before the discount
    discount: MoneyAmount  # the discount given
    paid: MoneyAmount  # what the fan paid: amount - discount
    currency: str  # the offer's, such as "USD"
    code: str | None = None  # the code the fan used, if any
    redemption_id: str


class OfferRedeemed(Trigger):
    description = (
        "A fan redeemed an offer; event.offer_name is the offer, event.amount the price "
        "before the discount, event.discount the discount given, event.paid what the fan "
        "paid, event.code the code used (if any)."
    )

    class Context(BaseModel):
        fan: FanFields
        event: RedemptionEvent
