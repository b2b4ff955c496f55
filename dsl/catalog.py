"""What the checker needs to know about installed plugins, as plain data.

The engine discovers plugins through entry points and hands the checker a
:class:`Catalog`; ``dsl`` itself never looks anything up, so it stays pure and a test can
build a catalogue by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel


class ValueType(StrEnum):
    """The type of a context field, as the checker sees it."""

    TEXT = "text"
    NUMBER = "number"
    MONEY = "money"
    PERCENT = "percent"
    DURATION = "duration"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    LIST = "list"  # a list of text, such as fan.tags


@dataclass(frozen=True)
class TriggerSpec:
    name: str
    description: str
    # Every field the trigger's context provides, by dotted path: "fan.total_spent".
    fields: Mapping[str, ValueType]
    # The trigger's own arguments (`when subscription_expiring days_before: 3`), if any.
    config_model: type[BaseModel] | None = None


# What a creator's policy (dsl.policy) looks at in an action's arguments, by role: the
# role's name and the types an argument in that role may have. An action names its
# arguments in these roles itself (``ActionSpec.policy_arguments``; a plugin declares
# ``discount_argument`` and ``validity_argument``), so the policy checks a third party's
# discount exactly as it checks ``create_offer``'s.
POLICY_ROLES: Mapping[str, frozenset[ValueType]] = {
    "discount": frozenset({ValueType.PERCENT, ValueType.MONEY}),  # max_discount ...
    "validity": frozenset({ValueType.DURATION}),  # max_offer_validity
}


@dataclass(frozen=True)
class ActionSpec:
    name: str
    description: str
    config_model: type[BaseModel]
    # Triggers this action may cause (an offer redemption, say): for loop detection.
    emits: tuple[str, ...] = ()
    # Whether running it reaches outside the system (a message, a webhook).
    side_effects: bool = True
    # Whether each step sends the fan a message: it counts toward the policy's
    # max_messages_per_fan_per_day, as send_message does.
    sends_message: bool = False
    # The arguments the policy checks, by role (a key of POLICY_ROLES): create_offer's
    # is {"discount": "discount", "validity": "valid_for"}.
    policy_arguments: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Catalog:
    triggers: Mapping[str, TriggerSpec] = field(default_factory=dict)
    actions: Mapping[str, ActionSpec] = field(default_factory=dict)
