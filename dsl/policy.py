"""Guardrails: what a valid automation may still not do to a creator's fans.

The checker says whether an automation makes sense; a :class:`Policy` says whether the
creator wants it. ``check_policy(module, policy, catalog)`` reports, as diagnostics with
the usual span and hint, every place an automation goes beyond the policy:

- ``policy.max-discount``: a discount above ``max_discount`` (a percentage) or above
  ``max_fixed_discount`` (an amount, in the offer's own currency);
- ``policy.confirm-discount``: a percentage above ``confirm_discount_above``, which the
  creator must confirm (an error unless ``confirmed=True``; nothing once confirmed);
- ``policy.offer-validity``: an offer that lasts longer than ``max_offer_validity``;
- ``policy.messages-per-day``: more message-sending steps than
  ``max_messages_per_fan_per_day`` that one run can send one fan within 24 hours.

Which steps send a message and which arguments are a discount or a validity, the
catalogue says (``ActionSpec.sends_message`` and ``policy_arguments``, which every
plugin declares, the built-in ``send_message`` and ``create_offer`` as any other): no
action is known here by its name, so a third party's action is held to the same policy.
An action the catalogue does not know has no role.

The message count follows every path through the automation: each ``if`` may take any
of its arms (conditions are not evaluated), and a ``wait`` moves the clock on. Two
messages count together when the waits between them add up to less than 24 hours;
messages 24 hours apart or more fall in different days, as the engine's own daily cap
counts them. It is a bound for one run: a trigger that fires several times a day, or
several automations, can still add up, and the engine's cap stops those at run time.

Only literal argument values are looked at (the checker refuses any other), so the
policy sees exactly the numbers that will run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from dsl import ast
from dsl.catalog import Catalog
from dsl.diagnostics import Diagnostic, error
from dsl.explain import duration_words, money_words, number_words

DAY = 86400  # seconds

# The code of a discount that only needs the creator's confirmation: callers tell it
# from what the policy refuses outright.
CONFIRM_DISCOUNT = "policy.confirm-discount"

_DURATION = re.compile(r"^\s*(\d+)([smhdw])\s*$")


class Policy(BaseModel):
    """A creator's guardrails. Percentages are numbers of percent (``50`` is 50%);
    durations may be written as in the language (``"30d"``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_discount: Decimal = Field(
        default=Decimal(50), gt=0, le=100, description="The largest percentage off an offer."
    )
    confirm_discount_above: Decimal = Field(
        default=Decimal(40),
        ge=0,
        le=100,
        description="A percentage off above this needs the creator's confirmation.",
    )
    max_fixed_discount: Decimal | None = Field(
        default=Decimal(100),
        gt=0,
        description="The largest fixed amount off, in the offer's currency (None: no cap).",
    )
    max_offer_validity: timedelta | None = Field(
        default=timedelta(days=30), description="How long an offer may last (None: no cap)."
    )
    # The engine's default daily cap per fan (engine.settings), which a creator's own cap
    # replaces when the engine reads their policy (engine.creators.get_policy).
    max_messages_per_fan_per_day: int = Field(
        default=5, ge=0, description="Messages one run may send one fan within 24 hours."
    )

    @field_validator("max_discount", "confirm_discount_above", mode="before")
    @classmethod
    def _percent(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().removesuffix("%")
        return value

    @field_validator("max_offer_validity", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str) and (m := _DURATION.match(value)):
            return timedelta(seconds=ast.Duration(int(m[1]), m[2]).seconds)
        return value

    @field_validator("max_offer_validity")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("an offer must be allowed to last more than 0s")
        return value

    @field_serializer("max_discount", "confirm_discount_above", "max_fixed_discount",
                      when_used="json")  # fmt: skip
    def _number(self, value: Decimal | None) -> int | float | None:
        if value is None:
            return None
        return int(value) if value == value.to_integral_value() else float(value)

    @field_serializer("max_offer_validity", when_used="json")
    def _duration_text(self, value: timedelta | None) -> str | None:
        if value is None:
            return None
        seconds = int(value.total_seconds())
        for unit, size in sorted(ast.DURATION_UNITS.items(), key=lambda u: -u[1]):
            if seconds % size == 0:
                return f"{seconds // size}{unit}"
        raise AssertionError("every whole number of seconds has a unit")  # pragma: no cover


def check_policy(
    module: ast.Module | ast.Automation,
    policy: Policy,
    catalog: Catalog,
    *,
    confirmed: bool = False,
) -> list[Diagnostic]:
    """Every place ``module`` goes beyond ``policy``, in source order, its actions' roles
    read from ``catalog``. With ``confirmed``, discounts that only needed the creator's
    confirmation are allowed."""
    automations = module.automations if isinstance(module, ast.Module) else (module,)
    diagnostics: list[Diagnostic] = []
    for automation in automations:
        for action in _actions(automation.body):
            spec = catalog.actions.get(action.name)
            if spec is not None and spec.policy_arguments:
                diagnostics.extend(_discounts(action, spec.policy_arguments, policy, confirmed))
        diagnostics.extend(_messages(automation, policy, catalog))
    return sorted(diagnostics, key=lambda d: (d.span.line, d.span.column))


def _actions(steps: Sequence[ast.Step]) -> Iterator[ast.Action]:
    for step in steps:
        match step:
            case ast.Action():
                yield step
            case ast.If(branches=branches, else_body=else_body):
                for branch in branches:
                    yield from _actions(branch.body)
                yield from _actions(else_body or ())


# --- Discounts and validity ----------------------------------------------------------------


def _discounts(
    action: ast.Action, roles: Mapping[str, str], policy: Policy, confirmed: bool
) -> Iterator[Diagnostic]:
    """The arguments of ``action`` in a role (``roles``: role -> argument), checked."""
    by_argument = {argument: role for role, argument in roles.items()}
    for argument in action.arguments:
        value = argument.value
        match by_argument.get(argument.name), value:
            case "discount", ast.Percent(value=percent):
                yield from _percentage(value, percent, policy, confirmed)
            case "discount", ast.Money(amount=amount) if (
                policy.max_fixed_discount is not None and amount > policy.max_fixed_discount
            ):
                limit = money_words(ast.Money(policy.max_fixed_discount, value.currency))
                yield error(
                    f"a discount of {money_words(value)} is more than the policy allows "
                    f"({limit} off at most)",
                    value.span,
                    hint="lower the amount, or raise `max_fixed_discount` in the policy",
                    code="policy.max-discount",
                )
            case "validity", ast.Duration() if (
                policy.max_offer_validity is not None
                and value.seconds > policy.max_offer_validity.total_seconds()
            ):
                limit = policy.max_offer_validity.total_seconds()
                yield error(
                    f"an offer valid for {duration_words(value)} lasts longer than the "
                    f"policy allows ({_seconds_words(limit)} at most)",
                    value.span,
                    hint="make it shorter, or raise `max_offer_validity` in the policy",
                    code="policy.offer-validity",
                )


def _percentage(
    node: ast.Percent, percent: Decimal, policy: Policy, confirmed: bool
) -> Iterator[Diagnostic]:
    shown = f"{number_words(percent)}%"
    if percent > policy.max_discount:
        yield error(
            f"a discount of {shown} is more than the policy allows "
            f"({number_words(policy.max_discount)}% at most)",
            node.span,
            hint=f"lower it to {number_words(policy.max_discount)}% or less, or raise "
            "`max_discount` in the policy",
            code="policy.max-discount",
        )
    elif percent > policy.confirm_discount_above and not confirmed:
        limit = number_words(policy.confirm_discount_above)
        yield error(
            f"a discount of {shown} needs your confirmation (the policy asks above {limit}%)",
            node.span,
            hint=f"confirm it when you save the automation, or lower it to {limit}% or less",
            code=CONFIRM_DISCOUNT,
        )


def _seconds_words(seconds: float) -> str:
    whole = int(seconds)
    for unit, size in sorted(ast.DURATION_UNITS.items(), key=lambda u: -u[1]):
        if whole % size == 0:
            return duration_words(ast.Duration(whole // size, unit))
    raise AssertionError("every whole number of seconds has a unit")  # pragma: no cover


# --- Messages per day ----------------------------------------------------------------------

# A segment of a path: how many messages it sends, the waits it holds (seconds), and where
# its last message is written (for the diagnostic).
_Entry = tuple[int, ast.Span | None]
_Table = dict[int, _Entry]  # messages -> the least wait, and the last message's span


@dataclass(frozen=True)
class _Sends:
    """What a block can send, summed up over every path through it.

    ``prefix``: for each number of messages sent from the block's start, the least wait
    before the last of them; ``suffix``: for each number sent up to the block's end, the
    least wait from the first of them to the end; ``through``: for each number sent along
    a whole path, that path's least total wait. Only waits under 24 hours are kept (no
    window reaches further); ``most`` is the most messages any 24-hour window inside the
    block holds, and ``at`` the last message of that window.
    """

    most: int
    at: ast.Span | None
    prefix: _Table
    suffix: _Table
    through: _Table


_NONE: _Table = {0: (0, None)}
_NOTHING = _Sends(0, None, _NONE, _NONE, _NONE)


def _message(span: ast.Span) -> _Sends:
    sent: _Table = {0: (0, None), 1: (0, span)}
    return _Sends(1, span, sent, sent, {1: (0, span)})


def _wait(seconds: int) -> _Sends:
    return _Sends(0, None, _NONE, _NONE, {0: (seconds, None)} if seconds < DAY else {})


def _join(first: _Table, second: _Table) -> _Table:
    """A segment of ``first`` followed by one of ``second``, each way of choosing them."""
    out: _Table = {}
    for count_a, (wait_a, last_a) in first.items():
        for count_b, (wait_b, last_b) in second.items():
            wait = wait_a + wait_b
            if wait < DAY:
                _keep(out, count_a + count_b, wait, last_b if count_b else last_a)
    return out


def _union(*tables: _Table) -> _Table:
    out: _Table = {}
    for table in tables:
        for count, (wait, last) in table.items():
            _keep(out, count, wait, last)
    return out


def _keep(table: _Table, count: int, wait: int, last: ast.Span | None) -> None:
    if count not in table or wait < table[count][0]:
        table[count] = (wait, last)


def _then(a: _Sends, b: _Sends) -> _Sends:
    most, at = (a.most, a.at) if a.most >= b.most else (b.most, b.at)
    for count, (_, last) in _join(a.suffix, b.prefix).items():
        if count > most:
            most, at = count, last
    return _Sends(
        most,
        at,
        prefix=_union(a.prefix, _join(a.through, b.prefix)),
        suffix=_union(b.suffix, _join(a.suffix, b.through)),
        through=_join(a.through, b.through),
    )


def _either(options: Sequence[_Sends]) -> _Sends:
    best = max(options, key=lambda o: o.most)
    return _Sends(
        best.most,
        best.at,
        prefix=_union(*(o.prefix for o in options)),
        suffix=_union(*(o.suffix for o in options)),
        through=_union(*(o.through for o in options)),
    )


def _block(steps: Sequence[ast.Step], senders: frozenset[str]) -> _Sends:
    sends = _NOTHING
    for step in steps:
        match step:
            case ast.Action(name=name) if name in senders:
                part = _message(step.span)
            case ast.Wait(duration=duration):
                part = _wait(duration.seconds)
            case ast.If(branches=branches, else_body=else_body):
                arms = [_block(b.body, senders) for b in branches]
                arms.append(_block(else_body, senders) if else_body is not None else _NOTHING)
                part = _either(arms)
            case _:
                continue
        sends = _then(sends, part)
    return sends


def _senders(catalog: Catalog) -> frozenset[str]:
    """The actions whose every step sends the fan a message."""
    return frozenset(name for name, spec in catalog.actions.items() if spec.sends_message)


def messages_per_day(automation: ast.Automation, catalog: Catalog) -> int:
    """The most messages one run of ``automation`` can send one fan within 24 hours,
    counting the steps of the actions that ``catalog`` says send a message."""
    return _block(automation.body, _senders(catalog)).most


def _messages(automation: ast.Automation, policy: Policy, catalog: Catalog) -> Iterator[Diagnostic]:
    sends = _block(automation.body, _senders(catalog))
    limit = policy.max_messages_per_fan_per_day
    if sends.most > limit:
        yield error(
            f"this automation can send a fan {sends.most} messages within 24 hours; the "
            f"policy allows {limit}",
            sends.at or automation.span,
            hint="send fewer, or wait 24h between them: messages less than 24 hours apart "
            "count together, along the branches that send the most",
            code="policy.messages-per-day",
        )
