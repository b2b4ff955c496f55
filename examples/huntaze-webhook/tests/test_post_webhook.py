"""post_webhook against a real HTTP server on 127.0.0.1, and its entry point."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import distribution

import pytest
from huntaze_webhook import PostWebhook, PostWebhookConfig
from pydantic import ValidationError

from engine.catalogue import load_catalogue
from engine.plugin_api import ActionContext, ActionError, FanFields, Money, Services


class Receiver(ThreadingHTTPServer):
    """Records every request; answers with ``status`` after ``delay`` seconds."""

    status = 200
    delay = 0.0

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append({"path": self.path, "headers": self.headers, "body": body})
        time.sleep(self.server.delay)
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


class Templates:
    """Fills ``{{ fan.name }}`` only: enough to see that the label is rendered."""

    def render(self, template: str, data: Mapping) -> str:
        return template.replace("{{ fan.name }}", data["fan"].name)


def context(key: str = "exec-1:step-3") -> ActionContext:
    fan = FanFields(
        name="Ada",
        username="ada",
        total_spent=Money(Decimal("120.50")),
        tags=["vip"],
        subscribed_at=datetime(2025, 1, 2, tzinfo=UTC),
    )
    event = {"amount": Money(Decimal("9.99")), "item": "bundle"}
    return ActionContext(
        creator_id="creator-1",
        fan_id="fan-7",
        fan=dict(fan),
        trigger="purchase_completed",
        trigger_data={"fan": fan, "event": event},
        idempotency_key=key,
        services=Services(outbox=None, fans=None, templates=Templates()),  # type: ignore[arg-type]
        now=datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
    )


def test_the_plugin_is_installed_and_in_the_catalogue():
    [ep] = [ep for ep in distribution("huntaze-webhook").entry_points if ep.name == "post_webhook"]
    assert ep.group == "huntaze.actions"
    loaded = load_catalogue(refresh=True)
    assert isinstance(loaded.actions["post_webhook"], PostWebhook)
    assert loaded.catalog.actions["post_webhook"].config_model is PostWebhookConfig
    assert not [p for p in loaded.problems if p.name == "post_webhook"]


def test_it_posts_the_payload_with_the_idempotency_key(receiver):
    config = PostWebhookConfig(url=receiver.url, label="big spender {{ fan.name }}")
    result = PostWebhook().run(context("exec-1:step-3"), config)

    assert result.ok and result.output == {"status_code": 200}
    [request] = receiver.requests
    assert request["path"] == "/hook"
    assert request["headers"]["Idempotency-Key"] == "exec-1:step-3"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["User-Agent"].startswith("huntaze-webhook/")
    body = json.loads(request["body"])
    assert body["label"] == "big spender Ada"
    assert body["creator_id"] == "creator-1"
    assert body["trigger"] == "purchase_completed"
    assert body["fan"]["id"] == "fan-7" and body["fan"]["tags"] == ["vip"]
    assert body["fan"]["total_spent"] == {"amount": "120.50", "currency": "USD"}
    assert body["data"]["event"] == {"amount": {"amount": "9.99", "currency": "USD"},
                                     "item": "bundle"}  # fmt: skip
    assert body["sent_at"] == "2025-03-01T12:00:00Z"


def test_a_retried_step_sends_the_same_key(receiver):
    config = PostWebhookConfig(url=receiver.url)
    for _ in range(2):
        PostWebhook().run(context("exec-9:step-1"), config)
    keys = [r["headers"]["Idempotency-Key"] for r in receiver.requests]
    assert keys == ["exec-9:step-1", "exec-9:step-1"]


def test_an_error_status_fails_the_step(receiver):
    receiver.status = 503
    result = PostWebhook().run(context(), PostWebhookConfig(url=receiver.url))
    assert not result.ok
    assert result.detail == "127.0.0.1 refused the webhook: HTTP 503"


def test_an_unreachable_url_fails_the_step_with_a_message():
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = PostWebhookConfig(url=f"http://127.0.0.1:{port}/")
    with pytest.raises(ActionError, match=r"cannot reach 127\.0\.0\.1"):
        PostWebhook().run(context(), config)


def test_a_slow_receiver_times_out(receiver):
    receiver.delay = 0.5
    config = PostWebhookConfig(url=receiver.url, timeout=timedelta(milliseconds=100))
    with pytest.raises(ActionError, match="cannot reach"):
        PostWebhook().run(context(), config)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"url": "ftp://example.com/"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://example.com/", "timeout": timedelta(minutes=5)}, "timeout"),
        ({"url": "https://example.com/", "timeout": timedelta(0)}, "timeout"),
        ({"url": "https://example.com/", "method": "GET"}, "method"),
        ({}, "url"),
    ],
)
def test_invalid_arguments_are_refused(arguments, field):
    with pytest.raises(ValidationError) as caught:
        PostWebhookConfig(**arguments)
    assert [e["loc"] for e in caught.value.errors()] == [(field,)]
