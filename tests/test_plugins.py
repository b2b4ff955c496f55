"""The built-in plugins, the plugin guide, and the third-party example plugin."""

from __future__ import annotations

import json
import re
import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from pydantic import ValidationError
from test_docs import Block, fenced_blocks

import dsl
from dsl.catalog import Catalog
from dsl.policy import Policy, check_policy
from engine.catalogue import ACTIONS, TRIGGERS, action_spec, load_catalogue
from engine.plugin_api import ActionContext, FanFields, Money, Services

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "plugins.md"
WEBHOOK_README = ROOT / "examples" / "huntaze-webhook" / "README.md"


def builtin_names(group: str) -> list[str]:
    return sorted(ep.name for ep in distribution("huntaze").entry_points if ep.group == group)


# --- In-memory services: the protocols of engine.plugin_api, as the engine will provide ---


class MemoryOutbox:
    def __init__(self) -> None:
        self.messages: dict[str, dict] = {}  # by idempotency key

    def send(self, *, creator_id: str, fan_id: str, text: str, idempotency_key: str) -> str:
        message = {
            "id": f"msg-{len(self.messages) + 1}",
            "creator_id": creator_id,
            "fan_id": fan_id,
            "text": text,
        }
        return self.messages.setdefault(idempotency_key, message)["id"]


class MemoryFans:
    def __init__(self) -> None:
        self.tags: defaultdict[tuple[str, str], set[str]] = defaultdict(set)

    def add_tag(self, creator_id: str, fan_id: str, tag: str) -> bool:
        tags = self.tags[creator_id, fan_id]
        added = tag not in tags
        tags.add(tag)
        return added

    def remove_tag(self, creator_id: str, fan_id: str, tag: str) -> bool:
        tags = self.tags[creator_id, fan_id]
        removed = tag in tags
        tags.discard(tag)
        return removed


class PathTemplates:
    """Replaces ``{{ a.b }}`` with the value at that path: enough for these tests."""

    def render(self, template: str, data: Mapping) -> str:
        def value(m: re.Match) -> str:
            found = data
            for part in m.group(1).split("."):
                found = found[part] if isinstance(found, Mapping) else getattr(found, part)
            return str(found)

        return re.sub(r"\{\{\s*([\w.]+)\s*\}\}", value, template)


FAN = FanFields(
    name="Ada",
    username="ada",
    total_spent=Money(Decimal("120.50")),
    tags=["vip"],
    country="GB",
    subscribed_at=datetime(2025, 1, 2, tzinfo=UTC),
    message_count=3,
)


def make_context(services: Services, key: str = "exec-1:step-1", **data) -> ActionContext:
    trigger_data = {"fan": FAN, **data}
    return ActionContext(
        creator_id="creator-1",
        fan_id="fan-7",
        fan=dict(FAN),
        trigger="purchase_completed",
        trigger_data=trigger_data,
        idempotency_key=key,
        services=services,
        now=datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
    )


@pytest.fixture
def services() -> Services:
    return Services(outbox=MemoryOutbox(), fans=MemoryFans(), templates=PathTemplates())


def run(name: str, ctx: ActionContext, **arguments):
    action = load_catalogue().actions[name]
    return action.run(ctx, action.Config(**arguments))


# --- Built-in actions ------------------------------------------------------------------


def test_send_message_renders_and_queues_once_per_idempotency_key(services):
    ctx = make_context(services, event={"amount": Money(Decimal("9.99")), "item": "bundle"})
    text = "Thanks {{ fan.name }} for {{ event.item }} ({{ event.amount }})!"

    first = run("send_message", ctx, text=text)
    again = run("send_message", ctx, text=text)  # a retried step: same key

    assert first.ok and first.output == {
        "message_id": "msg-1",
        "text": "Thanks Ada for bundle ($9.99)!",
    }
    assert again.output["message_id"] == "msg-1"
    assert services.outbox.messages == {
        "exec-1:step-1": {
            "id": "msg-1",
            "creator_id": "creator-1",
            "fan_id": "fan-7",
            "text": "Thanks Ada for bundle ($9.99)!",
        }
    }


