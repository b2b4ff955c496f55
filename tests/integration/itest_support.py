"""What the engine's integration tests share: events, traces, generated automation text
over the built-in plugins, and test-only actions registered through entry points (the
engine is not edited to allow them: they are loaded like any third party's plugin)."""

from __future__ import annotations

from datetime import datetime
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from engine.catalogue import ACTIONS, TRIGGERS, LoadedCatalogue, build_catalogue
from engine.events import TriggerContext
from engine.models import AutomationVersion, Execution, StepRun
from engine.plugin_api import Action, ActionContext, ActionError, ActionResult
from engine.runtime import Runtime

START = datetime.fromisoformat("2026-11-02T09:00:00+00:00")  # the `clock` fixture's time
SUBSCRIBED = "2026-10-01T12:00:00+00:00"


# --- Events ---------------------------------------------------------------------------------


def fan(**fields: Any) -> dict[str, Any]:
    return {"name": "Mia", "username": "mia", "subscribed_at": SUBSCRIBED, **fields}


def context(
    trigger: str,
    creator_id: str,
    fan_id: str = "fan-1",
    *,
    event: dict[str, Any] | None = None,
    fan_fields: dict[str, Any] | None = None,
    event_id: str | None = None,
    timestamp: datetime = START,
) -> TriggerContext:
    data: dict[str, Any] = {"fan": fan_fields if fan_fields is not None else fan()}
    if event is not None:
        data["event"] = event
    return TriggerContext(trigger, creator_id, fan_id, data, timestamp, event_id)


EVENTS = {
    "new_subscriber": None,
    "message_received": {"text": "hello there"},
    "purchase_completed": {"amount": 9.99, "item": "post"},
    "subscription_expiring": {"days_left": 3, "renewal_price": "12.50"},
}


# --- Traces ---------------------------------------------------------------------------------


def trace(runtime: Runtime, execution_id: str) -> list[tuple[str, str, str, str]]:
    """(node id, kind, name, status) of every recorded step, in the order they ran.

    The rows are ordered by the graph: a run only ever moves forward through the text,
    and under a fixed clock every row has the same ``started_at``."""

    def load(session):
        execution = session.get(Execution, execution_id)
        graph = session.get(AutomationVersion, (execution.automation_id,
                                                execution.automation_version)).graph  # fmt: skip
        steps = session.scalars(select(StepRun).where(StepRun.execution_id == execution_id))
        return list(graph["nodes"]), list(steps)

    order, steps = runtime.db.run(load)
    steps.sort(key=lambda step: order.index(step.node_id))
    return [(s.node_id, s.kind, s.name, s.status) for s in steps]


def steps_of(runtime: Runtime, execution_id: str) -> dict[str, StepRun]:
    return runtime.db.run(
        lambda s: {
            step.node_id: step
            for step in s.scalars(select(StepRun).where(StepRun.execution_id == execution_id))
        }
    )


def execution(runtime: Runtime, execution_id: str) -> Execution:
    return runtime.db.run(lambda s: s.get(Execution, execution_id))


# --- Test-only plugins ----------------------------------------------------------------------


class _Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FailStep(Action):
    """Fails in one of the ways a plugin can: an ActionError, any other exception, or a
    result that says it failed."""

    description = "Fail on purpose (tests only)."
    side_effects = False

    class Config(_Arguments):
        mode: str = "raise"
        n: int = 0

    def run(self, ctx: ActionContext, config: Config) -> ActionResult:
        if config.mode == "error":
            raise ActionError(f"step {config.n} refused")
        if config.mode == "result":
            return ActionResult(ok=False, detail=f"step {config.n} reported a failure")
        raise ZeroDivisionError(f"step {config.n} divided by zero")


class SimulatedCrash(BaseException):
    """Stands for a worker killed in the middle of an action: nothing catches it."""


class CrashOnce(Action):
    """Crashes the first time it runs for an idempotency key, succeeds after."""

    description = "Crash once per step (tests only)."
    seen: list[str] = []  # noqa: RUF012 - shared on purpose: it outlives one engine attempt

    def run(self, ctx: ActionContext, config: BaseModel) -> ActionResult:
        first = ctx.idempotency_key not in CrashOnce.seen
        CrashOnce.seen.append(ctx.idempotency_key)
        if first:
            raise SimulatedCrash(ctx.idempotency_key)
        return ActionResult(detail="ran after a crash")


class TextFan(Action):
    """A third party's message action: it declares that it sends a message (so the
    policy counts it) and writes through the outbox the engine lends it."""

    description = "Text the fan (tests only)."
    sends_message = True

    class Config(_Arguments):
        text: str

    def run(self, ctx: ActionContext, config: Config) -> ActionResult:
        message_id = ctx.services.outbox.send(
            creator_id=ctx.creator_id,
            fan_id=ctx.fan_id,
            text=f"sms: {config.text}",
            idempotency_key=ctx.idempotency_key,
        )
        return ActionResult(detail="texted", output={"message_id": message_id})


TEST_ACTIONS = {"fail_step": "FailStep", "crash_once": "CrashOnce", "text_fan": "TextFan"}


