"""``huntaze policy``: a creator's guardrails (docs/ai.md, Guardrails), shown or changed.

Changing them reports the creator's active automations that the new policy refuses,
each with the diagnostics saving it again would give; they keep running (nothing is
paused), for the creator to edit or pause.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from engine.exceptions import HuntazeError

if TYPE_CHECKING:  # the engine's database side loads when the command runs
    from engine.automations import AutomationService, PolicyChange


@click.command()
@click.option("--creator", "creator_name", metavar="NAME", required=True,
              help="The creator, by name.")  # fmt: skip
@click.option("--set", "policy_path", metavar="FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Store this policy (JSON, as `huntaze check --policy` reads it).")  # fmt: skip
def policy(creator_name: str, policy_path: Path | None) -> None:
    """Print a creator's policy in force (JSON); with --set FILE, change it first and list
    their active automations the new policy refuses."""
    from webapp.cli import read_policy

    new = read_policy(policy_path, param_hint="'--set'") if policy_path else None
    with _creator(creator_name) as (service, creator_id):
        try:
            if new is None:
                click.echo(service.policy(creator_id).model_dump_json(indent=2))
                return
            change = service.set_policy(creator_id, new)
        except HuntazeError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(change.policy.model_dump_json(indent=2))
    report(change)


def report(change: PolicyChange) -> None:
    """The active automations the new policy refuses, rendered as `huntaze check` does,
    on stderr; a line saying there are none otherwise."""
    conflicts = change.conflicts
    if not conflicts:
        click.echo("policy set: every active automation is within it", err=True)
        return
    for conflict in conflicts:
        click.echo(conflict.render(), err=True)
    several = len(conflicts) != 1
    count = f"{len(conflicts)} active automation{'s go' if several else ' goes'}"
    click.echo(
        f"policy set: {count} beyond it ({', '.join(c.name for c in conflicts)}), "
        f"still active: edit or pause {'them' if several else 'it'}",
        err=True,
    )


@contextmanager
def _creator(name: str) -> Iterator[tuple[AutomationService, str]]:
    """The automations of the named creator, in the database the engine's settings name."""
    from engine.automations import AutomationService
    from engine.creators import creator_named
    from webapp.cli_engine import command_runtime

    with command_runtime() as runtime:
        creator_id = runtime.db.run(lambda s: creator_named(s, name))
        if creator_id is None:
            raise click.ClickException(f"no creator named {name!r}")
        yield AutomationService(runtime), creator_id
