"""A creator's policy, stored per creator, guards every save: on both databases, a text
that goes beyond it is refused with its diagnostics and nothing is written; a confirmed
discount is saved; each creator's own policy decides."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from dsl.policy import Policy
from engine.creators import create_creator, get_policy, set_policy
from engine.exceptions import InvalidAutomation, InvalidInput, NotFound
from engine.models import Automation, AutomationVersion, Creator
from webapp.cli import main
from webapp.cli_engine import Replay


def _offer(discount: str, name: str = "Offer") -> str:
    return f"""\
automation "{name}" {{
  when new_subscriber
  create_offer discount: {discount}, valid_for: 2d
}}
"""


def _sends(count: int, name: str = "Sends") -> str:
    sends = "".join(f'  send_message text: "m{i}"\n' for i in range(count))
    return f'automation "{name}" {{\n  when new_subscriber\n{sends}}}\n'


def _counts(runtime) -> tuple[int, int]:
    return runtime.db.run(
        lambda s: (
            s.scalar(select(func.count(Automation.id))),
            s.scalar(select(func.count()).select_from(AutomationVersion)),
        )
    )


def _set(runtime, creator_id: str, policy) -> Policy:
    return runtime.db.run(lambda s: set_policy(s, creator_id, policy))


def _stored(runtime, creator_id: str):
    return runtime.db.run(lambda s: s.get(Creator, creator_id).policy)


# --- Storage --------------------------------------------------------------------------------


def test_without_a_stored_policy_the_defaults_and_the_message_cap_apply(
    runtime, automations, creator
):
    assert _stored(runtime, creator.id) is None
    cap = runtime.settings.messages_per_fan_per_day
    assert automations.policy(creator.id) == Policy(max_messages_per_fan_per_day=cap)
    capped = runtime.db.run(lambda s: create_creator(s, "Capped", messages_per_fan_per_day=1))
    assert automations.policy(capped.id).max_messages_per_fan_per_day == 1


def test_only_the_settings_given_are_stored(runtime, automations, creator):
    _set(runtime, creator.id, {"max_discount": "30%", "max_offer_validity": "2w"})
    assert _stored(runtime, creator.id) == {"max_discount": 30, "max_offer_validity": "2w"}
    policy = automations.policy(creator.id)
    assert policy.max_discount == 30
    assert policy.max_offer_validity == timedelta(weeks=2)
    assert policy.confirm_discount_above == Policy().confirm_discount_above

    _set(runtime, creator.id, Policy(confirm_discount_above=Decimal("12.5"),
                                     max_fixed_discount=None))  # fmt: skip
    assert _stored(runtime, creator.id) == {
        "confirm_discount_above": 12.5,
        "max_fixed_discount": None,
    }
    assert automations.policy(creator.id).max_fixed_discount is None

    _set(runtime, creator.id, None)
    assert _stored(runtime, creator.id) is None
    _set(runtime, creator.id, {})
    assert _stored(runtime, creator.id) is None


def test_a_stored_message_limit_wins_over_the_cap(runtime, automations):
    capped = runtime.db.run(lambda s: create_creator(s, "Capped", messages_per_fan_per_day=1))
    _set(runtime, capped.id, {"max_messages_per_fan_per_day": 4})
    policy = runtime.db.run(lambda s: get_policy(s, capped.id, 99))
    assert policy.max_messages_per_fan_per_day == 4


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"max_discount": 150}, "policy.max_discount"),
        ({"max_offer_validity": "never"}, "policy.max_offer_validity"),
        ({"max_emails": 3}, "policy.max_emails"),
    ],
)
def test_an_invalid_policy_is_refused_and_the_old_one_kept(runtime, creator, policy, field):
    _set(runtime, creator.id, {"max_discount": 20})
    with pytest.raises(InvalidInput) as caught:
        _set(runtime, creator.id, policy)
    assert caught.value.field == field
    assert str(caught.value).startswith("invalid policy: ")
    assert _stored(runtime, creator.id) == {"max_discount": 20}


def test_unknown_creators(runtime, automations):
    with pytest.raises(NotFound):
        _set(runtime, "nobody", {"max_discount": 20})
    with pytest.raises(NotFound):
        automations.policy("nobody")


# --- Saving ---------------------------------------------------------------------------------


def test_a_save_beyond_the_policy_is_refused_and_nothing_written(runtime, automations, creator):
    text = _offer("60%")
    with pytest.raises(InvalidAutomation) as caught:
        automations.create(creator.id, text, status="active")
    error = caught.value
    assert error.source == text and error.field == "source"
    assert [(d.code, d.span.line, d.span.column) for d in error.diagnostics] == [
        ("policy.max-discount", 3, 26)
    ]
    assert error.diagnostics[0].hint
    assert _counts(runtime) == (0, 0)
    with pytest.raises(InvalidAutomation):
        automations.create(creator.id, text, confirmed=True)  # confirming is not enough
    assert _counts(runtime) == (0, 0)


def test_a_discount_that_needs_confirmation_is_saved_once_confirmed(runtime, automations, creator):
    text = _offer("45%")
    with pytest.raises(InvalidAutomation) as caught:
        automations.create(creator.id, text)
    assert [d.code for d in caught.value.diagnostics] == ["policy.confirm-discount"]
    assert _counts(runtime) == (0, 0)

    saved = automations.create(creator.id, text, confirmed=True)
    assert automations.get(saved.id).source == text
    assert _counts(runtime) == (1, 1)


def test_an_update_beyond_the_policy_changes_nothing(runtime, automations, creator):
    saved = automations.create(creator.id, _offer("20%"))
    with pytest.raises(InvalidAutomation) as caught:
        automations.update(saved.id, source=_offer("45%"), status="active")
    assert [d.code for d in caught.value.diagnostics] == ["policy.confirm-discount"]
    got = automations.get(saved.id)
    assert (got.source, got.status, got.version) == (_offer("20%"), "draft", 1)
    assert _counts(runtime) == (1, 1)

    automations.update(saved.id, source=_offer("45%"), confirmed=True)
    assert automations.get(saved.id).version == 2
    # A change of status alone leaves the text, and its confirmation, as they were.
    automations.update(saved.id, status="active")
    assert automations.get(saved.id).status == "active"


def test_each_creator_s_policy_decides(runtime, automations, creator):
    generous = runtime.db.run(lambda s: create_creator(s, "Generous"))
    strict = runtime.db.run(lambda s: create_creator(s, "Strict"))
    _set(runtime, generous.id, {"max_discount": 70, "confirm_discount_above": 70})
    _set(runtime, strict.id, {"max_discount": 15})

    assert automations.create(generous.id, _offer("60%")).creator_id == generous.id
    with pytest.raises(InvalidAutomation):
        automations.create(creator.id, _offer("60%"))
    assert automations.create(creator.id, _offer("20%")).creator_id == creator.id
    with pytest.raises(InvalidAutomation) as caught:
        automations.create(strict.id, _offer("20%"))
    assert "15% at most" in caught.value.diagnostics[0].message
    assert _counts(runtime) == (2, 2)


def test_the_daily_message_cap_bounds_what_one_automation_may_send(runtime, automations):
    capped = runtime.db.run(lambda s: create_creator(s, "Capped", messages_per_fan_per_day=2))
    with pytest.raises(InvalidAutomation) as caught:
        automations.create(capped.id, _sends(3))
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.code == "policy.messages-per-day"
    assert diagnostic.span.line == 5  # the third message
    assert automations.create(capped.id, _sends(2)).name == "Sends"
    _set(runtime, capped.id, {"max_messages_per_fan_per_day": 3})
    assert automations.create(capped.id, _sends(3, "Three")).name == "Three"


def test_check_reports_the_policy_without_saving(runtime, automations, creator):
    text = _offer("45%")
    assert automations.check(text) == []
    assert [d.code for d in automations.check(text, creator.id)] == ["policy.confirm-discount"]
    assert automations.check(text, creator.id, confirmed=True) == []
    # Text with errors: the policy waits until the text itself is valid.
    broken = _offer("45%").replace("new_subscriber", "new_subscribr")
    assert [d.code for d in automations.check(broken, creator.id)] == ["unknown-trigger"]
    assert _counts(runtime) == (0, 0)


def test_save_all_writes_nothing_if_any_text_goes_beyond_the_policy(runtime, automations, creator):
    sources = [_offer("10%", "Fine"), _offer("45%", "Needs confirming")]
    with pytest.raises(InvalidAutomation):
        automations.save_all(creator.id, sources)
    assert _counts(runtime) == (0, 0)
    saved = automations.save_all(creator.id, sources, confirmed=True)
    assert [a.name for a in saved] == ["Fine", "Needs confirming"]


# --- Changing a policy ----------------------------------------------------------------------


def test_a_new_policy_reports_the_active_automations_it_refuses(runtime, automations, creator):
    """They are reported, per automation, with the diagnostics saving them again would
    give; nothing is paused, and drafts and paused automations are not reported."""
    generous = automations.create(creator.id, _offer("30%", "Generous"), status="active")
    chatty = automations.create(creator.id, _sends(3, "Chatty"), status="active")
    automations.create(creator.id, _offer("30%", "Draft"), status="draft")
    automations.create(creator.id, _offer("30%", "Paused"), status="paused")
    fine = automations.create(creator.id, _offer("10%", "Fine"), status="active")

    change = automations.set_policy(
        creator.id, {"max_discount": 25, "max_messages_per_fan_per_day": 2}
    )
    assert change.policy == automations.policy(creator.id)
    assert change.policy.max_discount == 25
    assert [(c.automation_id, c.name, [(d.code, d.span.line) for d in c.diagnostics])
            for c in change.conflicts] == [
        (generous.id, "Generous", [("policy.max-discount", 3)]),
        (chatty.id, "Chatty", [("policy.messages-per-day", 5)]),
    ]  # fmt: skip
    assert change.conflicts[0].render() == (
        "Generous:3:26: error: a discount of 30% is more than the policy allows (25% at most)\n"
        "    3 |   create_offer discount: 30%, valid_for: 2d\n"
        "      |                          ^^^\n"
        "  hint: lower it to 25% or less, or raise `max_discount` in the policy"
    )
    statuses = {a.name: a.status for a in automations.list(creator.id)}
    assert statuses == {"Generous": "active", "Chatty": "active", "Draft": "draft",
                        "Paused": "paused", "Fine": "active"}  # fmt: skip
    assert _stored(runtime, creator.id) == {"max_discount": 25, "max_messages_per_fan_per_day": 2}
    assert automations.get(fine.id).version == 1

    # Back to the defaults: nothing is refused any more.
    assert automations.set_policy(creator.id, None).conflicts == ()


def test_a_discount_confirmed_before_is_not_reported_again(runtime, automations, creator):
    """A discount the old policy already asked to confirm was confirmed when it was saved;
    one that only the new policy asks to confirm is reported."""
    confirmed = automations.create(creator.id, _offer("45%", "Confirmed"), "active", confirmed=True)
    newly = automations.create(creator.id, _offer("30%", "Newly"), status="active")
    change = automations.set_policy(creator.id, {"confirm_discount_above": 20})
    assert [(c.automation_id, [d.code for d in c.diagnostics]) for c in change.conflicts] == [
        (newly.id, ["policy.confirm-discount"])
    ]
    assert confirmed.id not in {c.automation_id for c in change.conflicts}


def test_an_invalid_new_policy_changes_nothing_and_reports_nothing(runtime, automations, creator):
    automations.create(creator.id, _offer("30%"), status="active")
    automations.set_policy(creator.id, {"max_discount": 35})
    with pytest.raises(InvalidInput):
        automations.set_policy(creator.id, {"max_discount": 5, "max_emails": 1})
    assert _stored(runtime, creator.id) == {"max_discount": 35}
    with pytest.raises(NotFound):
        automations.set_policy("nobody", {"max_discount": 5})


def test_huntaze_policy_shows_sets_and_reports(runtime, automations, creator, settings, tmp_path):
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "HUNTAZE_DATA_DIR": str(settings.data_dir)}  # fmt: skip
    automations.create(creator.id, _offer("30%", "Generous"), status="active")
    runner = CliRunner()
    shown = runner.invoke(main, ["policy", "--creator", "Ava"], env=env)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == automations.policy(creator.id).model_dump(mode="json")

    path = tmp_path / "policy.json"
    path.write_text('{"max_discount": 25}', encoding="utf-8")
    changed = runner.invoke(main, ["policy", "--creator", "Ava", "--set", str(path)], env=env)
    assert changed.exit_code == 0, changed.output
    assert json.loads(changed.stdout)["max_discount"] == 25
    assert _stored(runtime, creator.id) == {"max_discount": 25}
    assert "Generous:3:26: error: a discount of 30% is more than the policy allows" in (
        changed.stderr
    )
    summary = "1 active automation goes beyond it (Generous), still active: edit or pause it"
    assert summary in changed.stderr
    assert [a.status for a in automations.list(creator.id)] == ["active"]

    path.write_text('{"max_discount": 35}', encoding="utf-8")
    relaxed = runner.invoke(main, ["policy", "--creator", "Ava", "--set", str(path)], env=env)
    assert "every active automation is within it" in relaxed.stderr

    path.write_text('{"max_discount": 500}', encoding="utf-8")
    invalid = runner.invoke(main, ["policy", "--creator", "Ava", "--set", str(path)], env=env)
    assert invalid.exit_code == 2 and "'--set'" in invalid.stderr
    assert _stored(runtime, creator.id) == {"max_discount": 35}
    nobody = runner.invoke(main, ["policy", "--creator", "Nobody"], env=env)
    assert nobody.exit_code == 1 and "no creator named 'Nobody'" in nobody.stderr


# --- `huntaze run` --------------------------------------------------------------------------

SUBSCRIBED = {
    "id": "evt_1",
    "type": "new_subscriber",
    "fan_id": "fan_1",
    "timestamp": "2026-11-16T10:00:00Z",
    "data": {"fan": {"name": "Mia", "username": "mia", "subscribed_at": "2026-11-16T10:00:00Z"}},
}


def _run(tmp_path: Path, text: str, *options: str):
    (tmp_path / "offer.hz").write_text(text, encoding="utf-8")
    (tmp_path / "events.jsonl").write_text(json.dumps(SUBSCRIBED) + "\n", encoding="utf-8")
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("HUNTAZE_")}
    env.update(DATABASE_URL=None, REDIS_URL=None, HUNTAZE_DATA_DIR=str(tmp_path / "data"))
    args = ["run", str(tmp_path / "offer.hz"), "--events", str(tmp_path / "events.jsonl"),
            "--quiet", *options]  # fmt: skip
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def test_run_refuses_files_beyond_the_default_policy_and_runs_nothing(tmp_path):
    result = _run(tmp_path, _offer("60%"))
    assert result.exit_code == 1
    assert "offer.hz:3:26: error: a discount of 60% is more than the policy allows" in (
        result.stderr
    )
    assert "nothing was run" in result.stderr
    assert not (tmp_path / "data").exists()
    # Confirming does not lift the maximum.
    assert _run(tmp_path, _offer("60%"), "--confirm-discounts").exit_code == 1


def test_run_confirm_discounts(tmp_path):
    refused = _run(tmp_path, _offer("45%"))
    assert refused.exit_code == 1
    assert "needs your confirmation" in refused.stderr
    confirmed = _run(tmp_path, _offer("45%"), "--confirm-discounts")
    assert confirmed.exit_code == 0, confirmed.output
    assert "1 automations active" in confirmed.stdout


def test_run_as_a_creator_whose_own_policy_refuses(runtime, capsys):
    strict = runtime.db.run(lambda s: create_creator(s, "Strict"))
    _set(runtime, strict.id, {"max_discount": 10})
    with pytest.raises(click.ClickException, match="policy refuses"):
        Replay.prepare(runtime, "Strict", [_offer("20%")], confirmed=False)
    assert "<automation>:3:26: error: a discount of 20%" in capsys.readouterr().err
    assert _counts(runtime) == (0, 0)
