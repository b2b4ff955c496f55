"""Syntax tree → rule graph.

Compile only what the checker passed: the compiler trusts its input. Steps are laid out
back to front, so each node is built knowing the id of the node that follows it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dsl import ast
from dsl.catalog import Catalog, ValueType
from dsl.conditions import literal_to_json, to_json
from dsl.graph import ActionNode, ConditionNode, RuleGraph, TriggerNode, WaitNode


def compile_automation(automation: ast.Automation, catalog: Catalog | None = None) -> RuleGraph:
    """The rule graph of one automation. With a catalogue, field references in
    conditions carry their declared type (which lets conditions run faster)."""
    fields: Mapping[str, ValueType] = {}
    if catalog is not None and automation.trigger.name in catalog.triggers:
        fields = catalog.triggers[automation.trigger.name].fields
    builder = _GraphBuilder(fields)
    entry = builder.block(automation.body, "s", None)
    return RuleGraph(
        name=automation.name,
        description=automation.description,
        trigger=TriggerNode(name=automation.trigger.name, args=_args(automation.trigger.arguments)),
        entry=entry,
        nodes=dict(reversed(builder.nodes.items())),
    )


def compile_module(module: ast.Module, catalog: Catalog | None = None) -> list[RuleGraph]:
    return [compile_automation(a, catalog) for a in module.automations]


def _args(arguments: Sequence[ast.Argument]) -> dict:
    return {arg.name: literal_to_json(arg.value) for arg in arguments}


class _GraphBuilder:
    def __init__(self, fields: Mapping[str, ValueType]) -> None:
        self.fields = fields
        # Filled back to front; reversed at the end so the graph reads in source order.
        self.nodes: dict = {}

    def block(self, steps: Sequence[ast.Step], prefix: str, after: str | None) -> str | None:
        """Add the nodes of ``steps``; return the id of the first (or ``after``)."""
        following = after
        for index in range(len(steps), 0, -1):
            following = self.step(steps[index - 1], f"{prefix}{index}", following)
        return following

    def step(self, step: ast.Step, node_id: str, after: str | None) -> str:
        match step:
            case ast.Action(name=name, arguments=arguments):
                self.nodes[node_id] = ActionNode(
                    id=node_id, name=name, args=_args(arguments), next=after
                )
            case ast.Wait(duration=duration):
                self.nodes[node_id] = WaitNode(
                    id=node_id,
                    duration=f"{duration.amount}{duration.unit}",
                    seconds=duration.seconds,
                    next=after,
                )
            case ast.If(branches=branches, else_body=else_body):
                otherwise = self.block(else_body or (), f"{node_id}.else.s", after)
                for number in range(len(branches), 0, -1):
                    branch = branches[number - 1]
                    branch_id = node_id if number == 1 else f"{node_id}.b{number}"
                    then = self.block(branch.body, f"{node_id}.b{number}.s", after)
                    self.nodes[branch_id] = ConditionNode(
                        id=branch_id,
                        expr=to_json(branch.condition, self.fields),
                        then=then,
                        otherwise=otherwise,
                    )
                    otherwise = branch_id
        return node_id
