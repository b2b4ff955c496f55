"""The LLM client (engine/ai/llm.py) against a real OpenAI-compatible HTTP server on
127.0.0.1 with scripted answers (tests/llm_server.py)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import httpx
import pytest
from llm_server import FakeLLM, client_for
from pydantic import BaseModel, Field

from dsl import grammar_export
from engine.ai.llm import (
    LLMClient,
    LLMError,
    LLMSettings,
    Usage,
    client_from_settings,
    strict_schema,
    strip_reasoning,
)

ROOT = Path(__file__).resolve().parent.parent
HELLO = [{"role": "user", "content": "say hello to the fans"}]


@pytest.fixture(autouse=True)
def no_model_from_the_environment(monkeypatch):
    """The tests set every setting they depend on; a developer's own are not read."""
    for name in [n for n in os.environ if n.startswith("HUNTAZE_LLM_")]:
        monkeypatch.delenv(name)


def test_an_answer_with_its_model_usage_and_attempts(fake_llm):
    fake_llm.reply("Hello, fans!")
    completion = client_for(fake_llm).complete(HELLO, task="automations")
    assert completion.text == "Hello, fans!"
    assert completion.reasoning is None
    assert completion.model == "deepseek-r1"
    assert completion.provider == "openai"
    assert completion.attempts == 1
    assert completion.usage == Usage(prompt_tokens=5, completion_tokens=2)
    request = fake_llm.requests[0]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.body == {"model": "deepseek-r1", "messages": HELLO, "temperature": 0.2}


def test_each_task_has_its_own_model(fake_llm):
    fake_llm.reply("a")
    fake_llm.reply("b")
    client = client_for(fake_llm, model_offers="llama3.3:70b")
    assert client.complete(HELLO, task="offers").model == "llama3.3:70b"
    assert client.complete(HELLO, task="automations").model == "deepseek-r1"
    assert [r.body["model"] for r in fake_llm.requests] == ["llama3.3:70b", "deepseek-r1"]


def test_usage_adds_up_on_the_client(fake_llm):
    fake_llm.reply("one two")
    fake_llm.reply("three")
    client = client_for(fake_llm)
    client.complete(HELLO, task="automations")
    client.complete(HELLO, task="offers")
    assert client.usage_total == Usage(prompt_tokens=10, completion_tokens=3)


# -- reasoning --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "text", "reasoning"),
    [
        ("<think>plan it</think>\nthe answer", "the answer", "plan it"),
        ("before <think>a</think> middle <think>b</think> after", "before  middle  after", "a\nb"),
        ("the answer <think>and then it ran out", "the answer", "and then it ran out"),
        ("the model's thinking, opening tag dropped</think>\nthe answer", "the answer",
         "the model's thinking, opening tag dropped"),
        ("<think></think>just the answer", "just the answer", None),
        ("no reasoning at all", "no reasoning at all", None),
    ],
    ids=["closed", "two blocks", "unclosed", "opening tag missing", "empty", "none"],
)  # fmt: skip
def test_strip_reasoning(content, text, reasoning):
    assert strip_reasoning(content) == (text, reasoning)


def test_think_blocks_are_stripped_from_the_answer(fake_llm):
    fake_llm.reply("<think>The creator wants a welcome.</think>\n```hz\nautomation\n```")
    completion = client_for(fake_llm).complete(HELLO, task="automations")
    assert completion.text == "```hz\nautomation\n```"
    assert completion.reasoning == "The creator wants a welcome."


def test_an_unclosed_think_block_leaves_no_answer(fake_llm):
    fake_llm.reply("<think>Let me consider the discount and")
    completion = client_for(fake_llm).complete(HELLO, task="automations")
    assert completion.text == ""
    assert completion.reasoning == "Let me consider the discount and"


def test_reasoning_content_is_kept_apart(fake_llm):
    fake_llm.reply("the answer", reasoning_content="first I thought")
    completion = client_for(fake_llm).complete(HELLO, task="automations")
    assert (completion.text, completion.reasoning) == ("the answer", "first I thought")


def test_a_reasoning_field_is_kept_apart_too(fake_llm):
    """Ollama and some routers name the field ``reasoning``."""
    message = {"role": "assistant", "content": "the answer", "reasoning": "hmm"}
    fake_llm.reply("", raw=json.dumps({"choices": [{"message": message}]}).encode())
    completion = client_for(fake_llm).complete(HELLO, task="automations")
    assert (completion.text, completion.reasoning) == ("the answer", "hmm")
    assert completion.usage == Usage(0, 0)


