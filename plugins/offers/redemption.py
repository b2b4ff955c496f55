"""One redemption, in one transaction that holds under concurrency.

The transaction's first statement is a conditional UPDATE: it adds one to
``redemption_count`` only if the offer is published, inside its window, below its limit
and meant for this purchase — so the database decides, not a read made earlier, and two
redemptions of one offer queue on its row. The redemption row is written in the same
transaction; a refused redemption rolls back and changes nothing. ``(offer_id,
idempotency_key)`` is unique: the same key again is the first redemption, replayed.
"""

from __future__ import annotations

import os
import threading
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, NamedTuple

import psycopg
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer
from psycopg.postgres import types as PG_TYPES
from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from sqlalchemy import String, and_, bindparam, event, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

from engine.plugin_api import HuntazeError, InvalidInput, Money, NotFound, TriggerContext
from plugins.offers.models import Amount, OfferRow, RedemptionRow
from plugins.offers.status import status_of
from plugins.offers.validation import (
    CENT,
    CODE_RE,
    Audience,
    DiscountType,
    OfferStatus,
    amount_problem,
    has_control,
)

TRIGGER = "offer_redeemed"


@dataclass(frozen=True)
class Redemption:
    """One redemption, as logged (design property 12)."""

    id: str
    offer_id: str
    creator_id: str
    fan_id: str
    amount: Decimal  # the price before the discount
    discount: Decimal
    currency: str
    quantity: int
    code: str | None
    idempotency_key: str
    redeemed_at: datetime

    @property
    def paid(self) -> Decimal:
        return self.amount - self.discount


class RedemptionRefused(HuntazeError):
    """The offer cannot be redeemed by this fan now; ``reason`` says why, in one word:
    ``draft``, ``scheduled``, ``expired``, ``exhausted``, ``fan_limit``, ``audience``
    (HTTP 409), or ``code``, ``currency``, ``minimum``, ``quantity`` (422: the request
    does not fit the offer). Nothing was changed."""

    status_code = 409
    INPUT_REASONS = frozenset({"code", "currency", "minimum", "quantity"})

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        if reason in self.INPUT_REASONS:
            self.status_code = 422


class Replay(Exception):
    """The idempotency key was used before: roll back, answer with the first result."""


class Retry(Exception):
    """The offer changed between two statements: look again."""


class Request(NamedTuple):
    """A redemption asked for, checked. (A named tuple: made on every redemption, it costs
    a third of a frozen dataclass.)"""

    offer_id: str
    fan_id: str
    amount: Decimal
    currency: str | None  # None: the offer's own
    quantity: int
    key: str
    code: str | None
    fan: dict[str, Any] | None  # the fan's fields, as JSON

    @property
    def tags(self) -> list[str]:
        tags = (self.fan or {}).get("tags") or ()
        return [tag for tag in tags if isinstance(tag, str)]


def request(
    offer_id: str,
    fan_id: str,
    amount: Money | Decimal | int | str,
    key: str,
    fan: BaseModel | Mapping[str, Any] | None,
    quantity: int,
    code: str | None,
) -> Request:
    """The request, or InvalidInput naming the field that is wrong (NotFound for an offer
    id that cannot be one)."""
    if not isinstance(offer_id, str) or not 1 <= len(offer_id) <= 200 or not _clean(offer_id):
        raise NotFound(f"no offer {offer_id!r}")
    currency = None
    if isinstance(amount, Money):
        amount, currency = amount.amount, amount.currency
    try:
        value = amount if type(amount) is Decimal else Decimal(str(amount))
    except InvalidOperation:
        raise InvalidInput(f"{amount!r} is not an amount", "amount") from None
    problem = amount_problem(value)
    if problem:
        raise InvalidInput(f"the amount {problem}", "amount")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= 1000:
        raise InvalidInput("from 1 to 1000 items", "quantity")
    if not isinstance(key, str) or not 1 <= len(key) <= 200 or not _clean(key):
        raise InvalidInput("an idempotency key of 1 to 200 characters", "idempotency_key")
    if not isinstance(fan_id, str) or not 1 <= len(fan_id) <= 200 or not _clean(fan_id):
        raise InvalidInput("the fan's id, 1 to 200 characters", "fan_id")
    if code is not None and not CODE_RE.fullmatch(code):
        raise InvalidInput("3 to 40 letters, digits, _ or -", "code")
    fan_json = None
    if isinstance(fan, BaseModel):
        fan_json = fan.model_dump(mode="json")
    elif fan is not None:
        fan_json = to_jsonable_python(dict(fan))
    return Request(offer_id, fan_id, value.quantize(CENT), currency, quantity, key, code,
                   fan_json)  # fmt: skip