def test_send_message_renders_through_the_checkers_sandbox(services):
    """dsl.templates satisfies the TemplateRenderer protocol: the engine can pass it."""
    from dsl import templates

    sandboxed = Services(services.outbox, services.fans, templates=templates)
    ctx = make_context(sandboxed, event={"amount": Money(Decimal("9.99")), "item": "bundle"})
    result = run("send_message", ctx, text="Hi {{ fan.name | upper }}, {{ event.amount }}")
    assert result.output["text"] == "Hi ADA, $9.99"


def test_add_and_remove_tag_change_the_fans_tags(services):
    ctx = make_context(services)
    assert run("add_tag", ctx, tag="welcomed").output == {"changed": True}
    assert run("add_tag", ctx, tag="welcomed").detail == "already tagged 'welcomed'"
    assert services.fans.tags["creator-1", "fan-7"] == {"welcomed"}

    assert run("remove_tag", ctx, tag="welcomed").output == {"changed": True}
    assert run("remove_tag", ctx, tag="welcomed").detail == "was not tagged 'welcomed'"
    assert services.fans.tags["creator-1", "fan-7"] == set()


@pytest.mark.parametrize(
    ("name", "arguments", "field"),
    [
        ("send_message", {"text": ""}, "text"),
        ("send_message", {}, "text"),
        ("send_message", {"text": "hi", "to": "fan"}, "to"),
        ("add_tag", {"tag": " vip"}, "tag"),
        ("add_tag", {"tag": "x" * 65}, "tag"),
        ("remove_tag", {"tag": ""}, "tag"),
    ],
)
def test_builtin_action_arguments_are_validated(name, arguments, field):
    config = load_catalogue().catalog.actions[name].config_model
    with pytest.raises(ValidationError) as caught:
        config(**arguments)
    assert [e["loc"] for e in caught.value.errors()] == [(field,)]


# --- Built-in triggers -------------------------------------------------------------------

FAN_JSON = {
    "name": "Ada",
    "username": "ada",
    "total_spent": 120.5,
    "tags": ["vip"],
    "subscribed_at": "2025-01-02T00:00:00Z",
}


@pytest.mark.parametrize(
    ("trigger", "event"),
    [
        ("new_subscriber", None),
        ("message_received", {"text": "hi!"}),
        ("purchase_completed", {"amount": "9.99", "item": "bundle"}),
        ("subscription_expiring", {"days_left": 3, "renewal_price": 15}),
    ],
)
def test_trigger_contexts_validate_json_events(trigger, event):
    context_model = load_catalogue().triggers[trigger].Context
    data = {"fan": FAN_JSON} | ({"event": event} if event else {})
    context = context_model.model_validate(data)
    assert context.fan.total_spent == Money(Decimal("120.5"))
    assert context.fan.country is None and context.fan.message_count == 0


@pytest.mark.parametrize("amount", ["lots", "NaN", float("inf"), True, None])
def test_money_in_events_must_be_an_amount(amount):
    context_model = load_catalogue().triggers["purchase_completed"].Context
    with pytest.raises(ValidationError):
        context_model.model_validate({"fan": FAN_JSON, "event": {"amount": amount, "item": "x"}})


@pytest.mark.parametrize(
    ("days_before", "days_left", "runs"),
    [(None, 3, True), (3, 3, True), (3, 2, False), (1, 1, True), (0, 1, False)],
)
def test_subscription_expiring_matches_its_days_before(days_before, days_left, runs):
    trigger = load_catalogue().triggers["subscription_expiring"]
    config = trigger.Config(days_before=days_before)
    event = {"days_left": days_left, "renewal_price": 15}
    context = trigger.Context.model_validate({"fan": FAN_JSON, "event": event})
    assert trigger.matches(config, context) is runs
    assert trigger.matches(None, context) is True


def test_triggers_without_arguments_match_every_event():
    loaded = load_catalogue()
    context = loaded.triggers["new_subscriber"].Context.model_validate({"fan": FAN_JSON})
    assert loaded.triggers["new_subscriber"].matches(None, context) is True


# --- The guide --------------------------------------------------------------------------


