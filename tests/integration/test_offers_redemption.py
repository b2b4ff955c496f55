"""Redeeming offers against the real databases: the discount, every refusal (which
changes nothing), idempotency, the offer_redeemed event, analytics, design property 12;
and on PostgreSQL, limits that hold under real concurrency (threads on separate
connections)."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from offers_support import (
    DAY,
    FAN,
    START,
    cents,
    fitting,
    new_creator,
    offer_fields,
    offers,
    open_database,
)
from sqlalchemy import select

from engine.db import Database
from engine.exceptions import Conflict, InvalidInput, NotFound
from engine.plugin_api import Money, TriggerContext
from plugins.offers import analytics, redemption
from plugins.offers.models import RedemptionRow
from plugins.offers.service import Offer, OffersService, Redemption, RedemptionRefused


@pytest.fixture
def emitted() -> list[TriggerContext]:
    return []


@pytest.fixture
def service(db, clock, emitted) -> OffersService:
    return OffersService(db, now=clock.now, emit=emitted.append)


@pytest.fixture
def make(service) -> Callable[..., Offer]:
    creator = new_creator()
    return lambda **fields: service.create(creator, offer_fields(**fields))


def count_and_rows(service: OffersService, offer_id: str) -> tuple[int, int]:
    return service.get(offer_id).redemption_count, len(service.redemptions(offer_id))


# --- The discount -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "amount", "quantity", "discount"),
    [
        ({}, "19.99", 1, "4.00"),  # 20% of 19.99 is 3.998
        ({"discount_value": Decimal("12.5")}, "10.00", 1, "1.25"),
        ({"discount_value": Decimal(10)}, "0.05", 1, "0.01"),  # half a cent rounds up
        ({"discount_type": "fixed", "discount_value": Decimal(5)}, "30", 1, "5.00"),
        ({"discount_type": "fixed", "discount_value": Decimal(50)}, "30", 1, "30.00"),
        (
            {"discount_type": "bogo", "discount_value": None, "buy_quantity": 2, "get_quantity": 1},
            "30",
            7,
            "8.57",
        ),
        (
            {
                "discount_type": "bogo",
                "discount_value": None,
                "buy_quantity": 1,
                "get_quantity": 1,
                "max_free_per_order": 2,
            },
            "100",
            10,
            "20.00",
        ),
        (
            {
                "discount_type": "bundle",
                "discount_value": None,
                "content_ids": ["a", "b", "c"],
                "original_price": Decimal(45),
                "bundle_price": Decimal(30),
            },
            "45",
            1,
            "15.00",
        ),
        (
            {
                "discount_type": "bundle",
                "discount_value": None,
                "content_ids": ["a", "b"],
                "original_price": Decimal(45),
                "bundle_price": Decimal(30),
            },
            "20",
            1,
            "0.00",  # bought for less than the bundle's price: nothing off
        ),
    ],
)
def test_the_discount_of_each_kind(service, make, fields, amount, quantity, discount):
    """The same on both databases: PostgreSQL computes it in SQL (the one-statement
    redemption), SQLite in Python."""
    offer = make(**fields)
    done = service.redeem(offer.id, "fan-1", Decimal(amount), "key-1", quantity=quantity)
    assert done.discount == Decimal(discount)
    assert done.paid == Decimal(amount) - Decimal(discount)
    assert (done.amount, done.quantity, done.currency) == (Decimal(amount), quantity, "USD")


# --- Refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "redeem", "reason", "status_code"),
    [
        ({"draft": True}, {}, "draft", 409),
        ({"valid_from": START + DAY}, {}, "scheduled", 409),
        ({"valid_from": START - 2 * DAY, "valid_until": START}, {}, "expired", 409),
        ({"target_audience": "fan", "target_value": "fan-2"}, {}, "audience", 409),
        (
            {"target_audience": "tag", "target_value": "vip"},
            {"fan": {**FAN, "tags": ["x"]}},
            "audience",
            409,
        ),
        ({"target_audience": "tag", "target_value": "vip"}, {}, "audience", 409),
        ({"code": "SPRING"}, {"code": "AUTUMN"}, "code", 422),
        ({"currency": "EUR"}, {"amount": Money(Decimal(10), "USD")}, "currency", 422),
        ({"min_purchase": Decimal(20)}, {"amount": Decimal("19.99")}, "minimum", 422),
        (
            {"discount_type": "bogo", "discount_value": None, "buy_quantity": 2, "get_quantity": 1},
            {"quantity": 2},
            "quantity",
            422,
        ),
    ],
)
def test_a_refused_redemption_changes_nothing(
    service, make, emitted, fields, redeem, reason, status_code
):
    offer = make(**fields)
    arguments = {"fan_id": "fan-1", "amount": Decimal(10), **redeem}
    with pytest.raises(RedemptionRefused) as caught:
        service.redeem(offer.id, idempotency_key="key-1", **arguments)
    assert (caught.value.reason, caught.value.status_code) == (reason, status_code)
    assert count_and_rows(service, offer.id) == (0, 0)
    assert service.get(offer.id).version == offer.version and emitted == []


def test_what_fits_is_accepted(service, make):
    """The other side of the refusals above."""
    tagged = make(target_audience="tag", target_value="vip")
    service.redeem(tagged.id, "fan-1", 10, "key-1", fan={**FAN, "tags": ["x", "vip"]})
    personal = make(target_audience="fan", target_value="fan-2")
    service.redeem(personal.id, "fan-2", 10, "key-1")
    coded = make(code="Spring")
    assert service.redeem(coded.id, "fan-1", 10, "key-1", code="sPRING").code == "sPRING"
    euros = make(currency="EUR", min_purchase=Decimal(10))
    assert service.redeem(euros.id, "fan-1", Money(Decimal(10), "EUR"), "key-1").currency == "EUR"


def test_the_limits(service, make):
    offer = make(max_redemptions=3, max_per_fan=2)
    for n, fan in enumerate(["fan-1", "fan-1"]):
        service.redeem(offer.id, fan, 10, f"key-{n}")
    with pytest.raises(RedemptionRefused) as caught:
        service.redeem(offer.id, "fan-1", 10, "key-2")
    assert caught.value.reason == "fan_limit"
    service.redeem(offer.id, "fan-2", 10, "key-3")
    with pytest.raises(RedemptionRefused) as caught:
        service.redeem(offer.id, "fan-3", 10, "key-4")
    assert caught.value.reason == "exhausted" and "exhausted" in str(caught.value)
    assert count_and_rows(service, offer.id) == (3, 3)
    assert service.get(offer.id).status == "exhausted"


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"amount": Decimal("-1")}, "amount"),
        ({"amount": Decimal(0)}, "amount"),
        ({"amount": "ten"}, "amount"),
        ({"amount": Decimal("1.005")}, "amount"),
        ({"quantity": 0}, "quantity"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"fan_id": ""}, "fan_id"),
        ({"code": "no code"}, "code"),
    ],
)
def test_invalid_requests_name_the_field(service, make, arguments, field):
    offer = make()
    request = {"fan_id": "fan-1", "amount": Decimal(10), "idempotency_key": "key-1", **arguments}
    with pytest.raises(InvalidInput) as caught:
        service.redeem(offer.id, **request)
    assert caught.value.field == field
    assert count_and_rows(service, offer.id) == (0, 0)


@pytest.mark.parametrize("offer_id", ["", "x" * 201, "a\x00b", 5, None])
def test_an_offer_id_that_cannot_be_one_is_not_found(service, offer_id):
    with pytest.raises(NotFound):
        service.redeem(offer_id, "fan-1", Decimal(10), "key-1")


# --- Idempotency and the event ------------------------------------------------------------------


def test_the_same_key_is_one_redemption_even_after_the_offer_ran_out(service, make, emitted):
    offer = make(max_redemptions=1)
    first = service.redeem(offer.id, "fan-1", Decimal(10), "key-1", fan=FAN)
    again = service.redeem(offer.id, "fan-1", Decimal("10.00"), "key-1", fan=FAN)
    assert again == first and count_and_rows(service, offer.id) == (1, 1)
    # Both emitted, as one event: the same event id.
    assert [c.event_id for c in emitted] == [f"offer_redeemed:{first.id}"] * 2
    with pytest.raises(InvalidInput) as caught:  # the key, reused for another purchase
        service.redeem(offer.id, "fan-1", Decimal(11), "key-1")
    assert caught.value.field == "idempotency_key"


def test_offer_redeemed_is_emitted_after_every_redemption(service, make, emitted):
    offer = make(code="THANKS")
    done = service.redeem(offer.id, "fan-1", Decimal("25.00"), "key-1", code="thanks", fan=FAN)
    [context] = emitted
    assert (context.type, context.creator_id, context.fan_id) == (
        "offer_redeemed", offer.creator_id, "fan-1",
    )  # fmt: skip
    assert context.timestamp == START and context.data["fan"] == FAN
    assert context.data["event"] == {
        "offer_id": offer.id,
        "offer_name": "Welcome 20%",
        "amount": "25.00",
        "discount": "5.00",
        "paid": "20.00",
        "currency": "USD",
        "code": "thanks",
        "redemption_id": done.id,
    }


def test_a_failing_handler_does_not_undo_the_redemption(db, clock, make):
    def broken(context: TriggerContext) -> None:
        raise RuntimeError("handler down")

    service = OffersService(db, now=clock.now, emit=broken)
    offer = make()
    done = service.redeem(offer.id, "fan-1", 10, "key-1")
    assert service.redemptions(offer.id) == [done]


# --- Analytics ---------------------------------------------------------------------------------


def test_analytics_by_offer_and_by_period(db, service, clock):
    creator = new_creator()
    welcome = service.create(creator, offer_fields(valid_until=None))
    euros = service.create(creator, offer_fields(name="Euro 5", discount_type="fixed",
                                                 discount_value=Decimal(5), currency="EUR",
                                                 valid_until=None))  # fmt: skip
    moments = [START, START + timedelta(hours=3), START + 7 * DAY, START + 31 * DAY]
    for n, moment in enumerate(moments):
        clock.set(moment)
        service.redeem(welcome.id, f"fan-{n}", Decimal(10), f"w-{n}")
    service.redeem(euros.id, "fan-1", Decimal(8), "e-1")  # at START + 31 days

    totals = analytics.by_offer(db, creator)
    assert [(t.name, t.redemptions, t.amount, t.discount, t.revenue, t.currency)
            for t in totals] == [
        ("Welcome 20%", 4, Decimal(40), Decimal(8), Decimal(32), "USD"),
        ("Euro 5", 1, Decimal(8), Decimal(5), Decimal(3), "EUR"),
    ]  # fmt: skip
    since = analytics.by_offer(db, creator, since=START + DAY, until=START + 31 * DAY)
    assert [(t.name, t.redemptions) for t in since] == [("Welcome 20%", 1)]

    days = analytics.by_period(db, creator, "day")
    assert [(t.start, t.redemptions, t.currency) for t in days] == [
        (START.replace(hour=0), 2, "USD"),
        (START.replace(hour=0) + 7 * DAY, 1, "USD"),
        (START.replace(hour=0) + 31 * DAY, 1, "EUR"),
        (START.replace(hour=0) + 31 * DAY, 1, "USD"),
    ]
    weeks = analytics.by_period(db, creator, "week", offer_id=welcome.id)
    # 2 November 2026 is a Monday.
    assert [(t.start.date().isoformat(), t.redemptions) for t in weeks] == [
        ("2026-11-02", 2), ("2026-11-09", 1), ("2026-11-30", 1),
    ]  # fmt: skip
    months = analytics.by_period(db, creator, "month", offer_id=welcome.id)
    assert [(t.start.date().isoformat(), t.revenue) for t in months] == [
        ("2026-11-01", Decimal(24)), ("2026-12-01", Decimal(8)),
    ]  # fmt: skip
    with pytest.raises(InvalidInput):
        analytics.by_period(db, creator, "year")


# --- Property 12 ----------------------------------------------------------------------------------

ATTEMPTS = st.lists(
    st.tuples(
        st.sampled_from(["fan-1", "fan-2", "fan-3"]),
        cents("0.01", "1000"),
        st.sampled_from([f"key-{n}" for n in range(6)]),
    ),
    max_size=8,
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=offers(published=True), attempts=ATTEMPTS, personal=st.booleans())
def test_property_12_redemption_logging(service, clock, data, attempts, personal):
    """Property 12: every redemption has its log entry with the right offer, fan and
    amount — one per redemption, none for a refused one — and the offer's count is
    the number of entries."""
    clock.set(data.valid_from)
    offer = service.create(new_creator(), data)
    first: dict[str, Redemption] = {}  # by key
    for fan_id, amount, key in attempts:
        arguments = fitting(offer, fan_id, amount)
        try:
            done = service.redeem(offer.id, idempotency_key=key, **arguments)
        except (RedemptionRefused, InvalidInput):
            continue
        assert (done.offer_id, done.fan_id, done.amount) == (
            offer.id, arguments["fan_id"], arguments["amount"],
        )  # fmt: skip
        assert first.setdefault(key, done) == done
    logged = service.redemptions(offer.id)
    assert sorted(logged, key=lambda r: r.id) == sorted(first.values(), key=lambda r: r.id)
    assert service.get(offer.id).redemption_count == len(logged)
    if offer.max_redemptions is not None:
        assert len(logged) <= offer.max_redemptions
    if offer.max_per_fan is not None:
        assert max(Counter(r.fan_id for r in logged).values(), default=0) <= offer.max_per_fan


# --- Under concurrency, on PostgreSQL ----------------------------------------------------------


@pytest.fixture(scope="module")
def pg(request, tmp_path_factory) -> Iterator[Database]:
    database = open_database("postgresql", request, tmp_path_factory)
    yield database
    database.dispose()


@pytest.fixture
def pg_service(pg, clock) -> OffersService:
    return OffersService(pg, now=clock.now)


def attempt(call: Callable[[], Any]) -> Any:
    """The call's result, or the exception it raised."""
    try:
        return call()
    except Exception as exc:
        return exc


