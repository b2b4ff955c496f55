"""Resident memory of a process with 10,000 compiled automations loaded.

The parent process stores 10,000 active automations for 1,000 creators (checked and
compiled, as in ``engine_support``) in a PostgreSQL schema of its own, then starts a
fresh Python process for each measurement, so that nothing the set-up allocated (the
checker, the compiler, the generated texts) is counted. The child reads its resident
size (``VmRSS`` in ``/proc/self/status``) after each stage:

1. the engine imported and a ``Runtime`` started (plugins loaded), a ``Runner`` built:
   what every worker holds before any automation;
2. the dispatcher's ``AutomationIndex`` loaded: every active automation's index entry
   (what an API process holds);
3. the runner's ``GraphCache`` holding every automation's compiled graph: its flat node
   table, each condition compiled to a Python function by ``dsl.conditions``, each
   action's validated arguments (what a worker holds once it has run each one).

The cache keeps 4,096 graphs by default, so a worker as shipped holds at most that
many; the script fills it both ways: at its default size, after running through all
10,000 automations, and sized to hold them all. Figures are medians over fresh processes;
RSS is the kernel's figure and moves little between runs. A last process then weighs
each part of a cached graph on the Python heap (``tracemalloc``).

Run: ``.venv/bin/python bench/bench_memory.py`` (``--help`` for sizes).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

# Nothing else at the top: the measuring process imports only what a worker imports.
TARGET_MB = 300
DEFAULT_SEED = 20240601  # engine_support's
ROOT = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    """This process's resident set size (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(database_url: str, redis_url: str, cache_size: int | None) -> dict[str, float]:
    """In the child process: RSS after each stage, and how many graphs the cache holds."""
    figures = {"start": rss_mb()}
    from engine.index import AutomationIndex
    from engine.jobs import runner_for
    from engine.runner import CONDITION
    from engine.runtime import Runtime, install
    from engine.settings import Settings

    runtime = Runtime.start(Settings(database_url=database_url, redis_url=redis_url))
    install(runtime)
    runner = runner_for(runtime)
    gc.collect()
    figures["runtime"] = rss_mb()

    index = AutomationIndex(runtime.db, runtime.redis)
    size = len(index)  # loads it
    entries = [entry for group in index._entries.values() for entry in group]
    gc.collect()
    figures["index"] = rss_mb()
    figures["index_entries"] = size

    if cache_size is not None:
        runner.graphs.size = cache_size
    started = time.perf_counter()
    for entry in entries:
        runner.graphs.get(entry.automation_id, entry.version)
    figures["load_seconds"] = time.perf_counter() - started
    gc.collect()
    figures["graphs"] = rss_mb()
    figures["cached"] = len(runner.graphs._graphs)
    figures["conditions"] = sum(
        node[0] == CONDITION for g in runner.graphs._graphs.values() for node in g.nodes.values()
    )
    runtime.close()
    return figures


def breakdown(database_url: str, redis_url: str) -> dict[str, float]:
    """In a child process: Python heap (tracemalloc) per automation of a cached graph,
    built from the stored graphs as ``GraphCache.load`` builds it, and of its parts."""
    import tracemalloc

    from sqlalchemy import select

    from dsl.conditions import _shape, compile_condition
    from dsl.graph import ActionNode, ConditionNode, RuleGraph
    from engine.models import AutomationVersion
    from engine.runner import GraphCache
    from engine.runtime import Runtime
    from engine.settings import Settings

    runtime = Runtime.start(Settings(database_url=database_url, redis_url=redis_url))
    stored = runtime.db.run(lambda s: list(s.scalars(select(AutomationVersion.graph))))
    cache = GraphCache(runtime)

    def heap(build) -> tuple[float, object]:
        gc.collect()
        tracemalloc.start()
        kept = build()
        gc.collect()
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return size / 1024 / len(stored), kept

    # Conditions of one shape share its code object, compiled once a process (an LRU
    # cache): each measurement that compiles conditions starts with none compiled, so
    # that the part counts the shapes' code as the whole does.
    figures = {}
    _shape.cache_clear()
    figures["a cached graph (GraphCache.load), in all"], _ = heap(
        lambda: [cache.load(g) for g in stored]
    )
    graphs = [RuleGraph.from_json(g) for g in stored]
    nodes = [n for g in graphs for n in g.nodes.values()]
    exprs = [n.expr for n in nodes if isinstance(n, ConditionNode)]
    actions = [n for n in nodes if isinstance(n, ActionNode)]
    _shape.cache_clear()
    conditions, _ = heap(lambda: [compile_condition(e) for e in exprs])
    shapes = _shape.cache_info().currsize
    figures[f"of which compiled conditions (their {shapes:,} shapes' code included)"] = conditions

    def arguments() -> list:
        shared = GraphCache(runtime)  # equal arguments of the same action: one object
        return [shared._config(n) for n in actions]

    figures["of which validated action arguments (shared)"], _ = heap(arguments)
    figures["for scale: the graphs as JSON (dicts)"], _ = heap(
        lambda: [json.loads(json.dumps(g)) for g in stored]
    )
    figures["for scale: the graphs as RuleGraph objects"], _ = heap(
        lambda: [RuleGraph.from_json(g) for g in stored]
    )
    runtime.close()
    return figures


