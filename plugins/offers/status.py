"""An offer's status, derived from the clock each time it is read (design property 7):
the same rules in Python (``status_of``) and in SQL (``status_clause``, for lists)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_

from engine.plugin_api import InvalidInput
from plugins.offers.models import OfferRow
from plugins.offers.validation import OfferStatus


def status_of(row: OfferRow, now: datetime) -> OfferStatus:
    """The status at ``now``. A draft stays a draft; a published offer is scheduled,
    then active, then expired, and exhausted while active once its limit is reached."""
    if row.draft:
        return OfferStatus.DRAFT
    if now < row.valid_from:
        return OfferStatus.SCHEDULED
    if row.valid_until is not None and now >= row.valid_until:
        return OfferStatus.EXPIRED
    if row.max_redemptions is not None and row.redemption_count >= row.max_redemptions:
        return OfferStatus.EXHAUSTED
    return OfferStatus.ACTIVE


def status_clause(status: OfferStatus, now: datetime) -> ColumnElement[bool]:
    """The SQL condition that an offer has ``status`` at ``now``, as ``status_of``."""
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


def parse_status(status: OfferStatus | str) -> OfferStatus:
    try:
        return OfferStatus(status)
    except ValueError:
        choices = ", ".join(s.value for s in OfferStatus)
        raise InvalidInput(f"status must be one of {choices}, not {status!r}", "status") from None
