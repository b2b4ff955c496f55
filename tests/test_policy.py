"""dsl.policy: the creator's guardrails as diagnostics."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from catalog_fixture import CATALOG
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from strategies import modules
from test_docs import LANGUAGE_MD, Block, fenced_blocks

import dsl
from dsl import ast
from dsl.catalog import ActionSpec, Catalog
from dsl.policy import DAY, Policy, check_policy, messages_per_day
from dsl.values import Money, Percentage
from webapp.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.hz"))


def _check(text: str, policy: Policy | None = None, **kwargs) -> str:
    diagnostics = check_policy(dsl.parse(text), policy or Policy(), CATALOG, **kwargs)
    return dsl.render_all(diagnostics, text, "example.hz")


def _codes(text: str, policy: Policy | None = None, **kwargs) -> list[str]:
    return [d.code for d in check_policy(dsl.parse(text), policy or Policy(), CATALOG, **kwargs)]


def _offer(arguments: str) -> str:
    return f'automation "Offer" {{\n  when new_subscriber\n  create_offer {arguments}\n}}\n'


# --- The defaults ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_pass_the_default_policy(path: Path) -> None:
    """The examples are what creators are shown: the defaults must not refuse them."""
    text = path.read_text(encoding="utf-8")
    assert _check(text) == ""


def test_the_reference_examples_pass_the_default_policy() -> None:
    for block in fenced_blocks(LANGUAGE_MD):
        if block.info == "hz":
            assert _check(block.body) == "", block.id


def test_defaults() -> None:
    policy = Policy()
    assert policy.max_discount == 50
    assert policy.confirm_discount_above == 40
    assert policy.max_fixed_discount == 100
    assert policy.max_offer_validity == timedelta(days=30)
    assert policy.max_messages_per_fan_per_day == 5


# --- Discounts ------------------------------------------------------------------------------


def test_a_discount_above_the_maximum_is_an_error_with_its_place() -> None:
    assert (
        _check(_offer("discount: 60%, valid_for: 2d"))
        == """\
example.hz:3:26: error: a discount of 60% is more than the policy allows (50% at most)
    3 |   create_offer discount: 60%, valid_for: 2d
      |                          ^^^
  hint: lower it to 50% or less, or raise `max_discount` in the policy"""
    )


def test_the_maximum_itself_needs_only_confirmation() -> None:
    text = _offer("discount: 50%, valid_for: 2d")
    assert (
        _check(text)
        == """\
example.hz:3:26: error: a discount of 50% needs your confirmation (the policy asks above 40%)
    3 |   create_offer discount: 50%, valid_for: 2d
      |                          ^^^
  hint: confirm it when you save the automation, or lower it to 40% or less"""
    )
    assert _codes(text, confirmed=True) == []


@pytest.mark.parametrize(
    ("discount", "codes", "confirmed_codes"),
    [
        ("40%", [], []),
        ("40.01%", ["policy.confirm-discount"], []),
        ("50.5%", ["policy.max-discount"], ["policy.max-discount"]),
        ("100%", ["policy.max-discount"], ["policy.max-discount"]),
        ("$100", [], []),
        ("$100.01", ["policy.max-discount"], ["policy.max-discount"]),
        ("€250", ["policy.max-discount"], ["policy.max-discount"]),
    ],
)
def test_discount_limits(discount: str, codes: list[str], confirmed_codes: list[str]) -> None:
    text = _offer(f"discount: {discount}, valid_for: 2d")
    assert _codes(text) == codes
    assert _codes(text, confirmed=True) == confirmed_codes


def test_a_fixed_amount_is_capped_in_the_offers_own_currency() -> None:
    assert "($100.00 off at most)" in _check(_offer("discount: $120, valid_for: 2d"))
    assert "(£100.00 off at most)" in _check(_offer("discount: £120, valid_for: 2d"))
    assert _codes(_offer("discount: $5000, valid_for: 2d"), Policy(max_fixed_discount=None)) == []


def test_offer_validity() -> None:
    text = _offer("discount: 10%, valid_for: 5w")
    assert (
        _check(text)
        == """\
example.hz:3:42: error: an offer valid for 5 weeks lasts longer than the policy allows \
(30 days at most)
    3 |   create_offer discount: 10%, valid_for: 5w
      |                                          ^^
  hint: make it shorter, or raise `max_offer_validity` in the policy"""
    )
    assert _codes(_offer("discount: 10%, valid_for: 30d")) == []
    assert _codes(text, Policy(max_offer_validity=None)) == []
    assert "(36 hours at most)" in _check(text, Policy(max_offer_validity="36h"))


def test_every_offer_in_every_branch_is_checked() -> None:
    text = """\
