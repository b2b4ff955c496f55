"""A hand-built plugin catalogue for the pure ``dsl`` tests.

It mirrors the built-in triggers and actions (plus ``create_offer``) without importing
``engine`` or ``plugins``, so the checker, compiler and flow tests do not depend on
plugin discovery and keep working while that code changes.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from dsl.catalog import ActionSpec, Catalog, TriggerSpec, ValueType
from dsl.values import Money, Percentage

FAN_FIELDS = {
    "fan.name": ValueType.TEXT,
    "fan.username": ValueType.TEXT,
    "fan.total_spent": ValueType.MONEY,
    "fan.tags": ValueType.LIST,
    "fan.country": ValueType.TEXT,
    "fan.subscribed_at": ValueType.DATETIME,
    "fan.message_count": ValueType.NUMBER,
}


class _Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SendMessage(_Arguments):
    text: str = Field(min_length=1)


class Tag(_Arguments):
    tag: str


class CreateOffer(_Arguments):
    discount: Percentage | Money
    valid_for: timedelta
    name: str | None = None


class ExpiringConfig(_Arguments):
    days_before: int = 3


def _trigger(name: str, event: dict[str, ValueType], config=None) -> TriggerSpec:
    fields = {**FAN_FIELDS, **{f"event.{key}": kind for key, kind in event.items()}}
    return TriggerSpec(name, f"test trigger {name}", fields, config)


def _action(name: str, model: type[BaseModel]) -> ActionSpec:
    return ActionSpec(name, f"test action {name}", model)


CATALOG = Catalog(
    triggers={
        "new_subscriber": _trigger("new_subscriber", {}),
        "message_received": _trigger("message_received", {"text": ValueType.TEXT}),
        "purchase_completed": _trigger(
            "purchase_completed", {"amount": ValueType.MONEY, "item": ValueType.TEXT}
        ),
        "subscription_expiring": _trigger(
            "subscription_expiring",
            {"days_left": ValueType.NUMBER, "renewal_price": ValueType.MONEY},
            ExpiringConfig,
        ),
    },
    actions={
        "send_message": _action("send_message", SendMessage),
        "add_tag": _action("add_tag", Tag),
        "remove_tag": _action("remove_tag", Tag),
        "create_offer": _action("create_offer", CreateOffer),
    },
)
