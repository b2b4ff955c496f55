"""The plugin API: everything a trigger or action author imports.

A plugin is an ordinary Python package that names its classes in the entry-point groups
``huntaze.triggers`` and ``huntaze.actions``; the entry point's name is the name written in
the language. The built-in plugins use exactly this module and nothing else from the
engine. The guide is ``docs/plugins.md``.

A trigger declares what its context provides::

    class PurchaseCompleted(Trigger):
        description = "A fan bought something: a post, a message, a bundle."

        class Context(BaseModel):
            fan: FanFields
            event: PurchaseEvent

An action declares its arguments and runs::

    class AddTag(Action):
        description = "Add a tag to the fan."
        side_effects = False

        class Config(BaseModel):
            tag: str

        def run(self, ctx: ActionContext, config: Config) -> ActionResult:
            ctx.services.fans.add_tag(ctx.creator_id, ctx.fan_id, config.tag)
            return ActionResult(detail=f"tagged {config.tag!r}")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from dsl.values import Money, Percentage
from engine.events import TriggerContext
from engine.exceptions import Conflict, HuntazeError, InvalidInput, NotFound
from engine.models import NAMING, UTCDateTime

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from engine.ai.llm import Completion, LLMClient, LLMError, client_from_settings

__all__ = [
    "NAMING",
    "Action",
    "ActionContext",
    "ActionError",
    "ActionResult",
    "Completion",
    "Conflict",
    "Database",
    "FanFields",
    "FanStore",
    "HuntazeError",
    "InvalidInput",
    "LLMClient",
    "LLMError",
    "Money",
    "MoneyAmount",
    "NoConfig",
    "NotFound",
    "Outbox",
    "Percentage",
    "Services",
    "TemplateRenderer",
    "Trigger",
    "TriggerContext",
    "UTCDateTime",
    "client_from_settings",
]

# The LLM client, for plugins with AI features (docs/ai.md); imported on first use, so
# that plugins without them do not load an HTTP client.
_LLM_NAMES = frozenset({"Completion", "LLMClient", "LLMError", "client_from_settings"})


def __getattr__(name: str) -> Any:
    if name in _LLM_NAMES:
        from engine.ai import llm

        return getattr(llm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


T = TypeVar("T")


# --- Values ------------------------------------------------------------------------


def _money(value: Any) -> Any:
    """Events arrive as JSON, where ``12.5`` or ``"12.50"`` means US dollars."""
    if isinstance(value, int | float | str | Decimal) and not isinstance(value, bool):
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            return value  # let pydantic report it as an invalid Money
        if amount.is_finite():  # "NaN" and "Infinity" parse, but are no amount
            return Money(amount)
    return value


# A Money field in a trigger's context that also accepts a bare number (in dollars).
MoneyAmount = Annotated[Money, BeforeValidator(_money)]


def _aware(moment: datetime) -> datetime:
    # The engine stores UTC times: a time without its zone could be any of 24 hours.
    if moment.tzinfo is None:
        raise ValueError("needs a time zone, as in 2026-10-01T12:00:00Z")
    return moment


# A datetime in an event, refused (naming the field) when it has no time zone.
AwareDateTime = Annotated[datetime, AfterValidator(_aware)]


class FanFields(BaseModel):
    """What every built-in trigger knows about the fan: ``fan.name``, ``fan.tags`` ..."""

    name: str
    username: str
    total_spent: MoneyAmount = Money(Decimal(0))
    tags: list[str] = Field(default_factory=list)
    country: str | None = None  # ISO 3166 code, "US"; unknown for some fans
    subscribed_at: AwareDateTime
    message_count: int = 0


class NoConfig(BaseModel):
    """The arguments of a plugin that takes none."""

    model_config = ConfigDict(extra="forbid")


# --- Triggers ----------------------------------------------------------------------


class Trigger:
    """Base class of a trigger: an event about a fan that starts automations.

    Subclasses set ``description`` and ``Context`` (a pydantic model of the data the event
    carries; its fields become ``fan.name``, ``event.amount`` ... in the language), and
    optionally ``Config`` (the trigger's own arguments, ``when name arg: value``).
    """

    description: ClassVar[str]
    Context: ClassVar[type[BaseModel]]
    Config: ClassVar[type[BaseModel] | None] = None

    def matches(self, config: BaseModel | None, context: BaseModel) -> bool:
        """Whether an automation whose trigger has ``config`` runs for this event."""
        return True


# --- Actions -----------------------------------------------------------------------


class Outbox(Protocol):
    """Messages waiting to be delivered to fans. Delivery is another plugin's job."""

    def send(self, *, creator_id: str, fan_id: str, text: str, idempotency_key: str) -> str:
        """Queue ``text`` for the fan; return the message id. Idempotent: a second call
        with the same ``idempotency_key`` queues nothing and returns the first id."""
        ...


class FanStore(Protocol):
    """The creator's fans, as the engine stores them."""

    def add_tag(self, creator_id: str, fan_id: str, tag: str) -> bool:
        """Add ``tag``; return False if the fan already had it."""
        ...

    def remove_tag(self, creator_id: str, fan_id: str, tag: str) -> bool:
        """Remove ``tag``; return False if the fan did not have it."""
        ...


class TemplateRenderer(Protocol):
    """Renders ``{{ placeholder }}`` templates in the sandbox the checker validated."""

    def render(self, template: str, data: Mapping[str, Any]) -> str: ...


class Database(Protocol):
    """The engine's database, lent to plugins that keep tables of their own.

    Such a plugin declares its SQLAlchemy ``MetaData`` in the entry-point group
    ``huntaze.metadata`` and its Alembic migrations in ``huntaze.migrations``, so that
    ``huntaze db upgrade`` creates its tables beside the engine's (docs/plugins.md)."""

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine: SQLite or PostgreSQL (``engine.dialect.name``)."""
        ...

    def run(self, work: Callable[[Session], T]) -> T:
        """``work(session)`` in one transaction, committed when it returns and rolled
        back when it raises; tried again with backoff when the database fails for a
        transient reason (a lost connection, a deadlock), so ``work`` must do nothing but
        database work."""
        ...


@dataclass(frozen=True)
class Services:
    """What the engine lends an action while it runs."""

    outbox: Outbox
    fans: FanStore
    templates: TemplateRenderer
    # None only where no database is at hand (a unit test's hand-built context).
    database: Database | None = None


@dataclass(frozen=True)
class ActionContext:
    """Everything an action's ``run`` may use. Built by the engine for each step."""

    creator_id: str
    fan_id: str
    fan: Mapping[str, Any]  # the fan's fields, as in trigger_data["fan"]
    trigger: str  # the trigger's name, "purchase_completed"
    trigger_data: Mapping[str, Any]  # the trigger's context: {"fan": ..., "event": ...}
    # The same for every attempt of this step of this execution, and different for every
    # other step: pass it to any outside system so a retried step is deduplicated there.
    idempotency_key: str
    services: Services
    now: datetime  # the engine's clock (simulated in demos): use it, not datetime.now()
    # The platform's id for the fan (``TriggerContext.fan_id``), which outside systems
    # know the fan by; ``fan_id`` is the engine's own id. "" in a hand-built context.
    fan_external_id: str = ""

    def render(self, template: str) -> str:
        """``template`` with its ``{{ placeholders }}`` filled from the trigger's data."""
        return self.services.templates.render(template, self.trigger_data)


@dataclass(frozen=True)
class ActionResult:
    """What a step did, for the execution's trace. ``ok=False`` marks the step failed."""

    ok: bool = True
    detail: str = ""
    output: Mapping[str, Any] = field(default_factory=dict)


class ActionError(Exception):
    """An expected failure: the step is marked failed with this message, no traceback."""


class Action:
    """Base class of an action: one step of an automation.

    Subclasses set ``description`` and ``Config`` (a pydantic model: its fields are the
    action's named arguments), and implement ``run``. ``emits`` names the triggers the
    action may cause (for loop detection); ``side_effects`` says whether it reaches
    outside the system (a message, an HTTP call).

    What a creator's policy checks is declared too, so that it applies to every action
    alike, built-in or not (docs/plugins.md): ``sends_message``, each step sends the fan
    a message (counted in the policy's messages per fan per day); ``discount_argument``,
    the name of the argument holding a discount (a Percentage or Money: capped by
    ``max_discount`` and ``max_fixed_discount``, confirmed above
    ``confirm_discount_above``); ``validity_argument``, the name of the argument holding
    how long what it makes lasts (a timedelta: capped by ``max_offer_validity``).
    """

    description: ClassVar[str]
    Config: ClassVar[type[BaseModel]] = NoConfig
    emits: ClassVar[tuple[str, ...]] = ()
    side_effects: ClassVar[bool] = True
    sends_message: ClassVar[bool] = False
    discount_argument: ClassVar[str | None] = None
    validity_argument: ClassVar[str | None] = None

    def run(self, ctx: ActionContext, config: Any) -> ActionResult:
        """Do the step. ``config`` is an instance of ``Config``, already validated.

        Return an :class:`ActionResult`; raise :class:`ActionError` (or anything) to fail
        the step. A raising action never breaks the engine: the next step runs."""
        raise NotImplementedError