# -- retries and failures ---------------------------------------------------------------


def test_429_is_retried_after_the_time_the_server_asks(fake_llm):
    fake_llm.reply("slow down", status=429, headers={"Retry-After": "0.3"})
    fake_llm.reply("done")
    started = time.monotonic()
    completion = client_for(fake_llm, backoff_max=5).complete(HELLO, task="automations")
    assert time.monotonic() - started >= 0.3
    assert (completion.text, completion.attempts) == ("done", 2)


def test_a_long_retry_after_is_cut_to_backoff_max(fake_llm):
    fake_llm.reply("slow down", status=429, headers={"Retry-After": "120"})
    fake_llm.reply("done")
    started = time.monotonic()
    client_for(fake_llm, backoff_max=0.1).complete(HELLO, task="automations")
    assert time.monotonic() - started < 5


def test_500s_are_retried_then_reported(fake_llm):
    for _ in range(3):
        fake_llm.reply("the model is overloaded", status=500)
    client = client_for(fake_llm, max_retries=2)
    with pytest.raises(LLMError) as failure:
        client.complete(HELLO, task="offers")
    assert str(failure.value) == (
        "the openai model 'llama-3.3-70b' failed: answered 500 (the model is overloaded), "
        "after 3 attempts"
    )
    assert (failure.value.attempts, failure.value.status) == (3, 500)
    assert len(fake_llm.requests) == 3
    assert client.usage_total == Usage()


def test_a_5xx_then_success(fake_llm):
    fake_llm.reply("bad gateway", status=502)
    fake_llm.reply("fine")
    assert client_for(fake_llm).complete(HELLO, task="offers").attempts == 2


def test_a_client_error_is_not_retried(fake_llm):
    fake_llm.reply("Incorrect API key provided", status=401)
    with pytest.raises(LLMError, match=r"answered 401 \(Incorrect API key provided\), after 1 "):
        client_for(fake_llm).complete(HELLO, task="offers")
    assert len(fake_llm.requests) == 1


def test_a_timeout_is_retried(fake_llm):
    fake_llm.reply("too late", delay=1.0)
    fake_llm.reply("in time")
    completion = client_for(fake_llm, timeout=0.2).complete(HELLO, task="offers")
    assert (completion.text, completion.attempts) == ("in time", 2)


def test_timeouts_until_giving_up(fake_llm):
    fake_llm.reply("too late", delay=1.0)
    fake_llm.reply("too late", delay=1.0)
    with pytest.raises(LLMError, match=r"no answer within 0.2 s, after 2 attempts"):
        client_for(fake_llm, timeout=0.2, max_retries=1).complete(HELLO, task="offers")


def test_no_server_at_all():
    with FakeLLM() as fake:
        url = fake.url  # a port nothing listens on once the server has stopped
    settings = LLMSettings(_env_file=None, provider="openai", base_url=url, max_retries=1)
    with (
        LLMClient(settings.model_copy(update={"backoff_base": 0.001})) as client,
        pytest.raises(LLMError, match=r"could not connect .*after 2 attempts") as failure,
    ):
        client.complete(HELLO, task="offers")
    assert failure.value.status is None


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"<html>502 Bad Gateway</html>", "the answer is not JSON ('<html>502 Bad Gateway"),
        (b'{"id": "chatcmpl-1", "choices": []}', "the answer has no choices[0].message"),
        (b'{"error": "rate limited"}', "the answer has no choices[0].message"),
        (b'{"choices": [{"message": {"content": 42}}]}', "the answer's content is not text"),
    ],
    ids=["not JSON", "no choices", "an error instead", "content not text"],
)
def test_a_malformed_answer_is_a_clear_error(fake_llm, raw, problem):
    fake_llm.reply("", raw=raw)
    with pytest.raises(LLMError) as failure:
        client_for(fake_llm).complete(HELLO, task="automations")
    assert problem in str(failure.value)
    assert failure.value.attempts == 1


def test_the_key_never_shows(fake_llm):
    fake_llm.reply("nope", status=403)
    client = client_for(fake_llm, api_key="sk-secret-123")
    with pytest.raises(LLMError) as failure:
        client.complete(HELLO, task="offers")
    assert "sk-secret-123" not in str(failure.value)
    assert "sk-secret-123" not in repr(client.settings)


