"""Issue 9 for capture: template fields stay file names, sessions are locked roots, journals
name only files inside their session."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from expokit.capture.journal import read_journal
from expokit.capture.rig_config import RigConfigError, load_rig_config
from expokit.capture.session import Session
from expokit.cli import cli
from expokit.core.lock import RootInUseError
from expokit.core.paths import PathEscapeError, UnsafeNameError
from expokit.core.roots import root_kind


def _with_template(rig_file: Path, template: str) -> Path:
    rig_file.write_text(f"filename_template = {json.dumps(template)}\n" + rig_file.read_text())
    return rig_file


def _pair(rig_file: Path, *extra: str) -> Result:
    return CliRunner().invoke(
        cli, ["capture", "pair", "--rig", str(rig_file), "--no-progress", *extra]
    )


def _sessions(rig_file: Path) -> list[Path]:
    root = rig_file.parent / "sessions"
    return sorted(root.iterdir()) if root.exists() else []


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("../x_{index}{ext}", "may not contain '/', '\\' or '..'"),
        ("/tmp/x{index}{ext}", "may not contain '/', '\\' or '..'"),
        ("{index.__class__}", "attribute and index access are not allowed"),
        ("{role[0]}{index}{ev_token}{ext}", "attribute and index access are not allowed"),
        ("{role!r}_{index}_{ev_token}{ext}", "conversions such as {role!r}"),
        ("{index:zz}_{role}_{ev_token}{ext}", "{index:zz} is not a valid format spec"),
        ("{index:{ext}}_{role}_{ev_token}{ext}", "nested fields"),
        ("{role:d}_{index}_{ev_token}{ext}", "cannot be rendered"),
        ("{role:/>12}_{index}_{ev_token}{ext}", "pads with '/'"),
        ("{index:500d}_{role}_{ev_token}{ext}", "wider than a file name"),
        ("x\\{index}_{role}_{ev_token}{ext}", "may not contain '/', '\\' or '..'"),
        ("{serial} {index}_{role}_{ev_token}{ext}", "not a single safe file name"),
    ],
)
def test_bad_filename_template_fails_before_any_session_folder(
    rig_file: Path, template: str, problem: str
) -> None:
    _with_template(rig_file, template)
    with pytest.raises(RigConfigError) as info:
        load_rig_config(rig_file)
    assert str(info.value).startswith(f"{rig_file}: filename_template") and problem in str(
        info.value
    )
    result = _pair(rig_file)
    assert result.exit_code == 1 and "filename_template" in result.output
    assert _sessions(rig_file) == []
    assert not (rig_file.parent.parent / "x_1.jpg").exists()


def test_plain_format_specs_still_accepted(rig_file: Path) -> None:
    _with_template(rig_file, "{kind}-{index:05d}_{role}_{ev_token}_{serial}{ext}")
    result = _pair(rig_file)
    assert result.exit_code == 0, result.output
    (session,) = _sessions(rig_file)
    assert sorted(p.name for p in (session / "files").iterdir()) == [
        "pair-00001_reference_0_REF-1.jpg",
        "pair-00001_test_N2_TST-2.jpg",
    ]


def test_template_in_rig_json_is_checked_again_on_resume(rig_file: Path) -> None:
    assert _pair(rig_file).exit_code == 0
    (session,) = _sessions(rig_file)
    rig = json.loads((session / "rig.json").read_text())
    rig["filename_template"] = "../{index}_{role}_{ev_token}{ext}"
    (session / "rig.json").write_text(json.dumps(rig))
    result = CliRunner().invoke(cli, ["capture", "resume", str(session), "--no-progress"])
    assert result.exit_code == 1 and "filename_template" in result.output


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden", "x" * 200, "sp ace"])
def test_unsafe_session_name_refused_before_any_folder(rig_file: Path, name: str) -> None:
    result = _pair(rig_file, "--session", name)
    assert result.exit_code == 1, result.output
    assert "--session" in result.output and "is not allowed" in result.output
    assert _sessions(rig_file) == []
    assert not (rig_file.parent / "evil").exists()


def test_unknown_bracket_role_is_a_usage_error(rig_file: Path) -> None:
    result = CliRunner().invoke(
        cli, ["capture", "bracket", "--rig", str(rig_file), "--roles", "../x"]
    )
    assert result.exit_code == 2 and "unknown role(s) '../x'" in result.output
    assert _sessions(rig_file) == []


def test_create_never_reuses_a_folder_and_claims_it(rig_file: Path) -> None:
    config = load_rig_config(rig_file)
    first = Session.create(config, "same")
    second = Session.create(config, "same")  # same second, same name
    try:
        assert first.root != second.root
        assert root_kind(first.root) == root_kind(second.root) == "session"
        with pytest.raises(UnsafeNameError, match=re.escape("session name '../x'")):
            Session.create(config, "../x")
    finally:
        first.close()
        second.close()


def test_second_writer_on_a_session_is_refused_while_the_first_runs(rig_file: Path) -> None:
    assert _pair(rig_file).exit_code == 0
    (session_dir,) = _sessions(rig_file)
    first = Session.open(session_dir)  # a resume in progress holds the lock
    try:
        result = CliRunner().invoke(cli, ["capture", "resume", str(session_dir), "--no-progress"])
        assert result.exit_code == 1
        assert f"is in use by pid {os.getpid()} (expokit capture resume" in result.output
        with pytest.raises(RootInUseError):
            Session.open(session_dir)
    finally:
        first.close()
    resumed = [e for e in read_journal(session_dir / "journal.jsonl")[0] if "resumed" in e["event"]]
    assert len(resumed) == 1  # the refused writers appended nothing
    result = CliRunner().invoke(cli, ["capture", "resume", str(session_dir), "--no-progress"])
    assert result.exit_code == 0, result.output  # released on close


@pytest.mark.parametrize("bad_file", ["../x", "/etc/passwd", "files/../../x"])
def test_journal_line_leaving_the_session_is_refused(rig_file: Path, bad_file: str) -> None:
    assert _pair(rig_file).exit_code == 0
    (session,) = _sessions(rig_file)
    journal = session / "journal.jsonl"
    lines = journal.read_text().splitlines()
    line = json.dumps({"event": "downloaded", "index": 1, "role": "test", "file": bad_file})
    journal.write_text("\n".join([*lines, line]) + "\n")
    with pytest.raises(PathEscapeError, match=re.escape(f"{journal}, line {len(lines) + 1}: ")):
        read_journal(journal)
    result = CliRunner().invoke(cli, ["capture", "resume", str(session), "--no-progress"])
    assert result.exit_code == 1
    assert f"{journal}, line {len(lines) + 1}" in result.output and repr(bad_file) in result.output


def test_journal_file_symlinked_out_of_the_session_is_refused(
    rig_file: Path, tmp_path: Path
) -> None:
    assert _pair(rig_file).exit_code == 0
    (session,) = _sessions(rig_file)
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"not ours")
    (name,) = [p for p in (session / "files").iterdir() if "_test_" in p.name]
    name.unlink()
    name.symlink_to(outside)
    with pytest.raises(PathEscapeError, match="outside"):
        read_journal(session / "journal.jsonl")
    assert outside.read_bytes() == b"not ours"
