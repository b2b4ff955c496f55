"""Docs that can be tested are tested.

Every ```hz block in the Markdown docs is a complete automation file and must parse;
every ```hz-error block must fail with the language's error, and when it is followed
directly by a ```text block, that block is the exact rendered output. The grammar
printed in docs/language.md is the grammar the parser loads. Every .hz file under
examples/ parses; those at its top level, and the reference's own examples, also pass
the checker against the hand-built catalogue of built-in plugins (catalog_fixture), and
the top-level examples are already in canonical format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from catalog_fixture import CATALOG

import dsl
import dsl.ast
from dsl import DslError
from dsl.parser import KEYWORDS

ROOT = Path(__file__).resolve().parent.parent
LANGUAGE_MD = ROOT / "docs" / "language.md"
GRAMMAR = ROOT / "dsl" / "grammar.lark"
# Error examples in the docs are rendered as if they came from this file.
ERROR_FILENAME = "example.hz"

_FENCE = re.compile(
    r"^(?P<fence>`{3,})(?P<info>[\w-]*)[ \t]*\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S
)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    info: str
    body: str
    # The ```text block that follows this one with only blank lines between, if any.
    output: str | None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    matches = list(_FENCE.finditer(text))
    blocks = []
    for i, m in enumerate(matches):
        output = None
        following = matches[i + 1] if i + 1 < len(matches) else None
        if (
            following is not None
            and following.group("info") == "text"
            and text[m.end() : following.start()].strip() == ""
        ):
            output = following.group("body")
        line = text.count("\n", 0, m.start()) + 1
        blocks.append(Block(path, line, m.group("info"), m.group("body"), output))
    return blocks


def doc_files() -> list[Path]:
    readme = ROOT / "README.md"
    return ([readme] if readme.exists() else []) + sorted((ROOT / "docs").rglob("*.md"))


def blocks_of(info: str) -> list[Block]:
    return [b for path in doc_files() for b in fenced_blocks(path) if b.info == info]


def example_files() -> list[Path]:
    return sorted((ROOT / "examples").rglob("*.hz"))


def top_level_examples() -> list[Path]:
    """The creator's examples; folders under examples/ are packages with their own tests."""
    return sorted((ROOT / "examples").glob("*.hz"))


def _example_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _params(blocks: list[Block]):
    return [pytest.param(b, id=b.id) for b in blocks]


@pytest.mark.parametrize("block", _params(blocks_of("hz")))
def test_hz_block_parses(block: Block) -> None:
    module = dsl.parse(block.body, block.id)
    assert module.automations, "an ```hz block should hold at least one automation"


@pytest.mark.parametrize("block", _params(blocks_of("hz-error")))
def test_hz_error_block_fails_as_documented(block: Block) -> None:
    with pytest.raises(DslError) as caught:
        dsl.parse(block.body, ERROR_FILENAME)
    assert caught.value.diagnostics
    if block.output is not None:
        assert str(caught.value) == block.output.rstrip("\n")


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_indented_hz_fence(path: Path) -> None:
    """An indented fence (inside a list item, say) would escape the tests above."""
    indented = re.findall(r"^[ \t]+`{3,}hz.*$", path.read_text(encoding="utf-8"), re.M)
    assert not indented, "move these blocks out of the list, to the start of the line"


def test_language_reference_has_examples_of_each_kind() -> None:
    """Guards the tests above against passing because the blocks were not found."""
    infos = [b.info for b in fenced_blocks(LANGUAGE_MD)]
    assert infos.count("hz") >= 10
    assert infos.count("hz-error") >= 10
    assert "lark" in infos


def _section_blocks(path: Path, heading: str) -> list[Block]:
    """The fenced blocks under a heading (a whole line), up to the next heading of its
    level or above."""
    level = len(heading.split()[0])
    blocks = fenced_blocks(path)
    inside = {n for b in blocks for n in range(b.line, b.line + b.body.count("\n") + 2)}
    lines = path.read_text(encoding="utf-8").splitlines()
    first = lines.index(heading) + 1
    last = next(
        (n for n, line in enumerate(lines[first:], first + 1)
         if n not in inside and re.match(rf"#{{1,{level}}} ", line)),
        len(lines) + 1,
    )  # fmt: skip
    return [b for b in blocks if first <= b.line < last]


