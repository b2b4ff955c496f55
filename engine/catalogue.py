"""Finds the installed plugins and describes them to the checker.

Plugins are found through the entry-point groups ``huntaze.triggers`` and
``huntaze.actions`` only: the built-ins are registered in our own ``pyproject.toml`` the
way a third party registers theirs, and this module never imports ``plugins/``.

A broken plugin (it does not import, its declaration is invalid, or two packages claim
its name) becomes a :class:`PluginProblem` and is left out; every other plugin loads.
"""

from __future__ import annotations

import enum
import re
import threading
import types
import typing
from collections import abc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from importlib.metadata import EntryPoint, entry_points

from pydantic import BaseModel

from dsl import parser
from dsl.catalog import POLICY_ROLES, ActionSpec, Catalog, TriggerSpec, ValueType
from dsl.values import Money, Percentage
from engine.plugin_api import Action, Trigger

TRIGGERS = "huntaze.triggers"
ACTIONS = "huntaze.actions"

# The language's reserved words: a plugin with one of these names could never be
# written in a rule.
KEYWORDS = parser.KEYWORDS
NAME_RE = re.compile(r"[a-z_][a-z0-9_]*")


class PluginError(Exception):
    """A plugin's declaration is invalid; the message says why."""


@dataclass(frozen=True)
class PluginProblem:
    name: str
    group: str
    reason: str
    distribution: str | None = None


@dataclass(frozen=True)
class LoadedCatalogue:
    """The checker's :class:`Catalog`, the plugin objects that run, and what failed."""

    catalog: Catalog
    triggers: Mapping[str, Trigger]
    actions: Mapping[str, Action]
    problems: tuple[PluginProblem, ...] = ()


# --- Field types ------------------------------------------------------------------------

_SCALARS: tuple[tuple[type, ValueType], ...] = (
    (bool, ValueType.BOOLEAN),  # before int: bool is an int
    (Money, ValueType.MONEY),
    (Percentage, ValueType.PERCENT),
    (timedelta, ValueType.DURATION),
    (datetime, ValueType.DATETIME),
    (str, ValueType.TEXT),
    (int, ValueType.NUMBER),
    (float, ValueType.NUMBER),
    (Decimal, ValueType.NUMBER),
)
_LISTS = (list, tuple, set, frozenset, abc.Sequence, abc.Set)


def context_fields(model: type[BaseModel]) -> dict[str, ValueType]:
    """Every leaf field of a context model by dotted path: ``{"fan.tags": LIST, ...}``.

    Nested models become path prefixes. Raises :class:`PluginError` for a field the
    language cannot use (a dict, an arbitrary class, a union of unlike types).
    """
    fields: dict[str, ValueType] = {}
    _collect(model, "", fields, (model,))
    return fields


def _collect(model: type[BaseModel], prefix: str, out: dict, seen: tuple) -> None:
    _complete(model)
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        _check_name(name, f"field `{path}`")
        annotation = _unwrap(info.annotation, path)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation in seen:
                raise PluginError(f"field `{path}` nests `{annotation.__name__}` in itself")
            _collect(annotation, f"{path}.", out, (*seen, annotation))
        else:
            out[path] = value_type(annotation, path)


def _complete(model: type[BaseModel]) -> None:
    """Resolve the model's forward references, or say which one is missing."""
    if model.__pydantic_complete__:
        return
    try:
        model.model_rebuild()
    except Exception as exc:
        raise PluginError(f"model `{model.__qualname__}` is not fully defined: {exc}") from exc