automation "Offers" {
  when purchase_completed
  if event.amount > $10 {
    if fan.total_spent > $100 {
      create_offer discount: 70%, valid_for: 1d
    }
  } else if event.amount > $5 {
    create_offer discount: 45%, valid_for: 1d
  } else {
    create_offer discount: $500, valid_for: 1d
  }
}

automation "More" {
  when new_subscriber
  create_offer discount: 90%, valid_for: 1d
}
"""
    diagnostics = check_policy(dsl.parse(text), Policy(), CATALOG)
    assert [(d.span.line, d.code) for d in diagnostics] == [
        (5, "policy.max-discount"),
        (8, "policy.confirm-discount"),
        (10, "policy.max-discount"),
        (16, "policy.max-discount"),
    ]
    assert all(d.is_error and d.hint for d in diagnostics)


def test_other_actions_and_written_out_values_only() -> None:
    """Another action's `discount` means whatever that plugin says; values that are not
    written out are the checker's to refuse."""
    text = """\
automation "Other" {
  when new_subscriber
  custom_discount discount: 90%
  create_offer discount: fan.total_spent, valid_for: fan.subscribed_at
}
"""
    assert _codes(text) == []


# --- Messages per day -----------------------------------------------------------------------


def _sends(body: str, trigger: str = "new_subscriber") -> str:
    return f'automation "Sends" {{\n  when {trigger}\n{body}}}\n'


def test_messages_less_than_a_day_apart_count_together() -> None:
    text = _sends(
        '  send_message text: "1"\n'
        "  wait 12h\n"
        '  send_message text: "2"\n'
        "  wait 11h\n"
        '  send_message text: "3"\n'
        "  wait 59m\n"
        '  send_message text: "4"\n'
    )
    assert (
        _check(text, Policy(max_messages_per_fan_per_day=3))
        == """\
example.hz:9:3: error: this automation can send a fan 4 messages within 24 hours; the policy \
allows 3
    9 |   send_message text: "4"
      |   ^^^^^^^^^^^^^^^^^^^^^^
  hint: send fewer, or wait 24h between them: messages less than 24 hours apart count \
together, along the branches that send the most"""
    )
    assert _codes(text, Policy(max_messages_per_fan_per_day=4)) == []


def test_a_day_apart_is_another_day() -> None:
    text = _sends(
        '  send_message text: "1"\n  send_message text: "2"\n  wait 12h\n'
        '  send_message text: "3"\n  wait 12h\n  send_message text: "4"\n'
    )
    (automation,) = dsl.parse(text).automations
    # 1, 2 and 3 fall within 12 hours; 4 comes exactly 24 hours after 1 and 2.
    assert messages_per_day(automation, CATALOG) == 3
    assert _codes(text, Policy(max_messages_per_fan_per_day=2)) == ["policy.messages-per-day"]


def test_the_branch_that_sends_the_most_counts() -> None:
    text = _sends(
        '  send_message text: "hi"\n'
        "  if fan.total_spent > $10 {\n"
        "    wait 2d\n"
        '    send_message text: "a"\n'
        '  } else if fan.country == "US" {\n'
        '    send_message text: "b"\n'
        '    add_tag tag: "t"\n'
        '    send_message text: "c"\n'
        "  }\n"
        "  wait 1d\n"
        '  send_message text: "d"\n'
    )
    assert _codes(text) == []
    diagnostics = check_policy(dsl.parse(text), Policy(max_messages_per_fan_per_day=2), CATALOG)
    assert [(d.code, d.span.line) for d in diagnostics] == [("policy.messages-per-day", 10)]
    assert "3 messages" in diagnostics[0].message


def test_no_messages_allowed() -> None:
    text = _sends('  add_tag tag: "x"\n')
    assert _codes(text, Policy(max_messages_per_fan_per_day=0)) == []
    assert _codes(_sends('  send_message text: "x"\n'), Policy(max_messages_per_fan_per_day=0))


def test_each_automation_is_counted_on_its_own() -> None:
    one = '  send_message text: "1"\n  send_message text: "2"\n'
    text = _sends(one) + "\n" + _sends(one).replace('"Sends"', '"Again"')
    assert _codes(text, Policy(max_messages_per_fan_per_day=2)) == []


# --- The policy itself ----------------------------------------------------------------------


