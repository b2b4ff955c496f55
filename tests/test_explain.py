"""dsl.explain: automations in plain English, from the syntax tree."""

from __future__ import annotations

from pathlib import Path

import pytest
from catalog_fixture import CATALOG
from hypothesis import HealthCheck, given, settings
from pydantic import BaseModel
from strategies import automations, modules

import dsl
from dsl import ast
from dsl.catalog import ActionSpec, Catalog, TriggerSpec
from dsl.explain import explain

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.hz"))


def _explain(text: str, catalog: Catalog | None = None) -> str:
    return explain(dsl.parse(text), catalog)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_is_explained(path: Path) -> None:
    module = dsl.parse(path.read_text(encoding="utf-8"))
    for catalog in (None, CATALOG):
        text = explain(module, catalog)
        # One title per automation, and every step of the file has a line of its own.
        for automation in module.automations:
            assert f"“{automation.name}”" in text
        assert "`" not in text, "built-ins are phrased in words, not shown as code"


def test_welcome_exactly() -> None:
    text = """\
automation "Welcome new subscribers" {
  description "Say hi, then send a discount two days later"
  when new_subscriber
  send_message text: "Hey {{ fan.name }}, thanks for subscribing! 💕"
  if fan.total_spent < $10 and "welcomed" not in fan.tags {
    wait 2d
    create_offer discount: 20%, valid_for: 48h, name: "Welcome 20%"
  }
  add_tag tag: "welcomed"
}
"""
    expected = """\
“Welcome new subscribers” — Say hi, then send a discount two days later
When a fan subscribes:
1. Send them the message “Hey {{ fan.name }}, thanks for subscribing! 💕”.
2. If their total spent is less than $10.00 and they are not tagged “welcomed”:
     1. Wait 2 days.
     2. Create an offer of 20% off for them, valid for 48 hours, named “Welcome 20%”.
3. Tag them “welcomed”."""
    assert _explain(text) == expected


def test_if_else_if_else_nested_exactly() -> None:
    text = """\
automation "Sort" {
  when message_received
  if fan.total_spent >= $500 {
    if "price" in event.text {
      remove_tag tag: "new_fan"
    }
  } else if fan.country in ["FR", "BE"] or not fan.message_count > 5 {
  } else {
    wait 90m
    create_offer discount: $5, valid_for: 1w, min_purchase: $1000, uses: 2, audience: "all"
  }
}
"""
    expected = """\
“Sort”
When a fan sends you a message:
1. If their total spent is at least $500.00:
     1. If their message contains “price” (ignoring case):
          1. Remove the tag “new_fan” from them.
   Otherwise, if their country is one of [“FR”, “BE”] or the number of messages they have \
sent you is not more than 5:
     Do nothing.
   Otherwise:
     1. Wait 90 minutes.
     2. Create an offer of $5.00 off for every fan, valid for 1 week, on a purchase of at \
least $1,000.00, usable 2 times by each fan."""
    assert _explain(text) == expected


def test_grouping_is_kept_in_words() -> None:
    """`a or b and c` and `(a or b) and c` must not read alike."""
    loose = _explain(
        'automation "A" { when new_subscriber if fan.total_spent > $1 or "a" in fan.tags '
        'and fan.country != "US" { } }'
    )
    grouped = _explain(
        'automation "A" { when new_subscriber if (fan.total_spent > $1 or "a" in fan.tags) '
        'and fan.country != "US" { } }'
    )
    assert ("their total spent is more than $1.00 or (they are tagged “a” and their "
            "country is not “US”):") in loose  # fmt: skip
    assert ("(their total spent is more than $1.00 or they are tagged “a”) and their "
            "country is not “US”:") in grouped  # fmt: skip


@pytest.mark.parametrize(
    ("condition", "words"),
    [
        ('not fan.country == "US"', "their country is not “US”"),
        ('not "vip" in fan.tags', "they are not tagged “vip”"),
        ('not fan.country not in ["US"]', "their country is one of [“US”]"),
        ("not fan.total_spent <= $10", "their total spent is not at most $10.00"),
        ("not (fan.message_count > 1 and fan.message_count < 9)",
         "it is not true that (the number of messages they have sent you is more than 1 and "
         "the number of messages they have sent you is less than 9)"),
        ("fan.is_muted", "their is muted is true"),
        ("event.days_left == 0", "the number of days left is 0"),
        ("event.renewal_price > €9.5", "the renewal price is more than €9.50"),
        ("fan.score >= 12.5%", "their score is at least 12.5%"),
        ("fan.tags == []", "their tags is []"),
        ("fan.x in []", "their x is in an empty list"),
        ('"a" in account.notes', "“a” is in `account.notes`"),
    ],
)  # fmt: skip
def test_conditions_in_words(condition: str, words: str) -> None:
    text = f'automation "C" {{ when subscription_expiring if {condition} {{ }} }}'
    assert f"1. If {words}:" in _explain(text)


def test_durations_money_and_numbers_in_words() -> None:
    text = """\
automation "D" {
  when purchase_completed
  wait 1s
  wait 2m
  wait 1h
  wait 1d
  wait 3w
  wait 1000000d
  custom amount: $1234567.5, other: £0, fee: 0.000, count: -3, when: 30m, ok: false
}
"""
    lines = _explain(text).splitlines()[2:]
    assert lines == [
        "1. Wait 1 second.",
        "2. Wait 2 minutes.",
        "3. Wait 1 hour.",
        "4. Wait 1 day.",
        "5. Wait 3 weeks.",
        "6. Wait 1,000,000 days.",
        "7. Run `custom` with amount: $1,234,567.50, other: £0.00, fee: 0, count: -3, "
        "when: 30 minutes, ok: false.",
    ]


