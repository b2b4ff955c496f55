"""``OffersService``: offers as the design document has them, and redemptions that hold
under concurrency.

Redeeming is one transaction whose first statement is a conditional UPDATE: it adds one
to ``redemption_count`` only if the offer is published, inside its window, below its
limit and meant for this fan — so the database, not a read made earlier, decides, and
two redemptions of one offer queue on its row. The redemption row is written in the same
transaction; a redemption that fails rolls back and changes nothing. The same
idempotency key is one redemption: ``(offer_id, idempotency_key)`` is unique, and a
second call returns the first one's result.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.plugin_api import (
    Conflict,
    Database,
    HuntazeError,
    InvalidInput,
    Money,
    NotFound,
    TriggerContext,
)
from plugins.offers.models import OfferRow, RedemptionRow
from plugins.offers.validation import (
    CENT,
    Audience,
    DiscountType,
    FieldError,
    InvalidOffer,
    OfferData,
    OfferStatus,
    amount_problem,
    parse_offer,
)

log = logging.getLogger(__name__)
TRIGGER = "offer_redeemed"
# Tries of a write that lost a race it can win on a second look (see redeem, update).
ATTEMPTS = 3


class Offer(OfferData):
    """An offer as read: its data, its status at the moment it was read, its counters."""

    id: str
    creator_id: str
    status: OfferStatus
    redemption_count: int
    version: int
    created_at: datetime
    updated_at: datetime

    @property
    def data(self) -> OfferData:
        return OfferData.model_validate(self.model_dump(include=set(OfferData.model_fields)))


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
    ``draft``, ``scheduled``, ``expired``, ``exhausted``, ``fan_limit``, ``audience``,
    ``code``, ``currency``, ``minimum`` or ``quantity``. Nothing was changed."""

    status_code = 409
    INPUT_REASONS = frozenset({"code", "currency", "minimum", "quantity"})

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        if reason in self.INPUT_REASONS:
            self.status_code = 422


class _Replay(Exception):
    """The idempotency key was used before: roll back, answer with the first result."""


class _Retry(Exception):
    """The offer changed between two statements: look again."""


def new_id() -> str:
    return str(uuid.uuid4())


def status_of(row: OfferRow, now: datetime) -> OfferStatus:
    """The status at ``now``: derived from the row each time it is read, never stored."""
    if row.draft:
        return OfferStatus.DRAFT
    if now < row.valid_from:
        return OfferStatus.SCHEDULED
    if row.valid_until is not None and now >= row.valid_until:
        return OfferStatus.EXPIRED
    if row.max_redemptions is not None and row.redemption_count >= row.max_redemptions:
        return OfferStatus.EXHAUSTED
    return OfferStatus.ACTIVE


def _status_clause(status: OfferStatus, now: datetime):
    """The SQL condition that an offer has ``status`` at ``now`` (as ``status_of``)."""
    published = OfferRow.draft.is_(False)
    started = OfferRow.valid_from <= now
    ended = and_(OfferRow.valid_until.is_not(None), OfferRow.valid_until <= now)
    full = and_(
        OfferRow.max_redemptions.is_not(None),
        OfferRow.redemption_count >= OfferRow.max_redemptions,
    )
    return {
        OfferStatus.DRAFT: OfferRow.draft.is_(True),
        OfferStatus.SCHEDULED: and_(published, ~started),
        OfferStatus.EXPIRED: and_(published, started, ended),
        OfferStatus.EXHAUSTED: and_(published, started, ~ended, full),
        OfferStatus.ACTIVE: and_(published, started, ~ended, ~full),
    }[status]


def _columns(data: OfferData) -> dict[str, Any]:
    values = data.model_dump()
    values["content_ids"] = list(data.content_ids)
    values["code_key"] = data.code.lower() if data.code else None
    return values


def _data(row: OfferRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in OfferData.model_fields}


def _redemption(row: RedemptionRow) -> Redemption:
    return Redemption(
        id=row.id,
        offer_id=row.offer_id,
        creator_id=row.creator_id,
        fan_id=row.fan_id,
        amount=row.amount,
        discount=row.discount,
        currency=row.currency,
        quantity=row.quantity,
        code=row.code,
        idempotency_key=row.idempotency_key,
        redeemed_at=row.redeemed_at,
    )