def _unwrap(annotation: object, path: str) -> object:
    """``X | None`` and ``Annotated[X, ...]`` → ``X``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0], path)
    if origin in (typing.Union, types.UnionType):
        arms = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(arms) == 1:
            return _unwrap(arms[0], path)
    return annotation


def value_type(annotation: object, path: str = "value") -> ValueType:
    """The language's type for one (unwrapped) annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds = {value_type(_unwrap(a, path), path) for a in typing.get_args(annotation)}
        if len(kinds) == 1:
            return kinds.pop()
    elif origin is typing.Literal:
        if all(isinstance(a, str) for a in typing.get_args(annotation)):
            return ValueType.TEXT
    elif origin in _LISTS or annotation in _LISTS:
        items = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        if len(items) == 1 and value_type(_unwrap(items[0], path), path) is ValueType.TEXT:
            return ValueType.LIST
    elif isinstance(annotation, type):
        if issubclass(annotation, enum.Enum) and issubclass(annotation, str):
            return ValueType.TEXT
        for cls, kind in _SCALARS:
            if issubclass(annotation, cls):
                return kind
    raise PluginError(
        f"field `{path}` has type `{_type_name(annotation)}`, which rules cannot use; "
        "use str, int, float, Decimal, bool, datetime, timedelta, Money, Percentage, "
        "list[str] or a nested model"
    )


def _type_name(annotation: object) -> str:
    return getattr(annotation, "__name__", None) or repr(annotation)


