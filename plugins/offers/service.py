"""``OffersService``: offers as the design document has them — create, read, update
(with optimistic locking on ``version``), delete, list by status, duplicate — and
redemptions that hold under concurrency (``plugins/offers/redemption.py``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from sqlalchemy import or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.plugin_api import Conflict, Database, Money, NotFound, TriggerContext
from plugins.offers import redemption
from plugins.offers.models import OfferRow, RedemptionRow
from plugins.offers.redemption import Redemption, RedemptionRefused
from plugins.offers.status import parse_status, status_clause, status_of
from plugins.offers.validation import (
    CODE_RE,
    FieldError,
    InvalidOffer,
    OfferData,
    OfferStatus,
    parse_offer,
)

__all__ = ["Offer", "OffersService", "Redemption", "RedemptionRefused"]

log = logging.getLogger(__name__)
# Tries of a redemption that lost a race it can win on a second look (see redeem).
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


def new_id() -> str:
    return str(uuid.uuid4())


def _columns(data: OfferData) -> dict[str, Any]:
    values = data.model_dump()
    values["content_ids"] = list(data.content_ids)
    values["code_key"] = data.code.lower() if data.code else None
    return values


def _data(row: OfferRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in OfferData.model_fields}


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
            query = query.where(status_clause(parse_status(status), now))
        query = query.order_by(OfferRow.created_at, OfferRow.id)
        rows = self.db.run(lambda s: list(s.scalars(query)))
        return [self._offer(row, now) for row in rows]

    def by_code(self, creator_id: str, code: str) -> Offer:
        """The creator's published offer that answers to ``code`` (any case) now."""
        if not CODE_RE.fullmatch(code):
            raise NotFound(f"no offer answers to the code {code!r}: it is no code")
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
        return [redemption.from_row(row) for row in self.db.run(lambda s: list(s.scalars(query)))]

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
        """Change some of the offer's data. With ``expected_version`` (the version the
        caller read), refuse with :class:`Conflict`, naming the current version, if the
        offer has changed since; without it, the change applies to the offer as it is."""
        unknown = sorted(set(changes) - set(OfferData.model_fields))
        if unknown:
            raise InvalidOffer([FieldError(name, "no such field of an offer") for name in unknown])
        row = self.db.run(lambda s: self._update(s, offer_id, changes, expected_version))
        return self._offer(row, self.now())

    def _update(
        self, session: Session, offer_id: str, changes: Mapping[str, Any], expected: int | None
    ) -> OfferRow:
        # Locked from the read to the write: two updates cannot both start from the same
        # version, and the second one sees what the first one wrote.
        row = self._row(session, offer_id, lock=True)
        if expected is not None and row.version != expected:
            raise _conflict(offer_id, row.version, expected)
        data = parse_offer({**_data(row), **changes})
        self._check_code(session, row.creator_id, data, offer_id)
        # Only the data and the version: the count is the redemptions' to change.
        session.execute(
            update(OfferRow)
            .where(OfferRow.id == offer_id)
            .values(**_columns(data), version=row.version + 1, updated_at=self.now())
            .execution_options(synchronize_session=False)
        )
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
        """Redeem the offer for a purchase of ``amount`` (the price before the discount;
        ``Money``, or a number in the offer's currency) of ``quantity`` items by the fan
        ``fan_id`` (the platform's id). ``fan`` holds the fan's fields as events carry
        them: an offer for a tag checks ``fan["tags"]``, and automations on
        ``offer_redeemed`` receive them. The same ``idempotency_key`` again redeems
        nothing and returns the first redemption. Raises :class:`RedemptionRefused`
        (nothing changed), ``NotFound`` or ``InvalidInput``."""
        asked = redemption.request(offer_id, fan_id, amount, idempotency_key, fan, quantity,
                                   code)  # fmt: skip
        dialect = self.db.engine.dialect
        if dialect.name == "postgresql" and dialect.driver == "psycopg":  # psycopg 3's libpq
            fast = redemption.redeem_at_once(self.db.engine, asked, self.now())
            if fast is not None:
                self._emit(*fast, asked.fan)
                return fast[0]
        for _ in range(ATTEMPTS):
            try:
                done, name = self.db.run(lambda s: redemption.redeem(s, asked, self.now()))
            except redemption.Replay:
                try:
                    done, name = self.db.run(lambda s: redemption.replay(s, asked))
                except redemption.Retry:
                    continue
            except redemption.Retry:
                continue  # the offer changed between two statements: look again
            except IntegrityError as exc:
                if not redemption.lost_race(exc):
                    raise
                continue  # a concurrent redemption took the key or the fan's slot first
            self._emit(done, name, asked.fan)
            return done
        raise Conflict(f"offer `{offer_id}` keeps changing; try again")

    def _emit(self, done: Redemption, offer_name: str, fan: dict | None) -> None:
        """Tell the engine, after the commit."""
        if self.emit is None:
            return
        context = redemption.trigger_context(done, offer_name, fan)
        try:
            self.emit(context)
        except Exception:
            # The redemption is committed whatever a handler does.
            log.exception("emitting %s (%s) failed", context.type, context.event_id)


def _conflict(offer_id: str, current: int, expected: int) -> Conflict:
    return Conflict(f"offer `{offer_id}` is at version {current}, not {expected}", current)