def child(args: argparse.Namespace, database_url: str, redis_url: str, size: int | None) -> dict:
    command = [sys.executable, __file__, "--child", database_url, redis_url, str(size or 0)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"the measuring process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(args: argparse.Namespace) -> None:
    from engine_support import load_automations, load_average, services, table

    from engine.runtime import Runtime

    print(f"load average at start: {load_average()}")
    with services() as settings:
        runtime = Runtime.start(settings)
        try:
            load_automations(runtime, args.creators, args.automations, args.seed)
        finally:
            runtime.close()
        url, redis = settings.resolved_database_url(), settings.redis_url
        runs: dict[str, list[dict]] = {"default": [], "all": []}
        for _ in range(args.rounds):
            runs["default"].append(child(args, url, redis, None))
            runs["all"].append(child(args, url, redis, args.automations))
        parts = child(args, url, redis, -1)
    print_figures(runs, args)
    print("\nwhere a cached automation's memory goes (Python heap, tracemalloc):\n")
    rows = [[part, f"{kb:.1f}"] for part, kb in parts.items()]
    print(table(["part", "KB an automation"], rows))


def print_figures(runs: dict[str, list[dict]], args: argparse.Namespace) -> None:
    from engine_support import load_average, median, table

    def mid(kind: str, key: str) -> float:
        return median([run[key] for run in runs[kind]])

    every = runs["all"][0]
    graphs = mid("all", "graphs") - mid("all", "index")
    rows = [
        ["interpreter started", f"{mid('all', 'start'):.1f}", "", ""],
        ["engine imported, Runtime and Runner built", f"{mid('all', 'runtime'):.1f}", "", ""],
        [f"+ AutomationIndex ({every['index_entries']:,} entries)", f"{mid('all', 'index'):.1f}",
         f"{mid('all', 'index') - mid('all', 'runtime'):+.1f}", ""],
        [f"+ GraphCache at its default size ({runs['default'][0]['cached']:,} graphs)",
         f"{mid('default', 'graphs'):.1f}",
         f"{mid('default', 'graphs') - mid('default', 'index'):+.1f}",
         "yes" if mid("default", "graphs") < TARGET_MB else "**no**"],
        [f"+ GraphCache holding all {every['cached']:,} graphs ({every['conditions']:,} "
         "compiled conditions)", f"{mid('all', 'graphs'):.1f}", f"{graphs:+.1f}",
         "yes" if mid("all", "graphs") < TARGET_MB else "**no**"],
    ]  # fmt: skip
    print()
    print(table(["stage", "RSS (MB)", "added (MB)", f"< {TARGET_MB} MB"], rows))
    print(
        f"\n{graphs * 1024 / every['cached']:.1f} KB a compiled automation; loading all "
        f"{every['cached']:,} into the cache took {mid('all', 'load_seconds'):.1f} s "
        f"(one query each); medians of {args.rounds} fresh processes; "
        f"load average at end: {load_average()}"
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        database_url, redis_url, size = argv[1:4]
        if int(size) < 0:
            print(json.dumps(breakdown(database_url, redis_url)))
        else:
            print(json.dumps(measure(database_url, redis_url, int(size) or None)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creators", type=int, default=1_000)
    parser.add_argument("--automations", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2, help="fresh processes a figure")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds a process at most")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    report(parser.parse_args(argv))


if __name__ == "__main__":
    main()