def race(calls: list[Callable[[], Any]], workers: int = 24) -> list[Any]:
    """Run the calls on ``workers`` threads — each on a connection of its own from the
    pool — the first ``workers`` of them released together; results in order."""
    parties = min(workers, len(calls))
    start = threading.Barrier(parties, timeout=60)

    def run(index: int, call: Callable[[], Any]) -> Any:
        if index < parties:
            start.wait()
        return attempt(call)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(run, range(len(calls)), calls))


def test_the_one_statement_redemption_redeems_or_changes_nothing(pg, pg_service, clock):
    """PostgreSQL's fast path (``FAST_REDEEM``) redeems what it can — limits per fan
    included, each of the fan's redemptions numbered — and answers None, having changed
    nothing, for everything the general way must decide."""

    def fast(offer_id: str, fan_id: str, key: str, quantity: int = 1) -> Redemption | None:
        asked = redemption.request(offer_id, fan_id, Decimal(30), key, None, quantity, None)
        done = redemption.redeem_at_once(pg.engine, asked, clock.now())
        return None if done is None else done[0]

    def fan_numbers(offer_id: str) -> list[int | None]:
        query = select(RedemptionRow.fan_seq).where(RedemptionRow.offer_id == offer_id)
        return sorted(pg.run(lambda s: list(s.scalars(query))))

    offer = pg_service.create(new_creator(), offer_fields(max_redemptions=3, max_per_fan=2))
    first = fast(offer.id, "fan-1", "key-1")
    assert first is not None and first.discount == Decimal("6.00")
    assert pg_service.redemptions(offer.id) == [first]  # every field, as stored
    assert fast(offer.id, "fan-1", "key-2") is not None
    assert fast(offer.id, "fan-1", "key-3") is None  # the fan's limit
    assert fast(offer.id, "fan-2", "key-1") is None  # a known key
    assert count_and_rows(pg_service, offer.id) == (2, 2)
    assert fan_numbers(offer.id) == [1, 2]
    assert fast(offer.id, "fan-2", "key-4") is not None
    assert fast(offer.id, "fan-3", "key-5") is None  # exhausted
    assert count_and_rows(pg_service, offer.id) == (3, 3)

    bogo = pg_service.create(
        new_creator(),
        offer_fields(discount_type="bogo", discount_value=None, buy_quantity=2, get_quantity=1),
    )
    assert fast(bogo.id, "fan-1", "key-1", quantity=2) is None  # no whole set
    done = fast(bogo.id, "fan-1", "key-2", quantity=3)
    assert done is not None and done.discount == Decimal("10.00")
    assert count_and_rows(pg_service, bogo.id) == (1, 1)
    assert fan_numbers(bogo.id) == [None]  # no limit per fan: not numbered


