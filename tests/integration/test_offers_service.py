"""OffersService against the real databases: validation that names each field, CRUD,
status derived from the clock, optimistic locking, codes, and design properties 6, 7, 8.

The offers' tables come from ``engine.migrate.upgrade``, which applies every head: the
plugin's migrations are found through its entry point like a third party's."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from offers_support import DAY, START, fitting, new_creator, offer_fields, offers
from sqlalchemy import inspect

from engine.exceptions import Conflict, InvalidInput, NotFound
from engine.migrate import current
from plugins.offers.service import OffersService, RedemptionRefused
from plugins.offers.validation import InvalidOffer, OfferData, OfferStatus, parse_offer

PROPERTY = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def service(db, clock) -> OffersService:
    return OffersService(db, now=clock.now)


# --- Validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"discount_value": Decimal(120)}, {"discount_value"}),
        ({"discount_value": Decimal(0)}, {"discount_value"}),
        ({"discount_value": Decimal("-5")}, {"discount_value"}),
        ({"discount_value": Decimal("12.345")}, {"discount_value"}),
        ({"discount_value": None}, {"discount_value"}),
        (
            {
                "discount_type": "fixed",
                "discount_value": Decimal(15),
                "original_price": Decimal(10),
            },
            {"discount_value"},
        ),
        ({"valid_until": START - DAY}, {"valid_until"}),
        ({"valid_until": START}, {"valid_until"}),
        (
            {
                "discount_type": "bundle",
                "discount_value": None,
                "content_ids": ["a"],
                "bundle_price": Decimal(30),
                "original_price": Decimal(20),
            },
            {"content_ids", "bundle_price"},
        ),
        (
            {
                "discount_type": "bundle",
                "discount_value": None,
                "content_ids": ["a", "a"],
                "bundle_price": Decimal(5),
                "original_price": Decimal(20),
            },
            {"content_ids"},
        ),
        ({"discount_type": "bogo"}, {"buy_quantity", "get_quantity", "discount_value"}),
        ({"content_ids": ["a", "b"]}, {"content_ids"}),
        ({"name": "  "}, {"name"}),
        ({"name": "nul\x00"}, {"name"}),
        ({"target_audience": "fan"}, {"target_value"}),
        ({"target_value": "vip"}, {"target_value"}),
        ({"max_redemptions": 0, "max_per_fan": -1}, {"max_redemptions", "max_per_fan"}),
        ({"code": "a b"}, {"code"}),
        ({"currency": "usd"}, {"currency"}),
        ({"min_purchase": Decimal("-1")}, {"min_purchase"}),
        ({"discount_type": "half"}, {"discount_type"}),
        ({"valid_from": "2026-11-02T09:00:00"}, {"valid_from"}),  # no time zone
        ({"colour": "red"}, {"colour"}),
    ],
)
def test_invalid_offer_data_names_each_field(fields, errors):
    with pytest.raises(InvalidOffer) as caught:
        parse_offer(offer_fields(**fields))
    assert {e.field for e in caught.value.errors} == errors
    assert isinstance(caught.value, InvalidInput) and caught.value.status_code == 422
    assert caught.value.field in errors
    for error in caught.value.errors:
        assert f"{error.field}: {error.message}" in str(caught.value)


def test_every_broken_rule_is_reported_at_once():
    data = offer_fields(discount_value=Decimal(150), valid_until=START - DAY, name="", code="?")
    with pytest.raises(InvalidOffer) as caught:
        parse_offer(data)
    assert [e.field for e in caught.value.errors] == ["name", "code", "discount_value",
                                                       "valid_until"]  # fmt: skip


def test_a_refused_offer_writes_nothing(service):
    creator = new_creator()
    with pytest.raises(InvalidOffer):
        service.create(creator, offer_fields(discount_value=Decimal(101)))
    assert service.list(creator) == []


# --- CRUD and status ------------------------------------------------------------------------


def test_the_plugins_tables_come_from_its_own_migration_branch(db):
    assert {"offers", "offer_redemptions"} <= set(inspect(db.engine).get_table_names())
    assert "0003_offers_one_index_less" in current(db.engine)


def test_create_get_update_delete(service, clock):
    creator = new_creator()
    offer = service.create(creator, offer_fields(code="Welcome20"))
    assert offer.status == OfferStatus.ACTIVE and offer.version == 1
    assert offer.redemption_count == 0 and offer.created_at == offer.updated_at == START
    assert service.get(offer.id) == offer

    clock.set(START + timedelta(hours=1))
    changed = service.update(offer.id, {"discount_value": Decimal(25)}, expected_version=1)
    assert (changed.discount_value, changed.version) == (Decimal(25), 2)
    assert changed.updated_at == START + timedelta(hours=1) and changed.created_at == START
    assert service.get(offer.id) == changed

    service.delete(offer.id, expected_version=2)
    with pytest.raises(NotFound):
        service.get(offer.id)
    assert service.list(creator) == []
    with pytest.raises(NotFound):
        service.update(offer.id, {"name": "again"})


def test_an_update_is_validated_as_a_whole_and_a_refused_one_changes_nothing(service):
    offer = service.create(new_creator(), offer_fields())
    with pytest.raises(InvalidOffer) as caught:
        service.update(offer.id, {"valid_until": START - DAY, "nme": "typo"})
    assert {e.field for e in caught.value.errors} == {"nme"}
    with pytest.raises(InvalidOffer) as caught:
        service.update(offer.id, {"valid_until": START - DAY})
    assert caught.value.field == "valid_until"
    assert service.get(offer.id) == offer


def test_a_stale_version_is_a_conflict_naming_the_current_version(service):
    offer = service.create(new_creator(), offer_fields())
    service.update(offer.id, {"name": "First"}, expected_version=1)
    with pytest.raises(Conflict) as caught:
        service.update(offer.id, {"name": "Second"}, expected_version=1)
    assert caught.value.current_version == 2 and "version 2" in str(caught.value)
    assert caught.value.status_code == 409
    with pytest.raises(Conflict):
        service.delete(offer.id, expected_version=1)
    assert service.get(offer.id).name == "First"


def test_status_is_derived_from_the_clock_when_read(service, clock):
    """Never stored: the same row reads scheduled, active, then expired."""
    creator = new_creator()
    offer = service.create(
        creator, offer_fields(valid_from=START + DAY, valid_until=START + 3 * DAY)
    )
    expected = [(START, "scheduled"), (START + DAY, "active"),
                (START + 3 * DAY - timedelta(microseconds=1), "active"),
                (START + 3 * DAY, "expired")]  # fmt: skip
    for moment, status in expected:
        clock.set(moment)
        assert service.get(offer.id).status == status
        assert [o.id for o in service.list(creator, status)] == [offer.id]


def test_list_by_status(service, clock):
    creator = new_creator()
    make = {
        "draft": offer_fields(name="draft", draft=True),
        "scheduled": offer_fields(name="scheduled", valid_from=START + DAY, valid_until=None),
        "active": offer_fields(name="active", max_redemptions=5),
        "expired": offer_fields(name="expired", valid_from=START - 2 * DAY, valid_until=START),
        "exhausted": offer_fields(name="exhausted", max_redemptions=1),
    }
    ids = {name: service.create(creator, data).id for name, data in make.items()}
    service.redeem(ids["exhausted"], "fan-1", 10, "key-1")
    for status, offer_id in ids.items():
        assert [o.id for o in service.list(creator, status)] == [offer_id]
        assert service.get(offer_id).status == status
    assert sorted(o.id for o in service.list(creator)) == sorted(ids.values())
    assert service.list(new_creator()) == []
    with pytest.raises(InvalidInput) as caught:
        service.list(creator, "live")
    assert caught.value.field == "status"


def test_publishing_a_draft(service):
    offer = service.create(new_creator(), offer_fields(draft=True))
    with pytest.raises(RedemptionRefused) as caught:
        service.redeem(offer.id, "fan-1", 10, "key-1")
    assert caught.value.reason == "draft"
    published = service.update(offer.id, {"draft": False}, expected_version=1)
    assert published.status == OfferStatus.ACTIVE
    assert service.redeem(offer.id, "fan-1", 10, "key-1").discount == Decimal("2.00")


def test_codes_are_case_insensitive_and_one_offer_answers_to_a_code_at_a_time(service, clock):
    creator = new_creator()
    first = service.create(creator, offer_fields(code="SPRING"))
    assert service.by_code(creator, "spring").id == first.id
    with pytest.raises(InvalidOffer) as caught:  # overlapping windows
        service.create(creator, offer_fields(code="Spring", valid_from=START + DAY))
    assert caught.value.field == "code"
    # After the first one ends, or as a draft, or for another creator: allowed.
    later = service.create(creator, offer_fields(code="spring", valid_from=START + 2 * DAY,
                                            valid_until=None))  # fmt: skip
    draft = service.create(creator, offer_fields(code="SPRING", draft=True))
    service.create(new_creator(), offer_fields(code="SPRING"))
    with pytest.raises(InvalidOffer):
        service.update(draft.id, {"draft": False})
    clock.set(START + 2 * DAY)
    assert service.by_code(creator, "SPRING").id == later.id
    with pytest.raises(NotFound):
        service.by_code(creator, "AUTUMN")


def test_create_with_an_idempotency_key_creates_once(service):
    creator = new_creator()
    first = service.create(creator, offer_fields(), idempotency_key="exec-1:n3")
    again = service.create(creator, offer_fields(name="other"), idempotency_key="exec-1:n3")
    assert again == first and len(service.list(creator)) == 1


def test_unknown_offers_are_not_found(service):
    for call in (service.get, service.duplicate, service.delete):
        with pytest.raises(NotFound):
            call("no-such-offer")
    with pytest.raises(NotFound):
        service.redeem("no-such-offer", "fan-1", 10, "key-1")


# --- Properties ----------------------------------------------------------------------------


@PROPERTY
@given(data=offers(), changed=offers())
def test_property_6_offer_crud_round_trip(service, data, changed):
    """Property 6: creating an offer and reading it back gives the same offer (and so do
    updating it with any other valid data, and listing it); deleting it removes it."""
    creator = new_creator()
    created = service.create(creator, data)
    assert created.data == data
    assert service.get(created.id) == created
    assert service.list(creator) == [created]

    updated = service.update(created.id, changed.model_dump(), expected_version=1)
    assert updated.data == changed and updated.version == 2
    assert service.get(created.id) == updated

    service.delete(created.id)
    assert service.list(creator) == []


@PROPERTY
@given(data=offers(published=True, ends=True), after=st.timedeltas(timedelta(0), 400 * DAY),
       redeemed=st.booleans())  # fmt: skip
def test_property_7_offer_status_expiration(service, clock, data, after, redeemed):
    """Property 7: an offer whose valid_until is in the past is "expired" when read —
    whatever it was before (active, exhausted), in get and in list, and it redeems no more."""
    creator = new_creator()
    clock.set(data.valid_from)
    offer = service.create(creator, data)
    if redeemed:
        service.redeem(offer.id, idempotency_key="k-1", **fitting(offer))
    clock.set(data.valid_until + after)
    assert service.get(offer.id).status == OfferStatus.EXPIRED
    assert [o.id for o in service.list(creator, OfferStatus.EXPIRED)] == [offer.id]
    for other in (OfferStatus.ACTIVE, OfferStatus.EXHAUSTED, OfferStatus.SCHEDULED):
        assert service.list(creator, other) == []
    with pytest.raises(RedemptionRefused) as caught:
        service.redeem(offer.id, idempotency_key="k-2", **fitting(offer))
    assert caught.value.reason == "expired"
    assert service.get(offer.id).redemption_count == int(redeemed)


@PROPERTY
@given(data=offers(), redemptions=st.integers(0, 2), later=st.timedeltas(DAY, 30 * DAY))
def test_property_8_offer_duplication_identity(service, clock, data, redemptions, later):
    """Property 8: a duplicate has another id and the same data — but for new timestamps,
    no redemptions, and being a draft."""
    creator = new_creator()
    clock.set(data.valid_from)
    original = service.create(creator, data)
    if not data.draft:
        for n in range(min(redemptions, data.max_redemptions or 2, data.max_per_fan or 2)):
            service.redeem(original.id, idempotency_key=f"k-{n}", **fitting(original))
    original = service.get(original.id)
    clock.set(data.valid_from + later)

    copy = service.duplicate(original.id)
    assert copy.id != original.id
    assert copy.data == original.data.model_copy(update={"draft": True})
    assert copy.status == OfferStatus.DRAFT and copy.version == 1
    assert copy.redemption_count == 0 and service.redemptions(copy.id) == []
    assert copy.created_at == copy.updated_at == data.valid_from + later != original.created_at
    assert service.get(copy.id) == copy
    # The original is untouched (its status follows the clock).
    assert service.get(original.id).model_dump(exclude={"status"}) == original.model_dump(
        exclude={"status"}
    )


def test_offer_data_is_what_the_generator_gives():
    """Guards the properties above against testing nothing: the generated offers are
    valid as they are, of every kind."""
    seen: set[str] = set()

    @settings(max_examples=200, deadline=None)
    @given(data=offers())
    def check(data: OfferData) -> None:
        assert parse_offer(data) == data
        seen.add(data.discount_type)

    check()
    assert seen == {"percentage", "fixed", "bogo", "bundle"}