def _condition(source: str) -> dsl.ast.Expr:
    text = f'automation "x" {{\n  when purchase_completed\n  if {source} {{\n  }}\n}}\n'
    return dsl.parse(text).automations[0].body[0].branches[0].condition


def test_language_reference_precedence_examples_mean_what_they_say() -> None:
    blocks = _section_blocks(LANGUAGE_MD, "### Precedence and parentheses")
    [block] = [b for b in blocks if b.info == "text"]
    pairs = [line.split(" means ") for line in block.body.splitlines()]
    assert len(pairs) >= 4
    for written, meant in pairs:
        assert _condition(written.strip()) == _condition(meant.strip()), written
    assert _condition("a or b and c") != _condition("(a or b) and c")


def test_language_reference_lists_the_keywords() -> None:
    [block] = [b for b in _section_blocks(LANGUAGE_MD, "## Names and keywords") if b.info == "text"]
    words = block.body.split()
    assert len(words) == len(set(words)) and set(words) == KEYWORDS


def test_language_reference_canonical_example_is_canonical() -> None:
    [block] = [b for b in _section_blocks(LANGUAGE_MD, "## The canonical format") if b.info == "hz"]
    assert dsl.format_text(block.body, block.id) == block.body


def test_language_reference_trigger_arguments_example_parses() -> None:
    [block] = [b for b in _section_blocks(LANGUAGE_MD, "### Triggers") if b.info == "text"]
    text = f'automation "x" {{\n  {block.body.strip()}\n}}\n'
    trigger = dsl.parse(text).automations[0].trigger
    assert trigger.name == "subscription_expiring" and len(trigger.arguments) == 1


def test_language_reference_shows_the_grammar_verbatim() -> None:
    grammars = [b.body for b in fenced_blocks(LANGUAGE_MD) if b.info == "lark"]
    assert grammars == [GRAMMAR.read_text(encoding="utf-8")]


def _named_error_codes() -> set[str]:
    """The codes of the named syntax errors, read from the parser's and messages' source."""
    import dsl.messages
    import dsl.parser

    codes: set[str] = set()
    for module in (dsl.messages, dsl.parser):
        source = Path(module.__file__).read_text(encoding="utf-8")
        codes |= set(re.findall(r'"(syntax/[\w-]+)"', source))
    return codes


def test_every_named_syntax_error_is_documented() -> None:
    documented: set[str] = set()
    for block in blocks_of("hz-error"):
        _, diagnostics = dsl.parse_with_diagnostics(block.body)
        documented |= {d.code for d in diagnostics}
    missing = _named_error_codes() - documented
    assert not missing, f"no ```hz-error example in the docs produces {sorted(missing)}"


@pytest.mark.parametrize(
    "block", _params([b for b in fenced_blocks(LANGUAGE_MD) if b.info == "hz"])
)
def test_language_reference_hz_block_checks(block: Block) -> None:
    """The reference's examples use only the built-in triggers, actions and fields."""
    diagnostics = dsl.check(dsl.parse(block.body), CATALOG)
    assert not diagnostics, dsl.render_all(diagnostics, block.body, block.id)


def test_examples_exist() -> None:
    assert len(top_level_examples()) >= 10


@pytest.mark.parametrize("path", example_files(), ids=_example_id)
def test_example_parses(path: Path) -> None:
    dsl.parse(path.read_text(encoding="utf-8"), str(path))


@pytest.mark.parametrize("path", top_level_examples(), ids=_example_id)
def test_example_checks(path: Path) -> None:
    """A creator's examples use only the built-in triggers, actions and fields."""
    text = path.read_text(encoding="utf-8")
    diagnostics = dsl.check(dsl.parse(text), CATALOG)
    assert not diagnostics, dsl.render_all(diagnostics, text, str(path))


@pytest.mark.parametrize("path", top_level_examples(), ids=_example_id)
def test_example_is_in_canonical_format(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert dsl.format_text(text, str(path)) == text