def guide_sections() -> dict[str, str]:
    """The guide's text under each ``### `name` `` heading, by name."""
    parts = re.split(r"^### `([a-z_0-9]+)`.*$", GUIDE.read_text(encoding="utf-8"), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize("name", builtin_names(TRIGGERS))
def test_every_builtin_trigger_is_documented_with_its_fields(name):
    section = guide_sections()[name]
    spec = load_catalogue().catalog.triggers[name]
    for field in spec.fields:
        if not field.startswith("fan."):  # fan.* are in the guide's shared table
            assert f"`{field}`" in section, f"{name}: {field} is not documented"
    for argument in spec.config_model.model_fields if spec.config_model else ():
        assert f"`{argument}`" in section, f"{name}: {argument} is not documented"


@pytest.mark.parametrize("name", [*builtin_names(ACTIONS), "post_webhook"])
def test_every_action_is_documented_with_its_arguments(name):
    section = guide_sections()[name]
    for argument in load_catalogue().catalog.actions[name].config_model.model_fields:
        assert f"| `{argument}` |" in section, f"{name}: {argument} is not documented"


def test_the_guides_shared_fan_table_lists_every_fan_field():
    guide = GUIDE.read_text(encoding="utf-8")
    fan_fields = list(load_catalogue().catalog.triggers["new_subscriber"].fields)
    assert fan_fields and all(f"| `{field}` |" in guide for field in fan_fields)


def hz_blocks(path: Path) -> list[str]:
    return re.findall(r"^```hz\n(.*?)^```$", path.read_text(encoding="utf-8"), re.M | re.S)


POLICY_SECTION = "## Messages and discounts: what the policy checks"
# The example actions that section defines, by the names it registers them under.
POLICY_EXAMPLES = {"send_sms": "SendSms", "store_coupon": "StoreCoupon"}


def policy_section_blocks() -> list[Block]:
    text = GUIDE.read_text(encoding="utf-8")
    start = text.index(POLICY_SECTION + "\n")
    end = text.index("\n## ", start + 1)
    first, last = text.count("\n", 0, start) + 1, text.count("\n", 0, end) + 1
    return [b for b in fenced_blocks(GUIDE) if first <= b.line < last]


def guide_catalog() -> Catalog:
    """The installed plugins and the guide's example actions, loaded as the catalogue
    loads any plugin (their declarations are validated the same way)."""
    namespace: dict = {"__name__": "plugins_md_example"}
    [code] = [b.body for b in policy_section_blocks() if b.info == "python"]
    # dont_inherit: the guide's code as written, without this module's __future__ import.
    exec(compile(code, f"{GUIDE}:{POLICY_SECTION}", "exec", dont_inherit=True), namespace)
    installed = load_catalogue().catalog
    examples = {name: action_spec(name, namespace[cls])[1] for name, cls in POLICY_EXAMPLES.items()}
    return Catalog(triggers=installed.triggers, actions={**installed.actions, **examples})


@pytest.mark.parametrize("path", [GUIDE, WEBHOOK_README], ids=lambda p: p.name)
def test_rules_in_the_guide_and_readme_pass_the_checker(path):
    from dsl.checker import check

    blocks = hz_blocks(path)
    assert blocks
    catalog = guide_catalog() if path == GUIDE else load_catalogue().catalog
    for block in blocks:
        assert check(dsl.parse(block), catalog) == []


def test_the_guides_policy_example_declares_roles_and_is_refused_as_shown():
    """The section's ```json block is the policy, its ```hz block the rule, and its
    ```text block exactly what saving the rule reports: the example actions' roles,
    declared as the section says, are what the policy checks."""
    catalog = guide_catalog()
    assert catalog.actions["send_sms"].sends_message is True
    assert catalog.actions["store_coupon"].policy_arguments == {
        "discount": "off",
        "validity": "expires_in",
    }
    blocks = {b.info: b.body for b in policy_section_blocks() if b.info != "python"}
    policy = Policy.model_validate_json(blocks["json"])
    diagnostics = check_policy(dsl.parse(blocks["hz"]), policy, catalog)
    assert dsl.render_all(diagnostics, blocks["hz"], "example.hz") + "\n" == blocks["text"]
    # The same rule, without the roles, would have escaped the policy but for send_message.
    bare = {**catalog.actions}
    for name in POLICY_EXAMPLES:
        bare[name] = replace(bare[name], sends_message=False, policy_arguments={})
    unseen = check_policy(dsl.parse(blocks["hz"]), policy, replace(catalog, actions=bare))
    assert unseen == []


def test_the_guides_message_example_writes_through_the_outbox(services):
    namespace: dict = {"__name__": "plugins_md_example"}
    [code] = [b.body for b in policy_section_blocks() if b.info == "python"]
    exec(compile(code, "plugins.md", "exec", dont_inherit=True), namespace)
    action = namespace["SendSms"]()
    result = action.run(make_context(services), action.Config(text="Hi {{ fan.name }}"))
    assert result.ok and services.outbox.messages["exec-1:step-1"]["text"] == "Hi Ada"


# --- The guide's PostWebhook, as written --------------------------------------------------


def guide_post_webhook() -> type:
    """The guide's "Declaring an action" block with its `run` from "Running: the context
    and the services", executed as one module."""
    blocks = fenced_blocks(GUIDE)
    python = [b.body for b in blocks if b.info == "python"]
    declared = next(body for body in python if "class PostWebhook(" in body)
    [run_method] = [body for body in python if body.startswith("    def run(")]
    [stub] = [line for line in declared.splitlines(keepends=True) if line.endswith("# below\n")]
    namespace: dict = {"__name__": "plugins_md_webhook"}
    code = declared.replace(stub, run_method)
    exec(compile(code, f"{GUIDE}:PostWebhook", "exec", dont_inherit=True), namespace)
    return namespace["PostWebhook"]


def test_the_guides_post_webhook_posts_as_the_plugin_does(receiver, services):
    action = guide_post_webhook()()
    port = receiver.server_address[1]
    ctx = make_context(services, key="exec-4:step-2", event={"amount": Money(Decimal("59"))})
    config = action.Config(url=f"http://127.0.0.1:{port}/in", label="{{ fan.name }}")
    result = action.run(ctx, config)
    assert result.ok and result.output == {"status_code": 204}
    [(path, headers, body)] = receiver.requests
    assert path == "/in" and headers["Idempotency-Key"] == "exec-4:step-2"
    assert json.loads(body)["label"] == "Ada"


def test_the_guides_timeout_error_is_what_the_checker_reports():
    """The guide's first rule with a timeout over 30 s, checked against its action."""
    guide = GUIDE.read_text(encoding="utf-8")
    [shown] = re.findall(r"^ *```text\n *(rules\.hz:.*)\n *```", guide, re.M)
    rule = next(b.body for b in fenced_blocks(GUIDE) if b.info == "hz").replace(
        "timeout: 5s", "timeout: 45s"
    )
    installed = load_catalogue().catalog
    spec = action_spec("post_webhook", guide_post_webhook())[1]
    catalog = Catalog(
        triggers=installed.triggers, actions={**installed.actions, "post_webhook": spec}
    )
    diagnostics = dsl.check(dsl.parse(rule), catalog)
    assert dsl.render_all(diagnostics, rule, "rules.hz").splitlines()[0] == shown


# --- The third-party example plugin ----------------------------------------------------------


def test_the_webhook_plugin_is_installed_and_in_the_catalogue():
    try:
        dist = distribution("huntaze-webhook")
    except PackageNotFoundError:
        pytest.fail("install it: .venv/bin/pip install -e examples/huntaze-webhook")
    assert [(ep.group, ep.name) for ep in dist.entry_points] == [(ACTIONS, "post_webhook")]
    loaded = load_catalogue(refresh=True)
    spec = loaded.catalog.actions["post_webhook"]
    assert set(spec.config_model.model_fields) == {"url", "label", "timeout"}
    assert spec.side_effects is True
    assert not [p for p in loaded.problems if p.name == "post_webhook"]


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, Mapping, bytes]] = []


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((self.path, self.headers, body))
        self.send_response(204)
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


def test_post_webhook_reaches_a_local_http_server(receiver, services):
    port = receiver.server_address[1]
    ctx = make_context(services, key="exec-4:step-2", event={"amount": Money(Decimal("59"))})

    result = run("post_webhook", ctx, url=f"http://127.0.0.1:{port}/in", label="{{ fan.name }}")

    assert result.ok and result.output == {"status_code": 204}
    [(path, headers, body)] = receiver.requests
    assert path == "/in" and headers["Idempotency-Key"] == "exec-4:step-2"
    payload = json.loads(body)
    assert payload["label"] == "Ada" and payload["fan"]["id"] == "fan-7"
    assert payload["data"]["event"]["amount"] == {"amount": "59", "currency": "USD"}