def with_test_plugins() -> LoadedCatalogue:
    """The installed plugins plus this module's actions, loaded through entry points."""
    ours = [EntryPoint(name, f"{__name__}:{attr}", ACTIONS) for name, attr in TEST_ACTIONS.items()]
    catalogue = build_catalogue(entry_points(group=TRIGGERS), [*entry_points(group=ACTIONS), *ours])
    # Another plugin may be broken (and left out); these must have loaded.
    ours_broken = [p for p in catalogue.problems if p.name in TEST_ACTIONS]
    assert not ours_broken and set(TEST_ACTIONS) <= set(catalogue.actions), ours_broken
    return catalogue


# --- Generated automation text over the built-in plugins ----------------------------------

# Any text a message or a name may hold, with the characters that need escapes; no
# braces, which would start a placeholder.
_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="{}"),
        st.sampled_from('"\\\n\t#$%'),
    ),
    max_size=12,
)
_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-", min_size=1, max_size=10)
_FIELD_VALUES = {
    "text": lambda: _TEXT.map(quote),
    "money": lambda: st.decimals(0, 10_000, places=2).map(lambda d: f"${d}"),
    "number": lambda: st.integers(0, 1000).map(str),
}
_COMPARE = {"text": ["==", "!="], "money": ["<", "<=", ">", ">=", "==", "!="],
            "number": ["<", "<=", ">", ">=", "==", "!="]}  # fmt: skip


def quote(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\t", "\\t")
        .replace("\r", "\\r")
    )
    return f'"{escaped}"'


def _fields(kinds: dict) -> list[tuple[str, str]]:
    return [(path, kind.value) for path, kind in kinds.items()
            if kind.value in (*_FIELD_VALUES, "list")]  # fmt: skip


@st.composite
def conditions(draw, fields: list[tuple[str, str]], depth: int = 2) -> str:
    if depth > 0 and draw(st.integers(0, 3)) == 0:
        op = draw(st.sampled_from(["and", "or"]))
        left = draw(conditions(fields, depth - 1))
        right = draw(conditions(fields, depth - 1))
        return f"({left} {op} {right})"
    if depth > 0 and draw(st.integers(0, 5)) == 0:
        return f"not ({draw(conditions(fields, depth - 1))})"
    path, kind = draw(st.sampled_from(fields))
    if kind == "list":
        op = draw(st.sampled_from(["in", "not in"]))
        return f"{quote(draw(_WORD))} {op} {path}"
    if kind == "text" and draw(st.booleans()):
        values = draw(st.lists(_FIELD_VALUES[kind](), min_size=1, max_size=3))
        return f"{path} {draw(st.sampled_from(['in', 'not in']))} [{', '.join(values)}]"
    op = draw(st.sampled_from(_COMPARE[kind]))
    return f"{path} {op} {draw(_FIELD_VALUES[kind]())}"


@st.composite
def _message(draw, fields: list[tuple[str, str]]) -> str:
    pieces = draw(
        st.lists(
            st.one_of(
                _TEXT.filter(bool),
                st.sampled_from([path for path, _ in fields]).map(lambda p: f"{{{{ {p} }}}}"),
            ),
            min_size=1,
            max_size=3,
        )
    )
    return quote("".join(pieces) or "hi")


@st.composite
def steps(draw, fields: list[tuple[str, str]], indent: str = "  ", depth: int = 2) -> list[str]:
    lines: list[str] = []
    for _ in range(draw(st.integers(1 if depth == 2 else 0, 3))):
        kind = draw(st.sampled_from(["send", "tag", "untag", "wait", "if"][: 5 if depth else 4]))
        if kind == "send":
            lines.append(f"{indent}send_message text: {draw(_message(fields))}")
        elif kind in ("tag", "untag"):
            action = "add_tag" if kind == "tag" else "remove_tag"
            lines.append(f"{indent}{action} tag: {quote(draw(_WORD))}")
        elif kind == "wait":
            amount, unit = draw(st.integers(1, 90)), draw(st.sampled_from("smhdw"))
            lines.append(f"{indent}wait {amount}{unit}")
        else:
            lines.append(f"{indent}if {draw(conditions(fields))} {{")
            lines += draw(steps(fields, indent + "  ", depth - 1))
            for _ in range(draw(st.integers(0, 1))):
                lines.append(f"{indent}}} else if {draw(conditions(fields))} {{")
                lines += draw(steps(fields, indent + "  ", depth - 1))
            if draw(st.booleans()):
                lines.append(f"{indent}}} else {{")
                lines += draw(steps(fields, indent + "  ", depth - 1))
            lines.append(f"{indent}}}")
    return lines


@st.composite
def automation_texts(draw, catalog) -> str:
    """The text of one automation that the checker accepts, over ``catalog``'s built-in
    triggers and the actions send_message, add_tag and remove_tag."""
    trigger = draw(st.sampled_from(sorted(EVENTS)))
    fields = _fields(catalog.triggers[trigger].fields)
    when = f"  when {trigger}"
    if trigger == "subscription_expiring" and draw(st.booleans()):
        when += f" days_before: {draw(st.integers(0, 30))}"
    lines = [f"automation {quote(draw(_TEXT.filter(str.strip)))} {{"]
    if draw(st.booleans()):
        lines.append(f"  description {quote(draw(_TEXT))}")
    lines.append(when)
    if draw(st.booleans()):
        lines.append(f"  # {draw(_WORD)}")
    lines += draw(steps(fields))
    lines.append("}")
    return "\n".join(lines) + "\n"
