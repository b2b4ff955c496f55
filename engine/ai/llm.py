"""The LLM client: one chat-completions call over any OpenAI-compatible endpoint.

Providers:

- ``openai``: ``POST {base_url}/chat/completions`` with ``Authorization: Bearer`` (OpenAI,
  DeepSeek, Ollama, vLLM, the llama.cpp server, LM Studio; ``base_url`` ends in ``/v1``).
- ``azure``: Azure OpenAI and Azure AI Foundry, ``api-key`` header and ``api-version``.
  A ``base_url`` ending in ``/models`` is the Foundry models endpoint
  (``{base_url}/chat/completions``, the model named in the body); any other is a resource
  endpoint addressed by deployment (``{base_url}/openai/deployments/{model}/chat/completions``).
- ``offline``: no model at all; callers check ``client.offline`` and take their
  deterministic path.

Transient failures (429, 5xx, connection errors, timeouts) are retried with exponential
backoff, honouring ``Retry-After``, at most ``max_retries`` times; then ``LLMError`` says
what failed and after how many attempts. Reasoning is stripped from the answer before
anything parses it. See docs/ai.md, "Configuring the model".
"""

from __future__ import annotations

import email.utils
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.exceptions import HuntazeError

Task = Literal["automations", "offers"]
GrammarMode = Literal["none", "vllm", "llama.cpp", "openai-tool"]

# The custom tool the model is made to call in ``openai-tool`` grammar mode.
TOOL_NAME = "automation"
_RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))


class LLMSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUNTAZE_LLM_", env_file=".env", extra="ignore")

    provider: Literal["openai", "azure", "offline"] = "offline"
    base_url: str | None = None
    api_key: SecretStr | None = None
    model_automations: str = "deepseek-r1"
    model_offers: str = "llama-3.3-70b"
    api_version: str = "2024-10-21"
    timeout: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    grammar: GrammarMode = "none"
    # response_format with a JSON schema; off for endpoints that reject it.
    json_schema: bool = True
    # Backoff before retry n is backoff_base * 2**(n-1) seconds; no wait, Retry-After
    # included, is longer than backoff_max.
    backoff_base: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=20.0, ge=0)

    def model_for(self, task: Task) -> str:
        return self.model_automations if task == "automations" else self.model_offers


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


@dataclass(frozen=True)
class Completion:
    text: str  # the answer, reasoning stripped
    reasoning: str | None  # what was stripped, if anything
    model: str
    provider: str
    usage: Usage
    attempts: int


class LLMError(HuntazeError):
    """A call that produced no answer; the message says what failed and how often."""

    status_code = 502  # the model behind us failed, not the request

    def __init__(
        self, message: str, *, provider: str, attempts: int = 0, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.attempts = attempts
        self.status = status


_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"


def strip_reasoning(text: str) -> tuple[str, str | None]:
    """Split a model's content into (answer, reasoning).

    ``<think>...</think>`` blocks are reasoning; so is everything after a ``<think>`` left
    unclosed (an answer cut short), and everything before a ``</think>`` whose opening tag
    the endpoint dropped (DeepSeek-R1 as some servers send it).
    """
    thoughts: list[str] = []
    if _THINK_CLOSE in text and _THINK_OPEN not in text.split(_THINK_CLOSE, 1)[0]:
        before, text = text.split(_THINK_CLOSE, 1)
        thoughts.append(before)
    answer: list[str] = []
    while _THINK_OPEN in text:
        before, rest = text.split(_THINK_OPEN, 1)
        answer.append(before)
        thought, closed, text = rest.partition(_THINK_CLOSE)
        thoughts.append(thought)
        if not closed:
            text = ""
    answer.append(text)
    reasoning = "\n".join(t.strip() for t in thoughts if t.strip())
    return "".join(answer).strip(), reasoning or None


class LLMClient:
    """Chat completions against the configured provider. Thread-safe."""

    def __init__(self, settings: LLMSettings, *, transport: httpx.BaseTransport | None = None):
        self.settings = settings
        self.provider: str = settings.provider
        self.offline: bool = settings.provider == "offline"
        self.usage_total = Usage()
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None
        if self.offline:
            return
        if settings.provider == "azure" and not settings.base_url:
            raise LLMError(
                "HUNTAZE_LLM_BASE_URL is required for the azure provider "
                "(https://<resource>.openai.azure.com or "
                "https://<resource>.services.ai.azure.com/models)",
                provider=self.provider,
            )
        self._http = httpx.Client(
            timeout=httpx.Timeout(settings.timeout), headers=self._headers(), transport=transport
        )

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        task: Task,
        grammar: bool = False,
        json_schema: dict[str, Any] | None = None,
        temperature: float = 0.2,
    ) -> Completion:
        """One chat completion. ``grammar=True`` constrains the answer to the automation
        language where ``settings.grammar`` names how the endpoint does it; ``json_schema``
        asks for JSON of that shape where ``settings.json_schema`` allows it."""
        if self._http is None:
            raise LLMError("offline provider has no model", provider=self.provider)
        model = self.settings.model_for(task)
        body: dict[str, Any] = {"model": model, "messages": messages}
        if grammar and self.settings.grammar == "openai-tool":
            # OpenAI's models with grammar tools (GPT-5) take only their default temperature.
            body.update(grammar_fields("openai-tool"))
        else:
            body["temperature"] = temperature
            if grammar:
                body.update(grammar_fields(self.settings.grammar))
        if json_schema is not None and self.settings.json_schema:
            body["response_format"] = response_format(json_schema)
        data, attempts = self._post(self._url(model), body, model)
        completion = self._completion(data, model, attempts)
        with self._lock:
            self.usage_total += completion.usage
        return completion

    # -- the request ------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else ""
        if self.provider == "azure":
            return {"api-key": key}
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _url(self, model: str) -> str:
        base = (self.settings.base_url or "https://api.openai.com/v1").rstrip("/")
        if self.provider != "azure":
            return f"{base}/chat/completions"
        query = f"api-version={self.settings.api_version}"
        if base.endswith("/models"):
            return f"{base}/chat/completions?{query}"
        return f"{base}/openai/deployments/{model}/chat/completions?{query}"

    def _post(self, url: str, body: dict[str, Any], model: str) -> tuple[Any, int]:
        assert self._http is not None
        tries = self.settings.max_retries + 1
        for attempt in range(1, tries + 1):
            retry_after: float | None = None
            try:
                response = self._http.post(url, json=body)
            except httpx.TimeoutException:
                problem = f"no answer within {self.settings.timeout:g} s"
                status = None
            except httpx.TransportError as exc:
                problem = f"could not connect ({type(exc).__name__}: {exc})"
                status = None
            else:
                if response.status_code == 200:
                    return self._json(response, model, attempt), attempt
                status = response.status_code
                problem = f"answered {status} ({_error_text(response)})"
                if status not in _RETRY_STATUSES:
                    raise self._error(problem, model, attempt, status)
                retry_after = _retry_after(response.headers.get("Retry-After"))
            if attempt == tries:
                raise self._error(problem, model, attempt, status)
            time.sleep(self._backoff(attempt, retry_after))
        raise AssertionError("unreachable: the loop returns or raises")

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        wait = self.settings.backoff_base * 2 ** (attempt - 1)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.settings.backoff_max)

    def _error(self, problem: str, model: str, attempts: int, status: int | None) -> LLMError:
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        return LLMError(
            f"the {self.provider} model {model!r} failed: {problem}, after {tries}",
            provider=self.provider,
            attempts=attempts,
            status=status,
        )

    def _json(self, response: httpx.Response, model: str, attempts: int) -> Any:
        try:
            return response.json()
        except ValueError:
            snippet = response.text[:80]
            raise self._error(
                f"the answer is not JSON ({snippet!r})", model, attempts, response.status_code
            ) from None

    # -- the answer -------------------------------------------------------------------

    def _completion(self, data: Any, model: str, attempts: int) -> Completion:
        try:
            message = data["choices"][0]["message"]
            if not isinstance(message, dict):
                raise TypeError
        except (KeyError, IndexError, TypeError):
            raise self._error(
                "the answer has no choices[0].message", model, attempts, 200
            ) from None
        content = _tool_input(message) if self.settings.grammar == "openai-tool" else None
        if content is None:
            content = message.get("content") or ""
        if not isinstance(content, str):
            raise self._error("the answer's content is not text", model, attempts, 200)
        text, thought = strip_reasoning(content)
        separate = message.get("reasoning_content") or message.get("reasoning")
        parts = [p for p in (separate, thought) if isinstance(p, str) and p.strip()]
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return Completion(
            text=text,
            reasoning="\n".join(p.strip() for p in parts) or None,
            model=data.get("model") if isinstance(data.get("model"), str) else model,
            provider=self.provider,
            usage=Usage(
                int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            ),
            attempts=attempts,
        )