def _clean(text: str) -> bool:
    """No control character: a printable text (the usual id or key) has none, and saying
    so is quicker than looking at each character."""
    return text.isprintable() or not has_control(text)


OFFERS = OfferRow.__table__
REDEMPTIONS = RedemptionRow.__table__
# What the redemption needs of the offer, returned by the UPDATE that counts it.
_PRICING = [OFFERS.c[name] for name in (
    "creator_id", "name", "discount_type", "discount_value", "currency", "buy_quantity",
    "get_quantity", "max_free_per_order", "bundle_price", "max_per_fan",
)]  # fmt: skip


def redeem(session: Session, request: Request, now: datetime) -> tuple[Redemption, str]:
    """Redeem in ``session``'s transaction; return the redemption and the offer's name.
    Raises :class:`RedemptionRefused`, ``NotFound``, or :class:`Replay` / :class:`Retry`
    — after each of which the caller rolls back."""
    # Core statements built once (see _statements): this is the hot path.
    connection = session.connection()
    statements = _statements(connection.dialect.name, request)
    offer = connection.execute(statements.count, _parameters(request, now)).one_or_none()
    if offer is None:
        raise _refusal(session, request, now)
    # From here on the offer's row is locked by this transaction: every other
    # redemption of the offer waits, so the counts below cannot change under us.
    discount = _discount(offer, request.amount, request.quantity)
    fan_seq = None
    if offer.max_per_fan is not None:
        used = connection.execute(
            statements.used, {"offer_id": request.offer_id, "fan_id": request.fan_id}
        ).scalar_one()
        if used >= offer.max_per_fan:
            if _by_key(session, request) is not None:
                raise Replay
            raise RedemptionRefused(
                "fan_limit",
                f"the fan has redeemed the offer {offer.name!r} {used} time(s), "
                "as many as it allows per fan",
            )
        fan_seq = used + 1
    row = {
        "id": str(uuid.uuid4()), "offer_id": request.offer_id,
        "creator_id": offer.creator_id, "fan_id": request.fan_id, "amount": request.amount,
        "discount": discount, "currency": offer.currency, "quantity": request.quantity,
        "code": request.code, "idempotency_key": request.key, "fan_seq": fan_seq,
        "redeemed_at": now,
    }  # fmt: skip
    if connection.execute(statements.log, row).scalar() is None:
        raise Replay  # roll back the count: the key's first redemption stands
    del row["fan_seq"]
    return Redemption(**row), offer.name


