"""The design document's flow format: a list of steps, each ``{id, type, name, config}``.

``export_flow`` writes a rule graph in that form, readable by people and by tools that
know the original design: trigger, condition and action steps, with ``wait`` as an
action as the design lists it, and values written as in the language (``"20%"``,
``"$10"``, ``"48h"``). Control flow is explicit where it is not "the next step in the
list": a condition names its ``then`` and ``else`` steps, any other step a ``next``
when it does not simply continue with the following one (``null`` ends the run).

``import_flow`` reads that form back into an automation's syntax tree, so a flow given
as JSON becomes language text (``format_module``), is checked like any text, and
compiles to the same graph. A plain linear list of steps (no ``next``, conditions
without ``then``/``else``) reads as "run the steps in order; a condition that does not
hold ends the run".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from dsl import ast
from dsl.catalog import Catalog, ValueType
from dsl.conditions import from_json, literal_from_json
from dsl.errors import DslError, FlowError
from dsl.formatter import expression
from dsl.graph import ConditionNode, RuleGraph, WaitNode
from dsl.parser import parse_expression
from dsl.types import accepted_types

_OPERATORS = {"==", "!=", "<", "<=", ">", ">=", "in", "not in"}
_TYPED_TEXT = {
    ValueType.MONEY: re.compile(r"([$€£])(\d+(?:\.\d{1,2})?)"),
    ValueType.PERCENT: re.compile(r"(-?\d+(?:\.\d+)?)%"),
    ValueType.DURATION: re.compile(r"(\d+)([smhdw])"),
}
_CURRENCIES = {"$": "USD", "€": "EUR", "£": "GBP"}


# --- Export --------------------------------------------------------------------------


def export_flow(graph: RuleGraph) -> dict[str, Any]:
    """The graph as ``{name, description, steps}`` in the design document's format."""
    steps: list[dict[str, Any]] = [
        {
            "id": "trigger",
            "type": "trigger",
            "name": graph.trigger.name,
            "config": _plain_args(graph.trigger.args),
        }
    ]
    order = list(graph.nodes)
    for index, node in enumerate(graph.nodes.values()):
        following = order[index + 1] if index + 1 < len(order) else None
        steps.append(_export_node(node, following))
    return {"name": graph.name, "description": graph.description, "steps": steps}


def _export_node(node, following: str | None) -> dict[str, Any]:
    if isinstance(node, ConditionNode):
        return {
            "id": node.id,
            "type": "condition",
            "name": "if",
            "config": {"expression": expression(from_json(node.expr))},
            "then": node.then,
            "else": node.otherwise,
        }
    if isinstance(node, WaitNode):
        step = {"id": node.id, "type": "action", "name": "wait",
                "config": {"duration": node.duration}}  # fmt: skip
    else:
        step = {"id": node.id, "type": "action", "name": node.name,
                "config": _plain_args(node.args)}  # fmt: skip
    if node.next != following:
        step["next"] = node.next
    return step


def _plain_args(args: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _plain(value) for name, value in args.items()}


def _plain(value: Any) -> Any:
    """A tagged literal as plain JSON, written the way the language writes it."""
    node = literal_from_json(value)
    match node:
        case ast.String(value=text) | ast.Boolean(value=text):
            return text
        case ast.Number(value=number):
            return int(number) if number == number.to_integral_value() else float(number)
        case ast.ListExpr():
            return [_plain(item) for item in value["list"]]
    return expression(node)


# --- Import --------------------------------------------------------------------------


def import_flow(flow: Mapping[str, Any], catalog: Catalog | None = None) -> ast.Automation:
    """An automation from a flow in the design document's format. With a catalogue,
    text values are read as money, percentages or durations where the plugin's
    argument expects one; without, text that looks like one of them is read as such.
    Raises :class:`FlowError` naming the offending field."""
    steps = flow.get("steps")
    if not isinstance(steps, list) or not steps:
        raise FlowError("steps", "a flow needs a list of steps, starting with its trigger")
    reader = _FlowReader(steps, catalog)
    trigger = reader.trigger()
    name = flow.get("name") or "Imported flow"
    description = flow.get("description") or None
    if not isinstance(name, str):
        raise FlowError("name", "must be text")
    return ast.Automation(name, trigger, reader.body(), description)


