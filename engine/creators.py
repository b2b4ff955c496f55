"""Creators (the design's ``userId``) and their API tokens, stored hashed."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.exceptions import InvalidInput, NotFound
from engine.models import ApiToken, Creator, utcnow

TOKEN_PREFIX = "hz_"


def create_creator(
    session: Session, name: str, messages_per_fan_per_day: int | None = None
) -> Creator:
    if not name.strip():
        raise InvalidInput("a creator needs a name", "name")
    if messages_per_fan_per_day is not None and messages_per_fan_per_day < 0:
        raise InvalidInput("cannot be negative", "messages_per_fan_per_day")
    creator = Creator(name=name.strip(), messages_per_fan_per_day=messages_per_fan_per_day)
    session.add(creator)
    session.flush()
    return creator


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, creator_id: str, name: str = "default") -> str:
    """A new API token for the creator. It is returned once; only its hash is kept."""
    if session.get(Creator, creator_id) is None:
        raise NotFound(f"no creator `{creator_id}`")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(creator_id=creator_id, name=name, token_hash=_hash(token)))
    return token


def authenticate(session: Session, token: str) -> str | None:
    """The creator a token belongs to, or None for an unknown token."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash(token)))
    if row is None:
        return None
    row.last_used_at = utcnow()
    return row.creator_id