# PostgreSQL's fast path: the whole redemption in one statement outside a transaction
# block — one round trip and one commit, like a bare UPDATE. It raises the offer's count
# first, with every condition in the UPDATE's WHERE, as the general way does: the UPDATE
# locks the row, and READ COMMITTED checks the conditions again on the newest version if
# another redemption changed it meanwhile. The INSERT of the redemption follows; if it
# fails (a known idempotency key, a fan's number taken), the statement fails, the count
# with it. So all happen, or none does — and the general way decides what the statement
# did not redeem: a refusal, to find out why; a known key, to replay it.
#
# Every redemption, either way, raises the offer's count before it logs a row, so one
# that commits while this one runs holds the offer's row until then. The fan's count
# (offers_fan_redemptions, a VOLATILE function: a snapshot of its own when called) is read
# by the WHERE, read again when the WHERE is checked again after waiting for that row, and
# read after the lock for the fan's number (fan_seq), which (offer_id, fan_id, fan_seq)
# keeps unique whatever happens. It is a function, not a subquery, so that an offer
# without a limit per fan costs nothing for it: the executor would set a subquery up on
# every redemption, used or not (plugins/offers/migrations/0002_offers_fan_redemptions.py).
#
# The redemption's id is drawn by the client (Python's uuid4): gen_random_uuid() cost
# the server more than the whole RETURNING of the INSERT (docs/performance.md).
#
# Parameters: $1 offer_id, $2 now, $3 amount, $4 fan_id, $5 the fan's tags (NULL: none),
# $6 currency (NULL: the offer's), $7 the code in lower case, $8 quantity, $9 the code,
# $10 the key, $11 the redemption's id.
FAST_REDEEM = """
WITH counted AS (
    UPDATE offers SET redemption_count = redemption_count + 1
    WHERE id = $1 AND deleted_at IS NULL AND NOT draft
      AND valid_from <= $2 AND (valid_until IS NULL OR valid_until > $2)
      AND (max_redemptions IS NULL OR redemption_count < max_redemptions)
      AND (min_purchase IS NULL OR min_purchase <= $3)
      AND (target_audience IN ('all', 'segment')
           OR (target_audience = 'fan' AND target_value = $4)
           OR (target_audience = 'tag' AND target_value = ANY($5)))
      AND ($6 IS NULL OR currency = $6)
      AND ($7 IS NULL OR code_key = $7)
      -- buy-X-get-Y: at least one whole set of buy + get items (integer division)
      AND (discount_type <> 'bogo'
           OR least($8 / (buy_quantity + get_quantity) * get_quantity,
                    max_free_per_order) > 0)
      AND (max_per_fan IS NULL OR max_per_fan > offers_fan_redemptions($1, $4))
    RETURNING id, creator_id, name, currency,
        CASE discount_type
            WHEN 'percentage' THEN round($3 * discount_value / 100, 2)
            WHEN 'fixed' THEN least(discount_value, $3)
            WHEN 'bundle' THEN greatest($3 - bundle_price, 0)
            ELSE round($3 * least($8 / (buy_quantity + get_quantity) * get_quantity,
                                  max_free_per_order) / $8, 2)
        END AS discount,
        CASE WHEN max_per_fan IS NOT NULL THEN offers_fan_redemptions($1, $4) + 1
        END AS fan_seq
)
INSERT INTO offer_redemptions (id, offer_id, creator_id, fan_id, amount, discount, currency,
                               quantity, code, idempotency_key, fan_seq, redeemed_at)
SELECT $11, id, creator_id, $4, $3, discount, currency, $8, $9, $10, fan_seq, $2
FROM counted
RETURNING (SELECT name FROM counted), creator_id, currency, discount
"""
_TEXT, _TIMESTAMPTZ, _NUMERIC, _INTEGER = (
    PG_TYPES[name].oid for name in ("text", "timestamptz", "numeric", "int4")
)
_FAST_TYPES = [_TEXT, _TIMESTAMPTZ, _NUMERIC, _TEXT, PG_TYPES["text"].array_oid, _TEXT, _TEXT,
               _INTEGER, _TEXT, _TEXT, _TEXT]  # fmt: skip
_FORMATS = [PyFormat.TEXT] * len(_FAST_TYPES)  # every parameter sent as text
_FAST_NAME = b"huntaze_offers_redeem"  # the prepared statement's name on each connection
_FAST = "huntaze.offers.redeem"  # the key of a pooled connection's _Prepared in its info


