"""How fast a compiled condition runs, beside a hand-written lambda and three rule engines.

The condition, from the issue, evaluated over seeded, varied ``purchase_completed``
contexts (nested dicts, as the engine hands them to a condition)::

    fan.total_spent >= 50 and "vip" in fan.tags and fan.country in ["US","CA","GB"]
        and event.amount > 5

Contenders, side by side in one process on the same events:

1. a hand-written Python lambda: the reference, 1.0x;
2. ours: ``compile_condition(to_json(parse_expression(TEXT), fields))`` with the field
   types of the built-in ``purchase_completed`` trigger; the same without types; and
   ``evaluate``'s closure tree built once (the reference the compiled form agrees with);
3. ``rule-engine``: ``rule_engine.Rule(...).matches(event)``;
4. ``business-rules``: variables and actions classes, ``run_all`` once per event;
5. ``durable-rules``: one ruleset, the events posted with ``post_batch``, matches
   counted by the rule's action.

The main comparison runs on complete events only, because the lambda raises on an event
that lacks a field. A small share of events with a missing field is then timed on our
compiled form alone, where its precise form (generated with the fast one, in its
``except``) answers for them. Every contender must
count the same number of matching events, or the script stops. A package that does not
install or import is skipped with the reason; the others still run. Contenders of one
round run back to back and every figure is the median of several rounds of the
process's CPU time, because the machine is shared and noisy.

Run: ``.venv/bin/python bench/bench_conditions.py [--events 100000] [--rounds 5]``
(the comparison packages: ``.venv/bin/pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import itertools
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # so `dsl` imports however this script is started

from dsl import conditions  # noqa: E402
from dsl.catalog import ValueType  # noqa: E402
from dsl.parser import parse_expression  # noqa: E402

TEXT = 'fan.total_spent >= 50 and "vip" in fan.tags and fan.country in ["US","CA","GB"] and event.amount > 5'  # noqa: E501
TRIGGER = "purchase_completed"
TARGET = 0.7  # ours (typed), as a fraction of the lambda's evaluations per second
DEFAULT_EVENTS = 100_000
DEFAULT_SEED = 20240601
MISSING_SHARE = 0.02
DURABLE_CHUNK = 1_000  # events per post_batch call

Event = dict[str, Any]


def reference(e: Event) -> bool:
    """The hand-written lambda (a def, so it has a name in profiles; same bytecode)."""
    return (
        e["fan"]["total_spent"] >= 50
        and "vip" in e["fan"]["tags"]
        and e["fan"]["country"] in ["US", "CA", "GB"]
        and e["event"]["amount"] > 5
    )


# --- Events ------------------------------------------------------------------------------

TAGS = ("new", "vip", "whale", "welcomed", "ppv_buyer", "lapsed", "engaged", "trial")
# Weighted so that `country in ["US","CA","GB"]` holds for about half the fans.
COUNTRIES = ("US",) * 5 + ("CA", "GB") * 2 + ("FR", "DE", "ES", "BR", "AU", "MX", "JP")


def money(rng: random.Random, low: float, high: float, exact: float) -> float | int:
    """Cents, as JSON would carry them; sometimes a whole number (an int), sometimes
    exactly the threshold, so `>=` and `>` are told apart."""
    roll = rng.random()
    if roll < 0.03:
        return exact if rng.random() < 0.5 else int(exact)
    if roll < 0.2:
        return rng.randint(int(low), int(high))
    return round(rng.uniform(low, high), 2)


def make_event(rng: random.Random) -> Event:
    # About 2/3 of fans have spent $50, 2/5 are tagged vip, 3/4 of purchases exceed $5:
    # each clause is often true and often false, so short-circuiting varies.
    tags = rng.sample(TAGS, rng.randint(0, 4))
    if "vip" not in tags and rng.random() < 0.2:
        tags.append("vip")
    return {
        "fan": {
            "name": f"fan{rng.randint(1, 10**6)}",
            "total_spent": money(rng, 0, 150, 50.0),
            "tags": tags,
            "country": rng.choice(COUNTRIES),
        },
        "event": {"amount": money(rng, 0, 20, 5.0), "item": rng.choice(("ppv", "tip"))},
    }


def make_events(n: int, seed: int) -> list[Event]:
    rng = random.Random(seed)
    return [make_event(rng) for _ in range(n)]


def drop_field(event: Event, rng: random.Random) -> Event:
    """A copy of the event with one field the condition reads absent or null."""
    copy = {"fan": dict(event["fan"]), "event": dict(event["event"])}
    match rng.randrange(5):
        case 0:
            del copy["fan"]["total_spent"]
        case 1:
            copy["fan"]["tags"] = None
        case 2:
            del copy["fan"]["country"]
        case 3:
            del copy["event"]["amount"]
        case _:
            del copy["event"]  # a context without the event object at all
    return copy


def with_missing(events: list[Event], share: float, seed: int) -> tuple[list[Event], list[Event]]:
    """(the stream with ``share`` of its events lacking a field, those events alone)."""
    rng = random.Random(seed + 1)
    mixed = list(events)
    positions = rng.sample(range(len(events)), round(len(events) * share))
    for position in positions:
        mixed[position] = drop_field(events[position], rng)
    return mixed, [mixed[position] for position in sorted(positions)]


# --- Contenders ----------------------------------------------------------------------------


@dataclass
class Contender:
    label: str
    count: Callable[[list[Event]], int]  # evaluates every event, returns the matches
    how: str = ""  # how the condition was expressed, when not word for word
    # Fast contenders are timed FAST_REPEAT times a round: one pass takes only tens of
    # milliseconds, so on a shared machine they need more samples for a steady median.
    fast: bool = False
    events: list[Event] | None = None  # its own events instead of the complete ones
    times: list[float] = field(default_factory=list)
    matches: int | None = None
    error: str = ""  # why it stopped, if it raised while timed


class Skipped(Exception):
    """A package that cannot run here; the message says why."""


def count_with(predicate: Callable[[Event], Any]) -> Callable[[list[Event]], int]:
    # map/sum loop in C, so the driver adds as little as possible to each evaluation.
    return lambda events: sum(map(predicate, events))


def field_types() -> tuple[Mapping[str, ValueType], str]:
    """The trigger's field types from the plugin catalogue, else a hand-written copy."""
    try:
        from engine.catalogue import load_catalogue

        fields = load_catalogue().catalog.triggers[TRIGGER].fields
        return fields, f"field types: `{TRIGGER}` from engine.catalogue.load_catalogue()"
    except Exception as exc:  # a benchmark must run even while the catalogue is broken
        fields = {
            "fan.total_spent": ValueType.MONEY,
            "fan.tags": ValueType.LIST,
            "fan.country": ValueType.TEXT,
            "event.amount": ValueType.MONEY,
        }
        return fields, f"field types: HAND-WRITTEN (load_catalogue failed: {exc!r})"


