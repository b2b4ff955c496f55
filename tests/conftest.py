"""Fixtures shared by every stage's tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner


@pytest.fixture
def runner() -> CliRunner:
    """Runs ``huntaze`` commands in-process; ``result.stdout`` and ``result.stderr`` apart."""
    return CliRunner()


@pytest.fixture
def write_hz(tmp_path: Path) -> Callable[[str, str], Path]:
    """Writes automation text to ``tmp_path/<name>`` (folders created) and returns the path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def fake_llm():
    """An OpenAI-compatible server on 127.0.0.1 answering what the test scripts
    (tests/llm_server.py); build a client for it with ``llm_server.client_for``."""
    from llm_server import FakeLLM

    with FakeLLM() as fake:
        yield fake