@dataclass
class _Prepared:
    """A connection that runs FAST_REDEEM: its adapters, and whether the server holds
    the statement prepared (psycopg deallocates every prepared statement after a
    rollback that follows its own: then it is prepared again)."""

    connection: psycopg.Connection
    transformer: Transformer
    prepared: bool = False

    @classmethod
    def on(cls, connection: psycopg.Connection) -> _Prepared:
        return cls(connection, Transformer(connection))


class _Spare:
    """Connections of one engine set aside for FAST_REDEEM. Taking one is a list's pop:
    a checkout from the engine's pool and its return cost the client more CPU than the
    statement does (docs/performance.md, Redemptions). They are the pool's connections,
    opened by the engine (its arguments, its events) and detached from the pool; at most
    the pool's size of them are open at once — past that, a redemption takes a connection
    from the pool. Closed when the engine is disposed or collected, or at exit; a process
    forked from the one that opened them leaves them alone (closing them would end the
    parent's sessions) and opens its own."""

    def __init__(self, engine: Engine) -> None:
        self.limit = engine.pool.size() if isinstance(engine.pool, QueuePool) else 1
        self.idle: list[_Prepared] = []
        self.open = 0  # opened and not closed, idle or in use
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.inherited: list[_Prepared] = []  # a parent's, neither used nor closed
        event.listen(engine, "engine_disposed", self.close)
        weakref.finalize(engine, self.close)  # also at exit

    def take(self, engine: Engine) -> _Prepared | None:
        """An idle connection, a new one, or None when as many as the limit are open."""
        self._after_fork()
        try:
            return self.idle.pop()
        except IndexError:
            pass
        with self.lock:
            if self.open >= self.limit:
                return None
            self.open += 1
        try:
            pooled = engine.raw_connection()
            connection = pooled.driver_connection
            pooled.detach()
        except BaseException:
            with self.lock:
                self.open -= 1
            raise
        return _Prepared.on(connection)

    def give(self, state: _Prepared) -> None:
        """Back among the idle, or closed if it broke."""
        pgconn = state.connection.pgconn
        if (
            pgconn.status == pq.ConnStatus.OK
            and pgconn.transaction_status == pq.TransactionStatus.IDLE
        ):
            self.idle.append(state)
            return
        state.connection.close()
        with self.lock:
            self.open -= 1

    def close(self, *_engine: Engine) -> None:
        """Close the idle ones (the engine is disposed, collected, or Python exits)."""
        self._after_fork()
        while self.idle:
            self.idle.pop().connection.close()
            with self.lock:
                self.open -= 1

    def _after_fork(self) -> None:
        if self.pid != os.getpid():
            self.inherited, self.idle = self.idle, []
            self.open, self.lock, self.pid = 0, threading.Lock(), os.getpid()


_SPARE: weakref.WeakKeyDictionary[Engine, _Spare] = weakref.WeakKeyDictionary()
_SPARE_LOCK = threading.Lock()


def _spare(engine: Engine) -> _Spare:
    spare = _SPARE.get(engine)
    if spare is None:
        with _SPARE_LOCK:
            spare = _SPARE.get(engine)
            if spare is None:
                spare = _SPARE[engine] = _Spare(engine)
    return spare


