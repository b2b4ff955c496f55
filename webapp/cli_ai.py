"""The ``huntaze ai`` commands: automations written from English, by the model set in
the ``HUNTAZE_LLM_*`` settings (or, with none, the offline translator).

Whatever comes out has passed the checker and the policy (the default one, or with
``--save`` the creator's own); when no valid automation could be written, the command
prints the fallback template and the reason, exits 1, and neither writes ``--output``
nor saves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from dsl.ast import Span
from dsl.diagnostics import Diagnostic, Severity, render
from dsl.policy import Policy
from engine.ai.builder import BuildError, BuildResult, build_automation
from engine.catalogue import load_catalogue
from engine.exceptions import HuntazeError
from webapp.cli_ai_offers import offers
from webapp.cli_llm import llm_client

if TYPE_CHECKING:  # the engine's database side loads only for --save
    from engine.automations import AutomationService


@click.group()
def ai() -> None:
    """Automations written from English, and offer suggestions, by the model set in
    HUNTAZE_LLM_* (or offline, without one)."""


ai.add_command(offers)


@ai.command()
@click.argument("description")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write only the automation text to FILE.")  # fmt: skip
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="json prints the whole response as one object.")  # fmt: skip
@click.option("--save", is_flag=True,
              help="Store the automation as a draft of --creator, under their policy.")  # fmt: skip
@click.option("--creator", "creator_name", metavar="NAME",
              help="With --save: the creator (created if missing).")  # fmt: skip
@click.option("--confirm", is_flag=True,
              help="Confirm discounts above the policy's confirmation threshold.")  # fmt: skip
@click.option("--max-repairs", type=click.IntRange(0, 5), default=2, show_default=True,
              help="Rounds of the checker's diagnostics sent back to the model.")  # fmt: skip
def build(
    description: str,
    output: Path | None,
    output_format: str,
    save: bool,
    creator_name: str | None,
    confirm: bool,
    max_repairs: int,
) -> None:
    """Write one automation from a DESCRIPTION in English, check it, and explain it."""
    if save != bool(creator_name):
        raise click.UsageError("--save and --creator NAME go together: the draft's creator")
    if not description.strip():
        raise click.UsageError("the description is empty: say what the automation should do")
    if not save:
        result = _build(description, max_repairs, confirm, Policy())
        _report(result, output_format, output)
        return
    with _creator(creator_name) as (service, creator_id):
        result = _build(description, max_repairs, confirm, service.policy(creator_id))
        _report(result, output_format, output)
        if result.needs_confirmation and not confirm:
            raise click.ClickException(
                "not saved: a discount needs your confirmation (see the warning above); "
                "run again with --confirm to save it"
            )
        try:
            saved = service.create(creator_id, result.dsl, "draft", confirmed=confirm)
        except HuntazeError as exc:
            raise click.ClickException(f"not saved: {exc}") from None
    click.echo(f"saved as draft {saved.id} of creator {creator_name} ({creator_id})", err=True)


def _build(description: str, max_repairs: int, confirmed: bool, policy: Policy) -> BuildResult:
    with llm_client() as client:
        try:
            return build_automation(
                description,
                catalog=load_catalogue().catalog,
                client=client,
                policy=policy,
                max_repairs=max_repairs,
                confirmed=confirmed,
            )
        except BuildError as exc:
            raise click.ClickException(str(exc)) from None


def _report(result: BuildResult, output_format: str, output: Path | None) -> None:
    """Print the result; write --output; exit 1 (writing nothing) on the fallback."""
    if output_format == "json":
        click.echo(result.model_dump_json(indent=2))
    else:
        print_result(result)
    if result.fallback:
        click.echo(
            "error: no valid automation came out of the model, so the above is the "
            f"fallback template; nothing was written or saved. Why: {result.reason}",
            err=True,
        )
        raise SystemExit(1)
    if output is not None:
        try:
            output.write_text(result.dsl, encoding="utf-8")
        except OSError as exc:
            raise click.ClickException(f"cannot write {output}: {exc.strerror}") from None


def print_result(result: BuildResult) -> None:
    """The text, what it does, its warnings, and how it was made."""
    click.echo(result.dsl, nl=False)
    click.echo("\nWhat it does:")
    for line in result.explanation.splitlines():
        click.echo(f"  {line}" if line else "")
    for diagnostic in result.diagnostics:
        click.echo(render_dict(diagnostic, result.dsl))
    click.echo(f"\n{how_made(result)}")
    if result.uncovered:
        click.echo("not found in the automation: " + ", ".join(result.uncovered))


def how_made(result: BuildResult) -> str:
    if result.offline:
        made = "written offline by the built-in translator (set HUNTAZE_LLM_PROVIDER for a model)"
    else:
        answers = f"{result.attempts} answer{'s' if result.attempts != 1 else ''}"
        usage = result.usage
        made = (
            f"written by {result.model or result.provider} ({result.provider}) in {answers}, "
            f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens"
        )
    return f"{made}; confidence {result.confidence:.2f}"


def render_dict(diagnostic: dict, source: str) -> str:
    """A diagnostic from BuildResult.diagnostics, rendered against the automation text."""
    span = Span(diagnostic["line"], diagnostic["column"], diagnostic["end_line"],
                diagnostic["end_column"], 0, 0)  # fmt: skip
    severity = Severity(diagnostic["severity"])
    found = Diagnostic(severity, diagnostic["message"], span, diagnostic["hint"],
                       diagnostic["code"])  # fmt: skip
    return render(found, source, "automation.hz")


@contextmanager
def _creator(name: str) -> Iterator[tuple[AutomationService, str]]:
    """The automations of the named creator (created if missing), in the database the
    engine's settings name."""
    from engine.automations import AutomationService
    from webapp.cli_engine import command_runtime, find_or_create_creator

    with command_runtime() as runtime:
        creator_id = runtime.db.run(lambda s: find_or_create_creator(s, name))
        yield AutomationService(runtime), creator_id
