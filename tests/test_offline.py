"""The offline AI provider: English → automation text by rules, always checker-valid."""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from dsl import ast
from dsl.catalog import ActionSpec, Catalog, TriggerSpec, ValueType
from dsl.pipeline import analyse
from dsl.values import Money, Percentage
from engine.ai.offline import Understanding, fallback_template, translate, understand
from engine.catalogue import load_catalogue

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalogue().catalog


def checked(text: str, catalog: Catalog) -> ast.Automation:
    """The one automation in ``text``, which must check without errors."""
    module, diagnostics = analyse(text, catalog)
    assert module is not None, diagnostics
    assert [d for d in diagnostics if d.is_error] == []
    assert len(module.automations) == 1
    return module.automations[0]


def body(text: str, catalog: Catalog) -> str:
    """The automation's steps as written, without its name and description lines."""
    checked(text, catalog)
    lines = text.splitlines()[1:-1]
    return "\n".join(line[2:] for line in lines if not line.lstrip().startswith("description"))


def test_the_issue_example(catalog: Catalog) -> None:
    text = translate(
        "when someone subscribes, welcome them by name, and if they haven't bought anything "
        "after 3 days send them 15% off for 2 days",
        catalog,
    )
    assert body(text, catalog) == (
        "when new_subscriber\n"
        'send_message text: "Welcome, {{ fan.name }}! Thank you so much for subscribing 💕"\n'
        "wait 3d\n"
        "if fan.total_spent == $0 {\n"
        "  create_offer discount: 15%, valid_for: 2d\n"
        "}"
    )
    assert text.startswith('automation "New subscribers: welcome, 15% off" {\n')


PHRASINGS = [
    # The four triggers, in several wordings.
    ("new fan joins -> tag them new_fan", 'when new_subscriber\nadd_tag tag: "new_fan"'),
    ("wen someone subscribs tag them 'new'", 'when new_subscriber\nadd_tag tag: "new"'),
    (
        "when a fan DMs me 'price', reply \"Sets are $15\"",
        'when message_received\nif "price" in event.text {\n  send_message text: "Sets are $15"\n}',
    ),
    (
        "if a message contains 'menu' or 'list', tag them as asked_menu",
        'when message_received\nif "menu" in event.text or "list" in event.text {\n'
        '  add_tag tag: "asked_menu"\n}',
    ),
    ("after every purchase, tag them as buyer", 'when purchase_completed\nadd_tag tag: "buyer"'),
    (
        "when someone tips more than $20 tag them generous",
        'when purchase_completed\nif event.item == "Tip" and event.amount > $20 {\n'
        '  add_tag tag: "generous"\n}',
    ),
    (
        "3 days before their subscription renews, give them $5 off valid 48 hours",
        "when subscription_expiring days_before: 3\ncreate_offer discount: $5, valid_for: 48h",
    ),
    (
        "when a sub is about to expire offer 20 percent off for a week",
        "when subscription_expiring\ncreate_offer discount: 20%, valid_for: 1w",
    ),
    (
        "Send 50% off for 12 hours to fans whose subscription ends tomorrow",
        "when subscription_expiring days_before: 1\ncreate_offer discount: 50%, valid_for: 12h",
    ),
    (
        "when a fan redeems an offer tag them redeemed",
        'when offer_redeemed\nadd_tag tag: "redeemed"',
    ),
    # Conditions, waits and sequencing.
    (
        "new subscriber, wait 2 hours, then tag them warm, and a day later remove the warm tag",
        'when new_subscriber\nwait 2h\nadd_tag tag: "warm"\nwait 1d\nremove_tag tag: "warm"',
    ),
    (
        "when a fan from the US or Canada buys something for more than $100, tag them na_whale",
        'when purchase_completed\nif fan.country in ["US", "CA"] and event.amount > $100 {\n'
        '  add_tag tag: "na_whale"\n}',
    ),
    (
        "when someone buys, if they have spent more than $500 in total, tag them vip",
        'when purchase_completed\nif fan.total_spent > $500 {\n  add_tag tag: "vip"\n}',
    ),
    (
        "when a sub is expiring, if they are tagged vip give 40% off for 3 days, otherwise "
        "give 20% off for 3 days",
        'when subscription_expiring\nif "vip" in fan.tags {\n'
        "  create_offer discount: 40%, valid_for: 3d\n} else {\n"
        "  create_offer discount: 20%, valid_for: 3d\n}",
    ),
    (
        "when someone subscribes, unless they are tagged no_promos give them 10% off for 1 day",
        'when new_subscriber\nif "no_promos" not in fan.tags {\n'
        "  create_offer discount: 10%, valid_for: 1d\n}",
    ),
    (
        'when someone subscribes send "Hi {{ fan.name }}!", then 5 days later if they haven\'t '
        "bought anything give them half off for 24h and tell them about it",
        'when new_subscriber\nsend_message text: "Hi {{ fan.name }}!"\nwait 5d\n'
        "if fan.total_spent == $0 {\n  create_offer discount: 50%, valid_for: 24h\n"
        '  send_message text: "I made you something special: 50% off, just for you, for the '
        'next 24 hours 💕"\n}',
    ),
]