def redeem_at_once(
    engine: Engine, request: Request, now: datetime
) -> tuple[Redemption, str] | None:
    """PostgreSQL only: the redemption in one statement (``FAST_REDEEM``), or None when it
    must go the general way (``redeem``) — nothing was changed then."""
    code = request.code
    # No fan, no tags: NULL rather than an empty array, which psycopg adapts in Python.
    tags = (request.tags or None) if request.fan else None
    new_id = _uuid4()
    values = (request.offer_id, now, request.amount, request.fan_id, tags, request.currency,
              code.lower() if code else None, request.quantity, code, request.key,
              new_id)  # fmt: skip
    spare = _SPARE.get(engine) or _spare(engine)
    state = spare.take(engine)
    try:
        row = _run_prepared(state, values) if state else _run_pooled(engine, values)
    except psycopg.errors.UniqueViolation:
        return None  # a known idempotency key, or the fan's number taken (see FAST_REDEEM)
    except psycopg.OperationalError:
        if state is not None:
            state.connection.close()  # given back closed: forgotten
        return None  # a lost connection: the general way retries, the key dedupes
    finally:
        if state is not None:
            spare.give(state)
    if row is None:
        return None
    name, creator_id, currency, discount = row
    done = _redemption({
        "id": new_id, "offer_id": request.offer_id, "creator_id": creator_id,
        "fan_id": request.fan_id, "amount": request.amount,
        "discount": discount.quantize(CENT), "currency": currency,
        "quantity": request.quantity, "code": code, "idempotency_key": request.key,
        "redeemed_at": now,
    })  # fmt: skip
    return done, name


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _uuid4() -> str:
    """``str(uuid.uuid4())``, made in less than half the time: 16 random bytes, the
    version (4) and the variant (RFC 4122) set in their text."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def _redemption(fields: dict[str, Any]) -> Redemption:
    """A Redemption of every field in ``fields``, made without the frozen dataclass's
    ``__init__`` (one ``object.__setattr__`` a field: twice the time)."""
    done = object.__new__(Redemption)
    done.__dict__.update(fields)
    return done


def _run_pooled(engine: Engine, values: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """FAST_REDEEM on a connection from the engine's pool, whose entry's ``info`` keeps
    the connection's _Prepared (and forgets it with the connection)."""
    pooled = engine.raw_connection()
    try:
        if pooled.driver_connection.pgconn.transaction_status != pq.TransactionStatus.IDLE:
            return None  # not as the pool should hand it over: the general way
        state = pooled.info.get(_FAST)
        if state is None:
            state = pooled.info[_FAST] = _Prepared.on(pooled.driver_connection)
        return _run_prepared(state, values)
    except psycopg.OperationalError:
        pooled.invalidate()
        raise
    finally:
        pooled.close()


