"""Creators (the design's ``userId``), their guardrails (:class:`Policy`) and their API
tokens, stored hashed."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from dsl.catalog import Catalog
from dsl.diagnostics import Diagnostic, render_all
from dsl.errors import DslError
from dsl.parser import parse
from dsl.policy import CONFIRM_DISCOUNT, Policy, check_policy
from engine.exceptions import InvalidInput, NotFound
from engine.models import ApiToken, Automation, AutomationStatus, Creator, utcnow

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


def creator_named(session: Session, name: str) -> str | None:
    """The id of the creator of that name (the newest, names being free text), if any."""
    query = select(Creator.id).where(Creator.name == name)
    return session.scalar(query.order_by(Creator.created_at.desc()))


def get_policy(session: Session, creator_id: str, default_messages_per_day: int) -> Policy:
    """The creator's policy: the settings they changed, over the defaults.

    Unless they set ``max_messages_per_fan_per_day`` themselves, it is their daily
    message cap (``default_messages_per_day``, the engine's, when they have none): an
    automation that alone would send more than the engine lets through is refused."""
    creator = session.get(Creator, creator_id)
    if creator is None:
        raise NotFound(f"no creator `{creator_id}`")
    cap = creator.messages_per_fan_per_day
    return effective_policy(creator.policy, default_messages_per_day if cap is None else cap)


def effective_policy(stored: Mapping[str, Any] | None, messages_per_day: int) -> Policy:
    """A stored policy over the defaults, with ``messages_per_day`` unless it sets its own."""
    values = {"max_messages_per_fan_per_day": messages_per_day, **(stored or {})}
    return Policy.model_validate(values)


def set_policy(
    session: Session, creator_id: str, policy: Policy | Mapping[str, Any] | None
) -> Policy:
    """Store the creator's policy: only the settings it gives, so the others follow the
    defaults (None or ``{}``: every default). Returns the policy as validated.

    ``AutomationService.set_policy`` does this and also reports the creator's active
    automations that the new policy refuses (:func:`policy_conflicts`)."""
    creator = session.get(Creator, creator_id)
    if creator is None:
        raise NotFound(f"no creator `{creator_id}`")
    if not isinstance(policy, Policy):
        try:
            policy = Policy.model_validate(policy or {})
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            prefix = f"{where}: " if where else ""
            field = f"policy.{where}" if where else "policy"
            raise InvalidInput(f"invalid policy: {prefix}{problem['msg']}", field) from None
    stored = policy.model_dump(mode="json", exclude_unset=True)
    creator.policy = stored or None
    session.flush()
    return policy


@dataclass(frozen=True)
class PolicyConflict:
    """A saved automation that a policy refuses: what saving its text again would
    report, each diagnostic placed in ``source``."""

    automation_id: str
    name: str
    source: str
    diagnostics: tuple[Diagnostic, ...]

    def render(self) -> str:
        """The diagnostics as ``huntaze check`` prints them, under the automation's name."""
        return render_all(self.diagnostics, self.source, self.name)


def policy_conflicts(
    session: Session,
    creator_id: str,
    policy: Policy,
    catalog: Catalog,
    *,
    before: Policy | None = None,
) -> list[PolicyConflict]:
    """The creator's active automations that ``policy`` refuses, and why, oldest first.

    Nothing is changed: they keep running until the creator edits or pauses them. A
    discount that only needs confirming is reported only when ``before`` (the policy it
    replaces) did not ask for it already: the creator confirmed that one when saving."""
    query = (
        select(Automation)
        .where(Automation.creator_id == creator_id, Automation.status == AutomationStatus.ACTIVE)
        .order_by(Automation.created_at, Automation.name)
    )
    conflicts = []
    for automation in session.scalars(query):
        try:
            module = parse(automation.source, automation.name)
        except DslError:  # saved by an older language: nothing the policy can read
            continue
        found = check_policy(module, policy, catalog)
        if before is not None:
            earlier = check_policy(module, before, catalog)
            asked = {d.span for d in earlier if d.code == CONFIRM_DISCOUNT}
            found = [d for d in found if d.code != CONFIRM_DISCOUNT or d.span not in asked]
        if found:
            conflicts.append(
                PolicyConflict(automation.id, automation.name, automation.source, tuple(found))
            )
    return conflicts


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
