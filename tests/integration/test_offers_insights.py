"""The offers' insights read from the real databases (SQLite and PostgreSQL), and
`huntaze ai offers` on the command line, with the examples of docs/ai.md.

Events are recorded as the engine records them (engine/dispatch.py): each one in the
``events`` table as received, its fan upserted into ``fans``."""

from __future__ import annotations

import json
import shlex
import shutil
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from offers_support import START, offer_fields
from pydantic_core import to_jsonable_python

from engine.creators import create_creator, set_policy
from engine.db import Database
from engine.fans import upsert_fan
from engine.models import Event
from engine.plugin_api import FanFields, Money
from plugins.offers.ai import DiscountRecommendation
from plugins.offers.insights import (
    FanRecord,
    Insights,
    OfferRecord,
    RedemptionRecord,
    Sale,
    analyse,
    load_insights,
)
from plugins.offers.service import OffersService
from webapp.cli import main

ROOT = Path(__file__).resolve().parents[2]
AI_MD = ROOT / "docs" / "ai.md"
DEMO_EVENTS = ROOT / "examples" / "events.jsonl"
DAY = timedelta(days=1)


def event(kind: str, fan: str, at: datetime, event: dict | None = None, **fan_fields) -> dict:
    data: dict[str, Any] = {
        "fan": {"name": fan.title(), "username": fan, "subscribed_at": START - 40 * DAY,
                **fan_fields},
    }  # fmt: skip
    if event is not None:
        data["event"] = event
    return {"type": kind, "fan_id": fan, "timestamp": at, "data": data}


def purchase(fan: str, item: str, amount: Any, days: float, **fan_fields) -> dict:
    return event("purchase_completed", fan, START + days * DAY,
                 {"amount": amount, "item": item}, **fan_fields)  # fmt: skip


def record(database: Database, creator_id: str, events: Iterable[dict]) -> None:
    """Log the events and upsert their fans, in time order, as the dispatcher does."""

    def when(e: dict) -> datetime:
        moment = e["timestamp"]
        return datetime.fromisoformat(moment) if isinstance(moment, str) else moment

    def work(session) -> None:
        for e in sorted(events, key=when):
            upsert_fan(session, creator_id, e["fan_id"], FanFields.model_validate(e["data"]["fan"]))
            session.add(Event(creator_id=creator_id, external_id=e.get("id"), type=e["type"],
                              fan_external_id=e["fan_id"], data=to_jsonable_python(e["data"]),
                              occurred_at=when(e)))  # fmt: skip
        session.flush()

    database.run(work)


def new_creator(database: Database, name: str | None = None) -> tuple[str, str]:
    name = name or f"creator-{uuid.uuid4().hex[:8]}"
    return name, database.run(lambda s: create_creator(s, name).id)


HISTORY = [
    purchase("ana", "Video", 25, 1, total_spent=25),
    purchase("ana", "Photo set", "15.00", 2, total_spent=40, tags=["buyer"]),
    purchase("ben", "Video", 30, 3, total_spent=30),
    purchase("ben", "Photo set", {"amount": "15", "currency": "USD"}, 4, total_spent=45),
    purchase("cy", "Voice note", 10, 5, total_spent=410, message_count=7),
    purchase("cy", "Video", "lots", 6),  # unreadable: skipped
    event("new_subscriber", "dee", START + 7 * DAY, subscribed_at=START + 7 * DAY),
    event("message_received", "ana", START + 8 * DAY, {"text": "hi"}, message_count=3),
]


@pytest.fixture
def history(db) -> str:
    """A creator with HISTORY recorded, and another creator's sale that is not theirs."""
    _, creator_id = new_creator(db)
    record(db, creator_id, HISTORY)
    _, other = new_creator(db)
    record(db, other, [purchase("ana", "Yacht", 999, 1)])
    return creator_id