def _run_prepared(state: _Prepared, values: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """FAST_REDEEM's row, or None, on an idle connection — through libpq itself
    (``Connection.pgconn``), because psycopg's cursor would cost more than the statement:
    the parameters are adapted and the row loaded by psycopg's own ``Transformer``, and
    nothing else runs. Outside a transaction block the statement commits on its own."""
    connection, transformer = state.connection, state.transformer
    pgconn = connection.pgconn
    parameters = transformer.dump_sequence(values, _FORMATS)
    for _ in range(2):
        if not state.prepared:
            _check(pgconn.prepare(_FAST_NAME, FAST_REDEEM.encode(), _FAST_TYPES), connection)
            state.prepared = True
        result = pgconn.exec_prepared(_FAST_NAME, parameters)
        if result.status != pq.ExecStatus.FATAL_ERROR:
            break
        if result.error_field(pq.DiagnosticField.SQLSTATE) != b"26000":
            _check(result, connection)
        state.prepared = False  # 26000: no such prepared statement any more
    _check(result, connection)
    if result.ntuples == 0:
        return None
    transformer.set_pgresult(result)
    return transformer.load_row(0, tuple)


def _check(result: pq.abc.PGresult, connection: psycopg.Connection) -> None:
    """Raise the error ``result`` holds, as psycopg would (``UniqueViolation``, ...)."""
    if result.status == pq.ExecStatus.FATAL_ERROR:
        if connection.pgconn.status == pq.ConnStatus.BAD:
            raise psycopg.OperationalError(connection.pgconn.get_error_message())
        raise psycopg.errors.error_from_result(result, connection.info.encoding)


@dataclass(frozen=True)
class _Statements:
    count: Any  # the conditional UPDATE
    used: Any  # the fan's redemptions of the offer
    log: Any  # the INSERT of the redemption, nothing on a known key


@lru_cache(maxsize=16)
def _built(dialect: str, currency: bool, code: bool) -> _Statements:
    count = (
        update(OFFERS)
        .where(OFFERS.c.id == bindparam("req_offer_id"), *_redeemable(currency, code))
        .values(redemption_count=OFFERS.c.redemption_count + 1)
        .returning(*_PRICING)
    )
    used = select(func.count()).where(
        REDEMPTIONS.c.offer_id == bindparam("offer_id"),
        REDEMPTIONS.c.fan_id == bindparam("fan_id"),
    )
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    log = (
        insert(REDEMPTIONS)
        .on_conflict_do_nothing(index_elements=["offer_id", "idempotency_key"])
        .returning(REDEMPTIONS.c.id)
    )
    return _Statements(count, used, log)


def _statements(dialect: str, request: Request) -> _Statements:
    return _built(dialect, request.currency is not None, request.code is not None)


def _parameters(request: Request, now: datetime) -> dict[str, Any]:
    # Prefixed: an UPDATE given a parameter named like a column would SET that column.
    return {
        "req_offer_id": request.offer_id,
        "req_now": now,
        "req_amount": request.amount,
        "req_fan_id": request.fan_id,
        "req_tags": request.tags or [""],
        "req_currency": request.currency,
        "req_code": request.code.lower() if request.code else None,
    }


def replay(session: Session, request: Request) -> tuple[Redemption, str]:
    """The first redemption with the request's key, and the offer's name."""
    row = _by_key(session, request)
    if row is None:  # the first call with the key rolled back meanwhile
        raise Retry
    if (row.fan_id, row.amount, row.quantity) != (request.fan_id, request.amount,
                                                  request.quantity):  # fmt: skip
        raise InvalidInput(
            f"the idempotency key {request.key!r} was used for another redemption "
            f"(fan {row.fan_id}, {row.amount} {row.currency}, {row.quantity} item(s))",
            "idempotency_key",
        )
    name = session.scalar(select(OfferRow.name).where(OfferRow.id == row.offer_id))
    return from_row(row), name


def from_row(row: RedemptionRow) -> Redemption:
    return Redemption(
        id=row.id, offer_id=row.offer_id, creator_id=row.creator_id, fan_id=row.fan_id,
        amount=row.amount, discount=row.discount, currency=row.currency,
        quantity=row.quantity, code=row.code, idempotency_key=row.idempotency_key,
        redeemed_at=row.redeemed_at,
    )  # fmt: skip


def trigger_context(redemption: Redemption, offer_name: str, fan: dict | None) -> TriggerContext:
    """The ``offer_redeemed`` event. Its id is the redemption's, so a replayed
    redemption emitted again is recognised as the same event."""
    event = {
        "offer_id": redemption.offer_id,
        "offer_name": offer_name,
        "amount": str(redemption.amount),
        "discount": str(redemption.discount),
        "paid": str(redemption.paid),
        "currency": redemption.currency,
        "code": redemption.code,
        "redemption_id": redemption.id,
    }
    return TriggerContext(
        type=TRIGGER,
        creator_id=redemption.creator_id,
        fan_id=redemption.fan_id,
        data={"fan": fan, "event": event},
        timestamp=redemption.redeemed_at,
        event_id=f"{TRIGGER}:{redemption.id}",
    )


def lost_race(error: IntegrityError) -> bool:
    """Whether the redemption broke a unique key (its idempotency key, or the fan's
    number): another redemption wrote first, and a second look sees it. Any other
    integrity error is a bug, not a race."""
    code = getattr(error.orig, "sqlstate", None)
    if code is not None:  # PostgreSQL
        return code == "23505"
    return "UNIQUE constraint failed" in str(error.orig)


def _by_key(session: Session, request: Request) -> RedemptionRow | None:
    return session.scalar(
        select(RedemptionRow).where(
            RedemptionRow.offer_id == request.offer_id,
            RedemptionRow.idempotency_key == request.key,
        )
    )


def _redeemable(currency: bool, code: bool) -> list[Any]:
    """The offer may be redeemed by this request now: the conditions of the UPDATE, on
    the parameters now, amount, fan_id, tags (and currency, code when given)."""
    c = OFFERS.c
    now = bindparam("req_now", type_=c.valid_from.type)
    conditions = [
        c.deleted_at.is_(None),
        c.draft.is_(False),
        c.valid_from <= now,
        or_(c.valid_until.is_(None), c.valid_until > now),
        or_(c.max_redemptions.is_(None), c.redemption_count < c.max_redemptions),
        or_(c.min_purchase.is_(None), c.min_purchase <= bindparam("req_amount", type_=Amount)),
        or_(
            c.target_audience.in_([Audience.ALL.value, Audience.SEGMENT.value]),
            and_(
                c.target_audience == Audience.FAN.value,
                c.target_value == bindparam("req_fan_id", type_=String),
            ),
            and_(
                c.target_audience == Audience.TAG.value,
                c.target_value.in_(bindparam("req_tags", expanding=True)),
            ),
        ),
    ]
    if currency:
        conditions.append(c.currency == bindparam("req_currency", type_=String))
    if code:
        conditions.append(c.code_key == bindparam("req_code", type_=String))
    return conditions


def _refusal(session: Session, request: Request, now: datetime) -> Exception:
    """Why the conditional UPDATE matched nothing, as the exception to raise."""
    if _by_key(session, request) is not None:
        return Replay()
    row = session.get(OfferRow, request.offer_id)
    if row is None or row.deleted_at is not None:
        return NotFound(f"no offer `{request.offer_id}`")
    status = status_of(row, now)
    if status == OfferStatus.EXHAUSTED:
        return RedemptionRefused(
            "exhausted",
            f"the offer {row.name!r} is exhausted: all {row.max_redemptions} redemptions are taken",
        )
    if status != OfferStatus.ACTIVE:
        return RedemptionRefused(str(status), f"the offer {row.name!r} is {status}")
    problem = _mismatch(row, request)
    return RedemptionRefused(*problem) if problem else Retry()


def _mismatch(row: OfferRow, request: Request) -> tuple[str, str] | None:
    """Why an active offer does not fit this request (as ``_redeemable`` decides)."""
    audience = row.target_audience
    if audience == Audience.FAN and row.target_value != request.fan_id:
        return "audience", f"the offer {row.name!r} is for another fan"
    if audience == Audience.TAG and row.target_value not in request.tags:
        return "audience", f"the offer {row.name!r} is for fans tagged {row.target_value!r}"
    if request.currency is not None and request.currency != row.currency:
        return "currency", f"the offer {row.name!r} is in {row.currency}, not {request.currency}"
    if request.code is not None and request.code.lower() != row.code_key:
        return "code", f"{request.code!r} is not the code of the offer {row.name!r}"
    if row.min_purchase is not None and request.amount < row.min_purchase:
        return "minimum", (
            f"the offer {row.name!r} needs a purchase of at least {row.min_purchase} "
            f"{row.currency}, not {request.amount}"
        )
    return None


def _discount(offer: Any, amount: Decimal, quantity: int) -> Decimal:
    """The discount the offer gives on ``quantity`` items costing ``amount`` together."""
    kind = offer.discount_type
    if kind == DiscountType.PERCENTAGE:
        return (amount * offer.discount_value / 100).quantize(CENT, ROUND_HALF_UP)
    if kind == DiscountType.FIXED:
        return min(offer.discount_value, amount)
    if kind == DiscountType.BUNDLE:
        return max(amount - offer.bundle_price, Decimal(0))
    buy, get = offer.buy_quantity, offer.get_quantity
    free = quantity // (buy + get) * get
    if offer.max_free_per_order is not None:
        free = min(free, offer.max_free_per_order)
    if free == 0:
        raise RedemptionRefused(
            "quantity", f"buy {buy}, get {get} free: the order needs {buy + get} items at least"
        )
    return (amount * free / quantity).quantize(CENT, ROUND_HALF_UP)
