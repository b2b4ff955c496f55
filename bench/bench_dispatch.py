"""How fast events are dispatched, with 10,000 active automations across 1,000 creators.

For every event: find the creator's active automations for the trigger, keep those whose
trigger arguments match (``subscription_expiring days_before: 3``), and evaluate each
matching automation's conditions the way the runner walks its graph — conditions in
order, following the branch taken, past actions, up to the first ``wait`` — counting the
conditions evaluated and the actions that would run. Side by side, on the same events:

1. **bound**: a plain-Python dict ``{(creator, trigger): [automation, ...]}`` whose
   conditions are lambdas written from the same text (``lambda e: e["fan"]["total_spent"]
   >= 50 and ...``), walking tuples, on the event's data as it arrived. Nothing is
   validated: the floor for this work in Python.
2. **engine, in memory**: ``AutomationIndex.lookup``, the trigger plugin's ``matches``
   with the automation's arguments as the dispatcher holds them (validated once per
   automation version), and the conditions compiled by ``dsl.conditions`` as the
   runner's ``GraphCache`` holds them, walked over its flat node table as
   ``Runner._walk`` walks it, on the context the dispatcher stores for the execution.
3. **engine, in memory, with the event's validation**: 2, plus what ``Dispatcher``
   does per event before its transaction: the event validated against the trigger's
   pydantic context, and the execution's context built from it.
4. **Dispatcher.dispatch**: the whole dispatch, with its PostgreSQL transaction (event
   logged, fan upserted, executions inserted) and the jobs queued in Redis (nobody runs
   them here).
5. **Dispatcher.dispatch_many**: the same, 50 events to a transaction.

Then where the engine's in-memory time goes: its pass cut short after each stage (the
index lookup, the trigger's arguments matched, the cached graph fetched, the walk).

Every contender must count the same automations matched, conditions evaluated and
actions reached, and the dispatch rows must number the automations matched, or the
script stops. In-memory contenders are timed in CPU seconds of this process; the
dispatches in wall seconds (the database works in another process), with this process's
CPU seconds beside them. Figures are medians over rounds, contenders of a round back to
back.

Run: ``.venv/bin/python bench/bench_dispatch.py`` (``--help`` for sizes).
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from engine_support import (
    DEFAULT_SEED,
    Loaded,
    load_automations,
    load_average,
    make_events,
    median,
    services,
    table,
)

from dsl.conditions import runtime_value
from engine.dispatch import Dispatcher, _plain_money
from engine.events import TriggerContext
from engine.fans import fan_data
from engine.models import Execution
from engine.runner import ACTION, CONDITION, GraphCache
from engine.runtime import Runtime

TARGET = 0.5  # the engine's in-memory dispatch, as a fraction of the bound's events/s
Counts = tuple[int, int, int]  # automations matched, conditions evaluated, actions reached


# --- 1. The bound --------------------------------------------------------------------------


def lambda_source(expr: dict) -> str:
    """The condition as a Python expression over ``e``, as one would write it by hand."""
    if "field" in expr:
        return "e" + "".join(f"[{key!r}]" for key in expr["field"].split("."))
    if "not" in expr:
        return f"(not {lambda_source(expr['not'])})"
    for word in ("and", "or"):
        if word in expr:
            left, right = (lambda_source(part) for part in expr[word])
            return f"({left} {word} {right})"
    if "op" in expr:
        op, left, right = expr["op"], lambda_source(expr["left"]), expr["right"]
        if op in ("in", "not in") and right.get("type") == "text":
            return f"({left}.casefold() {op} {lambda_source(right)}.casefold())"
        return f"({left} {op} {lambda_source(right)})"
    return repr(runtime_value(expr))


def bound_automation(graph: dict) -> tuple[Any, str | None, dict]:
    """(days_before or None, entry node, {node id: (kind, condition, then/next, else)})."""
    nodes = {}
    for node_id, node in graph["nodes"].items():
        if node["kind"] == "condition":
            condition = eval(f"lambda e: {lambda_source(node['expr'])}")  # our own text
            nodes[node_id] = (0, condition, node["then"], node["otherwise"])
        elif node["kind"] == "action":
            nodes[node_id] = (1, None, node["next"], None)
        else:
            nodes[node_id] = (2, None, None, None)
    days = graph["trigger"]["args"].get("days_before")
    return (None if days is None else int(days["number"]), graph["entry"], nodes)


def bound_index(loaded: Loaded) -> dict[tuple[str, str], list]:
    index: dict[tuple[str, str], list] = {}
    for automation_id, graph in loaded.graphs.items():
        key = (loaded.owners[automation_id], graph["trigger"]["name"])
        index.setdefault(key, []).append(bound_automation(graph))
    return index


def bound_pass(index: dict, events: Sequence[tuple[str, str, dict]]) -> Counts:
    matched = conditions = actions = 0
    for creator, trigger, data in events:
        for days, node_id, nodes in index.get((creator, trigger), ()):
            if days is not None and data["event"]["days_left"] != days:
                continue
            matched += 1
            while node_id is not None:
                kind, condition, then, otherwise = nodes[node_id]
                if kind == 0:
                    conditions += 1
                    node_id = then if condition(data) else otherwise
                elif kind == 1:
                    actions += 1
                    node_id = then
                else:
                    break
    return matched, conditions, actions


# --- 2 and 3. The engine in memory --------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """An event as the dispatcher has it once validated: its model and the context
    stored for its executions (``trigger_data``), which conditions read."""

    context: TriggerContext
    model: Any
    data: dict


def execution_context(dispatcher: Dispatcher, context: TriggerContext) -> Prepared:
    """What ``Dispatcher._record`` builds before its inserts, the fan taken from the
    event as ``upsert_fan`` takes a new fan's (an existing one's: the row's, with them)."""
    model = dispatcher.validate(context)
    fan = model.fan
    row = SimpleNamespace(
        name=fan.name, username=fan.username, total_spent=fan.total_spent.amount,
        tags=sorted(set(fan.tags)), country=fan.country, subscribed_at=fan.subscribed_at,
        message_count=fan.message_count,
    )  # fmt: skip
    data = {**model.model_dump(mode="json"), "fan": fan_data(row)}
    return Prepared(context, model, _plain_money(model, data))


