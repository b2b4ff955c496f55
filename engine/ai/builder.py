"""English → a checked automation (issue #6, the design's ``buildAutomationFlow``).

``build_automation`` asks the model for automation text, extracts it from the answer,
checks it with the same checker as hand-written rules plus the creator's policy, sends
the rendered diagnostics back for a bounded number of repairs, and falls back to a
valid template for the trigger it recognised when no valid automation comes out. Every
text it returns has passed the checker and the policy, exactly as returned: nothing
unchecked ever leaves. The explanation comes from the syntax tree, not from the model,
so the person reviewing reads what will actually run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any

from pydantic import BaseModel, Field

from dsl import ast
from dsl.catalog import Catalog
from dsl.compiler import compile_automation
from dsl.diagnostics import Diagnostic, Severity, error, render_all, warning
from dsl.explain import explain
from dsl.flow import export_flow
from dsl.formatter import format_module
from dsl.parser import parse_expression
from dsl.pipeline import analyse
from dsl.policy import CONFIRM_DISCOUNT, Policy, check_policy
from engine.ai import prompts
from engine.ai.llm import LLMClient, LLMError
from engine.ai.offline import Understanding, fallback_template, translate, understand
from engine.exceptions import HuntazeError

OFFLINE_PROVIDER = "offline"

# Confidence (see ``confidence``).
REPAIR_PENALTY = 0.15
WARNING_PENALTY = 0.05
MAX_WARNINGS_COUNTED = 4
COVERAGE_FLOOR = 0.4
OFFLINE_CAP = 0.6
FALLBACK_BASE = 0.05
FALLBACK_SPAN = 0.1

_FIRST_LINE = ast.Span(1, 1, 1, 2, 0, 1)


class TokenUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class BuildResult(BaseModel):
    """The design's ``BuildAutomationResponse``, and what a person needs to review it."""

    name: str
    description: str
    dsl: str = Field(description="The automation text; it passes the checker and the policy.")
    steps: list[dict[str, Any]] = Field(description="The compiled graph as the flow's steps.")
    confidence: float = Field(ge=0, le=1)
    explanation: str = Field(description="What the automation does, from its syntax tree.")
    diagnostics: list[dict[str, Any]] = Field(description="The text's warnings (no errors).")
    attempts: int = Field(description="Answers asked of the model (0 offline).")
    fallback: bool = False
    reason: str | None = Field(default=None, description="Why the fallback was returned.")
    provider: str
    model: str | None = None
    offline: bool = False
    needs_confirmation: bool = Field(
        default=False, description="A discount needs the creator's confirmation to be saved."
    )
    usage: TokenUsage = Field(default_factory=TokenUsage)
    uncovered: list[str] = Field(
        default_factory=list, description="Parts of the request the automation leaves out."
    )


def build_automation(
    description: str,
    *,
    catalog: Catalog,
    client: LLMClient,
    policy: Policy | None = None,
    examples: Sequence[str] | None = None,
    max_repairs: int = 2,
    confirmed: bool = False,
) -> BuildResult:
    """One checked automation for ``description``.

    ``policy`` defaults to ``Policy()``; ``confirmed`` is the creator's confirmation
    for discounts above the policy's confirmation threshold. ``examples`` are the
    automation files shown to the model (default: the repository's ``examples/``).
    With the offline provider the deterministic translator writes the text instead of
    a model; it is checked all the same.
    """
    build = _Build(
        description,
        catalog,
        policy if policy is not None else Policy(),
        confirmed,
        understand(description, catalog),
    )
    if client.offline:
        return build.offline()
    return build.with_model(
        client, prompts.load_examples() if examples is None else examples, max_repairs
    )


# --- Checking an answer ----------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    """Automation text with everything the checker and the policy found in it."""

    text: str
    module: ast.Module | None
    diagnostics: tuple[Diagnostic, ...]

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def automation(self) -> ast.Automation:
        assert self.module is not None and not self.errors
        return self.module.automations[0]

    def render(self) -> str:
        return render_all(self.diagnostics, self.text, prompts.ANSWER_FILENAME)


