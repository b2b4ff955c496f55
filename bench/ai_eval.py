"""How well the AI builder turns English into the automation that was asked for.

Runs every request of a labelled set (default ``examples/ai-eval.jsonl``) through the
automation builder, ``engine.ai.builder.build_automation``, with the LLM client the
environment configures (``HUNTAZE_LLM_PROVIDER``, ``HUNTAZE_LLM_BASE_URL``, ...; the
offline provider by default), and prints how many answers are valid and how many say
what the label says. ``--translator-only`` calls the offline translator
(``engine.ai.offline.translate``) directly instead, without the builder around it: no
policy, no fallback, nothing but the rules.

Each line of the set is a JSON object::

    {"description": "...", "trigger": "purchase_completed",
     "trigger_arguments": {"days_before": 3},          (optional; absent means none)
     "actions": ["send_message", "add_tag"],
     "values": {"durations": ["3d"], "percentages": ["15%"], "amounts": ["$100"],
                "tags": ["vip"], "keywords": ["price"]}}   (every kind optional)

What is compared, always on the syntax tree of the answer (``dsl.pipeline.analyse``),
never on its text:

- **valid**: the answer parses and checks against the installed catalogue with no error,
  and holds exactly one automation. Only valid answers can match anything else.
- **trigger**: the automation's trigger has the label's name, and its arguments are the
  label's ``trigger_arguments`` (none when the label has none), compared as values.
- **actions**: the names of the action steps, in the order they appear in the text (an
  `if` before its branches, branches in order, the `else` last), equal the label's list
  exactly: one missing, extra or out-of-order action is a miss.
- **values**: for each kind, the values found in the automation equal the label's as a
  multiset (order ignored, counts not):
  durations (every `wait` and duration argument, compared in seconds, so 48h == 2d),
  percentages and amounts (every percentage and money literal, in arguments and
  conditions), tags (the `tag:` argument of every action, and the text tested with
  `in`/`not in fan.tags`), keywords (the text tested with `in`/`not in event.text`).
  **values** counts an answer whose five kinds all match; each kind is shown too.
- **all**: trigger, actions and values all match.

Rates are over the whole set. Message texts are not compared: any wording will do.

Run: ``.venv/bin/python bench/ai_eval.py [--translator-only] [--misses] [--set FILE]
[--rows 56-77]`` (``--rows``: only these lines of the set, counted from 1).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dsl import ast  # noqa: E402
from dsl.catalog import Catalog  # noqa: E402
from dsl.formatter import expression  # noqa: E402
from dsl.parser import parse_expression  # noqa: E402
from dsl.pipeline import analyse  # noqa: E402

DEFAULT_SET = ROOT / "examples" / "ai-eval.jsonl"
KINDS = ("durations", "percentages", "amounts", "tags", "keywords")
CRITERIA = ("valid", "trigger", "actions", "values", *KINDS, "all")


# --- What an automation says -----------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """The comparable content of one automation."""

    trigger: str
    trigger_arguments: dict[str, str]
    actions: tuple[str, ...]
    values: dict[str, Counter] = field(default_factory=dict)


def _steps(steps: Iterable[ast.Step]) -> Iterator[ast.Step]:
    for step in steps:
        yield step
        if isinstance(step, ast.If):
            for branch in step.branches:
                yield from _steps(branch.body)
            yield from _steps(step.else_body or ())


def _expressions(node: ast.Expr) -> Iterator[ast.Expr]:
    stack = [node]
    while stack:
        expr = stack.pop()
        yield expr
        match expr:
            case ast.BoolOp(left=left, right=right) | ast.Compare(left=left, right=right):
                stack += [right, left]
            case ast.Not(operand=operand):
                stack.append(operand)
            case ast.ListExpr(items=items):
                stack += reversed(items)


def _value(kind: str, node: ast.Expr) -> object | None:
    """The comparable form of a literal of ``kind``, or None if it is not one."""
    match kind, node:
        case "durations", ast.Duration():
            return node.seconds
        case "percentages", ast.Percent(value=value):
            return value.normalize()
        case "amounts", ast.Money(amount=amount, currency=currency):
            return (amount.normalize(), currency)
    return None


def facts(automation: ast.Automation) -> Facts:
    values: dict[str, Counter] = {kind: Counter() for kind in KINDS}
    expressions: list[ast.Expr] = []
    actions = []
    for step in _steps(automation.body):
        if isinstance(step, ast.Action):
            actions.append(step.name)
            for argument in step.arguments:
                expressions.append(argument.value)
                if argument.name == "tag" and isinstance(argument.value, ast.String):
                    values["tags"][argument.value.value] += 1
        elif isinstance(step, ast.Wait):
            values["durations"][step.duration.seconds] += 1
        else:
            expressions += [branch.condition for branch in step.branches]
    for expr in (e for root in expressions for e in _expressions(root)):
        for kind in ("durations", "percentages", "amounts"):
            found = _value(kind, expr)
            if found is not None:
                values[kind][found] += 1
        if (
            isinstance(expr, ast.Compare)
            and expr.op in ("in", "not in")
            and isinstance(expr.left, ast.String)
            and isinstance(expr.right, ast.Field)
        ):
            kind = {"fan.tags": "tags", "event.text": "keywords"}.get(expr.right.dotted)
            if kind:
                values[kind][expr.left.value] += 1
    arguments = {a.name: expression(a.value) for a in automation.trigger.arguments}
    return Facts(automation.trigger.name, arguments, tuple(actions), values)


def expected(label: dict) -> Facts:
    """The label's facts, its literals read by the language's own parser."""
    values: dict[str, Counter] = {kind: Counter() for kind in KINDS}
    for kind in KINDS:
        for text in label.get("values", {}).get(kind, []):
            if kind in ("tags", "keywords"):
                values[kind][text] += 1
            else:
                values[kind][_value(kind, parse_expression(text))] += 1
    arguments = {
        name: expression(
            parse_expression(json.dumps(value) if isinstance(value, str) else str(value))
        )
        for name, value in label.get("trigger_arguments", {}).items()
    }
    return Facts(label["trigger"], arguments, tuple(label["actions"]), values)


# --- Scoring ------------------------------------------------------------------------------------


@dataclass
class Score:
    description: str
    text: str
    marks: dict[str, bool]
    got: Facts | None
    want: Facts


def score(label: dict, text: str, catalog: Catalog) -> Score:
    want = expected(label)
    module, diagnostics = analyse(text, catalog)
    valid = (
        module is not None
        and len(module.automations) == 1
        and not any(d.is_error for d in diagnostics)
    )
    marks = dict.fromkeys(CRITERIA, False)
    got = None
    if valid:
        got = facts(module.automations[0])
        marks["valid"] = True
        marks["trigger"] = (got.trigger, got.trigger_arguments) == (
            want.trigger,
            want.trigger_arguments,
        )
        marks["actions"] = got.actions == want.actions
        for kind in KINDS:
            marks[kind] = +got.values[kind] == +want.values[kind]
        marks["values"] = all(marks[kind] for kind in KINDS)
        marks["all"] = marks["trigger"] and marks["actions"] and marks["values"]
    return Score(label["description"], text, marks, got, want)


def evaluate(labels: list[dict], produce: Callable[[str], str], catalog: Catalog) -> list[Score]:
    return [score(label, produce(label["description"]), catalog) for label in labels]


def rates(scores: list[Score]) -> dict[str, float]:
    return {c: sum(s.marks[c] for s in scores) / len(scores) for c in CRITERIA}


def load_set(path: Path = DEFAULT_SET) -> list[dict]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


# --- Providers --------------------------------------------------------------------------------


Producer = Callable[[str], str]  # a request → the automation text answered


@contextmanager
def translator(catalog: Catalog) -> Iterator[tuple[str, Producer]]:
    from engine.ai.offline import translate

    yield "offline translator (engine.ai.offline.translate)", lambda d: translate(d, catalog)


@contextmanager
def builder(catalog: Catalog) -> Iterator[tuple[str, Producer]]:
    """The builder with the client the HUNTAZE_LLM_* environment configures."""
    from engine.ai.builder import build_automation
    from engine.ai.llm import LLMSettings, client_from_settings

    settings = LLMSettings()
    with client_from_settings(settings) as client:
        model = "" if client.offline else f", model {settings.model_automations}"
        name = f"builder, provider {client.provider}{model}"
        yield name, lambda d: build_automation(d, catalog=catalog, client=client).dsl


def _describe_miss(s: Score) -> str:
    lines = [f"- {s.description}"]
    if not s.marks["valid"]:
        lines.append("    not valid")
        return "\n".join(lines)
    got, want = s.got, s.want
    assert got is not None
    if not s.marks["trigger"]:
        lines.append(f"    trigger: {got.trigger} {got.trigger_arguments} (want {want.trigger} "
                     f"{want.trigger_arguments})")  # fmt: skip
    if not s.marks["actions"]:
        lines.append(f"    actions: {list(got.actions)} (want {list(want.actions)})")
    for kind in KINDS:
        if not s.marks[kind]:
            lines.append(f"    {kind}: {_show(got.values[kind])} (want {_show(want.values[kind])})")
    return "\n".join(lines)


def _show(values: Counter) -> str:
    """Values in the language's notation: 3d, 15%, USD 10, "vip"."""

    def one(v: object) -> str:
        if isinstance(v, tuple):
            return f"{v[1]} {format(v[0], 'f')}"
        if isinstance(v, Decimal):
            return f"{format(v, 'f')}%"
        if isinstance(v, int):
            unit = next(u for u, size in _UNITS if v % size == 0)
            return f"{v // dict(_UNITS)[unit]}{unit}"
        return json.dumps(v, ensure_ascii=False)

    return "[" + ", ".join(one(v) for v in sorted(values.elements(), key=str)) + "]"


_UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", type=Path, default=DEFAULT_SET, help="the labelled set (JSONL)")
    parser.add_argument(
        "--translator-only",
        action="store_true",
        help="call the offline translator directly instead of the builder",
    )
    parser.add_argument("--misses", action="store_true", help="list every request missed")
    parser.add_argument("--rows", help="only these lines of the set, as FIRST-LAST (from 1)")
    args = parser.parse_args(argv)

    from engine.catalogue import load_catalogue

    catalog = load_catalogue().catalog
    labels = load_set(args.set)
    if args.rows:
        first, _, last = args.rows.partition("-")
        labels = labels[int(first) - 1 : int(last or first)]
    with (translator if args.translator_only else builder)(catalog) as (name, produce):
        started = time.perf_counter()
        scores = evaluate(labels, produce, catalog)
        elapsed = time.perf_counter() - started
    rows = f" (lines {args.rows})" if args.rows else ""
    print(f"{name}: {len(labels)} requests from {args.set.name}{rows} in {elapsed:.1f} s")
    for criterion, rate in rates(scores).items():
        hits = sum(s.marks[criterion] for s in scores)
        print(f"  {criterion:<12} {rate:6.1%}  ({hits}/{len(scores)})")
    missed = [s for s in scores if not s.marks["all"]]
    if args.misses and missed:
        print("\nmissed:")
        print("\n".join(_describe_miss(s) for s in missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