def test_the_fast_paths_redemption_ids_are_version_4_uuids():
    ids = [redemption._uuid4() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_the_one_statement_redemption_survives_lost_connections_and_statements(pg, clock):
    """A connection set aside for the statement that the server dropped is closed and
    replaced, and the general way redeems meanwhile — once. On a connection from the pool
    (past the connections set aside), the statement is prepared again when the server
    forgot it (psycopg deallocates them all after a rollback)."""
    url = pg.engine.url.update_query_dict({"application_name": "offers-lost"})
    own = Database(url.render_as_string(hide_password=False))
    try:
        service = OffersService(own, now=clock.now)
        offer = service.create(new_creator(), offer_fields())
        service.redeem(offer.id, "fan-1", 10, "key-1")
        with pg.engine.connect() as connection:  # every connection of `own`
            connection.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'offers-lost'"
            )
        service.redeem(offer.id, "fan-2", 10, "key-2")
        service.redeem(offer.id, "fan-3", 10, "key-3")
        spare = redemption._spare(own.engine)
        spare.limit = 0  # from now on, the pool's connections
        spare.close()
        service.redeem(offer.id, "fan-4", 10, "key-4")
        with own.engine.connect() as connection:  # the pool's one connection
            connection.exec_driver_sql("DEALLOCATE ALL")
        service.redeem(offer.id, "fan-5", 10, "key-5")
        assert count_and_rows(service, offer.id) == (5, 5)
    finally:
        own.dispose()