_ABSENT = object()


class _FlowReader:
    def __init__(self, steps: list[Any], catalog: Catalog | None) -> None:
        self.catalog = catalog
        self.index: dict[str, int] = {}
        self.steps = steps
        for position, step in enumerate(steps):
            if not isinstance(step, Mapping):
                raise FlowError(f"steps[{position}]", "each step must be an object")
            step_id = step.get("id")
            if not isinstance(step_id, str) or not step_id:
                raise FlowError(f"steps[{position}].id", "each step needs a text id")
            if step_id in self.index:
                raise FlowError(f"steps[{position}].id", f"the id `{step_id}` is used twice")
            self.index[step_id] = position
            if step.get("type") not in ("trigger", "condition", "action"):
                raise FlowError(
                    f"steps[{position}].type", "must be `trigger`, `condition` or `action`"
                )
        self.joins: dict[str, str | None] = {}
        self.visiting: set[str] = set()

    # Reading the trigger and the steps ---------------------------------------------

    def trigger(self) -> ast.Trigger:
        first = self.steps[0]
        if first.get("type") != "trigger":
            raise FlowError("steps[0].type", "the first step must be the trigger")
        others = [i for i, s in enumerate(self.steps) if s.get("type") == "trigger" and i > 0]
        if others:
            raise FlowError(f"steps[{others[0]}].type", "a flow has exactly one trigger")
        name = self._name(0)
        spec = self.catalog.triggers.get(name) if self.catalog else None
        model = spec.config_model if spec else None
        return ast.Trigger(name, self._arguments(0, model))

    def body(self) -> tuple[ast.Step, ...]:
        return self.block(self.successor(0), None)

    def block(self, start: str | None, stop: str | None) -> tuple[ast.Step, ...]:
        out: list[ast.Step] = []
        current = start
        seen: set[str] = set()
        while current is not None and current != stop:
            if current in seen:
                raise FlowError(f"steps[{self.index[current]}]", "the steps form a loop")
            seen.add(current)
            position = self.index[current]
            step = self.steps[position]
            if step["type"] == "condition":
                out.append(self.branches(current))
                current = self.join(current)
                continue
            out.append(self.action(position))
            current = self.successor(position)
        return tuple(out)

    def branches(self, step_id: str) -> ast.If:
        join = self.join(step_id)
        branches = []
        current: str | None = step_id
        while current is not None and current != join:
            position = self.index[current]
            if self.steps[position]["type"] != "condition" or self.join(current) != join:
                break
            then, otherwise = self.targets(position)
            branches.append(ast.Branch(self.condition(position), self.block(then, join)))
            current = otherwise
        else_body = None if current in (None, join) else self.block(current, join)
        return ast.If(tuple(branches), else_body)

    def action(self, position: int) -> ast.Action | ast.Wait:
        name = self._name(position)
        if name == "wait":
            config = self._config(position)
            duration = _typed_text(config.get("duration"), {ValueType.DURATION})
            if not isinstance(duration, ast.Duration):
                raise FlowError(
                    f"steps[{position}].config.duration", "must be a duration like 2d or 48h"
                )
            return ast.Wait(duration)
        spec = self.catalog.actions.get(name) if self.catalog else None
        return ast.Action(name, self._arguments(position, spec.config_model if spec else None))

    def condition(self, position: int) -> ast.Expr:
        config = self._config(position)
        where = f"steps[{position}].config"
        if "expression" in config:
            text = config["expression"]
            if not isinstance(text, str):
                raise FlowError(f"{where}.expression", "must be text")
            try:
                return parse_expression(text)
            except DslError as exc:
                raise FlowError(f"{where}.expression", exc.diagnostics[0].message) from None
        field, op = config.get("field"), config.get("operator", "==")
        if not isinstance(field, str) or not re.fullmatch(r"[a-z_]\w*(\.[a-z_]\w*)*", field):
            raise FlowError(f"{where}", "a condition needs an `expression`, or a `field`")
        if op not in _OPERATORS:
            raise FlowError(f"{where}.operator", "must be one of " + ", ".join(sorted(_OPERATORS)))
        value = _literal(config.get("value"), set(), f"{where}.value")
        return ast.Compare(op, ast.Field(tuple(field.split("."))), value)

    # Control flow ---------------------------------------------------------------------

    def successor(self, position: int) -> str | None:
        target = self.steps[position].get("next", _ABSENT)
        if target is _ABSENT:
            following = position + 1
            return self.steps[following]["id"] if following < len(self.steps) else None
        return self._target(position, "next", target)

    def targets(self, position: int) -> tuple[str | None, str | None]:
        step = self.steps[position]
        then = step.get("then", _ABSENT)
        then = self.successor(position) if then is _ABSENT else self._target(position, "then", then)
        otherwise = step.get("else")
        return then, self._target(position, "else", otherwise)

    def _target(self, position: int, key: str, target: Any) -> str | None:
        if target is None:
            return None
        if target not in self.index or self.steps[self.index[target]]["type"] == "trigger":
            raise FlowError(f"steps[{position}].{key}", f"no step has the id `{target}`")
        return target

    def join(self, step_id: str) -> str | None:
        """Where the branches of a condition meet again (None: they never do)."""
        if step_id in self.joins:
            return self.joins[step_id]
        if step_id in self.visiting:
            raise FlowError(f"steps[{self.index[step_id]}]", "the steps form a loop")
        self.visiting.add(step_id)
        then, otherwise = self.targets(self.index[step_id])
        after_else = set(self.main_line(otherwise))
        found = next((s for s in self.main_line(then) if s in after_else), None)
        self.visiting.discard(step_id)
        self.joins[step_id] = found
        return found

    def main_line(self, start: str | None) -> list[str]:
        """The steps run from ``start`` on, stepping over whole branches."""
        line: list[str] = []
        current = start
        while current is not None:
            if current in line:
                raise FlowError(f"steps[{self.index[current]}]", "the steps form a loop")
            line.append(current)
            position = self.index[current]
            if self.steps[position]["type"] == "condition":
                current = self.join(current)
            else:
                current = self.successor(position)
        return line

    # Values -----------------------------------------------------------------------------

    def _name(self, position: int) -> str:
        name = self.steps[position].get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise FlowError(f"steps[{position}].name", "must be a lower-case name like add_tag")
        return name

    def _config(self, position: int) -> Mapping[str, Any]:
        config = self.steps[position].get("config") or {}
        if not isinstance(config, Mapping):
            raise FlowError(f"steps[{position}].config", "must be an object")
        return config

    def _arguments(self, position: int, model) -> tuple[ast.Argument, ...]:
        arguments = []
        for name, value in self._config(position).items():
            where = f"steps[{position}].config.{name}"
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                raise FlowError(where, "argument names are lower-case words")
            field = model.model_fields.get(name) if model is not None else None
            accepted = accepted_types(field.annotation) if field is not None else set()
            arguments.append(ast.Argument(name, _literal(value, accepted, where)))
        return tuple(arguments)