def check_text(
    text: str, catalog: Catalog, policy: Policy, *, confirmed: bool = False, others: int = 0
) -> Checked:
    """Parse, check and apply the policy to the first automation in ``text``; when it
    passes, to its canonical text, which is what leaves. ``others`` counts automations
    the answer held elsewhere: any automation but the first is dropped, with a warning."""
    module, diagnostics = analyse(text, catalog)
    notes: list[Diagnostic] = []
    if module is not None and len(module.automations) + others > 1:
        notes.append(_several(len(module.automations) + others))
        if len(module.automations) > 1:
            first = module.automations[0]
            text = text[first.span.start : first.span.end] + "\n"
            module, diagnostics = analyse(text, catalog)
    if module is None:
        return Checked(text, None, tuple(diagnostics))
    if not module.automations:
        return Checked(text, module, (_no_automation(),))
    found = [*diagnostics, *policy_diagnostics(module, policy, catalog, confirmed)]
    if any(d.is_error for d in found):
        return Checked(text, module, tuple(found))
    canonical = format_module(module)
    module, diagnostics = analyse(canonical, catalog)
    if module is not None:
        diagnostics = [*diagnostics, *policy_diagnostics(module, policy, catalog, confirmed)]
    return Checked(canonical, module, (*notes, *diagnostics))


def policy_diagnostics(
    module: ast.Module, policy: Policy, catalog: Catalog, confirmed: bool
) -> list[Diagnostic]:
    """What the policy finds. A discount that only needs the creator's confirmation is a
    warning here, not something to repair: the builder must not quietly lower what the
    creator asked for, and saving asks for the confirmation instead
    (``BuildResult.needs_confirmation``)."""
    return [
        replace(d, severity=Severity.WARNING) if d.code == CONFIRM_DISCOUNT else d
        for d in check_policy(module, policy, catalog, confirmed=confirmed)
    ]


def _several(total: int) -> Diagnostic:
    return warning(
        f"the answer held {total} automations; only the first was kept",
        _FIRST_LINE,
        hint="describe the others in requests of their own",
        code="ai/several-automations",
    )


def _no_automation() -> Diagnostic:
    return error(
        "the answer holds no automation",
        _FIRST_LINE,
        hint='write one automation: automation "Name" { when trigger ... }',
        code="ai/no-automation",
    )


# --- Extracting the text from an answer ------------------------------------------------------

_FENCE = re.compile(
    r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+-]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.M | re.S
)
_HEADER = re.compile(r'^[ \t]*automation[ \t]+"', re.M)
_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"?|#[^\n]*|[{}]')
_DSL_TAGS = ("hz", "huntaze", "")


def extract_dsl(answer: str) -> tuple[str, int]:
    """The automation text in a model's answer, and how many more automations the
    answer held elsewhere. A fenced block wins (```hz first, then any fence holding an
    automation); otherwise the text from the first ``automation "`` line to its
    closing brace, so prose before and after is ignored."""
    blocks = [(m.group(2).lower(), m.group(3)) for m in _FENCE.finditer(answer)]
    candidates = [body for tag, body in blocks if tag in _DSL_TAGS and _HEADER.search(body)]
    candidates += [body for tag, body in blocks if tag not in _DSL_TAGS and _HEADER.search(body)]
    if candidates:
        others = sum(len(_HEADER.findall(body)) for body in candidates[1:])
        return candidates[0].strip() + "\n", others
    start = _HEADER.search(answer)
    if start is None:
        return "", 0
    end = _closing_brace(answer, start.start())
    return answer[start.start() : end].strip() + "\n", len(_HEADER.findall(answer, end))


def _closing_brace(text: str, position: int) -> int:
    """Where the automation starting before ``position`` ends: after the brace that
    closes its first ``{`` (strings and comments skipped), or the end of the text."""
    depth = 0
    for token in _TOKEN.finditer(text, position):
        if token.group() == "{":
            depth += 1
        elif token.group() == "}":
            depth -= 1
            if depth <= 0:
                return token.end()
    return len(text)


# --- Confidence ------------------------------------------------------------------------------


