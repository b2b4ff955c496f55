"""``AutomationService``: automations as the design document has them, stored with their
source text and compiled graph.

Saving runs the same checker as ``huntaze check``, then the creator's policy (the
guardrails of ``dsl.policy``: discounts, offer length, messages per fan per day): text
with an error is refused with its diagnostics and nothing is written, however it was
written (by hand or by the AI). Every saved version's graph is kept, so an execution
that waits while its automation is edited resumes the version it started.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from dsl import analyse, compile_automation
from dsl.diagnostics import Diagnostic
from dsl.parser import parse
from dsl.policy import Policy, check_policy
from engine.creators import PolicyConflict, get_policy, policy_conflicts, set_policy
from engine.dispatch import Dispatcher
from engine.events import TriggerContext
from engine.exceptions import Conflict, InvalidAutomation, InvalidInput, NotFound
from engine.index import AutomationIndex, IndexEntry
from engine.models import Automation, AutomationStatus, AutomationVersion, Creator
from engine.runtime import Runtime

STATUSES = tuple(s.value for s in AutomationStatus)


@dataclass(frozen=True)
class PolicyChange:
    """A creator's new policy, as it applies now (``AutomationService.policy``), and
    their active automations it would refuse (:class:`engine.creators.PolicyConflict`)."""

    policy: Policy
    conflicts: tuple[PolicyConflict, ...]


class AutomationService:
    def __init__(self, runtime: Runtime, index: AutomationIndex | None = None) -> None:
        self.runtime = runtime
        # `is None`, not `or`: an index with no entries yet is falsy (it has a __len__).
        self.index = index if index is not None else AutomationIndex(runtime.db, runtime.redis)

    # --- Reading ---------------------------------------------------------------------

    def get(self, automation_id: str) -> Automation:
        automation = self.runtime.db.run(lambda s: s.get(Automation, automation_id))
        if automation is None:
            raise NotFound(f"no automation `{automation_id}`")
        return automation

    def list(self, creator_id: str, status: str | None = None) -> list[Automation]:
        query = select(Automation).where(Automation.creator_id == creator_id)
        if status is not None:
            query = query.where(Automation.status == _status(status))
        query = query.order_by(Automation.created_at, Automation.name)
        return self.runtime.db.run(lambda s: list(s.scalars(query)))

    def graph_of(self, automation_id: str, version: int) -> dict:
        row = self.runtime.db.run(
            lambda s: s.get(AutomationVersion, {"automation_id": automation_id,
                                                "version": version})
        )  # fmt: skip
        if row is None:
            raise NotFound(f"no version {version} of automation `{automation_id}`")
        return row.graph

    # --- Writing ---------------------------------------------------------------------

    def create(
        self,
        creator_id: str,
        source: str,
        status: str = AutomationStatus.DRAFT,
        *,
        confirmed: bool = False,
    ) -> Automation:
        """Save a new automation. ``confirmed``: the creator confirmed the discounts
        their policy asks them to confirm."""
        graph, _ = self.compile(source, creator_id, confirmed=confirmed)
        status = _status(status)

        def create(session: Session) -> Automation:
            if session.get(Creator, creator_id) is None:
                raise NotFound(f"no creator `{creator_id}`")
            automation = Automation(
                creator_id=creator_id,
                name=graph["name"],
                description=graph["description"],
                source=source,
                graph=graph,
                trigger=graph["trigger"]["name"],
                status=status,
            )
            session.add(automation)
            session.flush()
            _snapshot(session, automation)
            return automation

        automation = self.runtime.db.run(create)
        self.index.changed()
        return automation

    def update(
        self,
        automation_id: str,
        *,
        source: str | None = None,
        status: str | None = None,
        expected_version: int | None = None,
        confirmed: bool = False,
    ) -> Automation:
        """Change the text, the status or both. With ``expected_version``, refuse
        (:class:`Conflict`) if someone saved a newer version meanwhile. New text is
        checked against the creator's policy as :meth:`create` does."""
        graph = None
        if source is not None:
            creator_id = self.get(automation_id).creator_id
            graph = self.compile(source, creator_id, confirmed=confirmed)[0]
        status = _status(status) if status is not None else None

        def update(session: Session) -> Automation:
            automation = session.get(Automation, automation_id)
            if automation is None:
                raise NotFound(f"no automation `{automation_id}`")
            if expected_version is not None and automation.version != expected_version:
                raise Conflict(
                    f"automation `{automation_id}` is at version {automation.version}, "
                    f"not {expected_version}",
                    automation.version,
                )
            if graph is not None:
                automation.source = source
                automation.graph = graph
                automation.name = graph["name"]
                automation.description = graph["description"]
                automation.trigger = graph["trigger"]["name"]
            if status is not None:
                automation.status = status
            session.flush()
            _snapshot(session, automation)
            return automation

        try:
            automation = self.runtime.db.run(update)
        except StaleDataError:
            current = self.get(automation_id)
            raise Conflict(
                f"automation `{automation_id}` was changed meanwhile "
                f"(now at version {current.version})",
                current.version,
            ) from None
        self.index.changed()
        return automation

    def delete(self, automation_id: str) -> None:
        def delete(session: Session) -> None:
            automation = session.get(Automation, automation_id)
            if automation is None:
                raise NotFound(f"no automation `{automation_id}`")
            session.delete(automation)

        self.runtime.db.run(delete)
        self.index.changed()

    def execute(self, automation_id: str, context: TriggerContext) -> list[str]:
        """Run one automation for an event now, whatever its status (the editor's "try
        it"): the event is logged and the execution queued like any other."""
        automation = self.get(automation_id)
        if automation.trigger != context.type:
            raise InvalidInput(
                f"the automation runs on `{automation.trigger}`, not `{context.type}`", "type"
            )
        entry = IndexEntry(automation.id, automation.version, automation.graph["trigger"]["args"])
        return list(Dispatcher(self.runtime).dispatch(context, entries=(entry,)).execution_ids)

    # --- Checking --------------------------------------------------------------------

    def check(
        self, source: str, creator_id: str | None = None, *, confirmed: bool = False
    ) -> list[Diagnostic]:
        """Every problem in ``source`` (errors and warnings), nothing saved; with
        ``creator_id``, what their policy would refuse too (once the text is valid)."""
        module, diagnostics = analyse(source, self.runtime.plugins.catalog)
        valid = module is not None and not any(d.is_error for d in diagnostics)
        if creator_id is not None and valid:
            catalog = self.runtime.plugins.catalog
            found = check_policy(module, self.policy(creator_id), catalog, confirmed=confirmed)
            diagnostics = _in_order([*diagnostics, *found])
        return diagnostics

    def policy(self, creator_id: str) -> Policy:
        """The creator's policy, as saving checks it (see engine.creators.get_policy)."""
        default = self.runtime.settings.messages_per_fan_per_day
        return self.runtime.db.run(lambda s: get_policy(s, creator_id, default))

    def set_policy(
        self, creator_id: str, policy: Policy | Mapping[str, Any] | None
    ) -> PolicyChange:
        """Store the creator's policy (see engine.creators.set_policy: only the settings
        it gives) and report their active automations that it refuses, as saving them
        again would. They are not paused or changed: the caller shows them, and the
        creator edits or pauses them."""
        default = self.runtime.settings.messages_per_fan_per_day
        catalog = self.runtime.plugins.catalog

        def change(session: Session) -> PolicyChange:
            before = get_policy(session, creator_id, default)
            set_policy(session, creator_id, policy)
            after = get_policy(session, creator_id, default)
            found = policy_conflicts(session, creator_id, after, catalog, before=before)
            return PolicyChange(after, tuple(found))

        return self.runtime.db.run(change)

    def compile(
        self, source: str, creator_id: str | None = None, *, confirmed: bool = False
    ) -> tuple[dict, list[Diagnostic]]:
        """The graph of the one automation in ``source``, or InvalidAutomation. With
        ``creator_id``, the creator's policy is checked too (its errors refuse it)."""
        module, diagnostics = analyse(source, self.runtime.plugins.catalog)
        errors = [d for d in diagnostics if d.is_error]
        if module is None or errors:
            raise InvalidAutomation(errors, source)
        if len(module.automations) != 1:
            raise InvalidInput(
                f"the text holds {len(module.automations)} automations; save them one by one",
                "source",
            )
        if creator_id is not None:
            catalog = self.runtime.plugins.catalog
            found = check_policy(module, self.policy(creator_id), catalog, confirmed=confirmed)
            if any(d.is_error for d in found):
                raise InvalidAutomation([d for d in found if d.is_error], source)
            diagnostics = _in_order([*diagnostics, *found])
        graph = compile_automation(module.automations[0], self.runtime.plugins.catalog)
        return graph.to_json(), diagnostics

    def save_all(
        self,
        creator_id: str,
        sources: Sequence[str],
        status: str = AutomationStatus.ACTIVE,
        *,
        confirmed: bool = False,
    ) -> list[Automation]:
        """Create or replace (by name) each automation: for loading files. Every text is
        checked (and against the creator's policy) before any is saved."""
        graphs = [self.compile(source, creator_id, confirmed=confirmed)[0] for source in sources]
        existing = {a.name: a for a in self.list(creator_id)}
        saved = []
        for source, graph in zip(sources, graphs, strict=True):
            old = existing.get(graph["name"])
            if old is None:
                saved.append(self.create(creator_id, source, status, confirmed=confirmed))
            elif old.source != source or old.status != status:
                saved.append(self.update(old.id, source=source, status=status, confirmed=confirmed))
            else:
                saved.append(old)
        return saved


def split_automations(text: str, filename: str = "<text>") -> list[str]:
    """The text of each automation in a file (comments inside them kept), for saving
    them one by one. Raises DslError if the file does not parse."""
    return [text[a.span.start : a.span.end] for a in parse(text, filename).automations]


def _in_order(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(diagnostics, key=lambda d: (d.span.line, d.span.column))


def _snapshot(session: Session, automation: Automation) -> None:
    session.add(
        AutomationVersion(
            automation_id=automation.id,
            version=automation.version,
            source=automation.source,
            graph=automation.graph,
        )
    )


def _status(status: str) -> AutomationStatus:
    try:
        return AutomationStatus(status)
    except ValueError:
        raise InvalidInput(
            f"status must be one of {', '.join(STATUSES)}, not {status!r}", "status"
        ) from None
