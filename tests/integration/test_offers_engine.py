"""Offers through the engine, as a plugin: the welcome example makes a personal offer on
``new_subscriber``, and redeeming it runs an automation on ``offer_redeemed`` — real
dispatch, real RQ jobs, both databases. And ``create_offer`` run by hand: once per step,
and checked like any action."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from itest_support import context, fan, steps_of
from offers_support import START, new_creator
from pydantic import ValidationError
from sqlalchemy import select

from dsl import check, parse
from engine.automations import split_automations
from engine.catalogue import load_catalogue
from engine.db import Database
from engine.jobs import sweep
from engine.models import Fan, OutboxMessage
from engine.plugin_api import ActionContext, ActionError, Money, Percentage, Services
from plugins.offers.actions import CreateOffer, CreateOfferConfig
from plugins.offers.service import OffersService, RedemptionRefused

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
THANKS = """\
automation "Thank offer redeemers" {
  when offer_redeemed
  send_message text: "Thank you {{ fan.name }}! {{ event.offer_name }} is yours."
  add_tag tag: "redeemed"
}
"""


def outbox(runtime) -> list[str]:
    query = select(OutboxMessage.text).order_by(OutboxMessage.created_at, OutboxMessage.text)
    return runtime.db.run(lambda s: list(s.scalars(query)))


def tags(runtime, creator_id: str, fan_id: str) -> list[str]:
    query = select(Fan.tags).where(Fan.creator_id == creator_id, Fan.external_id == fan_id)
    return runtime.db.run(lambda s: s.scalar(query))


def test_the_welcome_offer_then_a_thank_you_for_redeeming_it(
    runtime, clock, creator, automations, dispatcher, drain
):
    welcome = (EXAMPLES / "01_welcome.hz").read_text(encoding="utf-8")
    automations.save_all(creator.id, [*split_automations(welcome), THANKS])
    offers = OffersService(runtime.db, now=clock.now, emit=dispatcher.dispatch)

    (welcomed,) = dispatcher.dispatch(context("new_subscriber", creator.id, "fan-1")).execution_ids
    drain()
    assert offers.list(creator.id) == []  # the offer comes after `wait 2d`
    clock.set(START + timedelta(days=2))
    assert sweep(runtime) == 1
    drain()

    [offer] = offers.list(creator.id)
    assert (offer.name, offer.discount_type, offer.discount_value) == (
        "Welcome 20%", "percentage", Decimal(20),
    )  # fmt: skip
    assert (offer.target_audience, offer.target_value) == ("fan", "fan-1")  # the platform's id
    assert (offer.valid_from, offer.valid_until) == (clock.now(), clock.now() + timedelta(hours=48))
    assert (offer.status, offer.max_redemptions, offer.max_per_fan) == ("active", 1, 1)
    [step] = [s for s in steps_of(runtime, welcomed).values() if s.name == "create_offer"]
    assert (step.status, step.output["offer_id"]) == ("done", offer.id)

    with pytest.raises(RedemptionRefused) as caught:  # a personal offer: not for fan-2
        offers.redeem(offer.id, "fan-2", Decimal(30), "order-1", fan=fan(name="Zoe"))
    assert caught.value.reason == "audience"

    clock.set(START + timedelta(days=3))
    done = offers.redeem(offer.id, "fan-1", Decimal(30), "order-2", fan=fan())
    assert (done.discount, done.paid) == (Decimal("6.00"), Decimal("24.00"))
    drain()
    thanks = "Thank you Mia! Welcome 20% is yours."
    assert outbox(runtime).count(thanks) == 1
    assert "redeemed" in tags(runtime, creator.id, "fan-1")

    # The platform sends the same redemption again: one redemption, one event, one thanks.
    assert offers.redeem(offer.id, "fan-1", Decimal(30), "order-2", fan=fan()) == done
    drain()
    assert outbox(runtime).count(thanks) == 1
    with pytest.raises(RedemptionRefused) as caught:  # used once, as the action made it
        offers.redeem(offer.id, "fan-1", Decimal(30), "order-3", fan=fan())
    assert caught.value.reason == "exhausted"


# --- create_offer by hand ----------------------------------------------------------------------


def step(creator_id: str, key: str, database: Database | None) -> ActionContext:
    return ActionContext(
        creator_id=creator_id,
        fan_id="engine-fan-id",
        fan=fan(),
        trigger="new_subscriber",
        trigger_data={"fan": fan()},
        idempotency_key=key,
        services=Services(outbox=None, fans=None, templates=None, database=database),  # type: ignore[arg-type]
        now=START,
        fan_external_id="fan-7",
    )


def test_a_retried_step_finds_the_offer_it_made(db):
    creator = new_creator()
    config = CreateOfferConfig(discount=Money(Decimal(10)), valid_for=timedelta(days=7),
                               min_purchase=Money(Decimal(25)), uses=2)  # fmt: skip
    first = CreateOffer().run(step(creator, "exec-1:s3", db), config)
    again = CreateOffer().run(step(creator, "exec-1:s3", db), config)
    other = CreateOffer().run(step(creator, "exec-2:s3", db), config)
    assert first == again and other.output["offer_id"] != first.output["offer_id"]
    offer = OffersService(db, now=lambda: START).get(first.output["offer_id"])
    assert (offer.name, offer.discount_type, offer.discount_value) == ("$10.00 off", "fixed", 10)
    assert (offer.min_purchase, offer.max_redemptions, offer.max_per_fan) == (25, 2, 2)
    assert first.detail == "offer '$10.00 off': $10.00 off until 2026-11-09 09:00 UTC"


def test_an_offer_for_every_fan(db):
    creator = new_creator()
    config = CreateOfferConfig(discount=Percentage(Decimal(15)), valid_for=timedelta(hours=24),
                               name="Flash sale", audience="all")  # fmt: skip
    result = CreateOffer().run(step(creator, "exec-1:s1", db), config)
    offer = OffersService(db, now=lambda: START).get(result.output["offer_id"])
    assert (offer.target_audience, offer.target_value) == ("all", None)
    assert (offer.max_redemptions, offer.max_per_fan) == (None, 1)


def test_without_a_database_the_step_fails_with_a_message():
    config = CreateOfferConfig(discount=Percentage(Decimal(20)), valid_for=timedelta(hours=48))
    with pytest.raises(ActionError, match="database"):
        CreateOffer().run(step("c", "k", None), config)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"discount": Percentage(Decimal(120))}, "discount"),
        ({"discount": Percentage(Decimal("0.001"))}, "discount"),
        ({"discount": Money(Decimal(0))}, "discount"),
        ({"discount": Money(Decimal("1.999"))}, "discount"),
        ({"discount": Decimal(20)}, "discount"),
        ({"valid_for": timedelta(0)}, "valid_for"),
        ({"valid_for": timedelta(days=400)}, "valid_for"),
        ({"uses": 0}, "uses"),
        ({"audience": "vip"}, "audience"),
        ({"min_purchase": Money(Decimal(5), "EUR")}, None),  # another currency than $10
        ({"code": "WELCOME"}, "code"),
    ],
)
def test_create_offer_arguments_are_checked(arguments, field):
    values = {"discount": Money(Decimal(10)), "valid_for": timedelta(hours=48), **arguments}
    with pytest.raises(ValidationError) as caught:
        CreateOfferConfig.model_validate(values)
    # A union (Percentage | Money) reports each of its arms, at the same argument.
    assert {e["loc"][0] if e["loc"] else None for e in caught.value.errors()} == {field}


def test_every_create_offer_in_the_examples_passes_the_checker():
    catalog = load_catalogue().catalog
    used = 0
    for path in sorted(EXAMPLES.glob("*.hz")):
        text = path.read_text(encoding="utf-8")
        assert check(parse(text, str(path)), catalog) == [], path
        used += text.count("create_offer ")
    assert used >= 7
