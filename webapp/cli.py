"""The ``huntaze`` command line.

One click group, one function per command. Commands read files, hand their text to the
language (``dsl``) and print what it found; the work itself lives in the stages, so a
later command (``run``, ``worker``, ``serve`` ...) is another small function here.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from pathlib import Path

import click

from dsl import Diagnostic, DslError, format_text, parse_with_diagnostics, render
from dsl.ast import Span
from dsl.diagnostics import error

SUFFIX = ".hz"

paths_argument = click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path)
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
def check(paths: tuple[Path, ...], output_format: str) -> None:
    """Report every problem in automation files (folders: every *.hz inside)."""
    files = collect_files(paths)
    found: list[tuple[Path, str, list[Diagnostic]]] = []
    for path in files:
        text, diagnostics = read_source(path)
        if text is not None:
            diagnostics = diagnose(text)
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


def format_file(path: Path) -> tuple[str, str | None, list[Diagnostic]]:
    """(text, canonical text or None, the diagnostics that prevented formatting)."""
    text, diagnostics = read_source(path)
    if text is None:
        return "", None, diagnostics
    try:
        return text, format_text(text, str(path)), []
    except DslError as exc:
        return text, None, exc.diagnostics


def diagnose(text: str) -> list[Diagnostic]:
    """Every problem in one file's text, syntax first.

    The semantic checker (a later stage) belongs here: it takes the parsed module and
    returns more diagnostics, which are appended to these."""
    _module, diagnostics = parse_with_diagnostics(text)
    return diagnostics


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