@pytest.mark.parametrize(("description", "expected"), PHRASINGS)
def test_phrasings(description: str, expected: str, catalog: Catalog) -> None:
    assert body(translate(description, catalog), catalog) == expected


def test_quoted_text_is_kept_verbatim(catalog: Catalog) -> None:
    said = "Hey, it\u2019s me: \u201cwelcome\u201d! 💕 #1"
    text = translate(f"when someone joins, send '{said}'", catalog)
    assert checked(text, catalog).body == (
        ast.Action(
            "send_message",
            (ast.Argument("text", ast.String(said)),),
        ),
    )


def test_messages_written_from_the_request_use_the_name_only_when_asked(
    catalog: Catalog,
) -> None:
    plain = translate("when someone buys, thank them", catalog)
    named = translate("when someone buys, thank them by name", catalog)
    assert "{{ fan.name }}" not in plain
    assert 'send_message text: "Thank you so much for your purchase, {{ fan.name }}! 💕"' in named


def test_understanding_lists_what_was_recognised(catalog: Catalog) -> None:
    assert understand(
        "when a fan buys something for more than $100, tag them vip, and 2 days later send "
        "them 10% off for 48h",
        catalog,
    ) == Understanding(
        trigger="purchase_completed",
        actions=("add_tag", "create_offer"),
        durations=("2d", "48h"),
        percentages=("10%",),
        amounts=("$100",),
        tags=("vip",),
        keywords=(),
        unrecognised=(),
    )


def test_an_unreadable_condition_leaves_out_what_depends_on_it(catalog: Catalog) -> None:
    description = "when someone buys, tag them buyer. if they liked my last post, give 50% off"
    text = translate(description, catalog)
    assert body(text, catalog) == 'when purchase_completed\nadd_tag tag: "buyer"'
    assert understand(description, catalog).unrecognised == (
        "if they liked my last post",
        "give 50% off",
    )


def test_no_trigger_named_falls_back_to_the_default_and_says_so(catalog: Catalog) -> None:
    understanding = understand("make my fans happy", catalog)
    assert understanding.trigger is None
    assert understanding.unrecognised == (
        "what starts the automation (no trigger recognised)",
        "make my fans happy",
    )
    assert body(translate("make my fans happy", catalog), catalog) == "when new_subscriber"


def test_an_offer_without_an_amount_is_not_invented(catalog: Catalog) -> None:
    description = "when someone subscribes, give them a coupon"
    assert "create_offer" not in translate(description, catalog)
    assert understand(description, catalog).unrecognised == (
        "give them a coupon (no discount amount)",
    )


def test_values_the_plugins_refuse_are_left_out(catalog: Catalog) -> None:
    """create_offer refuses more than 100% and more than 365 days: the step goes, the rest
    stays, and the text still checks."""
    text = translate("when someone joins, tag them new, and give 150% off for 2 days", catalog)
    assert body(text, catalog) == 'when new_subscriber\nadd_tag tag: "new"'
    text = translate("when someone joins give 10% off for 900 days", catalog)
    assert body(text, catalog) == "when new_subscriber"


def test_a_placeholder_the_trigger_lacks_drops_that_message(catalog: Catalog) -> None:
    text = translate('when someone subscribes, send "You paid {{ event.amount }}"', catalog)
    assert body(text, catalog) == "when new_subscriber"


def test_only_installed_actions_are_used(catalog: Catalog) -> None:
    tags_only = Catalog(
        triggers=catalog.triggers,
        actions={name: catalog.actions[name] for name in ("add_tag", "remove_tag")},
    )
    text = translate(
        "when someone buys thank them, tag them buyer and give 10% off for 1d", tags_only
    )
    assert body(text, tags_only) == 'when purchase_completed\nadd_tag tag: "buyer"'


