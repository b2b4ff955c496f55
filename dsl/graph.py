"""The rule graph: what an automation compiles to, what the engine runs and stores.

A graph is JSON (``RuleGraph.model_dump(mode="json")``) with a format version. Its
nodes are flat and linked by id: an action or a wait names the node that follows it, a
condition names where to go when it holds and when it does not. ``None`` ends the run.
Node ids come from the step's position in the text (``s2.b1.s1`` is the first step of
the first branch of the second step), so they are stable while the text is.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

GRAPH_FORMAT = "huntaze.rulegraph"
GRAPH_VERSION = 1


class _Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str


class ActionNode(_Node):
    kind: Literal["action"] = "action"
    name: str
    # Argument values as tagged JSON literals (see dsl.conditions.literal_to_json).
    args: dict[str, Any] = {}
    next: str | None = None


class WaitNode(_Node):
    kind: Literal["wait"] = "wait"
    duration: str  # as written: "2d", "48h"
    seconds: int
    next: str | None = None


class ConditionNode(_Node):
    kind: Literal["condition"] = "condition"
    expr: Any  # JSON form, see dsl.conditions
    then: str | None = None
    otherwise: str | None = None


Node = Annotated[ActionNode | WaitNode | ConditionNode, Field(discriminator="kind")]


class TriggerNode(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    args: dict[str, Any] = {}


class RuleGraph(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["huntaze.rulegraph"] = GRAPH_FORMAT
    version: Literal[1] = GRAPH_VERSION
    name: str
    description: str | None = None
    trigger: TriggerNode
    entry: str | None
    nodes: dict[str, Node]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RuleGraph:
        return cls.model_validate(data)