def ours(fields: Mapping[str, ValueType]) -> list[Contender]:
    expr = parse_expression(TEXT)
    typed, untyped = conditions.to_json(expr, fields), conditions.to_json(expr)
    compiled = conditions.compile_condition(typed)
    # evaluate()'s tree, built once (private: evaluate builds it on every call).
    precise = conditions._closure(typed)
    return [
        Contender("ours, compiled, typed", count_with(compiled), fast=True),
        Contender(
            "ours, compiled, no types", count_with(conditions.compile_condition(untyped)), fast=True
        ),
        Contender("ours, evaluate()'s closure tree", count_with(precise), fast=True),
        Contender("ours, evaluate() per call", count_with(lambda e: conditions.evaluate(typed, e))),
    ]


def rule_engine_contender() -> Contender:
    try:
        import rule_engine
    except ImportError as exc:
        raise Skipped(f"rule-engine does not import: {exc}") from exc
    # Item access on the mappings. The attribute form (`fan.total_spent`, the text word for
    # word) also works on dicts, but is far slower: see attribute_form_note().
    text = (
        "fan['total_spent'] >= 50 and 'vip' in fan['tags'] "
        "and fan['country'] in ['US', 'CA', 'GB'] and event['amount'] > 5"
    )
    rule = rule_engine.Rule(text)
    return Contender(
        f"rule-engine {version('rule-engine')}",
        count_with(rule.matches),
        f"rule-engine: `{text}` (numbers become Decimal; `in` on an array is exact)",
    )


