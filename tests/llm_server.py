"""An OpenAI-compatible chat-completions server for tests: real HTTP, scripted answers.

``FakeLLM`` listens on 127.0.0.1 (a free port) in a thread and answers
``POST /v1/chat/completions`` (OpenAI, vLLM, llama.cpp, Ollama ...) and the two Azure
forms, ``/openai/deployments/{model}/chat/completions?api-version=...`` and the AI
Foundry models endpoint ``/models/chat/completions?api-version=...``, with the answers
queued by ``reply`` in order. With the queue empty it answers 500, so a test that
expects fewer calls than the code makes fails loudly.

When the request forces an OpenAI custom tool (``tool_choice: {"type": "custom", ...}``)
the scripted content comes back as that tool call's ``input``, as OpenAI answers it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from engine.ai.llm import LLMClient, LLMSettings


@dataclass(frozen=True)
class Answer:
    content: str
    reasoning_content: str | None = None
    status: int = 200
    delay: float = 0.0
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """One request the server received: its path, query, headers (lower-case) and body."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body["messages"]


_NOT_FOUND = object()


class FakeLLM:
    """Context manager; ``url`` is ``http://127.0.0.1:PORT/v1``, ``root`` without ``/v1``."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.clients: list[LLMClient] = []  # made by client_for, closed on exit
        self._answers: deque[Answer] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A short poll interval: stopping the server waits for the next poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        host, port = self._server.server_address[:2]
        self.root = f"http://{host}:{port}"
        self.url = f"{self.root}/v1"

    def __enter__(self) -> FakeLLM:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for client in self.clients:
            client.close()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def reply(
        self,
        content: str,
        *,
        reasoning_content: str | None = None,
        status: int = 200,
        delay: float = 0,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Queue one answer. ``raw`` is sent as the body verbatim (malformed JSON, say);
        ``headers`` are added to the response (``Retry-After``); ``delay`` is waited
        before answering (longer than the client's timeout makes it time out)."""
        self._answers.append(
            Answer(content, reasoning_content, status, delay, raw, dict(headers or {}))
        )

    @property
    def pending(self) -> int:
        """Answers queued and not yet served."""
        return len(self._answers)

    def _next(self, request: Request) -> Answer:
        with self._lock:
            self.requests.append(request)
            if self._answers:
                return self._answers.popleft()
        return Answer("no answer scripted", status=500)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle's algorithm the second
            # waits for the client's delayed ACK (40 ms a request).
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                fake._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the tests' output is theirs."""

        return Handler

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        data = handler.rfile.read(length)
        try:
            body = json.loads(data)
        except ValueError:
            body = data.decode("utf-8", "replace")
        request = Request(
            method=handler.command,
            path=parts.path,
            query={k: v[-1] for k, v in parse_qs(parts.query).items()},
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
        )
        model = _model_for(parts.path, body)
        if model is _NOT_FOUND:
            _send(handler, 404, _error_body("no such route: " + parts.path))
            return
        answer = self._next(request)
        if answer.delay:
            time.sleep(answer.delay)
        if answer.raw is not None:
            payload = answer.raw
        elif answer.status != 200:
            payload = _error_body(answer.content)
        else:
            payload = json.dumps(_completion(answer, body, str(model))).encode()
        _send(handler, answer.status, payload, answer.headers)


def _model_for(path: str, body: Any) -> object:
    """The model a route addresses (the deployment name for Azure), or _NOT_FOUND."""
    model = body.get("model", "") if isinstance(body, dict) else ""
    if path in ("/v1/chat/completions", "/models/chat/completions"):
        return model
    segments = path.strip("/").split("/")
    if (
        len(segments) == 5
        and segments[:2] == ["openai", "deployments"]
        and segments[3:] == ["chat", "completions"]
    ):
        return segments[2]
    return _NOT_FOUND


def _completion(answer: Answer, body: Any, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.content}
    if answer.reasoning_content is not None:
        message["reasoning_content"] = answer.reasoning_content
    tool = _forced_custom_tool(body)
    if tool is not None:
        message["content"] = None
        message["tool_calls"] = [
            {
                "id": "call_fake_1",
                "type": "custom",
                "custom": {"name": tool, "input": answer.content},
            }
        ]
    messages = body.get("messages", []) if isinstance(body, dict) else []
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
    completion_tokens = len(answer.content.split()) + len((answer.reasoning_content or "").split())
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if tool else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _forced_custom_tool(body: Any) -> str | None:
    """The custom tool's name when ``tool_choice`` forces one, else None."""
    choice = body.get("tool_choice") if isinstance(body, dict) else None
    if isinstance(choice, dict) and choice.get("type") == "custom":
        return choice["custom"]["name"]
    return None


def _error_body(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "fake_error"}}).encode()


def _send(
    handler: BaseHTTPRequestHandler,
    status: int,
    payload: bytes,
    headers: dict[str, str] | None = None,
) -> None:
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)
    except (BrokenPipeError, ConnectionResetError):
        # The client gave up waiting (a timeout test); nobody is left to answer.
        pass


def client_for(fake: FakeLLM, **overrides: Any) -> LLMClient:
    """An LLMClient talking to ``fake``: provider ``openai`` at ``fake.url`` (``azure`` at
    ``fake.root``), short timeouts and tiny backoff unless overridden; closed when
    ``fake`` stops. A ``.env`` file is not read, so that a developer's own model
    settings stay out of the tests."""
    provider = overrides.get("provider", "openai")
    settings: dict[str, Any] = {
        "provider": provider,
        "base_url": fake.root if provider == "azure" else fake.url,
        "api_key": "test-key",
        "timeout": 2.0,
        "backoff_base": 0.001,
        "backoff_max": 0.05,
    }
    settings.update(overrides)
    client = LLMClient(LLMSettings(_env_file=None, **settings))
    fake.clients.append(client)
    return client