def test_policy_from_json_as_people_write_it() -> None:
    policy = Policy.model_validate_json(
        '{"max_discount": "35%", "confirm_discount_above": 20.5, "max_offer_validity": "2w",'
        ' "max_fixed_discount": null, "max_messages_per_fan_per_day": 2}'
    )
    assert policy.max_discount == Decimal(35)
    assert policy.confirm_discount_above == Decimal("20.5")
    assert policy.max_offer_validity == timedelta(weeks=2)
    assert policy.max_fixed_discount is None
    assert policy.model_dump(mode="json") == {
        "max_discount": 35,
        "confirm_discount_above": 20.5,
        "max_fixed_discount": None,
        "max_offer_validity": "2w",
        "max_messages_per_fan_per_day": 2,
    }
    assert Policy.model_validate(policy.model_dump(mode="json")) == policy
    assert (
        Policy(max_offer_validity=timedelta(seconds=90)).model_dump(mode="json")[
            "max_offer_validity"
        ]
        == "90s"
    )


@pytest.mark.parametrize(
    "values",
    [
        {"max_discount": 0},
        {"max_discount": 101},
        {"max_discount": "lots"},
        {"confirm_discount_above": -1},
        {"max_fixed_discount": 0},
        {"max_offer_validity": "0d"},
        {"max_offer_validity": "soon"},
        {"max_messages_per_fan_per_day": -1},
        {"max_messages": 3},
    ],
)
def test_invalid_policies_are_refused(values: dict) -> None:
    with pytest.raises(ValidationError):
        Policy.model_validate(values)


# --- Properties -----------------------------------------------------------------------------

_WAITS = [ast.Duration(n, u) for n, u in [(1, "h"), (6, "h"), (12, "h"), (23, "h"),
                                         (24, "h"), (25, "h"), (1, "d"), (2, "d")]]  # fmt: skip


def _small_steps() -> st.SearchStrategy[ast.Step]:
    leaf = st.one_of(
        st.just(ast.Action("send_message", (ast.Argument("text", ast.String("hi")),))),
        st.just(ast.Action("add_tag", (ast.Argument("tag", ast.String("t")),))),
        st.sampled_from(_WAITS).map(ast.Wait),
    )

    def extend(children):
        body = st.lists(children, max_size=3).map(tuple)
        branch = st.builds(ast.Branch, st.just(ast.Field(("fan", "x"))), body)
        return st.builds(ast.If, st.lists(branch, min_size=1, max_size=2).map(tuple),
                         st.none() | body)  # fmt: skip

    return st.recursive(leaf, extend, max_leaves=10)


def _paths(steps) -> list[list[int | None]]:
    """Every path through ``steps``: for each, a list of waits (seconds) and messages
    (None), by enumerating each `if`'s arms."""
    paths: list[list[int | None]] = [[]]
    for step in steps:
        match step:
            case ast.Wait(duration=duration):
                options = [[duration.seconds]]
            case ast.Action(name="send_message"):
                options = [[None]]
            case ast.If(branches=branches, else_body=else_body):
                arms = [*(b.body for b in branches), else_body or ()]
                options = [p for arm in arms for p in _paths(arm)]
            case _:
                options = [[]]
        paths = [p + o for p, o in itertools.product(paths, options)]
    return paths


def _most_in_a_day(path: list[int | None]) -> int:
    times, now = [], 0
    for item in path:
        if item is None:
            times.append(now)
        else:
            now += item
    return max((sum(t - start < DAY for t in times[i:]) for i, start in enumerate(times)),
               default=0)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_small_steps(), max_size=5).map(tuple))
def test_property_message_count_matches_every_path(body: tuple[ast.Step, ...]) -> None:
    """Property: Daily Message Bound — the count `policy.messages-per-day` uses is the
    most messages any path through the automation sends within 24 hours, as enumerating
    every path and every window finds."""
    automation = ast.Automation("A", ast.Trigger("new_subscriber"), body)
    expected = max(_most_in_a_day(p) for p in _paths(body))
    assert messages_per_day(automation, CATALOG) == expected
    codes = _codes_of(automation, Policy(max_messages_per_fan_per_day=max(expected - 1, 0)))
    assert ("policy.messages-per-day" in codes) == (expected > 0)