def _redeem_in_a_child(database: Database, clock, offer_id: str, results) -> None:
    database.engine.dispose(close=False)  # SQLAlchemy's rule for a forked process
    service = OffersService(database, now=clock.now)
    results.put(service.redeem(offer_id, "fan-child", 10, "key-child").fan_id)


def test_a_forked_process_leaves_the_parents_connections_alone(pg, pg_service, clock):
    """The connections set aside for the one-statement redemption are the process's own:
    a child forked after the parent redeemed neither uses nor closes them."""
    offer = pg_service.create(new_creator(), offer_fields())
    pg_service.redeem(offer.id, "fan-1", 10, "key-1")
    sessions = {s.connection.info.backend_pid for s in redemption._spare(pg.engine).idle}
    assert sessions
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_redeem_in_a_child, args=(pg, clock, offer.id, results))
    child.start()
    assert results.get(timeout=60) == "fan-child"
    child.join(timeout=60)
    assert child.exitcode == 0
    with pg.engine.connect() as connection:
        alive = connection.exec_driver_sql(
            "SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", (list(sessions),)
        )
        assert {pid for (pid,) in alive} == sessions
    pg_service.redeem(offer.id, "fan-2", 10, "key-2")
    assert count_and_rows(pg_service, offer.id) == (3, 3)