def attribute_form_note(events: list[Event]) -> str:
    """rule-engine with the condition's own text: timed on a slice, it is too slow for all."""
    try:
        import rule_engine
    except ImportError:
        return ""
    rule = rule_engine.Rule(TEXT)
    sample = events[:1000]
    start = time.process_time()
    answers = [rule.matches(e) for e in sample]
    per_eval = (time.process_time() - start) / len(sample)
    same = answers == [reference(e) for e in sample]
    return (
        f"rule-engine with the text word for word (`fan.total_spent`, attribute access on "
        f"a dict): {per_eval * 1e6:,.0f} us per evaluation on {len(sample):,} events "
        f"(same answers: {same}); the table uses item access `fan['total_spent']`"
    )


def business_rules_contender() -> Contender:
    try:
        from business_rules import engine, variables
        from business_rules.actions import BaseActions, rule_action
    except ImportError as exc:
        raise Skipped(f"business-rules does not import: {exc}") from exc

    class PurchaseVariables(variables.BaseVariables):
        def __init__(self, ctx: Event) -> None:
            self.ctx = ctx

        @variables.numeric_rule_variable()
        def total_spent(self):
            return self.ctx["fan"]["total_spent"]

        @variables.select_rule_variable()
        def tags(self):
            return self.ctx["fan"]["tags"]

        @variables.string_rule_variable()
        def country(self):
            return self.ctx["fan"]["country"]

        @variables.numeric_rule_variable()
        def amount(self):
            return self.ctx["event"]["amount"]

    class Counter(BaseActions):
        def __init__(self) -> None:
            self.matches = 0

        @rule_action()
        def count_match(self):
            self.matches += 1

    countries = [
        {"name": "country", "operator": "equal_to", "value": c} for c in ("US", "CA", "GB")
    ]
    rules = [
        {
            "conditions": {
                "all": [
                    {"name": "total_spent", "operator": "greater_than_or_equal_to", "value": 50},
                    {"name": "tags", "operator": "contains", "value": "vip"},
                    {"any": countries},
                    {"name": "amount", "operator": "greater_than", "value": 5},
                ]
            },
            "actions": [{"name": "count_match", "params": {}}],
        }
    ]

    def count(events: list[Event]) -> int:
        counter = Counter()
        for event in events:
            engine.run_all(rules, PurchaseVariables(event), counter)
        return counter.matches

    return Contender(
        f"business-rules {version('business-rules')}",
        count,
        "business-rules: `country in [...]` as `any` of three `equal_to`; `tags contains "
        '"vip"` on a select variable (case-insensitive there; the tags here are lower case); '
        "numeric operators compare within 1e-6 (the amounts here are whole cents)",
    )


def durable_rules_contender() -> Contender:
    try:
        from durable import engine, lang
    except ImportError as exc:
        raise Skipped(f"durable-rules does not import: {exc}") from exc

    class Host(engine.Host):
        # The stock host starts a thread that dispatches queued actions every 0.2 s: it
        # could run a match's action after count() returned. Here every queued action is
        # dispatched by count() itself, so the count is exact.
        def _run(self) -> None:
            pass

    name, matched = "huntaze_bench_conditions", [0]
    m, item = lang.m, lang.item
    rules = lang.ruleset(name)
    with rules:

        @lang.when_all(
            (m.fan.total_spent >= 50)
            & m.fan.tags.anyItem(item == "vip")
            & ((m.fan.country == "US") | (m.fan.country == "CA") | (m.fan.country == "GB"))
            & (m.event.amount > 5)
        )
        def count_match(c):
            matched[0] += 1

    host = Host({name: rules.define()[1]})
    ruleset = host.get_ruleset(name)

    def count(events: list[Event]) -> int:
        matched[0] = 0
        for start in range(0, len(events), DURABLE_CHUNK):
            try:
                host.post_batch(name, events[start : start + DURABLE_CHUNK])
            except engine.MessageNotHandledException:
                # Raised when any event of the batch matched no rule, before the queued
                # actions of the ones that did run: run those now.
                ruleset.dispatch()
        return matched[0]

    return Contender(
        f"durable-rules {version('durable-rules')}",
        count,
        'durable-rules: `country in [...]` as three `==` joined by `|`; `"vip" in tags` '
        f'as `m.fan.tags.anyItem(item == "vip")`; post_batch of {DURABLE_CHUNK:,} events, '
        "queued actions dispatched when a batch holds an unmatched event (the host's own "
        "dispatcher thread off)",
    )


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def packages() -> tuple[list[Contender], list[str]]:
    contenders, skipped = [], []
    for make in (rule_engine_contender, business_rules_contender, durable_rules_contender):
        try:
            contenders.append(make())
        except Exception as exc:  # Skipped, or a package that breaks while setting up
            skipped.append(f"skipped: {exc}" if isinstance(exc, Skipped) else f"skipped: {exc!r}")
    return contenders, skipped