def confidence(
    *, repairs: int, warnings: int, coverage: float, offline: bool, fallback: bool
) -> float:
    """How much to trust the result, from what happened (never the model's own claim).

    - A fallback template is barely what was asked: ``0.05 + 0.1 * coverage`` (at most
      0.15, below any automation that passed the checker).
    - Otherwise ``(1 - 0.15 * repairs) * (1 - 0.05 * min(warnings, 4)) *
      (0.4 + 0.6 * coverage)``, where ``repairs`` is the number of repair rounds used,
      ``warnings`` the checker's warnings, and ``coverage`` the share of the request's
      recognised parts (trigger, actions, durations, percentages, amounts, tags,
      keywords; offline, also the clauses it could not map) found in the automation.
    - The offline translator is capped at 0.6: it knows common phrasings only.

    With at most two repairs, an automation that passed is at least 0.7 * 0.8 * 0.4 =
    0.224, so fallback < repaired < first time for the same coverage and warnings.
    """
    if fallback:
        return round(FALLBACK_BASE + FALLBACK_SPAN * coverage, 3)
    value = (
        max(0.0, 1 - REPAIR_PENALTY * repairs)
        * (1 - WARNING_PENALTY * min(warnings, MAX_WARNINGS_COUNTED))
        * (COVERAGE_FLOOR + (1 - COVERAGE_FLOOR) * coverage)
    )
    if offline:
        value = min(value, OFFLINE_CAP)
    return round(value, 3)


def coverage(
    understanding: Understanding, automation: ast.Automation, *, offline_mode: bool
) -> tuple[float, list[str]]:
    """The share of the request's recognised parts the automation contains, and the
    parts it leaves out (1.0 and none when nothing was recognised)."""
    found = _Contents(automation)
    parts: list[tuple[str, bool]] = []
    if understanding.trigger:
        parts.append((f"trigger {understanding.trigger}", understanding.trigger == found.trigger))
    parts += [(f"action {name}", name in found.actions) for name in understanding.actions]
    parts += [(f"duration {d}", found.has_duration(d)) for d in understanding.durations]
    parts += [(f"percentage {p}", found.has_percent(p)) for p in understanding.percentages]
    parts += [(f"amount {a}", found.has_amount(a)) for a in understanding.amounts]
    parts += [(f'tag "{t}"', found.has_text(t)) for t in understanding.tags]
    parts += [(f'keyword "{k}"', found.has_text(k)) for k in understanding.keywords]
    if offline_mode:
        parts += [(f'"{clause}"', False) for clause in understanding.unrecognised]
    if not parts:
        return 1.0, []
    missing = [label for label, covered in parts if not covered]
    return (len(parts) - len(missing)) / len(parts), missing


class _Contents:
    """The names and literal values an automation holds, for comparing with a request."""

    def __init__(self, automation: ast.Automation) -> None:
        self.trigger = automation.trigger.name
        nodes = list(_walk(automation))
        self.actions = {n.name for n in nodes if isinstance(n, ast.Action)}
        self.seconds = {n.seconds for n in nodes if isinstance(n, ast.Duration)}
        self.percents = {n.value for n in nodes if isinstance(n, ast.Percent)}
        self.amounts = {n.amount for n in nodes if isinstance(n, ast.Money)}
        self.texts = [n.value.casefold() for n in nodes if isinstance(n, ast.String)]

    def has_duration(self, text: str) -> bool:
        value = _literal(text)
        return isinstance(value, ast.Duration) and value.seconds in self.seconds

    def has_percent(self, text: str) -> bool:
        value = _literal(text.replace(" ", ""))
        return isinstance(value, ast.Percent) and value.value in self.percents

    def has_amount(self, text: str) -> bool:
        value = _literal(text.replace(" ", ""))
        if isinstance(value, ast.Number):
            return value.value in self.amounts
        return isinstance(value, ast.Money) and value.amount in self.amounts

    def has_text(self, word: str) -> bool:
        word = word.casefold()
        return any(word in text for text in self.texts)


def _literal(text: str) -> ast.Expr | None:
    try:
        return parse_expression(text.strip())
    except Exception:  # not a literal the language writes: it cannot be matched
        return None


def _walk(node: object) -> Iterator[object]:
    yield node
    if isinstance(node, tuple):
        for item in node:
            yield from _walk(item)
    elif is_dataclass(node) and not isinstance(node, type):
        for f in fields(node):
            if f.name != "span":
                yield from _walk(getattr(node, f.name))


# --- One build -------------------------------------------------------------------------------