def engine_walk(dispatcher: Dispatcher, graphs: GraphCache, prepared: Prepared) -> Counts:
    """Index lookup, trigger matching, and the conditions walked as ``Runner._walk``
    walks them (its loop, without the step rows it records)."""
    context, model, data = prepared.context, prepared.model, prepared.data
    matched = conditions = actions = 0
    for entry in dispatcher.matching(context, model):
        matched += 1
        loaded = graphs.get(entry.automation_id, entry.version)
        nodes = loaded.nodes
        node_id = loaded.entry
        while node_id is not None:
            kind, a, b, c = nodes[node_id]
            if kind == CONDITION:
                conditions += 1
                node_id = b if a(data) else c
            elif kind == ACTION:
                actions += 1
                node_id = c
            else:
                break
    return matched, conditions, actions


def add(total: list[int], counts: Counts) -> None:
    for i, value in enumerate(counts):
        total[i] += value


def engine_pass(dispatcher: Dispatcher, graphs: GraphCache, prepared: Sequence[Prepared]) -> Counts:
    total = [0, 0, 0]
    for one in prepared:
        add(total, engine_walk(dispatcher, graphs, one))
    return tuple(total)


def engine_validating_pass(
    dispatcher: Dispatcher, graphs: GraphCache, events: Sequence[TriggerContext]
) -> Counts:
    total = [0, 0, 0]
    for context in events:
        add(total, engine_walk(dispatcher, graphs, execution_context(dispatcher, context)))
    return tuple(total)


# --- Timing --------------------------------------------------------------------------------