def test_no_trigger_installed_gives_an_empty_file() -> None:
    assert translate("when someone subscribes, welcome them", Catalog()) == ""
    assert fallback_template("new_subscriber", Catalog(), "Welcome") == ""


# --- The fallback template -----------------------------------------------------------------


def test_fallback_template_for_every_installed_trigger(catalog: Catalog) -> None:
    assert "post_webhook" in catalog.actions  # the installed third-party example
    for trigger in catalog.triggers:
        automation = checked(fallback_template(trigger, catalog, "Draft"), catalog)
        assert automation.trigger.name == trigger
        assert automation.name == "Draft"
        assert [step.name for step in automation.body] == ["send_message"]


def test_fallback_template_without_a_known_trigger_uses_the_default(catalog: Catalog) -> None:
    for trigger in (None, "no_such_trigger"):
        automation = checked(fallback_template(trigger, catalog, ""), catalog)
        assert automation.trigger.name == "new_subscriber"
        assert automation.name == "New automation"


class _Settings(BaseModel):
    count: int
    price: Money
    share: Percentage
    every: timedelta
    flag: bool
    label: str
    mode: Literal["daily", "weekly"]
    names: list[str]
    optional: int = 3


def test_fallback_template_fills_a_third_party_triggers_required_arguments() -> None:
    plugin = Catalog(
        triggers={
            "fan_birthday": TriggerSpec(
                "fan_birthday", "a fan's birthday", {"event.age": ValueType.NUMBER}, _Settings
            )
        },
        actions={},
    )
    text = fallback_template("fan_birthday", plugin, "Birthday")
    automation = checked(text, plugin)
    assert [a.name for a in automation.trigger.arguments] == [
        "count", "price", "share", "every", "flag", "label", "mode", "names"
    ]  # fmt: skip
    assert automation.body == ()  # no send_message installed, no fan.name to greet


def test_a_third_party_trigger_is_found_by_its_name() -> None:
    class Text(BaseModel):
        text: str

    plugin = Catalog(
        triggers={
            "fan_birthday": TriggerSpec("fan_birthday", "birthday", {"fan.name": ValueType.TEXT})
        },
        actions={"send_message": ActionSpec("send_message", "send", Text)},
    )
    text = translate("on a fan birthday, wish them happy birthday by name", plugin)
    assert body(text, plugin).startswith("when fan_birthday\nsend_message text: ")


# --- Properties ----------------------------------------------------------------------------

FRAGMENTS = [
    "when someone subscribes", "new fan joins", "if a fan messages me 'hi'", "after a purchase",
    "when someone tips", "when their sub is about to expire", "3 days before renewal",
    "when a fan redeems an offer", "welcome them by name", "send \"Hey {{ fan.name }}!\"",
    "send 'bad {{ placeholder'", 'reply "{{ event.nope }}"', "thank them", "remind them",
    "tag them as vip", "tag them 'a b c'", "remove the new_fan tag", "give them 15% off",
    "$5 off valid for 48h", "for 2 days", "wait 3 days", "a day later", "after 0 days",
    "if they haven't bought anything", "if they spent more than $100", "from the US",
    "if the message contains 'price'", "if they are tagged vip", "otherwise", "unless",
    "tell them about it", "150% off for 999 weeks", "ask how they like it", "😘", "",
    "if they liked my post", "and", "then", "give them a coupon", "100000 days", "€3 off",
]  # fmt: skip
SEPARATORS = [", ", " and ", " then ", ". ", " ", " -> ", "; ", ",\n"]


def _valid(text: str, catalog: Catalog) -> None:
    module, diagnostics = analyse(text, catalog)
    assert module is not None, diagnostics
    assert not [d for d in diagnostics if d.is_error], (text, diagnostics)
    assert len(module.automations) == 1


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_translate_is_always_valid_for_any_text(text: str) -> None:
    """Property: Offline Translation Validity — for any text at all, translate() returns
    one automation that checks, and understand() does not raise."""
    catalog = load_catalogue().catalog
    _valid(translate(text, catalog), catalog)
    understand(text, catalog)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from(FRAGMENTS), st.sampled_from(SEPARATORS)), max_size=12),
    st.booleans(),
)
def test_translate_is_always_valid_for_composed_requests(
    parts: list[tuple[str, str]], upper: bool
) -> None:
    """Property: Offline Translation Validity — requests composed from the phrases the rules
    look for (and some they refuse) always give one automation that checks."""
    catalog = load_catalogue().catalog
    text = "".join(fragment + separator for fragment, separator in parts)
    _valid(translate(text.upper() if upper else text, catalog), catalog)


