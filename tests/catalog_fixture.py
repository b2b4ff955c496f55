"""A hand-built plugin catalogue for the pure ``dsl`` tests, and generated automations
the compiler accepts.

The catalogue mirrors the built-in triggers and actions (plus ``create_offer``) without
importing ``engine`` or ``plugins``, so the checker, compiler and flow tests do not
depend on plugin discovery and keep working while that code changes.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field
from strategies import automations

from dsl import ast
from dsl.catalog import ActionSpec, Catalog, TriggerSpec, ValueType
from dsl.formatter import expression
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


def _action(name: str, model: type[BaseModel], **roles) -> ActionSpec:
    return ActionSpec(name, f"test action {name}", model, **roles)


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
        # The policy's roles, as the built-ins declare them (engine.plugin_api.Action).
        "send_message": _action("send_message", SendMessage, sends_message=True),
        "add_tag": _action("add_tag", Tag),
        "remove_tag": _action("remove_tag", Tag),
        "create_offer": _action(
            "create_offer",
            CreateOffer,
            policy_arguments={"discount": "discount", "validity": "valid_for"},
        ),
    },
)


# --- Generated modules the compiler accepts ----------------------------------------------


def _literal_only(value: ast.Expr) -> ast.Expr:
    """An argument value as the checker lets it through: written out. Anything else
    becomes the text of the expression, so the variety of the generated trees is kept."""
    if _is_literal(value):
        return value
    return ast.String(expression(value))


def _is_literal(value: ast.Expr) -> bool:
    if isinstance(value, ast.ListExpr):
        return all(_is_literal(item) for item in value.items)
    return isinstance(value, ast.Literal)


def _arguments(arguments: tuple[ast.Argument, ...]) -> tuple[ast.Argument, ...]:
    # An argument given twice is an error too: keep the first.
    first = {a.name: a for a in reversed(arguments)}
    return tuple(replace(a, value=_literal_only(a.value)) for a in arguments if first[a.name] is a)


def _step(step: ast.Step) -> ast.Step:
    match step:
        case ast.Action():
            return replace(step, arguments=_arguments(step.arguments))
        case ast.If(branches=branches, else_body=else_body):
            return replace(
                step,
                branches=tuple(replace(b, body=tuple(map(_step, b.body))) for b in branches),
                else_body=None if else_body is None else tuple(map(_step, else_body)),
            )
    return step


def compilable(automation: ast.Automation) -> ast.Automation:
    """``automation`` with literal arguments only: the compiler trusts the checker to
    have refused the rest."""
    trigger = replace(automation.trigger, arguments=_arguments(automation.trigger.arguments))
    return replace(automation, trigger=trigger, body=tuple(map(_step, automation.body)))


def compilable_automations() -> st.SearchStrategy[ast.Automation]:
    return automations().map(compilable)