@dataclass
class _Build:
    description: str
    catalog: Catalog
    policy: Policy
    confirmed: bool
    understanding: Understanding

    def check(self, text: str, others: int = 0) -> Checked:
        return check_text(text, self.catalog, self.policy, confirmed=self.confirmed, others=others)

    def offline(self) -> BuildResult:
        checked = self.check(translate(self.description, self.catalog))
        if checked.errors:
            reason = "the offline translator's text did not pass:\n" + checked.render()
            return self.fallback(reason, OFFLINE_PROVIDER, None, 0, TokenUsage(), offline=True)
        return self.result(checked, OFFLINE_PROVIDER, None, 0, TokenUsage(), offline=True)

    def with_model(
        self, client: LLMClient, examples: Sequence[str], max_repairs: int
    ) -> BuildResult:
        messages = prompts.build_messages(
            self.description, self.catalog, examples, self.understanding.trigger
        )
        usage = TokenUsage()
        model: str | None = None
        checked: Checked | None = None
        rounds = 1 + max(0, max_repairs)
        for attempt in range(rounds):
            if checked is not None:
                messages = prompts.repair_messages(messages, checked.text, checked.render())
            try:
                completion = client.complete(messages, task="automations", grammar=True)
            except LLMError as exc:
                reason = f"the model gave no usable answer: {exc}"
                return self.fallback(reason, client.provider, model, attempt + 1, usage)
            model = completion.model
            usage = TokenUsage(
                prompt_tokens=usage.prompt_tokens + completion.usage.prompt_tokens,
                completion_tokens=usage.completion_tokens + completion.usage.completion_tokens,
            )
            checked = self.check(*extract_dsl(completion.text))
            if not checked.errors:
                return self.result(checked, client.provider, model, attempt + 1, usage)
        assert checked is not None
        reason = (
            f"no valid automation after {rounds} answers from the model; "
            f"the last one had these problems:\n{checked.render()}"
        )
        return self.fallback(reason, client.provider, model, rounds, usage)

    def result(
        self,
        checked: Checked,
        provider: str,
        model: str | None,
        attempts: int,
        usage: TokenUsage,
        *,
        offline: bool = False,
        reason: str | None = None,
    ) -> BuildResult:
        automation = checked.automation
        fallback = reason is not None
        share, missing = coverage(self.understanding, automation, offline_mode=offline)
        warnings = [d for d in checked.diagnostics if not d.is_error]
        graph = compile_automation(automation, self.catalog)
        return BuildResult(
            name=automation.name,
            description=automation.description or self.description.strip(),
            dsl=checked.text,
            steps=export_flow(graph)["steps"],
            confidence=confidence(
                repairs=max(0, attempts - 1),
                warnings=len(warnings),
                coverage=share,
                offline=offline,
                fallback=fallback,
            ),
            explanation=explain(automation, self.catalog),
            diagnostics=[d.to_dict() for d in warnings],
            attempts=attempts,
            fallback=fallback,
            reason=reason,
            provider=provider,
            model=model,
            offline=offline,
            needs_confirmation=any(d.code == CONFIRM_DISCOUNT for d in warnings),
            usage=usage,
            uncovered=missing,
        )

    def fallback(
        self,
        reason: str,
        provider: str,
        model: str | None,
        attempts: int,
        usage: TokenUsage,
        *,
        offline: bool = False,
    ) -> BuildResult:
        """The design's fallback: a valid template for the trigger the request names
        or, if the policy refuses even that, the trigger alone with no steps."""
        name = automation_name(self.description)
        trigger = self.understanding.trigger
        checked = self.check(fallback_template(trigger, self.catalog, name))
        if checked.errors:
            checked = self.bare_automation(name)
        return self.result(
            checked, provider, model, attempts, usage, offline=offline, reason=reason
        )

    def bare_automation(self, name: str) -> Checked:
        triggers = [self.understanding.trigger, *sorted(self.catalog.triggers)]
        for trigger in dict.fromkeys(t for t in triggers if t in self.catalog.triggers):
            automation = ast.Automation(name, ast.Trigger(trigger), ())
            checked = self.check(format_module(ast.Module((automation,))))
            if not checked.errors:
                return checked
        raise BuildError("no installed trigger can start an automation: check `huntaze plugins`")


class BuildError(HuntazeError):
    """Not even a fallback automation can be written (no usable trigger is installed)."""


_NAME_WORDS = 8
_NAME_CHARS = 60


def automation_name(description: str) -> str:
    """A name for an automation from the first words of its description."""
    clause = re.split(r"[.;:!?\n]", description.strip(), maxsplit=1)[0]
    words = clause.split()[:_NAME_WORDS]
    name = " ".join(words)[:_NAME_CHARS].strip(" ,") or "New automation"
    return name[0].upper() + name[1:]
