"""How fast the automation language is parsed, formatted and checked.

Measures, side by side in one process on the same generated corpus (``bench/corpus.py``):

(a) Lark's own LALR parse of the corpus into a bare parse tree with our grammar file, no
    transformer: the floor our parser cannot beat;
(b) ``dsl.parse``: our parse into the AST (spans, literals decoded, comments kept);
(c) ``dsl.format_module``: the canonical text printed back from that AST;
(d) ``huntaze check`` on the corpus written to a file: wall time of the installed console
    script, interpreter start-up included (the child's CPU time beside it).

For reference it also times Lark's Earley parser on a small slice, against LALR on the
same slice. The contenders of one round run back to back and every figure is the median
of several rounds, because the machine is shared and noisy. In-process figures are CPU
time of this process; (d) is wall time, since start-up is part of what a user waits for.

Run: ``.venv/bin/python bench/bench_parse.py [--n 1000] [--rounds 7]``
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # so `bench.corpus` imports however this script is started

from lark import Lark  # noqa: E402

import dsl  # noqa: E402
from bench.corpus import DEFAULT_N, corpus_text  # noqa: E402

GRAMMAR = Path(dsl.__file__).with_name("grammar.lark")
PARSE_TARGET = 0.6  # our parse, as a fraction of the bare Lark parse's lines per second
CHECK_TARGET = 3.0  # seconds of wall time for `huntaze check` on the corpus


@dataclass
class Result:
    label: str
    times: list[float]
    lines: int | None = None  # None: a wall-time figure, lines per second is meaningless

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def lines_per_second(self) -> float | None:
        return None if self.lines is None else self.lines / self.median


def timed(fn: Callable[[], object]) -> float:
    """CPU seconds of this process for one call.

    CPU time, not wall time: on a shared machine the wall clock also counts the time spent
    waiting for a core, which swings from run to run and says nothing about our code.
    """
    # Collect first so one contender does not pay for the garbage of the one before it.
    gc.collect()
    start = time.process_time()
    fn()
    return time.process_time() - start


def run_in_process(text: str, rounds: int) -> list[Result]:
    """(a), (b) and (c), interleaved round by round so noise hits them alike."""
    lines = text.count("\n")
    bare = Lark.open(str(GRAMMAR), parser="lalr", lexer="contextual")
    format_module = getattr(dsl, "format_module", None)
    module = dsl.parse(text, "corpus.hz")
    contenders: dict[str, Callable[[], object]] = {
        "(a) Lark LALR, bare tree": lambda: bare.parse(text),
        "(b) dsl.parse -> AST": lambda: dsl.parse(text, "corpus.hz"),
    }
    if format_module is not None:
        contenders["(c) dsl.format_module"] = lambda: format_module(module)
    times: dict[str, list[float]] = {label: [] for label in contenders}
    for _ in range(rounds):
        for label, fn in contenders.items():
            times[label].append(timed(fn))
    return [Result(label, samples, lines) for label, samples in times.items()]


def check_command() -> list[str] | None:
    """The installed console script, else the module, else None (the CLI is not there)."""
    if importlib.util.find_spec("webapp.cli") is None:
        return None  # the entry point may be installed before the module it names exists
    script = Path(sys.executable).with_name("huntaze")
    if script.exists():
        return [str(script)]
    found = shutil.which("huntaze")
    if found:
        return [found]
    return [sys.executable, "-m", "webapp.cli"]


def run_check(text: str, rounds: int) -> tuple[list[Result], str]:
    """(d): ``huntaze check`` in a fresh process, plus start-up alone for reference.

    Wall time is the target (a user waits for start-up too); CPU time (user + sys of the
    child) is printed beside it because on a loaded machine wall time is mostly waiting.
    """
    command = check_command()
    if command is None:
        return [], "(d) skipped: webapp.cli does not exist yet"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.hz"
        path.write_text(text, encoding="utf-8")
        commands = {
            "(d) huntaze check": [*command, "check", str(path)],
            # What start-up alone costs: the interpreter, then it plus our imports.
            "    python -c pass": [sys.executable, "-c", "pass"],
            "    huntaze --version": [*command, "--version"],
        }
        walls: dict[str, list[float]] = {label: [] for label in commands}
        cpus: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(rounds):
            for label, argv in commands.items():
                wall, cpu, completed = run_child(argv)
                walls[label].append(wall)
                cpus[label].append(cpu)
                if label.startswith("(d)"):
                    checked = completed
    note = f"(d) ran `{' '.join(command)} check corpus.hz`: {outcome(checked)}"
    results = []
    for label in commands:
        results += [Result(f"{label}, wall", walls[label]), Result(f"{label}, CPU", cpus[label])]
    return results, note


def run_child(argv: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds, CPU seconds (user + sys) and the outcome of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    completed = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, completed


def outcome(completed: subprocess.CompletedProcess) -> str:
    """Exit status, and why when it is not 0: a timing of a crash is no timing at all."""
    if "Traceback" in completed.stderr:
        return f"CRASHED ({completed.stderr.strip().splitlines()[-1]})"
    if completed.returncode == 0:
        return "exit 0"
    messages = Counter(
        line.split(": error: ", 1)[1]
        for line in completed.stdout.splitlines()
        if ": error: " in line
    )
    common = ", ".join(f"{count} x {message}" for message, count in messages.most_common(3))
    return f"exit {completed.returncode}, {messages.total()} errors reported ({common})"


def run_earley(n: int, rounds: int) -> tuple[list[Result], str]:
    """Earley against LALR on the same small slice, so the "about 50x" claim is measured."""
    text = corpus_text(n)
    lines = text.count("\n")
    lalr = Lark.open(str(GRAMMAR), parser="lalr", lexer="contextual")
    earley = Lark.open(str(GRAMMAR), parser="earley")
    lalr_label, earley_label = f"    LALR, {n} automations", f"    Earley, {n} automations"
    times: dict[str, list[float]] = {lalr_label: [], earley_label: []}
    for _ in range(rounds):
        times[lalr_label].append(timed(lambda: lalr.parse(text)))
        times[earley_label].append(timed(lambda: earley.parse(text)))
    # Earley does not reserve keywords (`else` may lex as an action's NAME), so it can
    # return a different tree for the same text. Say so rather than hide it.
    same = earley.parse(text) == lalr.parse(text)
    note = f"Earley vs LALR on {n} automations ({lines} lines); same tree: {same}"
    return [Result(label, samples, lines) for label, samples in times.items()], note


def row(result: Result, floor: Result | None, target: str = "", verdict: str = "") -> str:
    lps = result.lines_per_second
    ratio = "" if floor is None or lps is None else f"{lps / floor.lines_per_second:.2f}x"
    spread = f"{min(result.times):.3f}-{max(result.times):.3f}"
    line = (
        f"{result.label:<28} {result.median:>9.3f} {spread:>13} "
        f"{'' if lps is None else f'{lps:,.0f}':>11} {ratio:>8}  {target:<8} {verdict}"
    )
    return line.rstrip()


def verdict(met: bool) -> str:
    return "met" if met else "NOT MET"


def revision() -> str:
    """The checked-out commit, marked + when the tree has changes: figures go with code."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return "unknown"
    dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "")


