"""What the engine benchmarks share: services, a realistic set of automations, events,
RQ worker processes, and the small helpers for figures.

Services are real: PostgreSQL (a schema of the benchmark's own in the ``test``
database, dropped at the end) and Redis (database 13, flushed at the start and the end;
nothing else uses it). Override with ``HUNTAZE_BENCH_POSTGRES`` / ``HUNTAZE_BENCH_REDIS``.

The automations are generated from a fixed seed over the built-in plugins (the four
triggers; ``send_message``, ``add_tag``, ``remove_tag``; ``wait``; nested ``if`` /
``else if`` / ``else`` with ``and`` / ``or`` / ``not``, comparisons and ``in``), each
checked and compiled by ``AutomationService.compile`` (the checker a save runs), then
written as rows and versions in bulk: saving 10,000 one by one through
``AutomationService.create`` would only add 10,000 single-row transactions to the
set-up, not to anything measured.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # so `engine` imports however a script is started

from redis import Redis  # noqa: E402
from rq import Worker  # noqa: E402
from sqlalchemy import create_engine, insert, text  # noqa: E402

from engine.automations import AutomationService  # noqa: E402
from engine.events import TriggerContext  # noqa: E402
from engine.migrate import upgrade  # noqa: E402
from engine.models import Automation, AutomationVersion, Creator, new_id  # noqa: E402
from engine.runtime import Runtime  # noqa: E402
from engine.settings import Settings  # noqa: E402

POSTGRES = os.environ.get(
    "HUNTAZE_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS = os.environ.get("HUNTAZE_BENCH_REDIS", "redis://127.0.0.1:6379/13")
DEFAULT_SEED = 20240601
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


# --- Services ----------------------------------------------------------------------------


@contextmanager
def services(**overrides: Any) -> Iterator[Settings]:
    """Settings for a fresh, migrated PostgreSQL schema and an empty Redis database;
    both are removed at the end, whatever happens."""
    redis = Redis.from_url(REDIS)
    redis.flushdb()
    schema = f"huntaze_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
    try:
        migrated = create_engine(url)
        upgrade(migrated)
        migrated.dispose()
        yield Settings(
            database_url=url,
            redis_url=REDIS,
            data_dir=Path("/tmp") / schema,
            queue_name=f"bench-{uuid.uuid4().hex[:8]}",
            **overrides,
        )
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
        redis.flushdb()
        redis.close()


def truncate(runtime: Runtime, tables: Sequence[str]) -> None:
    """Empty tables between trials, so that every trial starts from the same state."""
    with runtime.db.engine.begin() as connection:
        connection.execute(text("TRUNCATE " + ", ".join(tables) + " CASCADE"))


# --- Automations -------------------------------------------------------------------------

TRIGGERS = ("new_subscriber", "message_received", "purchase_completed", "subscription_expiring")
COMMON_CONDITIONS = (
    "fan.total_spent >= {money}",
    "fan.total_spent < {money}",
    '"{tag}" in fan.tags',
    '"{tag}" not in fan.tags',
    "fan.country in {countries}",
    "fan.country not in {countries}",
    "fan.message_count > {count}",
    "fan.message_count <= {count}",
)
TRIGGER_CONDITIONS = {
    "new_subscriber": (),
    "message_received": ('"{keyword}" in event.text', 'event.text == "{keyword}"'),
    "purchase_completed": (
        "event.amount >= {money}",
        "event.amount < {money}",
        'event.item == "{item}"',
        "event.item in {items}",
    ),
    "subscription_expiring": ("event.days_left <= {small}", "event.renewal_price > {money}"),
}
NAMES = {
    "new_subscriber": ("Welcome new subscribers", "Greet trial fans", "Onboarding"),
    "message_received": ("Answer keyword", "Auto-reply to DMs", "Price question reply"),
    "purchase_completed": ("Thank buyers", "Tag big spenders", "Upsell after purchase"),
    "subscription_expiring": ("Win back expiring fans", "Renewal reminder", "Last chance"),
}
TAGS = ("vip", "welcomed", "whale", "buyer", "lapsed", "trial", "engaged", "winback")
COUNTRIES = ("US", "CA", "GB", "FR", "DE", "ES", "BR", "AU")
KEYWORDS = ("price", "custom", "hello", "discount", "bundle")
ITEMS = ("ppv", "bundle", "tip", "custom")
MONEY = ("$10", "$25", "$50", "$100", "$9.99", "$19.50", "$250")
MESSAGES = (
    "Hey {{ fan.name }}, thanks for subscribing!",
    "Welcome back, {{ fan.name }}!",
    "Thank you so much {{ fan.name }} 😍",
    "{{ fan.name }}, your VIP perks are waiting.",
    'Hi {{ fan.name }}! Reply \\"yes\\" for a surprise.',
    "Here is a little something for you, {{ fan.name }}.",
)


def _str_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


class _Writer:
    def __init__(self, rng: random.Random, trigger: str) -> None:
        self.rng = rng
        self.trigger = trigger

    def atom(self) -> str:
        rng = self.rng
        pattern = rng.choice(COMMON_CONDITIONS + TRIGGER_CONDITIONS[self.trigger])
        return pattern.format(
            money=rng.choice(MONEY),
            tag=rng.choice(TAGS),
            countries=_str_list(rng.sample(COUNTRIES, rng.randint(1, 3))),
            count=rng.randint(1, 60),
            keyword=rng.choice(KEYWORDS),
            item=rng.choice(ITEMS),
            items=_str_list(rng.sample(ITEMS, 2)),
            small=rng.randint(1, 7),
        )

    def condition(self) -> str:
        shape = self.rng.random()
        if shape < 0.4:
            return self.atom()
        if shape < 0.65:
            return f"{self.atom()} and {self.atom()}"
        if shape < 0.85:
            return f"{self.atom()} or {self.atom()}"
        if shape < 0.92:
            return f"not ({self.atom()})"
        return f"({self.atom()} or {self.atom()}) and {self.atom()}"

    def simple(self) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.15:
            return f"wait {rng.choice(('30m', '2h', '12h', '1d', '2d', '1w'))}"
        if roll < 0.6:
            return f'send_message text: "{rng.choice(MESSAGES)}"'
        if roll < 0.85:
            return f'add_tag tag: "{rng.choice(TAGS)}"'
        return f'remove_tag tag: "{rng.choice(TAGS)}"'

    def steps(self, depth: int, indent: str) -> list[str]:
        lines: list[str] = []
        for _ in range(self.rng.randint(1, 3 if depth == 0 else 2)):
            if depth < 2 and self.rng.random() < (0.6 if depth == 0 else 0.25):
                lines += self.branch(depth, indent)
            else:
                lines.append(indent + self.simple())
        return lines

    def branch(self, depth: int, indent: str) -> list[str]:
        inner = indent + "  "
        lines = [f"{indent}if {self.condition()} {{", *self.steps(depth + 1, inner)]
        if self.rng.random() < 0.35:
            lines += [f"{indent}}} else if {self.condition()} {{", *self.steps(depth + 1, inner)]
        if self.rng.random() < 0.5:
            lines += [f"{indent}}} else {{", *self.steps(depth + 1, inner)]
        return [*lines, f"{indent}}}"]


def automation_text(rng: random.Random, index: int, trigger: str) -> str:
    writer = _Writer(rng, trigger)
    lines = [f'automation "{rng.choice(NAMES[trigger])} #{index}" {{']
    if rng.random() < 0.3:
        lines.append(f'  description "Generated automation number {index}"')
    when = f"  when {trigger}"
    if trigger == "subscription_expiring" and rng.random() < 0.5:
        when += f" days_before: {rng.randint(1, 7)}"
    lines.append(when)
    lines += writer.steps(0, "  ")
    return "\n".join([*lines, "}"]) + "\n"


@dataclass(frozen=True)
class Loaded:
    creators: list[str]
    graphs: dict[str, dict]  # by automation id
    owners: dict[str, str]  # the creator of each automation
    seconds: float  # checking and compiling (CPU)


def load_automations(
    runtime: Runtime, n_creators: int, n_automations: int, seed: int = DEFAULT_SEED
) -> Loaded:
    """``n_creators`` creators and ``n_automations`` active automations spread evenly
    over them (triggers drawn at random), every one checked and compiled as a save
    does, written in bulk."""
    rng = random.Random(seed)
    service = AutomationService(runtime)
    creators = [new_id() for _ in range(n_creators)]
    started = time.process_time()
    automations, versions, graphs, owners = [], [], {}, {}
    for index in range(n_automations):
        source = automation_text(rng, index + 1, rng.choice(TRIGGERS))
        graph, _ = service.compile(source)
        automation_id = new_id()
        graphs[automation_id] = graph
        owners[automation_id] = creators[index % n_creators]
        automations.append(
            {
                "id": automation_id,
                "creator_id": creators[index % n_creators],
                "name": graph["name"],
                "description": graph["description"],
                "source": source,
                "graph": graph,
                "trigger": graph["trigger"]["name"],
                "status": "active",
                "version": 1,
            }
        )
        versions.append(
            {"automation_id": automation_id, "version": 1, "source": source, "graph": graph}
        )
    seconds = time.process_time() - started
    with runtime.db.session() as session:
        session.execute(insert(Creator), [{"id": c, "name": f"Creator {c[:6]}"} for c in creators])
        for chunk in range(0, len(automations), 2000):
            session.execute(insert(Automation), automations[chunk : chunk + 2000])
            session.execute(insert(AutomationVersion), versions[chunk : chunk + 2000])
    service.index.changed()
    return Loaded(creators, graphs, owners, seconds)


# --- Events ------------------------------------------------------------------------------

TEXTS = (
    "hello!",
    "what's the price for a custom video?",
    "any discount on the bundle?",
    "price",
    "love your posts",
    "Custom request: can you say my name?",
)
EVENT_WEIGHTS = {
    "message_received": 4,
    "purchase_completed": 3,
    "new_subscriber": 2,
    "subscription_expiring": 1,
}


def event_data(rng: random.Random, trigger: str) -> dict[str, Any] | None:
    if trigger == "message_received":
        return {"text": rng.choice(TEXTS)}
    if trigger == "purchase_completed":
        return {"amount": round(rng.uniform(3, 60), 2), "item": rng.choice(ITEMS)}
    if trigger == "subscription_expiring":
        return {"days_left": rng.randint(0, 7), "renewal_price": round(rng.uniform(5, 30), 2)}
    return None


def fan_fields(rng: random.Random, index: int) -> dict[str, Any]:
    return {
        "name": f"Fan {index}",
        "username": f"fan{index}",
        "total_spent": round(rng.uniform(0, 300), 2),
        "tags": rng.sample(TAGS, rng.randint(0, 4)),
        "country": rng.choice((*COUNTRIES, None)),
        "subscribed_at": (NOW - timedelta(days=rng.randint(1, 400))).isoformat(),
        "message_count": rng.randint(0, 100),
    }


def make_events(
    creators: Sequence[str], n: int, seed: int = DEFAULT_SEED, fans_per_creator: int = 200
) -> list[TriggerContext]:
    """``n`` events for random creators' random fans, the triggers in a realistic mix
    (messages most often, then purchases, new subscribers, expiring subscriptions)."""
    rng = random.Random(seed + 7)
    triggers, weights = zip(*EVENT_WEIGHTS.items(), strict=True)
    events = []
    for _ in range(n):
        creator = rng.choice(creators)
        trigger = rng.choices(triggers, weights)[0]
        fan = rng.randrange(fans_per_creator)
        data: dict[str, Any] = {"fan": fan_fields(rng, fan)}
        event = event_data(rng, trigger)
        if event is not None:
            data["event"] = event
        events.append(TriggerContext(trigger, creator, f"fan-{fan}", data, NOW))
    return events


# --- RQ workers --------------------------------------------------------------------------


def noop() -> None:
    """The job of RQ's own baseline: nothing."""