# --- Timing --------------------------------------------------------------------------------

FAST_REPEAT = 5


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    """CPU time of this process: the machine is shared, and wall time would also count
    the time other processes hold the CPU (medians of wall time varied by 2x here)."""
    # Collect first so one contender does not pay for the garbage of the one before it.
    gc.collect()
    start = time.process_time()
    result = fn()
    return time.process_time() - start, result


def run_rounds(contenders: list[Contender], events: list[Event], rounds: int) -> None:
    """Every contender once a round (fast ones FAST_REPEAT times), back to back, so noise
    on the shared machine hits them alike. A package that raises is dropped, with why."""
    for _ in range(rounds):
        for _ in range(FAST_REPEAT):
            for contender in contenders:
                if contender.fast:
                    time_once(contender, events)
        for contender in contenders:
            if not contender.fast and not contender.error:
                time_once(contender, events)


def time_once(contender: Contender, events: list[Event]) -> None:
    own = contender.events if contender.events is not None else events
    try:
        elapsed, matches = timed(lambda: contender.count(own))
    except Exception as exc:  # a package's bug must not stop the comparison of the others
        contender.error = f"{contender.label} raised {exc!r}; left out"
        return
    contender.times.append(elapsed)
    contender.matches = matches


def check_agreement(contenders: list[Contender], expected: int) -> None:
    wrong = [f"{c.label}: {c.matches}" for c in contenders if c.matches != expected]
    assert not wrong, f"contenders disagree with the lambda's {expected} matches: {wrong}"


def row(label: str, times: list[float], n: int, base: float | None, target: str = "") -> str:
    median = statistics.median(times)
    ratio = "" if base is None else f"{base / median:.3f}x"
    spread = f"{min(times) * 1e3:,.1f}-{max(times) * 1e3:,.1f}"
    line = (
        f"{label:<30} {n / median:>13,.0f} {median / n * 1e6:>9.3f} "
        f"{median * 1e3:>11,.1f} {spread:>17} {ratio:>8}  {target}"
    )
    return line.rstrip()


def header() -> str:
    return (
        f"{'contender':<30} {'evals/s':>13} {'us/eval':>9} {'median ms':>11} "
        f"{'min-max ms':>17} {'ratio':>8}  target"
    )


# --- Missing fields ------------------------------------------------------------------------