# -- providers --------------------------------------------------------------------------


def test_azure_addresses_the_deployment_with_an_api_key(fake_llm):
    fake_llm.reply("hi")
    client = client_for(fake_llm, provider="azure", api_version="2024-10-21")
    assert client.complete(HELLO, task="automations").provider == "azure"
    request = fake_llm.requests[0]
    assert request.path == "/openai/deployments/deepseek-r1/chat/completions"
    assert request.query == {"api-version": "2024-10-21"}
    assert request.headers["api-key"] == "test-key"
    assert "authorization" not in request.headers


def test_azure_foundry_models_endpoint_names_the_model_in_the_body(fake_llm):
    fake_llm.reply("hi")
    client = client_for(fake_llm, provider="azure", base_url=fake_llm.root + "/models/")
    client.complete(HELLO, task="offers")
    request = fake_llm.requests[0]
    assert request.path == "/models/chat/completions"
    assert request.query == {"api-version": LLMSettings.model_fields["api_version"].default}
    assert request.body["model"] == "llama-3.3-70b"
    assert request.headers["api-key"] == "test-key"


def test_azure_needs_a_base_url():
    with pytest.raises(LLMError, match="HUNTAZE_LLM_BASE_URL is required for the azure"):
        LLMClient(LLMSettings(_env_file=None, provider="azure"))


def test_the_offline_provider_has_no_model():
    client = client_from_settings(LLMSettings(_env_file=None))
    assert (client.offline, client.provider) == (True, "offline")
    with pytest.raises(LLMError, match="offline provider has no model"):
        client.complete(HELLO, task="automations")


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("HUNTAZE_LLM_PROVIDER", "openai")
    monkeypatch.setenv("HUNTAZE_LLM_BASE_URL", "http://127.0.0.1:11434/v1")
    monkeypatch.setenv("HUNTAZE_LLM_MODEL_AUTOMATIONS", "deepseek-r1:14b")
    monkeypatch.setenv("HUNTAZE_LLM_GRAMMAR", "llama.cpp")
    monkeypatch.setenv("HUNTAZE_LLM_JSON_SCHEMA", "false")
    settings = LLMSettings(_env_file=None)
    assert settings.model_for("automations") == "deepseek-r1:14b"
    assert (settings.provider, settings.grammar, settings.json_schema) == (
        "openai",
        "llama.cpp",
        False,
    )
    assert client_from_settings(settings).offline is False


# -- grammar-constrained decoding -------------------------------------------------------


def test_vllm_gets_the_gbnf_in_both_its_fields(fake_llm):
    fake_llm.reply("automation")
    client_for(fake_llm, grammar="vllm").complete(HELLO, task="automations", grammar=True)
    body = fake_llm.requests[0].body
    assert body["structured_outputs"] == {"grammar": grammar_export.gbnf()}
    assert body["guided_grammar"] == grammar_export.gbnf()


def test_llama_cpp_gets_the_gbnf(fake_llm):
    fake_llm.reply("automation")
    client_for(fake_llm, grammar="llama.cpp").complete(HELLO, task="automations", grammar=True)
    assert fake_llm.requests[0].body["grammar"] == grammar_export.gbnf()


def test_openai_gets_a_forced_custom_tool_and_the_answer_is_its_input(fake_llm):
    fake_llm.reply('<think>x</think>automation "Hi" {\n  when new_subscriber\n}')
    client = client_for(fake_llm, grammar="openai-tool")
    completion = client.complete(HELLO, task="automations", grammar=True)
    assert completion.text == 'automation "Hi" {\n  when new_subscriber\n}'
    assert completion.reasoning == "x"
    body = fake_llm.requests[0].body
    assert body["tools"] == [
        {
            "type": "custom",
            "custom": {
                "name": "automation",
                "description": "Writes one automation in the Huntaze automation language.",
                "format": {
                    "type": "grammar",
                    "grammar": {"syntax": "lark", "definition": grammar_export.lark()},
                },
            },
        }
    ]
    assert body["tool_choice"] == {"type": "custom", "custom": {"name": "automation"}}
    assert "temperature" not in body


@pytest.mark.parametrize("mode", ["none", "vllm", "llama.cpp", "openai-tool"])
def test_no_grammar_unless_the_call_asks(fake_llm, mode):
    fake_llm.reply("plain")
    client_for(fake_llm, grammar=mode).complete(HELLO, task="offers")
    assert set(fake_llm.requests[0].body) == {"model", "messages", "temperature"}