def _literal(value: Any, accepted: set[ValueType], where: str) -> ast.Expr:
    if isinstance(value, bool):
        return ast.Boolean(value)
    if isinstance(value, int | float):
        # json.loads reads NaN and Infinity, and Decimal takes them without complaint.
        number = Decimal(str(value))
        if not number.is_finite():
            raise FlowError(where, "must be a finite number")
        return ast.Number(number)
    if isinstance(value, str):
        return _typed_text(value, accepted) or ast.String(value)
    if isinstance(value, list):
        return ast.ListExpr(tuple(_literal(v, set(), f"{where}[{i}]") for i, v in enumerate(value)))
    raise FlowError(where, "must be text, a number, true/false or a list")


def _typed_text(value: Any, accepted: set[ValueType]) -> ast.Expr | None:
    """Text such as "$10", "20%" or "48h" as the literal it spells, where expected (or,
    with nothing known of the argument, wherever it spells one exactly)."""
    if not isinstance(value, str):
        return None
    for kind, pattern in _TYPED_TEXT.items():
        if accepted and kind not in accepted:
            continue
        m = pattern.fullmatch(value.strip())
        if m is None:
            continue
        if kind is ValueType.MONEY:
            return ast.Money(Decimal(m.group(2)), _CURRENCIES[m.group(1)])
        if kind is ValueType.PERCENT:
            return ast.Percent(Decimal(m.group(1)))
        return ast.Duration(int(m.group(1)), m.group(2))
    return None
