"""The EventSystem: emit, subscribe, unsubscribe (design property 3), and the dispatcher
as one of its handlers, feeding real executions."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from itest_support import context, execution, fan
from sqlalchemy import select

from engine.dispatch import Dispatched
from engine.events import EventSystem, TriggerContext
from engine.models import Fan

TRIGGERS = ["new_subscriber", "message_received", "purchase_completed", "subscription_expiring"]

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
contexts = st.builds(
    TriggerContext,
    type=st.sampled_from(TRIGGERS) | st.text(min_size=1, max_size=12),
    creator_id=st.uuids().map(str),
    fan_id=st.text(min_size=1, max_size=20),
    data=st.dictionaries(st.sampled_from(["fan", "event", "extra"]), _json, max_size=3),
    timestamp=st.datetimes(timezones=st.just(UTC)),
    event_id=st.none() | st.text(max_size=10),
)


class Recorder:
    """A handler that remembers every call; ``fails`` makes it raise after recording."""

    def __init__(self, name: int, fails: bool = False) -> None:
        self.name = name
        self.fails = fails
        self.calls: list[TriggerContext] = []

    def __call__(self, ctx: TriggerContext) -> int:
        self.calls.append(ctx)
        if self.fails:
            raise RuntimeError(f"handler {self.name} failed")
        return self.name


@settings(max_examples=200, deadline=None)
@given(
    ctx=contexts,
    failing=st.lists(st.booleans(), min_size=2, max_size=6),
    other_type=st.sampled_from(TRIGGERS) | st.text(min_size=1, max_size=12),
)
def test_property_3_trigger_event_emission(ctx, failing, other_type):
    """Property 3: Trigger Event Emission — for any trigger type and context, every
    handler subscribed to the type is called once, in order, with that very context;
    a handler that raises stops none of the others; handlers of other types are not
    called."""
    events = EventSystem()
    handlers = [Recorder(i, fails) for i, fails in enumerate(failing)]
    elsewhere = Recorder(-1)
    for handler in handlers:
        events.subscribe(ctx.type, handler)
    if other_type != ctx.type:
        events.subscribe(other_type, elsewhere)

    results = events.emit(ctx)

    assert all(len(h.calls) == 1 and h.calls[0] is ctx for h in handlers)
    assert elsewhere.calls == []
    assert len(results) == len(handlers)
    for handler, result in zip(handlers, results, strict=True):
        if handler.fails:
            assert isinstance(result, RuntimeError) and str(handler.name) in str(result)
        else:
            assert result == handler.name


@settings(max_examples=100, deadline=None)
@given(ctx=contexts, count=st.integers(2, 5), removed=st.data())
def test_unsubscribed_handlers_are_not_called(ctx, count, removed):
    events = EventSystem()
    handlers = [Recorder(i) for i in range(count)]
    for handler in handlers:
        events.subscribe(ctx.type, handler)
    gone = removed.draw(st.sets(st.sampled_from(range(count))))
    for i in gone:
        events.unsubscribe(ctx.type, handlers[i])
    events.unsubscribe(ctx.type, Recorder(99))  # never subscribed: nothing happens
    events.unsubscribe("no-such-type", handlers[0])

    assert events.emit(ctx) == [i for i in range(count) if i not in gone]
    assert [len(h.calls) for h in handlers] == [0 if i in gone else 1 for i in range(count)]


def test_emit_without_handlers_returns_nothing():
    ctx = TriggerContext("new_subscriber", "c", "f", {}, datetime.now(UTC))
    assert EventSystem().emit(ctx) == []


def test_a_handler_subscribed_twice_is_called_twice():
    events, handler = EventSystem(), Recorder(1)
    events.subscribe("new_subscriber", handler)
    events.subscribe("new_subscriber", handler)
    events.emit(TriggerContext("new_subscriber", "c", "f", {}, datetime.now(UTC)))
    assert len(handler.calls) == 2


# --- The dispatcher as a handler, with real executions --------------------------------------


def test_emit_reaches_the_dispatcher_and_other_subscribers(
    runtime, creator, automations, dispatcher, drain
):
    automations.create(
        creator.id,
        'automation "Tag" {\n  when new_subscriber\n  add_tag tag: "new"\n}\n',
        status="active",
    )
    events = EventSystem()
    dispatcher.subscribe_to(events)
    audit = Recorder(7)
    events.subscribe("new_subscriber", audit)
    ctx = context("new_subscriber", creator.id, "fan-9", fan_fields=fan(tags=["x"]))

    dispatched, seen = events.emit(ctx)

    assert isinstance(dispatched, Dispatched) and len(dispatched.execution_ids) == 1
    assert seen == 7 and audit.calls == [ctx]
    drain()
    assert execution(runtime, dispatched.execution_ids[0]).status == "success"
    tags = runtime.db.run(lambda s: s.scalar(select(Fan.tags).where(Fan.external_id == "fan-9")))
    assert tags == ["new", "x"]


def test_an_invalid_event_fails_its_dispatch_but_not_the_other_handlers(
    runtime, creator, dispatcher
):
    events = EventSystem()
    dispatcher.subscribe_to(events)
    audit = Recorder(1)
    events.subscribe("purchase_completed", audit)
    ctx = context("purchase_completed", creator.id, event={"amount": "lots", "item": "x"})

    dispatched, seen = events.emit(ctx)

    assert getattr(dispatched, "field", None) == "data.event.amount"
    assert seen == 1