def test_grammar_none_is_plain_prompting(fake_llm):
    fake_llm.reply("plain")
    client_for(fake_llm).complete(HELLO, task="automations", grammar=True)
    assert set(fake_llm.requests[0].body) == {"model", "messages", "temperature"}


# -- JSON schema ------------------------------------------------------------------------


class Suggestion(BaseModel):
    item: str
    price: float = Field(gt=0)
    confidence: float = 0.5


class Suggestions(BaseModel):
    suggestions: list[Suggestion]
    note: str | None = None


def test_a_json_schema_is_asked_for_strictly(fake_llm):
    fake_llm.reply('{"suggestions": []}')
    schema = Suggestions.model_json_schema()
    client_for(fake_llm).complete(HELLO, task="offers", json_schema=schema)
    response_format = fake_llm.requests[0].body["response_format"]
    assert response_format == {
        "type": "json_schema",
        "json_schema": {"name": "Suggestions", "schema": strict_schema(schema), "strict": True},
    }
    strict = response_format["json_schema"]["schema"]
    assert strict["required"] == ["suggestions", "note"]
    assert strict["additionalProperties"] is False
    nested = strict["$defs"]["Suggestion"]
    assert (nested["required"], nested["additionalProperties"]) == (
        ["item", "price", "confidence"],
        False,
    )
    assert "default" not in json.dumps(strict)


def test_json_schema_can_be_turned_off_for_endpoints_without_it(fake_llm):
    fake_llm.reply("{}")
    client = client_for(fake_llm, json_schema=False)
    client.complete(HELLO, task="offers", json_schema=Suggestions.model_json_schema())
    assert "response_format" not in fake_llm.requests[0].body


# -- the documentation ------------------------------------------------------------------


def test_every_setting_is_documented_and_every_documented_variable_exists():
    text = (ROOT / "docs" / "ai.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(HUNTAZE_LLM_[A-Z_]+)`", text, re.M))
    assert documented == {f"HUNTAZE_LLM_{name.upper()}" for name in LLMSettings.model_fields}


def test_the_readmes_variables_exist_with_the_defaults_it_gives():
    """The README lists the main settings with their defaults; docs/ai.md lists them all."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `HUNTAZE_LLM_([A-Z_]+)` \| ([^|]+) \|", text, re.M)
    assert {"PROVIDER", "BASE_URL", "API_KEY", "MODEL_AUTOMATIONS", "MODEL_OFFERS"} <= {
        name for name, _ in rows
    }
    for name, default in rows:
        field = LLMSettings.model_fields[name.lower()]
        if field.default is None:
            continue  # documented by what happens without it ("none", the provider's URL)
        assert default.strip() == f"`{field.default}`", name


def configurations() -> list[str]:
    """The ```sh blocks of docs/ai.md's section "Configuring the model"."""
    text = (ROOT / "docs" / "ai.md").read_text(encoding="utf-8")
    section = text.split("\n## Configuring the model\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```sh\n(.*?)^```$", section, re.M | re.S)


@pytest.mark.parametrize("block", configurations())
def test_each_documented_configuration_reaches_its_endpoint(block, monkeypatch):
    """Every configuration in docs/ai.md is valid and sends its request where the docs
    say, with the key in the header they say."""
    env = dict(line.split("=", 1) for line in block.splitlines())
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = LLMSettings(_env_file=None)
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"choices": [{"message": {"content": "ok"}}]})

    with LLMClient(settings, transport=httpx.MockTransport(answer)) as client:
        client.complete(HELLO, task="automations")
    request = seen[0]
    base = env["HUNTAZE_LLM_BASE_URL"]
    model = env["HUNTAZE_LLM_MODEL_AUTOMATIONS"]
    expected = {
        "openai": f"{base}/chat/completions",
        "azure": f"{base}/chat/completions?api-version={settings.api_version}"
        if base.endswith("/models")
        else f"{base}/openai/deployments/{model}/chat/completions"
        f"?api-version={settings.api_version}",
    }[env["HUNTAZE_LLM_PROVIDER"]]
    assert str(request.url) == expected
    assert json.loads(request.content)["model"] == model
    if "HUNTAZE_LLM_API_KEY" in env:
        assert request.headers["api-key"] == env["HUNTAZE_LLM_API_KEY"]
