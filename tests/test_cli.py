"""The ``huntaze`` command line, through click's runner."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

from test_docs import LANGUAGE_MD, fenced_blocks

from webapp.cli import main

CANONICAL = """\
automation "Welcome" {
  when new_subscriber
  send_message text: "Hi {{ fan.name }}"
}
"""

# The same automation, written carelessly: the formatter's job is to undo this.
UNTIDY = """\
automation "Welcome"{
when   new_subscriber
      send_message text:"Hi {{ fan.name }}"}
"""

BROKEN = """\
automation "Welcome" {
  when new_subscriber
  wait 3
  add_tag tag "vip"
}
"""


# --- check ---------------------------------------------------------------------


def test_check_clean_file_exits_0_and_says_so(runner, write_hz):
    path = write_hz("welcome.hz", CANONICAL)
    result = runner.invoke(main, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "checked 1 file: no problems\n"


def test_check_reports_every_error_rendered_and_exits_1(runner, write_hz):
    path = write_hz("broken.hz", BROKEN)
    result = runner.invoke(main, ["check", str(path)])
    assert result.exit_code == 1
    out = result.stdout
    assert f"{path}:3:8: error: " in out
    assert f"{path}:4:15: error: missing `:` after `tag`" in out
    assert "    3 |   wait 3\n" in out
    assert "  hint: " in out
    assert out.endswith("2 errors in 1 file (checked 1 file)\n")


def test_check_json_prints_only_the_diagnostics(runner, write_hz):
    path = write_hz("broken.hz", BROKEN)
    result = runner.invoke(main, ["check", "--format", "json", str(path)])
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert [(r["file"], r["line"], r["column"], r["severity"]) for r in rows] == [
        (str(path), 3, 8, "error"),
        (str(path), 4, 15, "error"),
    ]
    assert rows[1]["message"] == "missing `:` after `tag`"
    assert set(rows[0]) >= {"end_line", "end_column", "code", "hint"}


def test_check_json_of_a_clean_file_is_an_empty_list(runner, write_hz):
    path = write_hz("welcome.hz", CANONICAL)
    result = runner.invoke(main, ["check", "--format", "json", str(path)])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []


def test_check_folder_takes_every_hz_file_recursively_in_order(runner, write_hz, tmp_path):
    write_hz("b.hz", CANONICAL)
    write_hz("nested/deeper/a.hz", BROKEN)
    write_hz("notes.txt", "not automation text")
    result = runner.invoke(main, ["check", "--format", "json", str(tmp_path)])
    assert result.exit_code == 1
    assert {row["file"] for row in json.loads(result.stdout)} == {
        str(tmp_path / "nested/deeper/a.hz")
    }
    text = runner.invoke(main, ["check", str(tmp_path)])
    assert text.stdout.endswith("(checked 2 files)\n")


def test_check_folder_skips_folders_named_like_files(runner, write_hz, tmp_path):
    write_hz("a.hz", CANONICAL)
    (tmp_path / "drafts.hz").mkdir()
    result = runner.invoke(main, ["check", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "checked 1 file: no problems\n"


def test_check_a_folder_without_automations_warns(runner, tmp_path):
    result = runner.invoke(main, ["check", str(tmp_path)])
    assert result.exit_code == 0
    assert result.stderr == "warning: no .hz files found\n"
    assert result.stdout == "checked 0 files: no problems\n"


def test_check_several_clean_files(runner, write_hz, tmp_path):
    for name in ("a.hz", "b.hz", "c.hz"):
        write_hz(name, CANONICAL)
    result = runner.invoke(main, ["check", str(tmp_path)])
    assert result.exit_code == 0
    assert result.stdout == "checked 3 files: no problems\n"


def test_check_missing_path_is_a_usage_error_not_a_traceback(runner, tmp_path):
    result = runner.invoke(main, ["check", str(tmp_path / "nope.hz")])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.output


def test_check_needs_a_path(runner):
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 2
    assert "Missing argument" in result.stderr


def test_check_reports_a_file_that_is_not_utf8(runner, tmp_path):
    path = tmp_path / "latin1.hz"
    # Columns count characters: the é before the bad byte is one column, not two bytes.
    path.write_bytes(b'automation "\xc3\xa9 Caf\xe9" {\n  when new_subscriber\n}\n')
    result = runner.invoke(main, ["check", str(path)])
    assert result.exit_code == 1
    assert f"{path}:1:18: error: the file is not UTF-8 text" in result.stdout


def test_check_accepts_a_byte_order_mark(runner, tmp_path):
    path = tmp_path / "bom.hz"
    path.write_bytes(b"\xef\xbb\xbf" + CANONICAL.encode())
    assert runner.invoke(main, ["check", str(path)]).exit_code == 0


def test_check_counts_lines_the_same_with_windows_line_endings(runner, tmp_path):
    path = tmp_path / "crlf.hz"
    path.write_bytes(BROKEN.replace("\n", "\r\n").encode())
    rows = json.loads(runner.invoke(main, ["check", "--format", "json", str(path)]).stdout)
    assert [(r["line"], r["column"]) for r in rows] == [(3, 8), (4, 15)]


# --- fmt -------------------------------------------------------------------------


def test_fmt_rewrites_in_place(runner, write_hz):
    path = write_hz("welcome.hz", UNTIDY)
    result = runner.invoke(main, ["fmt", str(path)])
    assert result.exit_code == 0, result.output
    assert path.read_text() == CANONICAL
    assert result.stdout == "1 file reformatted, 0 files already formatted\n"


def test_fmt_writes_unix_line_endings(runner, tmp_path):
    path = tmp_path / "crlf.hz"
    path.write_bytes(CANONICAL.replace("\n", "\r\n").encode())
    assert runner.invoke(main, ["fmt", "--check", str(path)]).exit_code == 1
    assert runner.invoke(main, ["fmt", str(path)]).exit_code == 0
    assert path.read_bytes() == CANONICAL.encode()


def test_fmt_leaves_canonical_files_alone(runner, write_hz):
    path = write_hz("welcome.hz", CANONICAL)
    before = path.stat().st_mtime_ns
    result = runner.invoke(main, ["fmt", str(path)])
    assert result.exit_code == 0
    assert path.stat().st_mtime_ns == before
    assert result.stdout == "0 files reformatted, 1 file already formatted\n"


def test_fmt_check_lists_files_that_would_change_and_changes_nothing(runner, write_hz, tmp_path):
    untidy = write_hz("a.hz", UNTIDY)
    write_hz("b.hz", CANONICAL)
    result = runner.invoke(main, ["fmt", "--check", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stdout == (
        f"would reformat: {untidy}\n1 file would be reformatted, 1 file already formatted\n"
    )
    assert untidy.read_text() == UNTIDY


def test_fmt_check_passes_on_canonical_files(runner, write_hz):
    path = write_hz("welcome.hz", CANONICAL)
    assert runner.invoke(main, ["fmt", "--check", str(path)]).exit_code == 0


def test_fmt_diff_prints_a_unified_diff_and_changes_nothing(runner, write_hz):
    path = write_hz("welcome.hz", UNTIDY)
    result = runner.invoke(main, ["fmt", "--diff", str(path)])
    assert result.exit_code == 1
    assert result.stdout.startswith(f"--- {path} (original)\n+++ {path} (formatted)\n@@ ")
    assert "-when   new_subscriber\n" in result.stdout
    assert "+  when new_subscriber\n" in result.stdout
    assert "1 file would be reformatted" in result.stderr
    assert path.read_text() == UNTIDY


def test_fmt_leaves_a_file_with_syntax_errors_untouched(runner, write_hz, tmp_path):
    broken = write_hz("broken.hz", BROKEN)
    untidy = write_hz("untidy.hz", UNTIDY)
    result = runner.invoke(main, ["fmt", str(tmp_path)])
    assert result.exit_code == 1
    assert broken.read_text() == BROKEN
    assert untidy.read_text() == CANONICAL
    assert f"{broken}:4:15: error: missing `:` after `tag`" in result.stdout
    assert f"error: {broken} left unformatted: fix the errors above" in result.stdout
    assert result.stdout.endswith(
        "1 file reformatted, 0 files already formatted, 1 file with errors\n"
    )


def test_fmt_missing_path_is_a_usage_error(runner, tmp_path):
    result = runner.invoke(main, ["fmt", str(tmp_path / "nope.hz")])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_help_lists_the_commands(runner):
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "check" in result.stdout
    assert "fmt" in result.stdout


def test_the_language_references_commands_run_as_written(runner, tmp_path, monkeypatch):
    """Every `huntaze check` and `huntaze fmt` line of docs/language.md, on a copy of the
    examples (canonical and clean: each exits 0 and changes nothing)."""
    lines = [line for b in fenced_blocks(LANGUAGE_MD) if b.info == "text"
             for line in b.body.splitlines() if line.startswith("huntaze ")]  # fmt: skip
    assert len(lines) >= 6
    shutil.copytree(Path(LANGUAGE_MD).parents[1] / "examples", tmp_path / "examples",
                    ignore=shutil.ignore_patterns("huntaze-webhook"))  # fmt: skip
    (tmp_path / "welcome.hz").write_text(CANONICAL, encoding="utf-8")
    (tmp_path / "vip.hz").write_text(CANONICAL.replace("Welcome", "VIP"), encoding="utf-8")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.hz")}
    monkeypatch.chdir(tmp_path)
    for line in lines:
        result = runner.invoke(main, shlex.split(line)[1:])
        assert result.exit_code == 0, f"{line}\n{result.output}"
        if "--format json" in line:
            assert json.loads(result.stdout) == []
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.hz")} == before


# --- check against the installed plugins, plugins, graph -------------------------------

UNKNOWN_NAMES = """\
automation "Welcome" {
  when new_subscribr
  send_mesage text: "Hi {{ fan.name }}"
}
"""


def test_check_runs_the_checker_against_the_installed_plugins(runner, write_hz):
    path = write_hz("names.hz", UNKNOWN_NAMES)
    result = runner.invoke(main, ["check", str(path)])
    assert result.exit_code == 1
    assert f"{path}:2:3: error: unknown trigger `new_subscribr`" in result.stdout
    assert "hint: did you mean `new_subscriber`?" in result.stdout


def test_plugins_lists_triggers_actions_fields_and_arguments(runner):
    result = runner.invoke(main, ["plugins"])
    assert result.exit_code == 0, result.output
    assert "trigger purchase_completed: " in result.stdout
    assert "    event.amount  (money)\n" in result.stdout
    assert "action send_message: " in result.stdout
    assert '    text: text ("...") (required)\n' in result.stdout
    assert "    policy: sends a message\n" in result.stdout
    assert "    policy: discount: discount; validity: valid_for\n" in result.stdout


def test_plugins_json_is_the_whole_catalogue(runner):
    result = runner.invoke(main, ["plugins", "--format", "json"])
    listing = json.loads(result.stdout)
    triggers = {t["name"]: t for t in listing["triggers"]}
    actions = {a["name"]: a for a in listing["actions"]}
    assert triggers["message_received"]["fields"]["event.text"] == "text"
    assert actions["add_tag"]["arguments"][0]["name"] == "tag"
    assert actions["add_tag"]["side_effects"] is False
    assert actions["send_message"]["sends_message"] is True
    assert actions["create_offer"]["policy_arguments"] == {
        "discount": "discount",
        "validity": "valid_for",
    }
    assert (actions["add_tag"]["sends_message"], actions["add_tag"]["policy_arguments"]) == (
        False,
        {},
    )
    assert listing["problems"] == []


def test_graph_prints_the_compiled_graph_or_the_steps(runner, write_hz):
    path = write_hz("welcome.hz", CANONICAL)
    graphs = json.loads(runner.invoke(main, ["graph", str(path)]).stdout)
    assert graphs[0]["format"] == "huntaze.rulegraph"
    assert graphs[0]["nodes"]["s1"]["name"] == "send_message"
    flows = json.loads(runner.invoke(main, ["graph", "--steps", str(path)]).stdout)
    assert [s["type"] for s in flows[0]["steps"]] == ["trigger", "action"]


def test_graph_of_a_file_with_errors_prints_them_and_exits_1(runner, write_hz):
    path = write_hz("names.hz", UNKNOWN_NAMES)
    result = runner.invoke(main, ["graph", str(path)])
    assert result.exit_code == 1
    assert "unknown action `send_mesage`" in result.stderr
    assert result.stdout == ""