def cpu(work: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()  # cheap: what the set-up built is frozen (see report)
    started = time.process_time()
    result = work()
    return time.process_time() - started, result


def wall(work: Callable[[], Any]) -> tuple[float, float, Any]:
    gc.collect()
    started, started_cpu = time.perf_counter(), time.process_time()
    result = work()
    return time.perf_counter() - started, time.process_time() - started_cpu, result


def count_executions(runtime: Runtime) -> int:
    from sqlalchemy import func, select

    return runtime.db.run(lambda s: s.scalar(select(func.count(Execution.id))))


def fill_cache(runtime: Runtime, loaded: Loaded) -> GraphCache:
    """The runner's cache with every automation's graph compiled, as a worker holds it
    once it has run each automation. Filled from the graphs the set-up stored, as
    ``GraphCache.get`` fills it from their rows (it makes a query per graph: 10,000
    round trips of set-up, not of anything measured)."""
    graphs = GraphCache(runtime, size=len(loaded.graphs))
    for automation_id, graph in loaded.graphs.items():
        graphs._graphs[(automation_id, 1)] = graphs.load(graph)
    return graphs


def stages(dispatcher: Dispatcher, graphs: GraphCache, prepared: Sequence[Prepared]) -> dict:
    """The engine's in-memory pass cut short after each stage, for where its time goes."""

    def lookup() -> int:
        return sum(len(dispatcher.index.lookup(p.context.creator_id, p.context.type))
                   for p in prepared)  # fmt: skip

    def match(fetch: bool) -> int:
        n = 0
        for p in prepared:
            for entry in dispatcher.matching(p.context, p.model):
                n += graphs.get(entry.automation_id, entry.version) is not None if fetch else 1
        return n

    return {
        "index lookup": lookup,
        "+ trigger arguments matched (validated once a version)": lambda: match(False),
        "+ GraphCache.get of each matching automation": lambda: match(True),
        "+ walk of the graph, conditions evaluated": lambda: engine_pass(
            dispatcher, graphs, prepared
        ),
    }


@dataclass
class Setup:
    runtime: Runtime
    dispatcher: Dispatcher
    events: list[TriggerContext]
    index: dict
    contenders: dict[str, Callable[[], Counts]]
    stages: dict[str, Callable[[], Any]]


def set_up(runtime: Runtime, args: argparse.Namespace) -> Setup:
    started = time.perf_counter()
    loaded = load_automations(runtime, args.creators, args.automations, args.seed)
    print(
        f"{args.automations:,} automations for {args.creators:,} creators checked and compiled "
        f"in {loaded.seconds:.1f} s CPU, stored in {time.perf_counter() - started:.1f} s wall"
    )
    dispatcher = Dispatcher(runtime)
    graphs = fill_cache(runtime, loaded)
    conditions = sum(
        node[0] == CONDITION for g in graphs._graphs.values() for node in g.nodes.values()
    )
    print(f"index: {len(dispatcher.index):,} entries; {conditions:,} compiled conditions")
    events = make_events(loaded.creators, args.events, args.seed)
    raw = [(e.creator_id, e.type, e.data) for e in events]
    prepared = [execution_context(dispatcher, e) for e in events]
    index = bound_index(loaded)
    contenders = {
        BOUND: lambda: bound_pass(index, raw),
        ENGINE: lambda: engine_pass(dispatcher, graphs, prepared),
        VALIDATING: lambda: engine_validating_pass(dispatcher, graphs, events),
    }
    return Setup(runtime, dispatcher, events, index, contenders,
                 stages(dispatcher, graphs, prepared))  # fmt: skip


BOUND = "bound: dict index + lambdas"
ENGINE = "engine: lookup + match + compiled conditions"
VALIDATING = "engine: the same + event validation and context"
FAST = (BOUND, ENGINE)  # repeated within a round: a pass is short


def time_in_memory(setup: Setup, args: argparse.Namespace, times: dict) -> None:
    expected = None
    for label, work in [*setup.contenders.items(), *setup.stages.items()]:
        for _ in range(args.repeat if label in FAST else 1):
            seconds, counts = cpu(work)
            times.setdefault(label, []).append(seconds)
            if label not in setup.contenders:
                continue
            if expected is not None and counts != expected:
                raise SystemExit(f"{label} counted {counts}, not {expected}")
            expected = counts
    times["counts"] = expected


def time_dispatch(setup: Setup, events: Sequence[TriggerContext], many: bool) -> tuple:
    """(wall seconds, CPU seconds) of dispatching ``events``, checked against the bound."""
    runtime, dispatcher = setup.runtime, setup.dispatcher
    before = count_executions(runtime)
    if many:
        seconds, cpu_seconds, _ = wall(
            lambda: [
                dispatcher.dispatch_many(events[i : i + 50]) for i in range(0, len(events), 50)
            ]
        )
    else:
        seconds, cpu_seconds, _ = wall(lambda: [dispatcher.dispatch(e) for e in events])
    created = count_executions(runtime) - before
    wanted = bound_pass(setup.index, [(e.creator_id, e.type, e.data) for e in events])[0]
    if created != wanted:
        raise SystemExit(f"the dispatch created {created} executions, not {wanted}")
    return seconds, cpu_seconds


def run(args: argparse.Namespace) -> None:
    print(f"load average at start: {load_average()}")
    with services() as settings:
        runtime = Runtime.start(settings)
        try:
            report(set_up(runtime, args), args)
        finally:
            runtime.close()


def report(setup: Setup, args: argparse.Namespace) -> None:
    times: dict = {}
    db: dict[str, list[tuple[float, float]]] = {"dispatch": [], "dispatch_many": []}
    # What the set-up built stays: out of the collector's way, so that a collection
    # before each pass takes milliseconds, not seconds, of the run.
    gc.collect()
    gc.freeze()
    # Warm-up: SQLAlchemy compiles and caches its statements on first use.
    offset = 50
    for many in (False, True):
        time_dispatch(setup, setup.events[:offset], many)
    for round_ in range(args.rounds):
        started = time.perf_counter()
        time_in_memory(setup, args, times)
        for label in db if round_ < args.db_rounds else ():
            chunk = setup.events[offset : offset + args.db_events]
            offset += args.db_events
            db[label].append(time_dispatch(setup, chunk, label == "dispatch_many"))
        elapsed = time.perf_counter() - started
        print(f"round {round_ + 1} of {args.rounds}: {elapsed:.0f} s (load {load_average()})")
    print_figures(times, db, len(setup.events), args)


def print_figures(times: dict, db: dict, n: int, args: argparse.Namespace) -> None:
    matched, evaluated, actions = times["counts"]
    print(
        f"\n{n:,} events: {matched:,} automations matched ({matched / n:.2f} an event), "
        f"{evaluated:,} conditions evaluated ({evaluated / n:.2f} an event), "
        f"{actions:,} actions reached before a wait"
    )
    bound = median(times[BOUND])
    rows = []
    for label in (BOUND, ENGINE, VALIDATING):
        seconds = median(times[label])
        ratio = bound / seconds
        target = f">= {TARGET}x" if label in (ENGINE, VALIDATING) else ""
        met = ("yes" if ratio >= TARGET else "**no**") if target else ""
        rows.append([label, f"{n / seconds:,.0f}", f"{evaluated / seconds:,.0f}",
                     f"{seconds / n * 1e6:.2f}", f"{ratio:.2f}x", target, met])  # fmt: skip
    for label, samples in db.items():
        per_event = median([s for s, _ in samples]) / args.db_events
        cpu_event = median([c for _, c in samples]) / args.db_events
        rows.append([f"Dispatcher.{label}, PostgreSQL + Redis (wall)", f"{1 / per_event:,.0f}",
                     "", f"{per_event * 1e6:,.0f} (CPU {cpu_event * 1e6:,.0f})",
                     f"{bound / n / per_event:.4f}x", "", ""])  # fmt: skip
    headers = ["contender", "events/s", "conditions/s", "us/event", "vs bound", "target", "met"]
    print("\n" + table(headers, rows))
    previous = 0.0
    rows = []
    for label in [*STAGE_LABELS, VALIDATING]:
        seconds = median(times[label]) / n * 1e6
        rows.append([label if label != VALIDATING else "+ event validation and context",
                     f"{seconds - previous:.2f}", f"{seconds:.2f}"])  # fmt: skip
        previous = seconds
    print("\nwhere the engine's in-memory time goes (CPU, cumulative passes):\n")
    print(table(["stage", "us/event", "cumulative"], rows))
    print(
        f"\nmedians of {args.rounds} rounds ({args.repeat} passes a round for the first and "
        "second); "
        f"dispatches: {args.db_events} events a round, {args.db_rounds} rounds; "
        f"load average at end: {load_average()}"
    )


STAGE_LABELS = (
    "index lookup",
    "+ trigger arguments matched (validated once a version)",
    "+ GraphCache.get of each matching automation",
    "+ walk of the graph, conditions evaluated",
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creators", type=int, default=1_000)
    parser.add_argument("--automations", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=10_000, help="events of an in-memory pass")
    parser.add_argument("--repeat", type=int, default=3, help="fast passes a round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--db-events", type=int, default=300, help="events a dispatch round")
    parser.add_argument("--db-rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
