"""The four events about fans that start automations."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from engine.plugin_api import FanFields, MoneyAmount, Trigger


class MessageEvent(BaseModel):
    text: str


class PurchaseEvent(BaseModel):
    amount: MoneyAmount
    item: str


class ExpiringEvent(BaseModel):
    days_left: int = Field(ge=0)
    renewal_price: MoneyAmount


class NewSubscriber(Trigger):
    description = "A fan subscribed to the creator."

    class Context(BaseModel):
        fan: FanFields


class MessageReceived(Trigger):
    description = "A fan sent the creator a message; event.text is what they wrote."

    class Context(BaseModel):
        fan: FanFields
        event: MessageEvent


class PurchaseCompleted(Trigger):
    description = (
        "A fan bought something (a post, a message, a bundle); "
        "event.amount is what they paid, event.item what they bought."
    )

    class Context(BaseModel):
        fan: FanFields
        event: PurchaseEvent


class SubscriptionExpiring(Trigger):
    description = (
        "A fan's subscription ends soon and will not renew by itself; event.days_left "
        "days remain and event.renewal_price is the price to renew."
    )

    class Context(BaseModel):
        fan: FanFields
        event: ExpiringEvent

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        # Without it the automation runs on every notice the platform sends.
        days_before: int | None = Field(
            default=None, ge=0, le=365, description="Run only when this many days are left."
        )

    def matches(self, config: BaseModel | None, context: BaseModel) -> bool:
        wanted = getattr(config, "days_before", None)
        return wanted is None or context.event.days_left == wanted