def _codes_of(automation: ast.Automation, policy: Policy) -> list[str]:
    return [d.code for d in check_policy(automation, policy, CATALOG)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(modules(), st.booleans())
def test_property_policy_check_totality(module: ast.Module, confirmed: bool) -> None:
    """Property: Policy Check Totality — any syntax tree is checked without an
    exception, and every violation is an error with a code and a hint."""
    for diagnostic in check_policy(module, Policy(), CATALOG, confirmed=confirmed):
        assert diagnostic.is_error and diagnostic.code.startswith("policy.") and diagnostic.hint


def test_many_branches_stay_fast() -> None:
    """Forty `if`s in a row have 2**40 paths; the count does not walk them."""
    branch = (
        "  if fan.total_spent > $1 {\n"
        '    send_message text: "x"\n    wait 5h\n  } else {\n    wait 7h\n  }\n'
    )
    (automation,) = dsl.parse(_sends(branch * 40)).automations
    assert messages_per_day(automation, CATALOG) == 5  # at 0, 5, 10, 15 and 20 hours


# --- Roles declared by plugins ------------------------------------------------------------


class _SmsArguments(BaseModel):
    text: str


class _CouponArguments(BaseModel):
    percent_off: Percentage | Money
    expires_in: timedelta
    note: str = ""


class _NoteArguments(BaseModel):
    percent_off: Percentage
    expires_in: timedelta


# Third-party actions as the catalogue describes them: roles are data, not names.
PLUGINS = replace(
    CATALOG,
    actions={
        **CATALOG.actions,
        "send_sms": ActionSpec("send_sms", "Text the fan.", _SmsArguments, sends_message=True),
        "gift_coupon": ActionSpec(
            "gift_coupon",
            "A store coupon.",
            _CouponArguments,
            policy_arguments={"discount": "percent_off", "validity": "expires_in"},
        ),
        "log_note": ActionSpec("log_note", "No role.", _NoteArguments, side_effects=False),
    },
)


def _plugin_codes(body: str, policy: Policy | None = None, **kwargs) -> list[str]:
    module = dsl.parse(_sends(body))
    return [d.code for d in check_policy(module, policy or Policy(), PLUGINS, **kwargs)]


def test_a_third_party_action_that_sends_a_message_counts_per_day() -> None:
    body = '  send_sms text: "1"\n  wait 1h\n  send_message text: "2"\n  send_sms text: "3"\n'
    (automation,) = dsl.parse(_sends(body)).automations
    assert messages_per_day(automation, PLUGINS) == 3
    assert _plugin_codes(body, Policy(max_messages_per_fan_per_day=2)) == [
        "policy.messages-per-day"
    ]
    assert _plugin_codes(body, Policy(max_messages_per_fan_per_day=3)) == []
    text = _sends(body)
    diagnostics = check_policy(dsl.parse(text), Policy(max_messages_per_fan_per_day=2), PLUGINS)
    assert diagnostics[0].span.line == 6  # the third message: a send_sms


@pytest.mark.parametrize(
    ("arguments", "codes", "confirmed_codes"),
    [
        ("percent_off: 30%, expires_in: 2d", [], []),
        ("percent_off: 45%, expires_in: 2d", ["policy.confirm-discount"], []),
        ("percent_off: 60%, expires_in: 2d", ["policy.max-discount"], ["policy.max-discount"]),
        ("percent_off: $150, expires_in: 2d", ["policy.max-discount"], ["policy.max-discount"]),
        ("percent_off: 10%, expires_in: 6w", ["policy.offer-validity"], ["policy.offer-validity"]),
    ],
)
def test_a_third_party_discount_argument_is_capped_and_confirmed(
    arguments: str, codes: list[str], confirmed_codes: list[str]
) -> None:
    body = f"  gift_coupon {arguments}\n"
    assert _plugin_codes(body) == codes
    assert _plugin_codes(body, confirmed=True) == confirmed_codes


def test_a_third_party_discount_is_reported_at_its_own_argument() -> None:
    text = _sends('  gift_coupon note: "x", percent_off: 60%, expires_in: 2d\n')
    diagnostics = check_policy(dsl.parse(text), Policy(), PLUGINS)
    assert dsl.render_all(diagnostics, text, "example.hz") == (
        "example.hz:3:39: error: a discount of 60% is more than the policy allows (50% at most)\n"
        '    3 |   gift_coupon note: "x", percent_off: 60%, expires_in: 2d\n'
        "      |" + " " * 39 + "^^^\n"
        "  hint: lower it to 50% or less, or raise `max_discount` in the policy"
    )


def test_an_action_without_roles_is_left_alone() -> None:
    """The same arguments and values, on an action that declares no role: nothing."""
    body = "  log_note percent_off: 90%, expires_in: 52w\n" * 9
    assert _plugin_codes(body, Policy(max_messages_per_fan_per_day=0)) == []
    (automation,) = dsl.parse(_sends(body)).automations
    assert messages_per_day(automation, PLUGINS) == 0


def test_roles_come_from_the_catalogue_not_from_names() -> None:
    """Without its declared roles, even `send_message` or `create_offer` is just an action."""
    bare = Catalog(
        triggers=CATALOG.triggers,
        actions={n: replace(a, sends_message=False, policy_arguments={})
                 for n, a in CATALOG.actions.items()},
    )  # fmt: skip
    text = _sends('  send_message text: "1"\n  create_offer discount: 90%, valid_for: 52w\n')
    strict = Policy(max_messages_per_fan_per_day=0)
    assert check_policy(dsl.parse(text), strict, bare) == []
    assert len(check_policy(dsl.parse(text), strict, CATALOG)) == 3


# --- `huntaze check` ------------------------------------------------------------------------


def test_check_warns_about_what_the_default_policy_refuses(runner, write_hz):
    path = write_hz(
        "offer.hz",
        _offer("discount: 60%, valid_for: 2d\n  create_offer discount: 45%, valid_for: 2d"),
    )
    result = runner.invoke(main, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}:3:26: warning: a discount of 60% is more than the policy allows" in (
        result.stdout
    )
    assert f"{path}:4:26: warning: a discount of 45% needs your confirmation" in result.stdout
    assert result.stdout.rstrip().endswith("2 warnings in 1 file (checked 1 file)")