class OffersService:
    """Offers of every creator in one database.

    ``now`` is the engine's clock (``runtime.clock.now``, or an action's ``ctx.now``);
    ``emit`` receives an ``offer_redeemed`` :class:`TriggerContext` after every
    redemption (``EventSystem.emit`` or ``Dispatcher.dispatch``)."""

    def __init__(
        self,
        database: Database,
        now: Callable[[], datetime],
        emit: Callable[[TriggerContext], Any] | None = None,
    ) -> None:
        self.db = database
        self.now = now
        self.emit = emit

    # --- Reading ---------------------------------------------------------------------

    def get(self, offer_id: str) -> Offer:
        now = self.now()
        return self._offer(self.db.run(lambda s: self._row(s, offer_id)), now)

    def list(self, creator_id: str, status: OfferStatus | str | None = None) -> list[Offer]:
        """The creator's offers, oldest first; only those with ``status`` now, if given."""
        now = self.now()
        query = select(OfferRow).where(
            OfferRow.creator_id == creator_id, OfferRow.deleted_at.is_(None)
        )
        if status is not None:
            query = query.where(_status_clause(_parse_status(status), now))
        query = query.order_by(OfferRow.created_at, OfferRow.id)
        rows = self.db.run(lambda s: list(s.scalars(query)))
        return [self._offer(row, now) for row in rows]

    def by_code(self, creator_id: str, code: str) -> Offer:
        """The creator's published offer that answers to ``code`` (any case) now."""
        now = self.now()
        query = (
            select(OfferRow)
            .where(
                OfferRow.creator_id == creator_id,
                OfferRow.code_key == code.lower(),
                OfferRow.deleted_at.is_(None),
                OfferRow.draft.is_(False),
                OfferRow.valid_from <= now,
                or_(OfferRow.valid_until.is_(None), OfferRow.valid_until > now),
            )
            .order_by(OfferRow.valid_from.desc())
            .limit(1)
        )
        row = self.db.run(lambda s: s.scalar(query))
        if row is None:
            raise NotFound(f"no offer answers to the code {code!r} now")
        return self._offer(row, now)

    def redemptions(self, offer_id: str) -> list[Redemption]:
        query = (
            select(RedemptionRow)
            .where(RedemptionRow.offer_id == offer_id)
            .order_by(RedemptionRow.redeemed_at, RedemptionRow.id)
        )
        return [_redemption(row) for row in self.db.run(lambda s: list(s.scalars(query)))]

    def _row(self, session: Session, offer_id: str, lock: bool = False) -> OfferRow:
        row = session.get(OfferRow, offer_id, with_for_update=lock)
        if row is None or row.deleted_at is not None:
            raise NotFound(f"no offer `{offer_id}`")
        return row

    def _offer(self, row: OfferRow, now: datetime) -> Offer:
        return Offer(
            **_data(row),
            id=row.id,
            creator_id=row.creator_id,
            status=status_of(row, now),
            redemption_count=row.redemption_count,
            version=row.version,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    # --- Writing ---------------------------------------------------------------------

    def create(
        self,
        creator_id: str,
        data: OfferData | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> Offer:
        """A new offer. With ``idempotency_key``, a second call with the same key
        creates nothing and returns the first offer (an automation's retried step)."""
        data = parse_offer(data)
        now = self.now()

        def create(session: Session) -> OfferRow:
            if idempotency_key is not None:
                existing = self._by_idempotency_key(session, creator_id, idempotency_key)
                if existing is not None:
                    return existing
            self._check_code(session, creator_id, data, None)
            row = OfferRow(
                id=new_id(), creator_id=creator_id, idempotency_key=idempotency_key,
                **_columns(data), redemption_count=0, version=1, created_at=now,
                updated_at=now,
            )  # fmt: skip
            session.add(row)
            session.flush()
            return row

        try:
            row = self.db.run(create)
        except IntegrityError:
            if idempotency_key is None:
                raise
            # Another call with the same key inserted first: theirs is the offer.
            row = self.db.run(lambda s: self._by_idempotency_key(s, creator_id, idempotency_key))
        return self._offer(row, now)

    def update(
        self, offer_id: str, changes: Mapping[str, Any], *, expected_version: int | None = None
    ) -> Offer:
        """Change some of the offer's data. With ``expected_version``, refuse
        (:class:`Conflict`, naming the current version) if it is not the offer's."""
        unknown = sorted(set(changes) - set(OfferData.model_fields))
        if unknown:
            raise InvalidOffer([FieldError(name, "no such field of an offer") for name in unknown])
        for _ in range(ATTEMPTS):
            try:
                row = self.db.run(lambda s: self._update(s, offer_id, changes, expected_version))
            except _Retry:
                continue  # changed meanwhile by a writer who did not say which version
            return self._offer(row, self.now())
        raise Conflict(f"offer `{offer_id}` keeps changing; try again", self.get(offer_id).version)

    def _update(
        self, session: Session, offer_id: str, changes: Mapping[str, Any], expected: int | None
    ) -> OfferRow:
        row = self._row(session, offer_id)
        read = row.version
        if expected is not None and read != expected:
            raise _conflict(offer_id, read, expected)
        data = parse_offer({**_data(row), **changes})
        self._check_code(session, row.creator_id, data, offer_id)
        # The version read decides, not the one expected: a write in between (the row
        # is not locked while the data is validated) makes this UPDATE match nothing.
        result = session.execute(
            update(OfferRow)
            .where(OfferRow.id == offer_id, OfferRow.version == read)
            .values(**_columns(data), version=read + 1, updated_at=self.now())
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            if expected is not None:
                current = session.scalar(select(OfferRow.version).where(OfferRow.id == offer_id))
                raise _conflict(offer_id, current, expected)
            raise _Retry
        return session.get(OfferRow, offer_id, populate_existing=True)

    def delete(self, offer_id: str, *, expected_version: int | None = None) -> None:
        """Hide the offer: it cannot be read or redeemed any more, and its redemptions
        stay in the analytics."""

        def delete(session: Session) -> None:
            row = self._row(session, offer_id, lock=True)
            if expected_version is not None and row.version != expected_version:
                raise _conflict(offer_id, row.version, expected_version)
            row.deleted_at = self.now()
            row.version += 1

        self.db.run(delete)

    def duplicate(self, offer_id: str) -> Offer:
        """A copy with a new id, the same data, new timestamps, no redemptions, as a
        draft (design property 8)."""
        now = self.now()

        def duplicate(session: Session) -> OfferRow:
            source = self._row(session, offer_id)
            data = OfferData.model_validate({**_data(source), "draft": True})
            row = OfferRow(
                id=new_id(), creator_id=source.creator_id, idempotency_key=None,
                **_columns(data), redemption_count=0, version=1, created_at=now,
                updated_at=now,
            )  # fmt: skip
            session.add(row)
            session.flush()
            return row

        return self._offer(self.db.run(duplicate), now)

    def _by_idempotency_key(self, session: Session, creator_id: str, key: str):
        return session.scalar(
            select(OfferRow).where(
                OfferRow.creator_id == creator_id, OfferRow.idempotency_key == key
            )
        )

    def _check_code(
        self, session: Session, creator_id: str, data: OfferData, offer_id: str | None
    ) -> None:
        """A code answers to one published offer at a time: refuse it if another of the
        creator's published offers with the same code (in any case) overlaps in time."""
        if data.code is None or data.draft:
            return
        key = data.code.lower()
        if session.bind.dialect.name == "postgresql":
            # Two creations of the same code at once would both find it free: take turns.
            # (SQLite already writes one transaction at a time.)
            lock = f"huntaze.offers.code:{creator_id}:{key}"
            session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:lock))"), {"lock": lock})
        overlapping = [
            OfferRow.creator_id == creator_id,
            OfferRow.code_key == key,
            OfferRow.deleted_at.is_(None),
            OfferRow.draft.is_(False),
            or_(OfferRow.valid_until.is_(None), OfferRow.valid_until > data.valid_from),
        ]
        if data.valid_until is not None:
            overlapping.append(OfferRow.valid_from < data.valid_until)
        if offer_id is not None:
            overlapping.append(OfferRow.id != offer_id)
        other = session.scalar(select(OfferRow.name).where(*overlapping).limit(1))
        if other is not None:
            raise InvalidOffer(
                [FieldError("code", f"{data.code!r} is the code of the offer {other!r} already")]
            )

    # --- Redeeming -------------------------------------------------------------------

    def redeem(
        self,
        offer_id: str,
        fan_id: str,
        amount: Money | Decimal | int | str,
        idempotency_key: str,
        *,
        fan: BaseModel | Mapping[str, Any] | None = None,
        quantity: int = 1,
        code: str | None = None,
    ) -> Redemption:
        """Redeem the offer for a purchase of ``amount`` (the price before the discount)
        by the fan ``fan_id`` (the platform's id). ``fan`` holds the fan's fields as in
        events (name, username, tags ...): an offer for a tag checks the fan's tags, and
        automations on ``offer_redeemed`` receive them. The same ``idempotency_key`` again
        redeems nothing and returns the first redemption. Raises
        :class:`RedemptionRefused` (nothing changed), ``NotFound`` or ``InvalidInput``."""
        value, currency = _purchase(amount, quantity, idempotency_key, fan_id)
        fan_json = _fan_json(fan)
        tags = [t for t in (fan_json or {}).get("tags") or () if isinstance(t, str)]
        request = _Request(offer_id, fan_id, value, currency, quantity, idempotency_key,
                           code, tags)  # fmt: skip
        for _ in range(ATTEMPTS):
            try:
                redemption, name = self.db.run(lambda s: self._redeem(s, request))
            except _Replay:
                redemption, name = self.db.run(lambda s: self._replay(s, request))
            except (_Retry, IntegrityError):
                # A concurrent redemption took the fan's slot or the key first, or the
                # offer changed between two statements: the next look sees it.
                continue
            self._emit(redemption, name, fan_json)
            return redemption
        raise Conflict(f"offer `{offer_id}` keeps changing; try again")

    def _redeem(self, session: Session, request: _Request) -> tuple[Redemption, str]:
        now = self.now()
        offer = session.execute(
            update(OfferRow)
            .where(OfferRow.id == request.offer_id, *_redeemable(request, now))
            .values(redemption_count=OfferRow.redemption_count + 1)
            .returning(*_PRICING)
            .execution_options(synchronize_session=False)
        ).one_or_none()
        if offer is None:
            raise self._refusal(session, request, now)
        # From here on the offer's row is locked by this transaction: every other
        # redemption of the offer waits, so the counts below cannot change under us.
        discount = _discount(offer, request.amount, request.quantity)
        fan_seq = None
        if offer.max_per_fan is not None:
            used = session.scalar(
                select(func.count()).where(
                    RedemptionRow.offer_id == request.offer_id,
                    RedemptionRow.fan_id == request.fan_id,
                )
            )
            if used >= offer.max_per_fan:
                if self._by_key(session, request) is not None:
                    raise _Replay
                raise RedemptionRefused(
                    "fan_limit",
                    f"the fan has redeemed the offer {offer.name!r} {used} time(s), "
                    f"as many as it allows per fan",
                )
            fan_seq = used + 1
        row = {
            "id": new_id(), "offer_id": request.offer_id, "creator_id": offer.creator_id,
            "fan_id": request.fan_id, "amount": request.amount, "discount": discount,
            "currency": offer.currency, "quantity": request.quantity, "code": request.code,
            "idempotency_key": request.key, "fan_seq": fan_seq, "redeemed_at": now,
        }  # fmt: skip
        insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
        inserted = session.scalar(
            insert(RedemptionRow)
            .values(row)
            .on_conflict_do_nothing(index_elements=["offer_id", "idempotency_key"])
            .returning(RedemptionRow.id)
        )
        if inserted is None:
            raise _Replay  # roll back the count: the key's first redemption stands
        return Redemption(**{k: v for k, v in row.items() if k != "fan_seq"}), offer.name

    def _by_key(self, session: Session, request: _Request) -> RedemptionRow | None:
        return session.scalar(
            select(RedemptionRow).where(
                RedemptionRow.offer_id == request.offer_id,
                RedemptionRow.idempotency_key == request.key,
            )
        )

    def _replay(self, session: Session, request: _Request) -> tuple[Redemption, str]:
        row = self._by_key(session, request)
        if row is None:  # the first call with the key rolled back meanwhile
            raise _Retry
        if (row.fan_id, row.amount, row.quantity) != (
            request.fan_id,
            request.amount,
            request.quantity,
        ):
            raise InvalidInput(
                f"the idempotency key {request.key!r} was used for another redemption "
                f"(fan {row.fan_id}, {row.amount} {row.currency}, {row.quantity} item(s))",
                "idempotency_key",
            )
        name = session.scalar(select(OfferRow.name).where(OfferRow.id == row.offer_id))
        return _redemption(row), name

    def _refusal(self, session: Session, request: _Request, now: datetime) -> Exception:
        """Why the conditional UPDATE matched nothing, as the error to raise."""
        if self._by_key(session, request) is not None:
            return _Replay()
        row = self._row(session, request.offer_id)
        status = status_of(row, now)
        if status == OfferStatus.EXHAUSTED:
            return RedemptionRefused(
                "exhausted",
                f"the offer {row.name!r} is exhausted: all {row.max_redemptions} "
                "redemptions are taken",
            )
        if status != OfferStatus.ACTIVE:
            return RedemptionRefused(str(status), f"the offer {row.name!r} is {status}")
        problem = _mismatch(row, request)
        return RedemptionRefused(*problem) if problem else _Retry()

    def _emit(self, redemption: Redemption, offer_name: str, fan: dict | None) -> None:
        """Tell the engine, after the commit. The event id is the redemption's, so a
        replayed redemption emitted again is recognised as the same event."""
        if self.emit is None:
            return
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
        context = TriggerContext(
            type=TRIGGER,
            creator_id=redemption.creator_id,
            fan_id=redemption.fan_id,
            data={"fan": fan, "event": event},
            timestamp=redemption.redeemed_at,
            event_id=f"{TRIGGER}:{redemption.id}",
        )
        try:
            self.emit(context)
        except Exception:
            # The redemption is committed whatever a handler does.
            log.exception("emitting %s for redemption %s failed", TRIGGER, redemption.id)


# What the redemption needs of the offer, returned by the UPDATE that counts it.
_PRICING = (
    OfferRow.creator_id, OfferRow.name, OfferRow.discount_type, OfferRow.discount_value,
    OfferRow.currency, OfferRow.buy_quantity, OfferRow.get_quantity,
    OfferRow.max_free_per_order, OfferRow.bundle_price, OfferRow.max_per_fan,
)  # fmt: skip


@dataclass(frozen=True)
class _Request:
    offer_id: str
    fan_id: str
    amount: Decimal
    currency: str | None  # None: the offer's own
    quantity: int
    key: str
    code: str | None
    tags: list[str]


def _redeemable(request: _Request, now: datetime) -> list:
    """The offer may be redeemed by this request now: the conditions of the UPDATE."""
    conditions = [
        OfferRow.deleted_at.is_(None),
        OfferRow.draft.is_(False),
        OfferRow.valid_from <= now,
        or_(OfferRow.valid_until.is_(None), OfferRow.valid_until > now),
        or_(
            OfferRow.max_redemptions.is_(None),
            OfferRow.redemption_count < OfferRow.max_redemptions,
        ),
        or_(OfferRow.min_purchase.is_(None), OfferRow.min_purchase <= request.amount),
        or_(
            OfferRow.target_audience.in_([Audience.ALL, Audience.SEGMENT]),
            and_(OfferRow.target_audience == Audience.FAN, OfferRow.target_value == request.fan_id),
            and_(
                OfferRow.target_audience == Audience.TAG,
                OfferRow.target_value.in_(request.tags or [""]),
            ),
        ),
    ]
    if request.currency is not None:
        conditions.append(OfferRow.currency == request.currency)
    if request.code is not None:
        conditions.append(OfferRow.code_key == request.code.lower())
    return conditions


def _mismatch(row: OfferRow, request: _Request) -> tuple[str, str] | None:
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


def _purchase(
    amount: Money | Decimal | int | str, quantity: int, key: str, fan_id: str
) -> tuple[Decimal, str | None]:
    """The amount and its currency (None: the offer's), or InvalidInput naming the field."""
    currency = None
    if isinstance(amount, Money):
        amount, currency = amount.amount, amount.currency
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise InvalidInput(f"{amount!r} is not an amount", "amount") from None
    problem = amount_problem(value)
    if problem:
        raise InvalidInput(f"the amount {problem}", "amount")
    value = value.quantize(CENT)
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= 1000:
        raise InvalidInput("from 1 to 1000 items", "quantity")
    if not isinstance(key, str) or not 1 <= len(key) <= 200:
        raise InvalidInput("an idempotency key of 1 to 200 characters", "idempotency_key")
    if not isinstance(fan_id, str) or not 1 <= len(fan_id) <= 200:
        raise InvalidInput("the fan's id, 1 to 200 characters", "fan_id")
    return value, currency


def _fan_json(fan: BaseModel | Mapping[str, Any] | None) -> dict | None:
    if fan is None:
        return None
    if isinstance(fan, BaseModel):
        return fan.model_dump(mode="json")
    return to_jsonable_python(dict(fan))


def _parse_status(status: OfferStatus | str) -> OfferStatus:
    try:
        return OfferStatus(status)
    except ValueError:
        choices = ", ".join(s.value for s in OfferStatus)
        raise InvalidInput(f"status must be one of {choices}, not {status!r}", "status") from None


def _conflict(offer_id: str, current: int, expected: int) -> Conflict:
    return Conflict(f"offer `{offer_id}` is at version {current}, not {expected}", current)
