"""Plugin discovery: entry points → the checker's catalogue, and broken plugins reported."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from importlib.metadata import EntryPoint, distribution
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from dsl.catalog import ValueType
from dsl.values import Money, Percentage
from engine import catalogue
from engine.catalogue import (
    ACTIONS,
    KEYWORDS,
    TRIGGERS,
    PluginError,
    build_catalogue,
    context_fields,
    load_catalogue,
)
from engine.plugin_api import Action, ActionResult, FanFields, Trigger

BUILTIN_TRIGGERS = {"new_subscriber", "message_received", "purchase_completed",
                    "subscription_expiring", "offer_redeemed"}  # fmt: skip
BUILTIN_ACTIONS = {"send_message", "add_tag", "remove_tag", "create_offer"}
FAN = {
    "fan.name": ValueType.TEXT,
    "fan.username": ValueType.TEXT,
    "fan.total_spent": ValueType.MONEY,
    "fan.tags": ValueType.LIST,
    "fan.country": ValueType.TEXT,
    "fan.subscribed_at": ValueType.DATETIME,
    "fan.message_count": ValueType.NUMBER,
}


# --- The built-ins, found like anyone else's ------------------------------------------


def test_builtins_are_registered_as_entry_points_of_our_distribution():
    eps = distribution("huntaze").entry_points
    assert {ep.name for ep in eps if ep.group == TRIGGERS} == BUILTIN_TRIGGERS
    assert {ep.name for ep in eps if ep.group == ACTIONS} == BUILTIN_ACTIONS


def test_builtins_load_without_problems():
    loaded = load_catalogue(refresh=True)
    assert BUILTIN_TRIGGERS <= set(loaded.catalog.triggers) == set(loaded.triggers)
    assert BUILTIN_ACTIONS <= set(loaded.catalog.actions) == set(loaded.actions)
    assert loaded.problems == ()


@pytest.mark.parametrize(
    ("trigger", "event_fields"),
    [
        ("new_subscriber", {}),
        ("message_received", {"event.text": ValueType.TEXT}),
        ("purchase_completed", {"event.amount": ValueType.MONEY, "event.item": ValueType.TEXT}),
        (
            "subscription_expiring",
            {"event.days_left": ValueType.NUMBER, "event.renewal_price": ValueType.MONEY},
        ),
    ],
)
def test_builtin_trigger_fields(trigger, event_fields):
    spec = load_catalogue().catalog.triggers[trigger]
    assert dict(spec.fields) == FAN | event_fields
    assert spec.description


def test_only_subscription_expiring_takes_an_argument():
    triggers = load_catalogue().catalog.triggers
    config = triggers["subscription_expiring"].config_model
    assert config is not None and set(config.model_fields) == {"days_before"}
    assert config().days_before is None  # optional
    others = BUILTIN_TRIGGERS - {"subscription_expiring"}
    assert all(triggers[name].config_model is None for name in others)


def test_builtin_action_specs():
    actions = load_catalogue().catalog.actions
    for name, argument in [("send_message", "text"), ("add_tag", "tag"), ("remove_tag", "tag")]:
        fields = actions[name].config_model.model_fields
        assert list(fields) == [argument] and fields[argument].is_required()
        assert actions[name].emits == ()
    assert actions["send_message"].side_effects is True
    assert actions["add_tag"].side_effects is actions["remove_tag"].side_effects is False


def test_builtin_actions_declare_their_policy_roles():
    """The policy knows `send_message` and `create_offer` only by what they declare."""
    actions = load_catalogue().catalog.actions
    assert {name for name in BUILTIN_ACTIONS if actions[name].sends_message} == {"send_message"}
    assert actions["create_offer"].policy_arguments == {
        "discount": "discount",
        "validity": "valid_for",
    }
    assert all(actions[name].policy_arguments == {} for name in BUILTIN_ACTIONS - {"create_offer"})


def test_the_engine_never_imports_plugins_or_webapp():
    for path in Path(catalogue.__file__).parent.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import)\s+(plugins|webapp)\b", text, re.M), path


# --- Context models → field types ---------------------------------------------------------


class Colour(StrEnum):
    RED = "red"


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (str, ValueType.TEXT),
        (int, ValueType.NUMBER),
        (float, ValueType.NUMBER),
        (Decimal, ValueType.NUMBER),
        (int | float, ValueType.NUMBER),
        (bool, ValueType.BOOLEAN),
        (datetime, ValueType.DATETIME),
        (timedelta, ValueType.DURATION),
        (Money, ValueType.MONEY),
        (Percentage, ValueType.PERCENT),
        (list[str], ValueType.LIST),
        (tuple[str, ...], ValueType.LIST),
        (frozenset[str], ValueType.LIST),
        (Sequence[str], ValueType.LIST),
        (str | None, ValueType.TEXT),
        (Money | None, ValueType.MONEY),
        (Annotated[int, Field(ge=0)], ValueType.NUMBER),
        (Literal["a", "b"], ValueType.TEXT),
        (Colour, ValueType.TEXT),
    ],
)
def test_field_types(annotation, expected):
    model = type("Event", (BaseModel,), {"__annotations__": {"value": annotation}})
    assert context_fields(model) == {"value": expected}


@pytest.mark.parametrize(
    "annotation",
    [dict[str, str], list[int], list, tuple[str, int], int | str, bytes, Literal[1, 2], object],
)
def test_field_types_the_language_cannot_use_are_refused(annotation):
    model = type("Event", (BaseModel,), {"__annotations__": {"value": annotation}})
    with pytest.raises(PluginError, match="field `value` has type"):
        context_fields(model)


def test_nested_models_become_dotted_paths():
    class Item(BaseModel):
        price: Money

    class Event(BaseModel):
        item: Item | None = None
        seen: bool

    class Context(BaseModel):
        fan: FanFields
        event: Event

    assert context_fields(Context) == FAN | {
        "event.item.price": ValueType.MONEY,
        "event.seen": ValueType.BOOLEAN,
    }


def test_a_model_nested_in_itself_is_refused():
    class Node(BaseModel):
        child: Node | None = None

    Node.model_rebuild()
    with pytest.raises(PluginError, match="nests `Node` in itself"):
        context_fields(Node)


def test_a_field_whose_name_cannot_be_written_is_refused():
    model = type("Event", (BaseModel,), {"__annotations__": {"Amount": int}})
    with pytest.raises(PluginError, match="`Amount` is not a valid name"):
        context_fields(model)


# --- Broken plugins -------------------------------------------------------------------------


class GoodTrigger(Trigger):
    description = "A good trigger."

    class Context(BaseModel):
        fan: FanFields


class GoodAction(Action):
    description = "A good action."

    class Config(BaseModel):
        tag: str

    def run(self, ctx, config):
        return ActionResult()


class NoDescription(GoodAction):
    description = "   "


class ConfigNotAModel(GoodAction):
    class Config:
        tag: str


class NoRun(Action):
    description = "Forgot to run."


class BadEmits(GoodAction):
    emits = "purchase_completed"  # a string, not a tuple


class BadSideEffects(GoodAction):
    side_effects = "yes"


class BadSendsMessage(GoodAction):
    sends_message = 1


class DiscountNotAnArgument(GoodAction):
    discount_argument = "discount"


class DiscountWithADefault(GoodAction):
    discount_argument = "off"

    class Config(BaseModel):
        off: Percentage = Percentage(Decimal(10))


class DiscountAsANumber(GoodAction):
    discount_argument = "off"

    class Config(BaseModel):
        off: int


class ValidityAsAPercentage(GoodAction):
    validity_argument = "lasts"

    class Config(BaseModel):
        lasts: Percentage | timedelta


class Coupon(GoodAction):
    """A third party's discount: the policy reads it as it reads create_offer's."""

    sends_message = True
    discount_argument = "off"
    validity_argument = "lasts"

    class Config(BaseModel):
        off: Annotated[Percentage | Money, Field(description="20% or $5")]
        lasts: timedelta | None


class BadArgumentName(GoodAction):
    class Config(BaseModel):
        Tag: str


class NoContext(Trigger):
    description = "No context."


class UnusableContext(GoodTrigger):
    class Context(BaseModel):
        payload: dict[str, str]


class FailsToStart(GoodAction):
    def __init__(self) -> None:
        raise RuntimeError("no API key")


def not_a_plugin():
    """A function, not a Trigger or Action."""


@pytest.fixture
def fake_plugins(monkeypatch) -> str:
    """A module the fake entry points below point into."""
    module = types.ModuleType("huntaze_fake_plugins")
    module.__dict__.update({k: v for k, v in globals().items() if not k.startswith("__")})
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module.__name__


def ep(name: str, value: str, group: str = ACTIONS) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=group)


@pytest.mark.parametrize(
    ("attr", "group", "reason"),
    [
        ("NoDescription", ACTIONS, "has no `description`"),
        ("ConfigNotAModel", ACTIONS, "`Config` must be a pydantic BaseModel subclass"),
        ("NoRun", ACTIONS, "does not implement `run`"),
        ("BadEmits", ACTIONS, "`emits` must be a tuple"),
        ("BadSideEffects", ACTIONS, "`side_effects` must be True or False"),
        ("BadSendsMessage", ACTIONS, "`sends_message` must be True or False"),
        (
            "DiscountNotAnArgument",
            ACTIONS,
            "its `discount_argument` is `discount`, which is not one of its arguments",
        ),
        ("DiscountWithADefault", ACTIONS, "discount argument `off` must be required"),
        ("DiscountAsANumber", ACTIONS, "discount argument `off` must be of type Money or Perc"),
        ("ValidityAsAPercentage", ACTIONS, "validity argument `lasts` must be of type timedelta"),
        ("BadArgumentName", ACTIONS, "argument `Tag` is not a valid name"),
        ("FailsToStart", ACTIONS, "RuntimeError: no API key"),
        (
            "not_a_plugin",
            ACTIONS,
            "is neither a subclass nor an instance of engine.plugin_api.Action",
        ),
        (
            "GoodTrigger",
            ACTIONS,
            "is neither a subclass nor an instance of engine.plugin_api.Action",
        ),
        ("NoContext", TRIGGERS, "`Context` must be a pydantic BaseModel subclass"),
        ("UnusableContext", TRIGGERS, "field `payload` has type `dict"),
        (
            "GoodAction",
            TRIGGERS,
            "is neither a subclass nor an instance of engine.plugin_api.Trigger",
        ),
    ],
)
def test_an_invalid_declaration_is_reported_and_the_others_load(fake_plugins, attr, group, reason):
    triggers = [ep("good_trigger", f"{fake_plugins}:GoodTrigger", TRIGGERS)]
    actions = [ep("good_action", f"{fake_plugins}:GoodAction")]
    broken = ep("broken", f"{fake_plugins}:{attr}", group)
    (triggers if group == TRIGGERS else actions).insert(0, broken)

    loaded = build_catalogue(triggers, actions)

    [problem] = loaded.problems
    assert (problem.name, problem.group) == ("broken", group)
    assert reason in problem.reason
    assert set(loaded.catalog.triggers) == set(loaded.triggers) == {"good_trigger"}
    assert set(loaded.catalog.actions) == set(loaded.actions) == {"good_action"}


def test_policy_roles_are_declared_on_the_action(fake_plugins):
    loaded = build_catalogue([], [ep("coupon", f"{fake_plugins}:Coupon")])
    assert loaded.problems == ()
    spec = loaded.catalog.actions["coupon"]
    assert spec.sends_message is True
    assert spec.policy_arguments == {"discount": "off", "validity": "lasts"}
    plain = build_catalogue([], [ep("good", f"{fake_plugins}:GoodAction")]).catalog
    assert (plain.actions["good"].sends_message, plain.actions["good"].policy_arguments) == (
        False,
        {},
    )


def test_import_errors_are_reported_by_name(fake_plugins, tmp_path, monkeypatch):
    (tmp_path / "huntaze_explodes.py").write_text("raise ImportError('needs libfoo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = build_catalogue(
        [],
        [
            ep("missing_module", "huntaze_no_such_module:Thing"),
            ep("missing_attr", f"{fake_plugins}:NoSuchThing"),
            ep("explodes", "huntaze_explodes:Thing"),
            ep("good_action", f"{fake_plugins}:GoodAction"),
        ],
    )
    reasons = {p.name: p.reason for p in loaded.problems}
    assert set(reasons) == {"missing_module", "missing_attr", "explodes"}
    missing = "cannot import `huntaze_no_such_module:Thing`: ModuleNotFoundError"
    assert missing in reasons["missing_module"]
    assert "AttributeError" in reasons["missing_attr"]
    assert "ImportError: needs libfoo" in reasons["explodes"]
    assert set(loaded.actions) == {"good_action"}


@pytest.mark.parametrize("name", ["Add-Tag", "addTag", "1tag", "wait", "if", "not"])
def test_a_name_the_language_cannot_say_is_reported(fake_plugins, name):
    loaded = build_catalogue([], [ep(name, f"{fake_plugins}:GoodAction")])
    assert [p.name for p in loaded.problems] == [name]
    assert not loaded.actions


def test_a_name_claimed_by_two_plugins_is_refused_for_both(fake_plugins):
    loaded = build_catalogue(
        [],
        [
            ep("tag", f"{fake_plugins}:GoodAction"),
            ep("tag", f"{fake_plugins}:NoDescription"),
            ep("other", f"{fake_plugins}:GoodAction"),
        ],
    )
    [problem] = loaded.problems
    assert problem.name == "tag" and "claimed by more than one plugin" in problem.reason
    assert f"{fake_plugins}:GoodAction" in problem.reason
    assert f"{fake_plugins}:NoDescription" in problem.reason
    assert set(loaded.actions) == {"other"}


def test_the_same_entry_point_seen_twice_loads_once(fake_plugins):
    same = ep("tag", f"{fake_plugins}:GoodAction")
    loaded = build_catalogue([], [same, ep("tag", f"{fake_plugins}:GoodAction")])
    assert loaded.problems == () and set(loaded.actions) == {"tag"}


def test_a_trigger_and_an_action_may_share_a_name(fake_plugins):
    loaded = build_catalogue(
        [ep("tag", f"{fake_plugins}:GoodTrigger", TRIGGERS)],
        [ep("tag", f"{fake_plugins}:GoodAction")],
    )
    assert loaded.problems == () and "tag" in loaded.triggers and "tag" in loaded.actions


def test_an_instance_is_accepted_as_well_as_a_class(fake_plugins, monkeypatch):
    monkeypatch.setattr(sys.modules[fake_plugins], "instance", GoodAction(), raising=False)
    loaded = build_catalogue([], [ep("good", f"{fake_plugins}:instance")])
    assert loaded.problems == ()
    assert loaded.actions["good"] is sys.modules[fake_plugins].instance


# --- Caching ----------------------------------------------------------------------------------


def test_the_catalogue_is_loaded_once_per_process_and_refreshable(fake_plugins, monkeypatch):
    installed = {TRIGGERS: [], ACTIONS: [ep("first", f"{fake_plugins}:GoodAction")]}
    monkeypatch.setattr(catalogue, "_entry_points", lambda group: list(installed[group]))
    monkeypatch.setattr(catalogue, "_loaded", None)

    first = load_catalogue()
    installed[ACTIONS].append(ep("second", f"{fake_plugins}:GoodAction"))
    assert load_catalogue() is first
    assert set(first.actions) == {"first"}

    refreshed = load_catalogue(refresh=True)
    assert set(refreshed.catalog.actions) == {"first", "second"}
    assert load_catalogue() is refreshed


# --- Keywords -----------------------------------------------------------------------------


def test_reserved_names_are_the_grammars_keywords():
    grammar = (Path(catalogue.__file__).parents[1] / "dsl" / "grammar.lark").read_text()
    words = set(re.findall(r"^_?[A-Z]+\.\d+: /([a-z]+)\\b/$", grammar, re.M))
    assert len(words) == 12
    assert words == KEYWORDS