def test_the_insights_are_the_analysis_of_the_creators_rows(db, history):
    service = OffersService(db, now=lambda: START + DAY)
    offer = service.create(history, offer_fields(name="Welcome 20%"))
    service.create(history, offer_fields(name="Not published", draft=True))
    service.redeem(offer.id, "ana", Decimal(25), "r1")
    service.redeem(offer.id, "ben", Money(Decimal(30)), "r2")
    found = load_insights(db, history)
    subscribed = START - 40 * DAY
    expected = analyse(
        [
            Sale("ana", "Video", Decimal(25), START + DAY),
            Sale("ana", "Photo set", Decimal(15), START + 2 * DAY),
            Sale("ben", "Video", Decimal(30), START + 3 * DAY),
            Sale("ben", "Photo set", Decimal(15), START + 4 * DAY),
            Sale("cy", "Voice note", Decimal(10), START + 5 * DAY),
        ],
        [
            FanRecord("ana", Decimal(40), subscribed, ("buyer",), 3),
            FanRecord("ben", Decimal(45), subscribed),
            FanRecord("cy", Decimal(410), subscribed, (), 7),
            FanRecord("dee", Decimal(0), START + 7 * DAY),
        ],
        [
            OfferRecord(
                offer.id,
                "Welcome 20%",
                "percentage",
                Decimal(20),
                "all",
                None,
                (),
                offer.valid_from,
                offer.valid_until,
            )
        ],
        [
            RedemptionRecord(offer.id, "ana", Decimal(25), Decimal(5)),
            RedemptionRecord(offer.id, "ben", Decimal(30), Decimal(6)),
        ],
        as_of=START + 8 * DAY,  # the latest event, a message
        creator_id=history,
        skipped=1,
    )
    assert found == expected
    assert (found.sales, found.revenue, found.skipped) == (5, 95.0, 1)
    assert [s.item for s in found.items] == ["Video", "Photo set", "Voice note"]
    assert {s.name: s.fans for s in found.segments} == {"new": 1, "active": 2, "vip": 1}
    assert (found.offers[0].redemptions, found.offers[0].revenue) == (2, 44.0)


def test_recency_is_measured_from_as_of(db, history):
    later = load_insights(db, history, as_of=START + 60 * DAY)
    assert {s.name: s.fans for s in later.segments} == {"lapsing": 3, "never_bought": 1}
    assert later.segment("lapsing").average_days_since_purchase == round((58 + 56 + 55) / 3, 1)


def test_a_creator_without_events_has_empty_insights(db):
    _, creator_id = new_creator(db)
    before = datetime.now(UTC)
    found = load_insights(db, creator_id)
    assert (found.sales, found.fans, found.items, found.segments) == (0, 0, [], [])
    assert found.as_of >= before


# --- huntaze ai offers ------------------------------------------------------------------


def database_env(database: Database, **extra: str) -> dict[str, str]:
    url = database.engine.url.render_as_string(hide_password=False)
    return {"DATABASE_URL": url, "HUNTAZE_LLM_PROVIDER": "offline", **extra}


@pytest.fixture
def named(db) -> str:
    """The name of a creator with HISTORY recorded."""
    name, creator_id = new_creator(db)
    record(db, creator_id, HISTORY)
    return name


def invoke(args: list[str], env: dict[str, str]):
    return CliRunner().invoke(main, ["ai", "offers", *args], env=env)


def test_insights_as_json_are_the_insights(db, named):
    result = invoke(["insights", "--creator", named, "--format", "json"], database_env(db))
    assert result.exit_code == 0, result.output
    found = Insights.model_validate_json(result.stdout)
    assert found == load_insights(db, found.creator_id)
    assert found.sales == 5


def test_pricing_offline_prints_the_analysis(db, named):
    args = ["pricing", "--creator", named, "--item", "Video"]
    result = invoke(args, database_env(db))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Prices for Video:\n1. $30.00, confidence 0.17\n")
    assert result.stdout.endswith(
        "\nsuggested offline from the analysis itself (set HUNTAZE_LLM_PROVIDER for a model)\n"
    )


def test_pricing_with_a_model(db, named, fake_llm):
    fake_llm.reply('{"suggestions": [{"recommended_price": 27.5, "expected_impact": "more",'
                   ' "confidence": 0.6, "reasoning": "two prices tried"},'
                   ' {"recommended_price": 0, "expected_impact": "free", "confidence": 2,'
                   ' "reasoning": "none"}]}')  # fmt: skip
    env = database_env(db, HUNTAZE_LLM_PROVIDER="openai", HUNTAZE_LLM_BASE_URL=fake_llm.url,
                       HUNTAZE_LLM_API_KEY="test-key", HUNTAZE_LLM_MAX_RETRIES="0")  # fmt: skip
    result = invoke(["pricing", "--creator", named, "--item", "Video"], env)
    assert result.exit_code == 0, result.output
    assert (
        "1. $27.50, confidence 0.60\n   impact: more\n   why: two prices tried\n" in result.stdout
    )
    assert "dropped 1 that broke the rules:\n  - suggestion 2: recommended_price 0 is not" in (
        result.stdout
    )
    assert "suggested by llama-3.3-70b (openai), " in result.stdout
    sent = json.loads(fake_llm.requests[0].messages[1]["content"])
    assert sent["item"]["levels"] == [
        {"price": 25.0, "sales": 1, "buyers": 1, "revenue": 25.0},
        {"price": 30.0, "sales": 1, "buyers": 1, "revenue": 30.0},
    ]


