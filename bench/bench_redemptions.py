"""Redemptions per second on PostgreSQL, beside the floor of what the database allows.

Two contenders, each run by ``--clients`` concurrent client processes (8 by default),
every client on a connection of its own, for ``--seconds`` per trial:

1. ours: ``OffersService.redeem(offer_id, fan_id, amount, idempotency_key)`` — the
   request checked, then one statement that commits on its own: the conditional ``UPDATE
   offers ... RETURNING`` that enforces the limit and the ``INSERT`` of the redemption row
   (its unique key is the idempotency; ``FAST_REDEEM`` in plugins/offers/redemption.py);
2. the floor: a plain ``UPDATE offers SET redemption_count = redemption_count + 1 WHERE
   id = %s RETURNING redemption_count`` in a loop, written directly with psycopg in
   autocommit mode (one round trip and one commit per redemption, nothing logged).

Two scenarios: one hot offer that every client redeems (the redemptions queue on its
row), and many offers (``--offers``, 1,000 by default) each client picks from at random.
Each contender has offers of its own in the same table, so ours keep
``redemption_count`` equal to their rows, which the script verifies at the end. Within a
round the four trials run back to back, the contenders' order alternating between rounds;
every figure is the median of ``--rounds`` rounds, because the machine is shared and
noisy. The target: ours at least 0.5x the floor.

The database is a schema of the benchmark's own in the ``test`` database on
127.0.0.1:5432 (``HUNTAZE_BENCH_POSTGRES`` overrides), dropped at the end. Commits are
durable (``synchronous_commit`` as the server has it), as in production.

Run: ``.venv/bin/python bench/bench_redemptions.py [--clients 8] [--seconds 2] [--rounds 7]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # so `engine` and `plugins` import however this is started

import psycopg  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402

from engine.db import Database  # noqa: E402
from engine.migrate import upgrade  # noqa: E402
from plugins.offers.models import OfferRow, RedemptionRow  # noqa: E402
from plugins.offers.service import OffersService  # noqa: E402

POSTGRES = os.environ.get(
    "HUNTAZE_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TARGET = 0.5  # ours, as a fraction of the floor's redemptions per second
WARM_UP = 20  # redemptions per client before the clock starts
FLOOR_SQL = (
    "UPDATE offers SET redemption_count = redemption_count + 1 WHERE id = %s "
    "RETURNING redemption_count"
)


@dataclass(frozen=True)
class Trial:
    contender: str  # "ours" or "floor"
    scenario: str  # "hot" or "many"
    offer_ids: tuple[str, ...]


@dataclass(frozen=True)
class Figures:
    per_second: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # the clients' CPU time per redemption


# --- Set-up --------------------------------------------------------------------------------


def make_schema() -> tuple[str, str]:
    schema = f"huntaze_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
    migrated = create_engine(url)
    upgrade(migrated)
    migrated.dispose()
    return schema, url


def drop_schema(schema: str) -> None:
    admin = create_engine(POSTGRES)
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def make_offers(url: str, count: int) -> list[str]:
    """``count`` active offers, 20% off for every fan, with a limit never reached (so the
    limit's condition is evaluated on every redemption)."""
    database = Database(url)
    now = datetime.now(UTC)
    service = OffersService(database, now=lambda: now)
    data = {
        "name": "Bench 20%",
        "discount_type": "percentage",
        "discount_value": Decimal(20),
        "valid_from": now - timedelta(hours=1),
        "valid_until": now + timedelta(days=1),
        "max_redemptions": 1_000_000_000,
    }
    ids = [service.create("bench-creator", data).id for _ in range(count)]
    database.dispose()
    return ids


# --- Clients ---------------------------------------------------------------------------------


def client(url: str, trial: Trial, seconds: float, index: int, start, results) -> None:
    """One client process: connect, warm up, wait for the others, redeem until time is up."""
    rng = random.Random(index)
    if trial.contender == "ours":
        database = Database(url)
        service = OffersService(database, now=lambda: datetime.now(UTC))
        run_id = uuid.uuid4().hex[:8]
        counter = iter(range(10**9))

        def redeem(offer_id: str) -> None:
            n = next(counter)
            key = f"{run_id}-{index}-{n}"
            service.redeem(offer_id, f"fan-{key}", Decimal("10.00"), key)

    else:
        connection = psycopg.connect(url.replace("postgresql+psycopg", "postgresql"))
        connection.autocommit = True
        cursor = connection.cursor()

        def redeem(offer_id: str) -> None:
            cursor.execute(FLOOR_SQL, (offer_id,))
            cursor.fetchone()

    offers = trial.offer_ids
    for _ in range(WARM_UP):
        redeem(rng.choice(offers))
    start.wait()
    latencies = []
    began, cpu = time.perf_counter(), time.process_time()
    while (now := time.perf_counter()) - began < seconds:
        redeem(rng.choice(offers))
        latencies.append(time.perf_counter() - now)
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    results.put((len(latencies), elapsed, cpu, latencies))


def run_trial(url: str, trial: Trial, clients: int, seconds: float) -> Figures:
    context = mp.get_context("fork")
    start = context.Barrier(clients)
    results = context.Queue()
    processes = [
        context.Process(target=client, args=(url, trial, seconds, i, start, results))
        for i in range(clients)
    ]
    for process in processes:
        process.start()
    reports = [results.get(timeout=seconds + 120) for _ in processes]
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise SystemExit(f"a {trial.contender} client failed (exit code {process.exitcode})")
    latencies = sorted(latency for *_, some in reports for latency in some)
    return Figures(
        per_second=sum(count / elapsed for count, elapsed, _, _ in reports),
        p50_ms=latencies[len(latencies) // 2] * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99)] * 1000,
        cpu_us=sum(cpu for _, _, cpu, _ in reports) / len(latencies) * 1e6,
    )


# --- Checking and reporting ------------------------------------------------------------------


def check_counts(url: str, offer_ids: list[str]) -> int:
    """Every one of our offers has as many redemption rows as its count says."""
    database = Database(url)
    counts = select(OfferRow.id, OfferRow.redemption_count).where(OfferRow.id.in_(offer_ids))
    rows = (
        select(RedemptionRow.offer_id, func.count())
        .where(RedemptionRow.offer_id.in_(offer_ids))
        .group_by(RedemptionRow.offer_id)
    )
    stored = database.run(lambda s: dict(s.execute(counts).all()))
    logged = database.run(lambda s: dict(s.execute(rows).all()))
    database.dispose()
    wrong = {i: (stored[i], logged.get(i, 0)) for i in offer_ids if stored[i] != logged.get(i, 0)}
    if wrong:
        raise SystemExit(f"redemption_count differs from the rows: {wrong}")
    return sum(stored.values())


def revision() -> str:
    """The checked-out commit, marked + when the tree has changes: figures go with code."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return "unknown"
    dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "")


def report(figures: dict[tuple[str, str], list[Figures]], clients: int) -> bool:
    """Medians of each contender's figures, and the median of the rounds' ratios: a
    round's two trials of a scenario run back to back, so noise hits them alike."""
    rounds = len(figures[("hot", "ours")])
    print(f"\nredemptions per second, {clients} clients, medians of {rounds} rounds")
    server = psycopg.connect(POSTGRES.replace("postgresql+psycopg", "postgresql"))
    version = server.execute("SHOW server_version").fetchone()[0]
    durable = server.execute("SHOW synchronous_commit").fetchone()[0]
    server.close()
    print(f"PostgreSQL {version} (synchronous_commit {durable}), Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end, "
          f"commit {revision()}")  # fmt: skip
    print(f"{'scenario':<10}{'contender':<10}{'per second':>12}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'CPU us':>9}{'ratio':>8}")  # fmt: skip
    met = True
    for scenario in ("hot", "many"):
        ratios = [
            ours.per_second / floor.per_second
            for ours, floor in zip(
                figures[(scenario, "ours")], figures[(scenario, "floor")], strict=True
            )
        ]
        for contender in ("floor", "ours"):
            runs = figures[(scenario, contender)]
            rate = statistics.median(f.per_second for f in runs)
            p50 = statistics.median(f.p50_ms for f in runs)
            p99 = statistics.median(f.p99_ms for f in runs)
            cpu = statistics.median(f.cpu_us for f in runs)
            ratio = statistics.median(ratios) if contender == "ours" else 1.0
            print(f"{scenario:<10}{contender:<10}{rate:>12,.0f}{p50:>9.2f}{p99:>9.2f}"
                  f"{cpu:>9.0f}{ratio:>7.2f}x")  # fmt: skip
        met &= statistics.median(ratios) >= TARGET
        spread = ", ".join(f"{r:.2f}" for r in sorted(ratios))
        print(f"{'':<20}the rounds' ratios: {spread}")
    print(f"\ntarget: ours >= {TARGET}x the floor in both scenarios: {'met' if met else 'NOT met'}")
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--offers", type=int, default=1000)
    args = parser.parse_args()

    schema, url = make_schema()
    try:
        ours_many = make_offers(url, args.offers)
        ours_hot = make_offers(url, 1)
        floor_many = make_offers(url, args.offers)
        floor_hot = make_offers(url, 1)
        trials = [
            Trial("floor", "hot", tuple(floor_hot)),
            Trial("ours", "hot", tuple(ours_hot)),
            Trial("floor", "many", tuple(floor_many)),
            Trial("ours", "many", tuple(ours_many)),
        ]
        figures: dict[tuple[str, str], list[Figures]] = {}
        for round_ in range(args.rounds):
            order = trials if round_ % 2 == 0 else [*trials[1::-1], *trials[:1:-1]]
            for trial in order:
                result = run_trial(url, trial, args.clients, args.seconds)
                figures.setdefault((trial.scenario, trial.contender), []).append(result)
                print(f"round {round_ + 1}: {trial.scenario:<5}{trial.contender:<6}"
                      f"{result.per_second:>9,.0f}/s", flush=True)  # fmt: skip
        redeemed = check_counts(url, [*ours_hot, *ours_many])
        print(f"\nchecked: redemption_count equals the rows for our {len(ours_many) + 1} "
              f"offers ({redeemed:,} redemptions)")  # fmt: skip
        met = report(figures, args.clients)
    finally:
        drop_schema(schema)
    raise SystemExit(0 if met else 1)


if __name__ == "__main__":
    main()
