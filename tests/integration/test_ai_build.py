"""``huntaze ai build --save``: the checked automation stored as a draft, on SQLite and
PostgreSQL, through the same AutomationService as every other automation."""

from __future__ import annotations

import pytest
from llm_server import FakeLLM
from sqlalchemy import select

from engine.creators import create_creator, set_policy
from engine.models import Automation, AutomationStatus, Creator
from webapp.cli import main

REQUEST = "when someone subscribes, welcome them by name and tag them new_fan"
WELCOME = """\
automation "Welcome new subscribers" {
  when new_subscriber
  send_message text: "Welcome, {{ fan.name }}!"
  add_tag tag: "new_fan"
}
"""


@pytest.fixture
def env(settings):
    """The CLI's environment: the suite's database and Redis, and the scripted model."""
    with FakeLLM() as fake:
        yield (
            fake,
            {
                "DATABASE_URL": settings.database_url,
                "REDIS_URL": settings.redis_url,
                "HUNTAZE_DATA_DIR": str(settings.data_dir),
                "HUNTAZE_LLM_PROVIDER": "openai",
                "HUNTAZE_LLM_BASE_URL": fake.url,
                "HUNTAZE_LLM_API_KEY": "test-key",
                "HUNTAZE_LLM_MAX_RETRIES": "0",
            },
        )


def automations_of(runtime, creator_name: str) -> list[Automation]:
    query = (
        select(Automation)
        .join(Creator, Creator.id == Automation.creator_id)
        .where(Creator.name == creator_name)
    )
    return runtime.db.run(lambda s: list(s.scalars(query)))


def test_save_stores_a_draft_for_the_creator(runner, runtime, env):
    fake, environment = env
    fake.reply(f"Here it is:\n```hz\n{WELCOME}```")
    args = ["ai", "build", REQUEST, "--save", "--creator", "Ava"]
    result = runner.invoke(main, args, env=environment)
    assert result.exit_code == 0, result.output
    [saved] = automations_of(runtime, "Ava")
    assert saved.status == AutomationStatus.DRAFT
    assert saved.source == WELCOME and saved.name == "Welcome new subscribers"
    assert saved.trigger == "new_subscriber"
    assert f"saved as draft {saved.id} of creator Ava" in result.stderr


def test_a_fallback_is_not_saved(runner, runtime, env):
    _, environment = env  # nothing scripted: the model answers 500
    args = ["ai", "build", REQUEST, "--save", "--creator", "Ava"]
    result = runner.invoke(main, args, env=environment)
    assert result.exit_code == 1
    assert "nothing was written or saved" in result.stderr
    assert automations_of(runtime, "Ava") == []


def offer(discount: str) -> str:
    return (
        'automation "Welcome offer" {\n  when new_subscriber\n'
        f"  create_offer discount: {discount}, valid_for: 2d\n}}\n"
    )


def test_the_creators_policy_is_the_one_applied(runner, runtime, env):
    fake, environment = env
    creator = runtime.db.run(lambda s: create_creator(s, "Strict"))
    runtime.db.run(lambda s: set_policy(s, creator.id, {"max_discount": 10}))
    fake.reply(f"```hz\n{offer('20%')}```")  # fine by the default policy, not by hers
    fake.reply(f"```hz\n{offer('10%')}```")
    args = ["ai", "build", "welcome new fans with 20% off", "--save", "--creator", "Strict"]
    result = runner.invoke(main, args, env=environment)
    assert result.exit_code == 0, result.output
    assert "(10% at most)" in fake.requests[1].messages[-1]["content"]
    [saved] = automations_of(runtime, "Strict")
    assert "discount: 10%" in saved.source


def test_a_discount_to_confirm_is_saved_only_with_confirm(runner, runtime, env):
    fake, environment = env
    fake.reply(f"```hz\n{offer('45%')}```")  # the default policy asks above 40%
    args = ["ai", "build", "welcome new fans with 45% off", "--save", "--creator", "Ava"]
    refused = runner.invoke(main, args, env=environment)
    assert refused.exit_code == 1
    assert "needs your confirmation" in refused.stdout  # the warning, rendered
    assert "not saved: a discount needs your confirmation" in refused.stderr
    assert automations_of(runtime, "Ava") == []
    fake.reply(f"```hz\n{offer('45%')}```")
    confirmed = runner.invoke(main, [*args, "--confirm"], env=environment)
    assert confirmed.exit_code == 0, confirmed.output
    [saved] = automations_of(runtime, "Ava")
    assert "discount: 45%" in saved.source