def _check_name(name: str, what: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise PluginError(f"{what} is not a valid name: use lowercase letters, digits and _")
    if name in KEYWORDS:
        raise PluginError(f"{what} is a keyword of the language")


# --- Declarations -------------------------------------------------------------------------


def _instance(obj: object, base: type) -> object:
    """An entry point may name a plugin class or an instance of one."""
    if isinstance(obj, type) and issubclass(obj, base):
        return obj()
    if isinstance(obj, base):
        return obj
    raise PluginError(
        f"{obj!r} is neither a subclass nor an instance of {base.__module__}.{base.__qualname__}"
    )


def _description(plugin: object) -> str:
    description = getattr(plugin, "description", None)
    if not isinstance(description, str) or not description.strip():
        raise PluginError("it has no `description` (a non-empty string)")
    return description.strip()


def _model(plugin: object, attribute: str, *, optional: bool) -> type[BaseModel] | None:
    model = getattr(plugin, attribute, None)
    if model is None and optional:
        return None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise PluginError(f"its `{attribute}` must be a pydantic BaseModel subclass")
    return model


def _arguments(model: type[BaseModel]) -> None:
    for name in model.model_fields:
        _check_name(name, f"argument `{name}`")


def trigger_spec(name: str, obj: object) -> tuple[Trigger, TriggerSpec]:
    trigger = _instance(obj, Trigger)
    description = _description(trigger)
    context = _model(trigger, "Context", optional=False)
    config = _model(trigger, "Config", optional=True)
    if config is not None:
        _arguments(config)
    spec = TriggerSpec(name, description, context_fields(context), config)
    return trigger, spec


def action_spec(name: str, obj: object) -> tuple[Action, ActionSpec]:
    action = _instance(obj, Action)
    description = _description(action)
    config = _model(action, "Config", optional=False)
    _arguments(config)
    if type(action).run is Action.run:
        raise PluginError("it does not implement `run`")
    emits = action.emits
    if not isinstance(emits, tuple) or not all(isinstance(e, str) for e in emits):
        raise PluginError("its `emits` must be a tuple of trigger names")
    if not isinstance(action.side_effects, bool):
        raise PluginError("its `side_effects` must be True or False")
    if not isinstance(action.sends_message, bool):
        raise PluginError("its `sends_message` must be True or False")
    policy_arguments = _policy_arguments(action, config)
    spec = ActionSpec(
        name,
        description,
        config,
        emits,
        action.side_effects,
        sends_message=action.sends_message,
        policy_arguments=policy_arguments,
    )
    return action, spec


# The Python types of the language's types, for messages about policy arguments.
_TYPE_NAMES = {ValueType.PERCENT: "Percentage", ValueType.MONEY: "Money",
               ValueType.DURATION: "timedelta"}  # fmt: skip


def _policy_arguments(action: Action, config: type[BaseModel]) -> dict[str, str]:
    """The arguments the policy checks, by role, from ``discount_argument`` and
    ``validity_argument``. Each must name a required argument of a type the policy can
    read in that role: a declaration it could not apply is refused, rather than letting
    the action escape the policy."""
    roles = {}
    for role, kinds in POLICY_ROLES.items():
        attribute = f"{role}_argument"
        argument = getattr(action, attribute, None)
        if argument is None:
            continue
        if not isinstance(argument, str):
            raise PluginError(f"its `{attribute}` must be the name of one of its arguments")
        _complete(config)  # its annotations resolved, to read the argument's type
        field = config.model_fields.get(argument)
        if field is None:
            raise PluginError(
                f"its `{attribute}` is `{argument}`, which is not one of its arguments"
            )
        if not field.is_required():
            raise PluginError(
                f"its {role} argument `{argument}` must be required (no default), so that "
                "every rule writes the value the policy checks"
            )
        try:
            found = _kinds(field.annotation, argument)
        except PluginError:
            found = set()
        if not found or not found <= kinds:
            allowed = " or ".join(sorted(_TYPE_NAMES[k] for k in kinds))
            raise PluginError(
                f"its {role} argument `{argument}` must be of type {allowed}, "
                "which the policy can read"
            )
        roles[role] = argument
    return roles


def _kinds(annotation: object, path: str) -> set[ValueType]:
    """The language's types an argument accepts: one, or each arm's of a union."""
    annotation = _unwrap(annotation, path)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        arms = [a for a in typing.get_args(annotation) if a is not type(None)]
        return set().union(*(_kinds(arm, path) for arm in arms))
    return {value_type(annotation, path)}


# --- Loading ------------------------------------------------------------------------------


def _distribution(ep: EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else None


def _unique(eps: Iterable[EntryPoint], group: str, problems: list) -> list[EntryPoint]:
    """Entry points by name; a name claimed by two different objects is a problem."""
    by_name: dict[str, dict[str, EntryPoint]] = {}
    for ep in eps:
        by_name.setdefault(ep.name, {}).setdefault(ep.value, ep)  # same object twice: once
    unique = []
    for name, claims in sorted(by_name.items()):
        if len(claims) == 1:
            unique.extend(claims.values())
            continue
        owners = ", ".join(
            f"{_distribution(ep) or 'unknown package'} ({ep.value})" for ep in claims.values()
        )
        reason = f"the name is claimed by more than one plugin: {owners}; uninstall one"
        problems.append(PluginProblem(name, group, reason))
    return unique


def _load(ep: EntryPoint) -> object:
    _check_name(ep.name, "the entry point's name")
    try:
        return ep.load()
    except Exception as exc:
        raise PluginError(f"cannot import `{ep.value}`: {type(exc).__name__}: {exc}") from exc


def _load_group(eps: Iterable[EntryPoint], group: str, describe, problems: list) -> dict:
    loaded = {}
    for ep in _unique(eps, group, problems):
        try:
            loaded[ep.name] = describe(ep.name, _load(ep))
        except Exception as exc:  # a broken plugin must never stop the others
            reason = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
            problems.append(PluginProblem(ep.name, group, reason, _distribution(ep)))
    return loaded


def build_catalogue(
    trigger_eps: Iterable[EntryPoint], action_eps: Iterable[EntryPoint]
) -> LoadedCatalogue:
    """Load the plugins named by these entry points and describe them."""
    problems: list[PluginProblem] = []
    triggers = _load_group(trigger_eps, TRIGGERS, trigger_spec, problems)
    actions = _load_group(action_eps, ACTIONS, action_spec, problems)
    catalog = Catalog(
        triggers={name: spec for name, (_, spec) in triggers.items()},
        actions={name: spec for name, (_, spec) in actions.items()},
    )
    return LoadedCatalogue(
        catalog,
        triggers={name: plugin for name, (plugin, _) in triggers.items()},
        actions={name: plugin for name, (plugin, _) in actions.items()},
        problems=tuple(problems),
    )


def _entry_points(group: str) -> Iterable[EntryPoint]:
    return entry_points(group=group)


_lock = threading.Lock()
_loaded: LoadedCatalogue | None = None


def load_catalogue(refresh: bool = False) -> LoadedCatalogue:
    """The installed plugins, loaded once per process; ``refresh`` looks again."""
    global _loaded
    with _lock:
        if _loaded is None or refresh:
            _loaded = build_catalogue(_entry_points(TRIGGERS), _entry_points(ACTIONS))
        return _loaded