def grammar_fields(mode: GrammarMode) -> dict[str, Any]:
    """The request fields that constrain the answer to one automation, per ``mode``."""
    if mode == "none":
        return {}
    from dsl import grammar_export

    if mode == "vllm":
        gbnf = grammar_export.gbnf()
        # vLLM >= 0.12 reads structured_outputs; older versions read guided_grammar. Each
        # ignores the other's field, so sending both serves either.
        return {"structured_outputs": {"grammar": gbnf}, "guided_grammar": gbnf}
    if mode == "llama.cpp":
        return {"grammar": grammar_export.gbnf()}
    return {
        "tools": [
            {
                "type": "custom",
                "custom": {
                    "name": TOOL_NAME,
                    "description": "Writes one automation in the Huntaze automation language.",
                    "format": {
                        "type": "grammar",
                        "grammar": {"syntax": "lark", "definition": grammar_export.lark()},
                    },
                },
            }
        ],
        "tool_choice": {"type": "custom", "custom": {"name": TOOL_NAME}},
    }


def response_format(schema: dict[str, Any]) -> dict[str, Any]:
    """``response_format`` asking for JSON that follows ``schema`` (strict)."""
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", str(schema.get("title") or "response"))[:64]
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": strict_schema(schema), "strict": True},
    }


def strict_schema(schema: Any) -> Any:
    """``schema`` as strict structured outputs take it: every object closed
    (``additionalProperties: false``) with all its properties required, no defaults.

    Pydantic's schemas leave fields with defaults optional; the answer is validated with
    the same pydantic model afterwards, so requiring them changes nothing there."""
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_schema(v) for k, v in schema.items() if k != "default"}
    if out.get("type") == "object" and "properties" in schema:
        out["properties"] = {k: strict_schema(v) for k, v in schema["properties"].items()}
        out["required"] = list(schema["properties"])
        out["additionalProperties"] = False
    return out


def _tool_input(message: dict[str, Any]) -> str | None:
    for call in message.get("tool_calls") or []:
        custom = call.get("custom") if isinstance(call, dict) else None
        if isinstance(custom, dict) and isinstance(custom.get("input"), str):
            return custom["input"]
    return None


def _error_text(response: httpx.Response) -> str:
    """The server's own error message, short."""
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = response.text
    return (str(message or response.reason_phrase).strip() or "no message")[:200]


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def client_from_settings(settings: LLMSettings | None = None) -> LLMClient:
    """A client for ``settings``, by default those of the environment. The caller closes
    it, or uses it as a context manager."""
    return LLMClient(settings if settings is not None else LLMSettings())