# --- The evaluation set ----------------------------------------------------------------------


def _ai_eval():
    spec = importlib.util.spec_from_file_location("ai_eval", ROOT / "bench" / "ai_eval.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("ai_eval", module)
    spec.loader.exec_module(module)
    return module


# Measured on the 92 requests of examples/ai-eval.jsonl: 100% on every criterion. Lines
# 56-77 and 78-92 were written after the rules; before the fixes they prompted they
# scored 68% and 60% on all criteria (docs/performance.md). The floor leaves room for new,
# harder requests added to the set: it catches a rule change that breaks what worked, not
# the absence of improvement.
SEMANTIC_FLOOR = 0.9


def test_the_evaluation_set_on_the_offline_translator(catalog: Catalog) -> None:
    ai_eval = _ai_eval()
    labels = ai_eval.load_set()
    assert len(labels) >= 45
    scores = ai_eval.evaluate(labels, lambda d: translate(d, catalog), catalog)
    rates = ai_eval.rates(scores)
    assert rates["valid"] == 1.0  # correctness: every answer checks
    for criterion in ("trigger", "actions", "values", "all"):
        assert rates[criterion] >= SEMANTIC_FLOOR, (criterion, rates)


def test_the_evaluation_compares_syntax_trees(catalog: Catalog) -> None:
    ai_eval = _ai_eval()
    label = {
        "description": "",
        "trigger": "subscription_expiring",
        "trigger_arguments": {"days_before": 3},
        "actions": ["create_offer", "add_tag"],
        "values": {"durations": ["2d"], "percentages": ["15%"], "tags": ["vip", "vip"]},
    }
    text = (
        'automation "X" {\n  when subscription_expiring days_before: 3\n'
        '  if "vip" in fan.tags {\n    create_offer discount: 15.0%, valid_for: 48h\n  }\n'
        '  add_tag tag: "vip"\n}\n'
    )
    assert all(ai_eval.score(label, text, catalog).marks.values())
    wrong = ai_eval.score({**label, "actions": ["add_tag", "create_offer"]}, text, catalog)
    assert wrong.marks["valid"] and wrong.marks["values"] and not wrong.marks["actions"]
    invalid = ai_eval.score(label, text.replace("15.0%", "15.0"), catalog)
    assert not any(invalid.marks.values())


def test_the_evaluation_runs_the_builder_against_an_endpoint_by_configuration(
    fake_llm, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """bench/ai_eval.py without --translator-only asks the builder, which asks the endpoint
    the HUNTAZE_LLM_* variables name: here a real HTTP server with scripted answers."""
    ai_eval = _ai_eval()
    rows = [
        {"description": "tag buyers as buyer", "trigger": "purchase_completed",
         "actions": ["add_tag"], "values": {"tags": ["buyer"]}},
        {"description": "thank buyers", "trigger": "purchase_completed",
         "actions": ["send_message"]},
    ]  # fmt: skip
    labelled = tmp_path / "set.jsonl"
    labelled.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    fake_llm.reply(
        '```hz\nautomation "Tag" {\n  when purchase_completed\n  add_tag tag: "buyer"\n}\n```'
    )
    fake_llm.reply(
        'automation "Thanks" {\n  when new_subscriber\n  send_message text: "Thanks!"\n}'
    )
    for name, value in {"PROVIDER": "openai", "BASE_URL": fake_llm.url, "API_KEY": "k",
                        "MAX_RETRIES": "0", "MODEL_AUTOMATIONS": "test-model"}.items():  # fmt: skip
        monkeypatch.setenv(f"HUNTAZE_LLM_{name}", value)
    assert ai_eval.main(["--set", str(labelled), "--misses"]) == 0
    out = capsys.readouterr().out
    assert "builder, provider openai, model test-model: 2 requests" in out
    assert "valid        100.0%  (2/2)" in out
    assert "trigger       50.0%  (1/2)" in out
    assert "- thank buyers\n    trigger: new_subscriber {} (want purchase_completed {})" in out
    assert len(fake_llm.requests) == 2