def test_1000_concurrent_redemptions_of_an_offer_limited_to_100(pg_service):
    offer = pg_service.create(new_creator(), offer_fields(max_redemptions=100))
    calls = [
        lambda n=n: pg_service.redeem(offer.id, f"fan-{n}", Decimal(10), f"key-{n}")
        for n in range(1000)
    ]
    results = race(calls)
    done = [r for r in results if isinstance(r, Redemption)]
    refused = [r for r in results if isinstance(r, RedemptionRefused)]
    assert len(done) == 100 and len(refused) == 900, Counter(type(r).__name__ for r in results)
    assert {r.reason for r in refused} == {"exhausted"}
    assert all("exhausted" in str(r) for r in refused)
    assert count_and_rows(pg_service, offer.id) == (100, 100)
    assert sorted(r.id for r in pg_service.redemptions(offer.id)) == sorted(r.id for r in done)


def test_50_concurrent_redemptions_by_one_fan_of_a_once_per_fan_offer(pg_service):
    offer = pg_service.create(new_creator(), offer_fields(max_per_fan=1))
    calls = [lambda n=n: pg_service.redeem(offer.id, "fan-1", 10, f"key-{n}") for n in range(50)]
    results = race(calls, workers=25)
    assert sum(isinstance(r, Redemption) for r in results) == 1
    assert Counter(getattr(r, "reason", None) for r in results) == {None: 1, "fan_limit": 49}
    assert count_and_rows(pg_service, offer.id) == (1, 1)