def report(n: int, text: str, rounds: int, check_rounds: int, earley_n: int) -> None:
    lines = text.count("\n")
    print(
        f"Corpus: {n:,} automations, {lines:,} lines, {len(text.encode()):,} bytes; "
        f"{rounds} rounds in process (CPU time), {check_rounds} runs of check (wall); medians"
    )
    print(
        f"Python {sys.version.split()[0]}, lark {importlib.metadata.version('lark')}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start, "
        f"commit {revision()}"
    )
    print()
    header = f"{'stage':<28} {'median s':>9} {'min-max s':>13} {'lines/s':>11} {'ratio':>8}  target"
    print(header)
    print("-" * len(header))
    notes = []
    bare, ours, *formatted = run_in_process(text, rounds)
    print(row(bare, bare))
    met = ours.lines_per_second / bare.lines_per_second >= PARSE_TARGET
    print(row(ours, bare, f">= {PARSE_TARGET}x", verdict(met)))
    for result in formatted:
        print(row(result, bare))
        canonical = dsl.format_module(dsl.parse(text)) == text
        notes.append(f"(c) corpus is already canonical (format(parse(text)) == text): {canonical}")
    if not formatted:
        notes.append("(c) skipped: dsl does not export format_module yet")
    check_results, check_note = run_check(text, check_rounds)
    notes.append(check_note)
    for result in check_results:
        target, met_check = "", ""
        if result.label == "(d) huntaze check, wall":
            target, met_check = f"< {CHECK_TARGET:g} s", verdict(result.median < CHECK_TARGET)
        print(row(result, None, target, met_check))
    print("Reference: Earley (ratio against LALR on the same slice)")
    earley_results, earley_note = run_earley(earley_n, max(3, rounds // 2))
    lalr, earley = earley_results
    for result in earley_results:
        print(row(result, lalr))
    notes.append(f"{earley_note}; Earley is {earley.median / lalr.median:.0f}x slower")
    print()
    print("ratio: lines per second against (a), except the Earley rows (against LALR).")
    for note in notes:
        print(note)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Benchmark parse, format and check.")
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="automations in the corpus")
    parser.add_argument("--rounds", type=int, default=7, help="rounds in process (median)")
    parser.add_argument("--check-rounds", type=int, default=5, help="runs of `huntaze check`")
    parser.add_argument("--earley-n", type=int, default=50, help="automations for Earley")
    args = parser.parse_args(argv)
    report(args.n, corpus_text(args.n), args.rounds, args.check_rounds, args.earley_n)


if __name__ == "__main__":
    main()
