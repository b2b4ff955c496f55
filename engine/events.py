"""Events about fans, and the in-process ``EventSystem`` that hands them out.

``emit`` calls every handler subscribed to the event's type, in subscription order,
with the same :class:`TriggerContext`. The dispatcher is one such handler; tests and
plugins may add their own.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TriggerContext:
    """One event, as the design document has it: what happened, to which creator's fan,
    with what data (``{"fan": {...}, "event": {...}}``), and when."""

    type: str
    creator_id: str
    fan_id: str  # the platform's id for the fan
    data: Mapping[str, Any]
    timestamp: datetime
    # The sender's id for this event, if any: the same id sent twice is one event.
    event_id: str | None = None


Handler = Callable[[TriggerContext], Any]


@dataclass
class EventSystem:
    _handlers: dict[str, list[Handler]] = field(default_factory=lambda: defaultdict(list))

    def subscribe(self, trigger_type: str, handler: Handler) -> None:
        self._handlers[trigger_type].append(handler)

    def unsubscribe(self, trigger_type: str, handler: Handler) -> None:
        """Remove ``handler``; unsubscribing one that is not subscribed does nothing."""
        handlers = self._handlers.get(trigger_type, [])
        if handler in handlers:
            handlers.remove(handler)

    def emit(self, context: TriggerContext) -> list[Any]:
        """Call every handler of ``context.type``; return their results in order.

        A handler that raises does not stop the others: its error is logged and its
        result is the exception."""
        results: list[Any] = []
        for handler in list(self._handlers.get(context.type, ())):
            try:
                results.append(handler(context))
            except Exception as exc:
                log.exception("handler %r failed for %s", handler, context.type)
                results.append(exc)
        return results