def test_check_with_a_policy_file_refuses_what_saving_would(runner, write_hz, tmp_path):
    path = write_hz(
        "offer.hz",
        _offer("discount: 25%, valid_for: 2d\n  create_offer discount: 15%, valid_for: 2d"),
    )
    policy = tmp_path / "policy.json"
    policy.write_text('{"max_discount": 20, "confirm_discount_above": 10}', encoding="utf-8")
    result = runner.invoke(main, ["check", "--policy", str(policy), "--format", "json", str(path)])
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert [(r["line"], r["severity"], r["code"]) for r in rows] == [
        (3, "error", "policy.max-discount"),
        (4, "warning", "policy.confirm-discount"),  # confirmed when saving
    ]


def test_check_policy_file_problems_are_usage_errors(runner, write_hz, tmp_path):
    path = write_hz("offer.hz", _offer("discount: 25%, valid_for: 2d"))
    policy = tmp_path / "policy.json"
    policy.write_text('{"max_discount": 200, "max_emails": 1}', encoding="utf-8")
    result = runner.invoke(main, ["check", "--policy", str(policy), str(path)])
    assert result.exit_code == 2
    assert "max_discount: Input should be less than or equal to 100" in result.stderr
    assert "max_emails: Extra inputs are not permitted" in result.stderr
    policy.write_text("{not json", encoding="utf-8")
    result = runner.invoke(main, ["check", "--policy", str(policy), str(path)])
    assert result.exit_code == 2 and "the file: Invalid JSON" in result.stderr


def test_check_leaves_the_policy_until_the_text_is_valid(runner, write_hz):
    path = write_hz("offer.hz", _offer("discount: 60%, valid_for: 2d, colour: 1"))
    result = runner.invoke(main, ["check", "--format", "json", str(path)])
    assert [row["code"] for row in json.loads(result.stdout)] == ["argument/unknown"]


# --- docs/ai.md -----------------------------------------------------------------------------

AI_MD = ROOT / "docs" / "ai.md"


def guardrails_blocks() -> list[Block]:
    """The fenced blocks of the Guardrails section of docs/ai.md."""
    text = AI_MD.read_text(encoding="utf-8")
    start = text.index("## Guardrails\n")
    end = text.find("\n## ", start + 1)
    first = text.count("\n", 0, start) + 1
    last = text.count("\n", 0, end) + 1 if end != -1 else text.count("\n") + 2
    return [b for b in fenced_blocks(AI_MD) if first <= b.line < last]


def test_the_guardrails_examples_are_what_the_policy_reports() -> None:
    """A ```json block is the policy in force from there on; an ```hz block is checked
    against it, and the next ```text block that starts with `example.hz:` is exactly
    what saving it reports."""
    policy, source, compared = Policy(), None, 0
    for block in guardrails_blocks():
        if block.info == "json":
            policy = Policy.model_validate_json(block.body)
        elif block.info == "hz":
            source = block.body
        elif block.info == "text" and block.body.startswith("example.hz:"):
            diagnostics = check_policy(dsl.parse(source), policy, CATALOG)
            assert dsl.render_all(diagnostics, source, "example.hz") + "\n" == block.body
            compared += 1
    assert compared >= 1


def test_the_guardrails_table_names_every_setting_and_its_default() -> None:
    text = AI_MD.read_text(encoding="utf-8")
    defaults = Policy().model_dump(mode="json")
    for name, value in defaults.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}` |"))
        if name != "max_messages_per_fan_per_day":  # the creator's cap: 5 unless changed
            assert f"`{json.dumps(value)}`" in row, row
    assert "(5 unless changed)" in text and defaults["max_messages_per_fan_per_day"] == 5
