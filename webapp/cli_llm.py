"""The LLM client of the ``huntaze ai`` commands, from the ``HUNTAZE_LLM_*`` settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from pydantic import ValidationError

from engine.ai.llm import LLMClient, LLMError, LLMSettings, client_from_settings


@contextmanager
def llm_client() -> Iterator[LLMClient]:
    """The configured client, closed on exit; invalid settings are a usage error that
    names each variable."""
    try:
        client = client_from_settings(LLMSettings())
    except ValidationError as exc:
        problems = "; ".join(
            f"HUNTAZE_LLM_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise click.ClickException(f"invalid LLM settings: {problems}") from None
    except LLMError as exc:
        raise click.ClickException(str(exc)) from None
    with client:
        yield client
