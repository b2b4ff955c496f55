"""``huntaze ai build`` in-process, against the scripted OpenAI-compatible server."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from llm_server import FakeLLM
from test_docs import fenced_blocks

from webapp.cli import main

AI_MD = Path(__file__).resolve().parent.parent / "docs" / "ai.md"
REQUEST = "when someone subscribes, welcome them by name and tag them new_fan"
WELCOME = """\
automation "Welcome new subscribers" {
  when new_subscriber
  send_message text: "Welcome, {{ fan.name }}!"
  add_tag tag: "new_fan"
}
"""
BROKEN = WELCOME.replace('add_tag tag: "new_fan"', "wait 3")


@pytest.fixture
def fake(fake_llm) -> FakeLLM:
    return fake_llm


def llm_env(fake: FakeLLM) -> dict[str, str]:
    return {
        "HUNTAZE_LLM_PROVIDER": "openai",
        "HUNTAZE_LLM_BASE_URL": fake.url,
        "HUNTAZE_LLM_API_KEY": "test-key",
        "HUNTAZE_LLM_MAX_RETRIES": "0",
    }


def test_build_prints_the_text_the_explanation_and_how_it_was_made(runner, fake):
    fake.reply(f"```hz\n{WELCOME}```")
    result = runner.invoke(main, ["ai", "build", REQUEST], env=llm_env(fake))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(WELCOME)
    assert "\nWhat it does:\n  " in result.stdout
    assert "in 1 answer" in result.stdout and "confidence 1.00" in result.stdout


def test_build_prints_the_warnings_rendered(runner, fake):
    other = 'automation "Other" {\n  when purchase_completed\n}\n'
    fake.reply(f"```hz\n{WELCOME}\n{other}```")
    result = runner.invoke(main, ["ai", "build", REQUEST], env=llm_env(fake))
    assert result.exit_code == 0, result.output
    assert "automation.hz:1:1: warning: the answer held 2 automations" in result.stdout
    assert "    1 | automation" in result.stdout


def test_output_writes_only_the_text(runner, fake, tmp_path):
    fake.reply(f"```hz\n{WELCOME}```")
    path = tmp_path / "welcome.hz"
    result = runner.invoke(main, ["ai", "build", REQUEST, "-o", str(path)], env=llm_env(fake))
    assert result.exit_code == 0, result.output
    assert path.read_text(encoding="utf-8") == WELCOME
    check = runner.invoke(main, ["check", str(path)])
    assert check.exit_code == 0, check.output


def test_format_json_prints_the_whole_response(runner, fake):
    fake.reply(f"```hz\n{BROKEN}```")
    fake.reply(f"```hz\n{WELCOME}```")
    result = runner.invoke(main, ["ai", "build", REQUEST, "--format", "json"], env=llm_env(fake))
    assert result.exit_code == 0, result.output
    response = json.loads(result.stdout)
    assert response["dsl"] == WELCOME
    assert response["attempts"] == 2 and response["fallback"] is False
    assert response["steps"][0] == {
        "id": "trigger", "type": "trigger", "name": "new_subscriber", "config": {}
    }  # fmt: skip
    assert set(response) >= {"name", "description", "confidence", "explanation",
                             "diagnostics", "reason", "provider", "offline", "usage"}  # fmt: skip


def test_fallback_exits_1_and_writes_nothing(runner, fake, tmp_path):
    path = tmp_path / "out.hz"
    result = runner.invoke(main, ["ai", "build", REQUEST, "-o", str(path)], env=llm_env(fake))
    assert result.exit_code == 1
    assert "when new_subscriber" in result.stdout  # the template is still shown
    assert "error: no valid automation came out of the model" in result.stderr
    assert "500" in result.stderr
    assert not path.exists()


def test_offline_provider_needs_no_endpoint(runner):
    result = runner.invoke(main, ["ai", "build", REQUEST], env={"HUNTAZE_LLM_PROVIDER": "offline"})
    assert result.exit_code == 0, result.output
    assert "when new_subscriber" in result.stdout
    assert "written offline by the built-in translator" in result.stdout


def test_invalid_settings_are_a_clear_error(runner):
    result = runner.invoke(main, ["ai", "build", REQUEST], env={"HUNTAZE_LLM_PROVIDER": "nope"})
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: invalid LLM settings: HUNTAZE_LLM_PROVIDER")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [["--save"], ["--creator", "Ava"]])
def test_save_and_creator_go_together(runner, args):
    result = runner.invoke(main, ["ai", "build", REQUEST, *args])
    assert result.exit_code == 2
    assert "--save and --creator NAME go together" in result.stderr


def test_empty_description_is_a_usage_error(runner):
    result = runner.invoke(main, ["ai", "build", "  "])
    assert result.exit_code == 2 and "the description is empty" in result.stderr


def test_help_lists_ai(runner):
    assert "ai" in runner.invoke(main, ["--help"]).stdout.split()
    assert "build" in runner.invoke(main, ["ai", "--help"]).stdout


# --- docs/ai.md ---------------------------------------------------------------------------


def test_the_documented_command_prints_what_the_docs_show(runner):
    """In "Writing automations from English", the ```sh block's `huntaze ai build` run
    with the offline provider prints exactly the ```text block after it."""
    text = AI_MD.read_text(encoding="utf-8")
    start = text.index("## Writing automations from English\n")
    first = text.count("\n", 0, start) + 1
    last = text.count("\n", 0, text.index("\n## ", start)) + 1
    blocks = [b for b in fenced_blocks(AI_MD) if first <= b.line < last]
    [command] = [b for b in blocks if b.info == "sh"]
    [output] = [b for b in blocks if b.info == "text"]
    args = shlex.split(command.body)
    assert args[:3] == ["huntaze", "ai", "build"]
    result = runner.invoke(main, args[1:], env={"HUNTAZE_LLM_PROVIDER": "offline"})
    assert result.exit_code == 0, result.output
    assert result.stdout == output.body


def test_the_readme_ai_commands_run(runner, tmp_path, monkeypatch):
    """Every `huntaze ai build` the README shows works as written, offline."""
    readme = AI_MD.parent.parent / "README.md"
    blocks = [b for b in fenced_blocks(readme) if b.info == "sh"]
    commands = [
        shlex.split(line.strip().removeprefix(".venv/bin/"))
        for block in blocks
        for line in block.body.splitlines()
        if "huntaze ai " in line
    ]
    assert commands
    monkeypatch.chdir(tmp_path)
    for args in commands:
        result = runner.invoke(main, args[1:], env={"HUNTAZE_LLM_PROVIDER": "offline"})
        assert result.exit_code == 0, result.output
    assert "when new_subscriber" in (tmp_path / "welcome.hz").read_text(encoding="utf-8")