def missing_contenders(
    typed: Contender, complete: list[Event], mixed: list[Event], incomplete: list[Event]
) -> list[Contender]:
    """Our typed compiled form on the mixed stream, and on the incomplete events alone
    (repeated to as many evaluations as the complete stream, for a measurable pass)."""
    repeats = max(1, len(complete) // max(1, len(incomplete)))
    repeated = list(itertools.chain.from_iterable(itertools.repeat(incomplete, repeats)))
    return [
        Contender("  ours, typed, mixed stream", typed.count, fast=True, events=mixed),
        Contender("  ours, typed, incomplete only", typed.count, fast=True, events=repeated),
    ]


def missing_report(
    typed: Contender,
    fields: Mapping[str, ValueType],
    extra: list[Contender],
    mixed: list[Event],
    incomplete: list[Event],
) -> list[str]:
    """Correctness on the incomplete events, then their cost against complete ones."""
    data = conditions.to_json(parse_expression(TEXT), fields)
    disagree = sum(typed.count([e]) != conditions.evaluate(data, e) for e in incomplete)
    assert disagree == 0, f"compiled and precise forms disagree on {disagree} events"
    crashes = sum(_raises(reference, e) for e in incomplete)
    per_complete = statistics.median(typed.times)
    mixed_run, alone = extra
    n_alone = len(alone.events or ())
    per = {
        "mixed": statistics.median(mixed_run.times) / len(mixed),
        "alone": statistics.median(alone.times) / max(1, n_alone),
        "complete": per_complete / len(mixed),
    }
    share = len(incomplete) / len(mixed)
    extra = (per["mixed"] - per["complete"]) * len(mixed) / max(1, len(incomplete))
    return [
        f"Missing fields: {len(incomplete):,} of {len(mixed):,} events ({share:.1%}) lack a "
        "field the condition reads (absent key, null, or no `event` object).",
        f"The lambda raises on {crashes:,} of them; ours agrees with the precise form "
        f"(evaluate) on every one, and counts {mixed_run.matches:,} matches in the mixed stream.",
        f"Ours, typed: {per['complete'] * 1e6:.3f} us/eval on complete events, "
        f"{per['mixed'] * 1e6:.3f} on the mixed stream "
        f"({per['mixed'] / per['complete'] - 1:+.1%});",
        # What an incomplete event adds in a realistic stream, and on its own, repeated.
        f"an incomplete event costs {extra * 1e6:.2f} us more than a complete one in the mixed "
        f"stream, and {per['alone'] * 1e6:.3f} us when timed alone, repeated "
        f"({per['alone'] / per['complete']:.1f}x a complete one).",
    ]


def _raises(predicate: Callable[[Event], Any], event: Event) -> bool:
    try:
        predicate(event)
    except (KeyError, TypeError):
        return True
    return False


CLAUSES: dict[str, Callable[[Event], bool]] = {
    "total_spent >= 50": lambda e: e["fan"]["total_spent"] >= 50,
    '"vip" in tags': lambda e: "vip" in e["fan"]["tags"],
    "country in [...]": lambda e: e["fan"]["country"] in ["US", "CA", "GB"],
    "amount > 5": lambda e: e["event"]["amount"] > 5,
}


def clause_rates(events: list[Event]) -> str:
    """How often each clause is true: the mix is varied only if none is near 0 or 1."""
    return ", ".join(
        f"{name} {sum(map(clause, events)) / len(events):.0%}" for name, clause in CLAUSES.items()
    )


# --- Report --------------------------------------------------------------------------------


def report(n: int, rounds: int, seed: int, missing: float) -> None:
    complete = make_events(n, seed)
    mixed, incomplete = with_missing(complete, missing, seed)
    fields, fields_note = field_types()
    lam = Contender("lambda (reference)", count_with(reference), fast=True)
    mine = ours(fields)
    others, notes = packages()
    extra = missing_contenders(mine[0], complete, mixed, incomplete)
    main_table = [lam, *mine, *others]
    print(f"Condition: {TEXT}")
    print(
        f"Events: {n:,} complete, seed {seed}; {rounds} round(s) ({rounds * FAST_REPEAT} "
        f"samples for the fast contenders), medians; Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs"
    )
    print(fields_note)
    print()
    run_rounds([*main_table, *extra], complete, rounds)
    notes += [c.error for c in others if c.error]
    main_table = [c for c in main_table if not c.error]
    check_agreement(main_table, lam.matches)
    print(header())
    print("-" * len(header()))
    base = statistics.median(lam.times)
    for contender in main_table:
        target = ""
        if contender is mine[0]:
            met = base / statistics.median(contender.times) >= TARGET
            target = f">= {TARGET}x  {'met' if met else 'NOT MET'}"
        print(row(contender.label, contender.times, n, base, target))
    print()
    expected = lam.matches
    print(f"Matching events: {expected:,} of {n:,} ({expected / n:.1%}); all contenders agree.")
    print(f"Each clause alone holds for: {clause_rates(complete)}.")
    print("ratio: evaluations per second against the lambda (higher is faster).")
    for note in [c.how for c in others if c.how] + [attribute_form_note(complete), *notes]:
        if note:
            print(f"- {note}")
    print()
    for line in missing_report(mine[0], fields, extra, mixed, incomplete):
        print(line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Benchmark condition evaluation.")
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="complete events")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (median)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="event generator seed")
    parser.add_argument(
        "--missing", type=float, default=MISSING_SHARE, help="share of events lacking a field"
    )
    args = parser.parse_args(argv)
    report(args.events, args.rounds, args.seed, args.missing)


if __name__ == "__main__":
    main()