def worker_environment(settings: Settings) -> dict[str, str]:
    """The environment that makes a worker's ``Settings()`` equal ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUNTAZE_")}
    for name, value in settings.model_dump().items():
        if name not in ("database_url", "redis_url") and value is not None:
            env[f"HUNTAZE_{name.upper()}"] = str(value)
    env["DATABASE_URL"] = settings.resolved_database_url()
    env["REDIS_URL"] = settings.redis_url or ""
    # ROOT for the engine, bench/ for the no-op job of RQ's baseline (engine_support.noop).
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "bench")])
    return env


@contextmanager
def workers(settings: Settings, count: int, log_dir: Path) -> Iterator[list[subprocess.Popen]]:
    """``count`` ``rq worker --worker-class rq.SimpleWorker`` processes on the settings'
    queue, ready when this yields; each one's process group is killed at the end."""
    log_dir.mkdir(parents=True, exist_ok=True)
    redis = Redis.from_url(settings.redis_url)
    processes: list[subprocess.Popen] = []
    names = [f"bench-{uuid.uuid4().hex[:8]}" for _ in range(count)]
    try:
        for name in names:
            command = [
                sys.executable, "-m", "rq.cli", "worker",
                "--worker-class", "rq.SimpleWorker",
                "--url", settings.redis_url or "", "--name", name, settings.queue_name,
            ]  # fmt: skip
            with open(log_dir / f"{name}.log", "wb") as log:
                processes.append(
                    subprocess.Popen(
                        command,
                        env=worker_environment(settings),
                        cwd=ROOT,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + 60
        while {w.name for w in Worker.all(connection=redis)} < set(names):
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise RuntimeError(f"workers not ready; see {log_dir}")
            time.sleep(0.05)
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        redis.close()


def wait_until(done: Callable[[], bool], timeout: float, poll: float = 0.02) -> float | None:
    """Poll ``done`` until it holds; return the monotonic time it was seen to hold, or
    None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        if done():
            return now
        if now > deadline:
            return None
        time.sleep(poll)


# --- Figures -----------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, numbers right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "| " + " | ".join(["-" * widths[0], *("-" * (w - 1) + ":" for w in widths[1:])]) + " |"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())