def test_a_failing_model_is_an_error_with_no_suggestions(db, named, fake_llm):
    fake_llm.reply("overloaded", status=503)
    env = database_env(db, HUNTAZE_LLM_PROVIDER="openai", HUNTAZE_LLM_BASE_URL=fake_llm.url,
                       HUNTAZE_LLM_MAX_RETRIES="0")  # fmt: skip
    result = invoke(["bundles", "--creator", named, "--format", "json"], env)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["suggestions"] == []
    assert result.stderr == (
        "error: the openai model 'llama-3.3-70b' failed: answered 503 (overloaded), after 1 "
        "attempt\n"
    )


def test_discounts_keep_to_the_creators_policy(db):
    name, creator_id = new_creator(db)
    record(db, creator_id, [purchase("ana", "Video", 25, 1), purchase("ben", "Video", 25, 50)])
    db.run(lambda s: set_policy(s, creator_id, {"max_discount": 12}))
    result = invoke(["discounts", "--creator", name, "--format", "json"], database_env(db))
    assert result.exit_code == 0, result.output
    found = [
        DiscountRecommendation.model_validate(s) for s in json.loads(result.stdout)["suggestions"]
    ]
    lapsing = next(s for s in found if s.target_audience == "lapsing")
    assert lapsing.discount_value == 12  # not 20


def test_as_of_is_passed_on(db, named):
    args = ["insights", "--creator", named, "--as-of", "2027-01-01T00:00:00+00:00"]
    result = invoke(args, database_env(db))
    assert result.exit_code == 0, result.output
    assert "as of 2027-01-01 00:00 UTC" in result.stdout
    assert "\nlapsing          3 " in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["insights", "--creator", "Nobody"], "no creator named 'Nobody' in the database"),
        (["pricing", "--creator", "{named}", "--item", "Yacht"],
         "error: no sales of 'Yacht' are recorded, so there is nothing to price it from"),
    ],
)  # fmt: skip
def test_errors_are_one_clear_line(db, named, args, message):
    result = invoke([a.replace("{named}", named) for a in args], database_env(db))
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output
    assert result.stdout == ""


def test_a_database_without_the_schema_is_reported(tmp_path):
    empty = tmp_path / "empty.sqlite3"
    env = {"DATABASE_URL": f"sqlite:///{empty}", "HUNTAZE_LLM_PROVIDER": "offline"}
    result = invoke(["bundles", "--creator", "Ava"], env)
    assert result.exit_code == 1 and not empty.exists()
    assert f"no database at {empty}" in result.stderr
    empty.write_bytes(b"")
    result = invoke(["bundles", "--creator", "Ava"], env)
    assert result.exit_code == 1
    assert "the database lacks the tables creators, events, fans, offers" in result.stderr


def test_help_lists_the_offers_commands():
    result = CliRunner().invoke(main, ["ai", "offers", "--help"])
    assert {"insights", "pricing", "bundles", "discounts"} <= set(result.stdout.split())


# --- docs/ai.md -------------------------------------------------------------------------


def offer_blocks() -> list[tuple[str, str]]:
    """The ```sh blocks of "Offer suggestions" in docs/ai.md, each with the ```text
    block after it."""
    from test_docs import fenced_blocks

    text = AI_MD.read_text(encoding="utf-8")
    start = text.index("## Offer suggestions\n")
    end = text.find("\n## ", start + 1)
    first = text.count("\n", 0, start) + 1
    last = text.count("\n", 0, end) + 1 if end != -1 else text.count("\n") + 2
    blocks = [b for b in fenced_blocks(AI_MD) if first <= b.line < last]
    return [(b.body, b.output) for b in blocks if b.info == "sh" and b.output is not None]


def test_the_documented_commands_print_what_the_docs_show(sqlite_template, tmp_path):
    """Each `huntaze ai offers` command of the section, run offline on the demo week
    (examples/events.jsonl recorded for creator Ava), prints its ```text block."""
    path = tmp_path / "huntaze.sqlite3"
    shutil.copyfile(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    _, creator_id = new_creator(database, "Ava")
    lines = DEMO_EVENTS.read_text(encoding="utf-8").splitlines()
    record(database, creator_id, [json.loads(line) for line in lines if line.strip()])
    database.dispose()
    blocks = offer_blocks()
    assert len(blocks) >= 4
    for command, output in blocks:
        args = shlex.split(command)
        assert args[:3] == ["huntaze", "ai", "offers"], command
        env = {"DATABASE_URL": f"sqlite:///{path}", "HUNTAZE_LLM_PROVIDER": "offline"}
        result = CliRunner().invoke(main, args[1:], env=env)
        assert result.exit_code == 0, result.output
        assert result.stdout == output, command