def test_the_same_key_50_times_concurrently_is_one_redemption(pg_service):
    offer = pg_service.create(new_creator(), offer_fields())
    calls = [lambda: pg_service.redeem(offer.id, "fan-1", Decimal(10), "the-key")] * 50
    results = race(calls, workers=25)
    assert all(isinstance(r, Redemption) for r in results), results
    assert len(set(results)) == 1  # identical answers
    assert count_and_rows(pg_service, offer.id) == (1, 1)


def test_two_concurrent_updates_one_wins_the_other_is_a_conflict(pg_service):
    creator = new_creator()
    for n in range(20):
        offer = pg_service.create(creator, offer_fields(name=f"offer {n}"))
        calls = [
            lambda name=name, offer_id=offer.id: pg_service.update(
                offer_id, {"name": name}, expected_version=1
            )
            for name in ("left", "right")
        ]
        results = race(calls, workers=2)
        [winner] = [r for r in results if isinstance(r, Offer)]
        [loser] = [r for r in results if isinstance(r, Conflict)]
        assert winner.version == 2 and loser.current_version == 2
        assert "version 2" in str(loser)
        assert pg_service.get(offer.id).name == winner.name


def test_updates_while_redeeming_keep_the_count(pg_service):
    """An edit never writes the count back: the count is the redemptions' business."""
    offer = pg_service.create(new_creator(), offer_fields(max_redemptions=150))
    redeem = [
        lambda n=n: pg_service.redeem(offer.id, f"fan-{n}", 10, f"key-{n}") for n in range(120)
    ]
    edit = [lambda n=n: pg_service.update(offer.id, {"name": f"edit {n}"}) for n in range(30)]
    results = race([*redeem, *edit])
    assert not [r for r in results if isinstance(r, Exception)], results
    assert count_and_rows(pg_service, offer.id) == (120, 120)
    assert pg_service.get(offer.id).version == 31
