"""The ``huntaze`` command line.

One click group, one function per command. Commands read files, hand their text to the
language (``dsl``) and print what it found; the work itself lives in the stages, so a
later command (``run``, ``worker``, ``serve`` ...) is another small function here.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Iterable
from pathlib import Path

import click
from pydantic import ValidationError

from dsl import Diagnostic, DslError, analyse, compile_text, export_flow, format_text, render
from dsl.ast import Span
from dsl.diagnostics import Severity, error
from dsl.policy import CONFIRM_DISCOUNT, Policy, check_policy
from dsl.types import accepted_types, describe
from engine.catalogue import load_catalogue

SUFFIX = ".hz"

paths_argument = click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path)
)


# The engine's commands (webapp/cli_engine.py) pull in SQLAlchemy, Alembic and RQ:
# imported only when one of them runs, so `check` and `fmt` start in half the time.
ENGINE_COMMAND_NAMES = ("db", "worker", "run", "status")


class HuntazeGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *ENGINE_COMMAND_NAMES, "ai", "policy"])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "ai":  # the LLM client and the builder load on use too
            from webapp.cli_ai import ai

            return ai
        if name == "policy":  # opens the engine's database, as the engine's commands do
            from webapp.cli_policy import policy

            return policy
        if name in ENGINE_COMMAND_NAMES:
            from webapp.cli_engine import ENGINE_COMMANDS

            return next(c for c in ENGINE_COMMANDS if c.name == name)
        return super().get_command(ctx, name)


@click.group(cls=HuntazeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="huntaze")
def main() -> None:
    """Huntaze Rules: fan-engagement automations written in a small language."""


@main.command()
@paths_argument
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json prints only a JSON list of diagnostics, for editors and CI.",
)
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A creator's policy (JSON): what saving would refuse is an error. "
    "Without it, what the default policy would refuse is a warning.",
)
def check(paths: tuple[Path, ...], output_format: str, policy_path: Path | None) -> None:
    """Report every problem in automation files (folders: every *.hz inside)."""
    policy = read_policy(policy_path) if policy_path is not None else None
    files = collect_files(paths)
    found: list[tuple[Path, str, list[Diagnostic]]] = []
    for path in files:
        text, diagnostics = read_source(path)
        if text is not None:
            diagnostics = diagnose(text, policy)
        found.append((path, text or "", diagnostics))

    if output_format == "json":
        rows = [d.to_dict(str(path)) for path, _, ds in found for d in ds]
        click.echo(json.dumps(rows, indent=2))
    else:
        for path, text, diagnostics in found:
            for d in diagnostics:
                click.echo(render(d, text, str(path)))
        click.echo(summary(len(files), [ds for _, _, ds in found]))
    if any(d.is_error for _, _, ds in found for d in ds):
        raise SystemExit(1)


@main.command()
@paths_argument
@click.option(
    "--check", "check_only", is_flag=True, help="Change nothing; exit 1 if a file would change."
)
@click.option("--diff", "show_diff", is_flag=True, help="Print a unified diff; change nothing.")
def fmt(paths: tuple[Path, ...], check_only: bool, show_diff: bool) -> None:
    """Rewrite automation files in the canonical format (folders: every *.hz inside)."""
    # With --diff, stdout carries only the patch, so everything else goes to stderr.
    to_stderr = show_diff
    files = collect_files(paths)
    changed: list[Path] = []
    failed = 0
    for path in files:
        text, formatted, diagnostics = format_file(path)
        if formatted is None:
            failed += 1
            for d in diagnostics:
                click.echo(render(d, text, str(path)), err=to_stderr)
            click.echo(f"error: {path} left unformatted: fix the errors above", err=to_stderr)
        elif formatted != text:
            changed.append(path)
            if show_diff:
                click.echo(unified_diff(text, formatted, str(path)), nl=False)
            elif check_only:
                click.echo(f"would reformat: {path}")
            else:
                path.write_bytes(formatted.encode("utf-8"))

    dry_run = check_only or show_diff
    unchanged = len(files) - len(changed) - failed
    report = [
        f"{plural(len(changed), 'file')} {'would be reformatted' if dry_run else 'reformatted'}",
        f"{plural(unchanged, 'file')} already formatted",
    ]
    if failed:
        report.append(f"{plural(failed, 'file')} with errors")
    click.echo(", ".join(report), err=to_stderr)
    if failed or (dry_run and changed):
        raise SystemExit(1)


@main.command()
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True)  # fmt: skip
def plugins(output_format: str) -> None:
    """List the installed triggers and actions, and any plugin that failed to load."""
    loaded = load_catalogue()
    listing = describe_catalogue(loaded)
    if output_format == "json":
        click.echo(json.dumps(listing, indent=2))
        return
    for trigger in listing["triggers"]:
        click.echo(f"trigger {trigger['name']}: {trigger['description']}")
        for name, kind in trigger["fields"].items():
            click.echo(f"    {name}  ({kind})")
        for argument in trigger["arguments"]:
            click.echo(f"    {format_argument(argument)}")
    for action in listing["actions"]:
        click.echo(f"action {action['name']}: {action['description']}")
        for argument in action["arguments"]:
            click.echo(f"    {format_argument(argument)}")
        if roles := policy_roles(action):
            click.echo(f"    policy: {roles}")
    for problem in listing["problems"]:
        click.echo(f"problem: {problem['group']} `{problem['name']}`: {problem['reason']}")


def describe_catalogue(loaded) -> dict:
    """The catalogue as JSON-ready data (for `huntaze plugins`, the editor and the AI)."""
    catalog = loaded.catalog
    return {
        "triggers": [
            {
                "name": spec.name,
                "description": spec.description,
                "fields": {name: kind.value for name, kind in sorted(spec.fields.items())},
                "arguments": describe_arguments(spec.config_model),
            }
            for spec in sorted(catalog.triggers.values(), key=lambda s: s.name)
        ],
        "actions": [
            {
                "name": spec.name,
                "description": spec.description,
                "arguments": describe_arguments(spec.config_model),
                "side_effects": spec.side_effects,
                "emits": list(spec.emits),
                # What a creator's policy checks in it (docs/plugins.md).
                "sends_message": spec.sends_message,
                "policy_arguments": dict(spec.policy_arguments),
            }
            for spec in sorted(catalog.actions.values(), key=lambda s: s.name)
        ],
        "problems": [
            {"name": p.name, "group": p.group, "reason": p.reason, "distribution": p.distribution}
            for p in loaded.problems
        ],
    }


def describe_arguments(model) -> list[dict]:
    if model is None:
        return []
    return [
        {
            "name": name,
            "type": describe(accepted_types(field.annotation)),
            "required": field.is_required(),
            "default": None if field.is_required() else repr(field.get_default()),
        }
        for name, field in model.model_fields.items()
    ]


def policy_roles(action: dict) -> str:
    """What the policy checks in an action: "sends a message; discount: off" ..."""
    roles = ["sends a message"] if action["sends_message"] else []
    roles += [f"{role}: {name}" for role, name in action["policy_arguments"].items()]
    return "; ".join(roles)


def format_argument(argument: dict) -> str:
    extra = "required" if argument["required"] else f"default {argument['default']}"
    return f"{argument['name']}: {argument['type']} ({extra})"


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--steps", is_flag=True,
              help="Print the design document's step list instead of the rule graph.")  # fmt: skip
def graph(path: Path, steps: bool) -> None:
    """Print the compiled rule graph (JSON) of every automation in a file."""
    text, diagnostics = read_source(path)
    if text is not None:
        try:
            graphs, diagnostics = compile_text(text, load_catalogue().catalog, str(path))
        except DslError as exc:
            diagnostics = exc.diagnostics
    errors = [d for d in diagnostics if d.is_error]
    for d in diagnostics:
        click.echo(render(d, text or "", str(path)), err=True)
    if errors:
        raise SystemExit(1)
    output = [export_flow(g) if steps else g.to_json() for g in graphs]
    click.echo(json.dumps(output, indent=2, ensure_ascii=False))


def format_file(path: Path) -> tuple[str, str | None, list[Diagnostic]]:
    """(text, canonical text or None, the diagnostics that prevented formatting)."""
    text, diagnostics = read_source(path)
    if text is None:
        return "", None, diagnostics
    try:
        return text, format_text(text, str(path)), []
    except DslError as exc:
        return text, None, exc.diagnostics


def diagnose(text: str, policy: Policy | None = None) -> list[Diagnostic]:
    """Every problem in one file's text: syntax errors, or else what the checker finds
    against the installed plugins, then what a creator's policy refuses. Against a given
    ``policy`` that is an error (a discount that only needs confirming, a warning: it is
    confirmed when saving); against the default policy, a warning."""
    catalog = load_catalogue().catalog
    module, diagnostics = analyse(text, catalog)
    if module is None or any(d.is_error for d in diagnostics):
        return diagnostics
    found = [
        d
        if policy is not None and d.code != CONFIRM_DISCOUNT
        else dataclasses.replace(d, severity=Severity.WARNING)
        for d in check_policy(module, policy or Policy(), catalog)
    ]
    return sorted([*diagnostics, *found], key=lambda d: (d.span.line, d.span.column))


def read_policy(path: Path, param_hint: str = "'--policy'") -> Policy:
    """A policy from a JSON file, or a usage error saying what is wrong with it."""
    try:
        return Policy.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or 'the file'}: {e['msg']}"
            for e in exc.errors()
        )
        raise click.BadParameter(f"{path}: {problems}", param_hint=param_hint) from None


def collect_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, and every ``*.hz`` file under the folders named, each once."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob(f"*{SUFFIX}") if p.is_file()))
        else:
            files.append(path)
    unique = list(dict.fromkeys(files))
    if not unique:
        click.echo(f"warning: no {SUFFIX} files found", err=True)
    return unique


def read_source(path: Path) -> tuple[str | None, list[Diagnostic]]:
    """A file's text (a leading byte-order mark dropped), or a diagnostic saying why not.

    Bytes are decoded without newline translation so spans are offsets into the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, [
            error(f"cannot read the file: {exc.strerror}", Span(1, 1, 1, 2, 0, 1), code="io/read")
        ]
    try:
        return data.decode("utf-8").removeprefix("\ufeff"), []
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        before = data[data.rfind(b"\n", 0, exc.start) + 1 : exc.start]
        column = len(before.decode("utf-8", errors="replace")) + 1
        span = Span(line, column, line, column + 1, exc.start, exc.start + 1)
        return None, [error("the file is not UTF-8 text", span, code="io/encoding")]


def unified_diff(before: str, after: str, name: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"{name} (original)",
        tofile=f"{name} (formatted)",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def summary(checked: int, per_file: list[list[Diagnostic]]) -> str:
    errors = sum(d.is_error for ds in per_file for d in ds)
    warnings = sum(not d.is_error for ds in per_file for d in ds)
    with_problems = sum(bool(ds) for ds in per_file)
    if not errors and not warnings:
        return f"checked {plural(checked, 'file')}: no problems"
    counts = [plural(n, kind) for n, kind in ((errors, "error"), (warnings, "warning")) if n]
    files = plural(with_problems, "file")
    return f"{' and '.join(counts)} in {files} (checked {plural(checked, 'file')})"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