def test_text_shows_invisible_characters() -> None:
    text = 'automation "T" { when new_subscriber send_message text: "a\\nb\\tc\\u{7}" }'
    assert "Send them the message “a\\nb\\tc\\u{7}”." in _explain(text)


class _Webhook(BaseModel):
    url: str


def test_third_party_trigger_and_action_use_the_catalogue() -> None:
    catalog = Catalog(
        triggers={
            **CATALOG.triggers,
            "stream_started": TriggerSpec("stream_started", "The creator went live.", {}),
        },
        actions={
            **CATALOG.actions,
            "post_webhook": ActionSpec("post_webhook", "Post the event to a URL.", _Webhook),
        },
    )
    text = """\
automation "Live" {
  when stream_started platform: "twitch"
  post_webhook url: "https://example.com/hook"
}
"""
    expected = """\
“Live”
When `stream_started` happens (The creator went live), with platform: “twitch”:
1. Run `post_webhook` (Post the event to a URL) with url: “https://example.com/hook”."""
    assert _explain(text, catalog) == expected
    expected = """\
“Live”
When `stream_started` happens, with platform: “twitch”:
1. Run `post_webhook` with url: “https://example.com/hook”."""
    assert _explain(text) == expected


def test_built_ins_with_unexpected_arguments_show_every_argument() -> None:
    text = """\
automation "Odd" {
  when subscription_expiring days_before: 3, extra: 1
  send_message text: "Hi", urgent: true
  add_tag
  create_offer discount: 10%
  create_offer discount: 10%, valid_for: 1d, audience: "friends"
  create_offer discount: 10%, valid_for: 1d, colour: "red"
}
"""
    assert _explain(text).splitlines()[1:] == [
        "When a fan's subscription is about to end, with exactly 3 days left, with extra: 1:",
        "1. Run `send_message` with text: “Hi”, urgent: true.",
        "2. Run `add_tag`.",
        "3. Run `create_offer` with discount: 10%.",
        "4. Run `create_offer` with discount: 10%, valid for: 1 day, audience: “friends”.",
        "5. Create an offer of 10% off for them, valid for 1 day, with colour: “red”.",
    ]


def test_a_module_explains_each_automation_and_an_empty_one_says_so() -> None:
    text = 'automation "A" { when new_subscriber }\nautomation "B" { when offer_redeemed }'
    assert _explain(text) == (
        "“A”\nWhen a fan subscribes:\nDo nothing.\n\n“B”\nWhen a fan redeems an offer:\nDo nothing."
    )
    assert explain(dsl.parse("# nothing here\n")) == "No automations."
    (automation,) = dsl.parse(text.splitlines()[0]).automations
    assert explain(automation) == "“A”\nWhen a fan subscribes:\nDo nothing."


def test_deep_nesting_lines_up() -> None:
    body = 'add_tag tag: "deep"'
    for _ in range(4):
        body = f"if fan.message_count > 1 {{ {body} }}"
    lines = _explain(f'automation "N" {{ when new_subscriber {body} }}').splitlines()
    indents = [len(line) - len(line.lstrip()) for line in lines[2:]]
    assert indents == [0, 5, 10, 15, 20]
    assert lines[-1].strip() == "1. Tag them “deep”."


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(modules())
def test_property_explanation_totality(module: ast.Module) -> None:
    """Property: Explanation Totality — every syntax tree the language can express is
    explained, with or without a catalogue, the same way every time."""
    first = explain(module)
    assert first == explain(module)
    assert explain(module, CATALOG) == explain(module, CATALOG)
    assert first.count("\n\n") >= max(len(module.automations) - 1, 0)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(automations())
def test_property_every_step_has_a_line(automation: ast.Automation) -> None:
    """Property: Explanation Coverage — each action and wait gets a numbered line of
    its own, and each `if` arm a heading, so nothing that will run goes unsaid."""
    lines = explain(automation).splitlines()

    def count(steps) -> tuple[int, int]:
        numbered = arms = 0
        for step in steps:
            numbered += 1
            if isinstance(step, ast.If):
                arms += len(step.branches) - 1 + (step.else_body is not None)
                for body in [*(b.body for b in step.branches), step.else_body or ()]:
                    inner = count(body)
                    numbered, arms = numbered + inner[0], arms + inner[1]
        return numbered, arms

    numbered, arms = count(automation.body)
    assert sum(line.lstrip()[:1].isdigit() for line in lines[2:]) == numbered
    assert sum(line.lstrip().startswith("Otherwise") for line in lines[2:]) == arms


def test_the_guardrails_explanation_is_what_explain_says() -> None:
    """In docs/ai.md, a ```text block that starts with “ is the explanation of the
    ```hz block before it."""
    from test_policy import guardrails_blocks

    source, compared = None, 0
    for block in guardrails_blocks():
        if block.info == "hz":
            source = block.body
        elif block.info == "text" and block.body.startswith("“"):
            assert explain(dsl.parse(source)) + "\n" == block.body
            compared += 1
    assert compared >= 1
