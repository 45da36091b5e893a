"""Issue 12 for capture: malformed rig TOML, ``rig.json`` and journal lines get one-line
errors naming the file and the field (no tracebacks), and one typed journal reader."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from expokit.capture.journal import (
    DownloadedEvent,
    JournalError,
    PlannedEvent,
    TriggeredEvent,
    read_events,
    read_journal,
)
from expokit.capture.rig_config import RetryPolicy, RigConfigError, load_rig_config
from expokit.cli import cli
from expokit.curation.truth import TruthError, load_truth


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _one_line_error(result: Result, *needles: str) -> None:
    """Exit 1, no traceback, one ``error:`` line holding every needle."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _sessions(rig_file: Path) -> list[Path]:
    root = rig_file.parent / "sessions"
    return sorted(root.iterdir()) if root.exists() else []


BAD_TOML: list[tuple[str, Callable[[str], str], str]] = [
    ("bracket", lambda t: t.replace("bracket = [-1, 0, 1]", "bracket = 5"), "bracket = 5 must be"),
    (
        "ev_offset",
        lambda t: t.replace("ev_offset = -2.0", 'ev_offset = "minus two"'),
        "ev_offset = 'minus two' must be a number",
    ),
    (
        "settings",
        lambda t: re.sub(
            r'(\[roles\.test\]\nserial = "TST-2"\n)settings = .*', r'\1settings = "fast"', t
        ),
        "roles.test.settings = 'fast' must be a table",
    ),
    (
        "output_root",
        lambda t: re.sub(r'output_root = ".*"', "output_root = 5", t),
        "output_root = 5 must be a folder path",
    ),
    (
        "fake.cameras",
        lambda t: t.split("[[fake.cameras]]")[0] + '[fake]\ncameras = "two"\n',
        "fake.cameras = 'two' must be a list of tables",
    ),
    (
        "fake.cameras item",
        lambda t: t.replace('model = "Fake Canon EOS 5D"', 'model = "x"\ncolour = "red"'),
        "fake.cameras #2:",
    ),
    (
        "template",
        lambda t: 'filename_template = "{index:zz}_{role}_{ev_token}{ext}"\n' + t,
        "{index:zz} is not a valid format spec",
    ),
    (
        "attempts",
        lambda t: t.replace("attempts = 4", "attempts = 100000"),
        "retry.attempts = 100000 must be within 1..100",
    ),
    (
        "attempts type",
        lambda t: t.replace("attempts = 4", 'attempts = "many"'),
        "retry.attempts = 'many' must be an integer",
    ),
    (
        "serial",
        lambda t: t.replace('serial = "REF-1"\nsettings', "serial = [1]\nsettings", 1),
        "roles.reference.serial = [1] must be text",
    ),
]


@pytest.mark.parametrize(("name", "edit", "message"), BAD_TOML, ids=[c[0] for c in BAD_TOML])
def test_malformed_rig_toml_names_file_and_field(
    rig_file: Path, name: str, edit: Callable[[str], str], message: str
) -> None:
    text = rig_file.read_text()
    rig_file.write_text(edit(text))
    assert rig_file.read_text() != text, "the edit must change the file"
    with pytest.raises(RigConfigError) as info:
        load_rig_config(rig_file)
    assert str(info.value).startswith(f"{rig_file}: ")
    assert message in str(info.value)
    result = _invoke("capture", "pair", "--rig", str(rig_file), "--no-progress")
    _one_line_error(result, str(rig_file), message)
    assert _sessions(rig_file) == []  # refused before any session folder exists


def test_non_utf8_rig_toml(rig_file: Path) -> None:
    rig_file.write_bytes(rig_file.read_bytes() + b"# caf\xe9\n")
    result = _invoke("capture", "pair", "--rig", str(rig_file), "--no-progress")
    _one_line_error(result, str(rig_file), "not UTF-8 text")
    assert _sessions(rig_file) == []


def test_retry_delays_are_capped_and_finite() -> None:
    policy = RetryPolicy(attempts=100, backoff_s=1.0, backoff_factor=1e300)
    delays = policy.delays()
    assert len(delays) == 99
    assert delays[0] == 1.0 and max(delays) == 600.0
    with pytest.raises(ValueError, match=re.escape("retry.attempts = 0 must be within")):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match=re.escape("retry.attempts = True must be an integer")):
        RetryPolicy(attempts=True)


# ----------------------------------------------------------------------------- sessions


@pytest.fixture
def session(rig_file: Path) -> Path:
    result = _invoke("capture", "pair", "--rig", str(rig_file), "--no-progress")
    assert result.exit_code == 0, result.output
    (folder,) = _sessions(rig_file)
    return folder


def test_typed_reader_matches_the_dict_reader(session: Path) -> None:
    events, torn = read_events(session / "journal.jsonl")
    dicts, torn_again = read_journal(session / "journal.jsonl")
    assert torn == torn_again == 0
    assert [e.data for e in events] == dicts
    (planned,) = [e for e in events if isinstance(e, PlannedEvent)]
    assert planned.index == 1 and planned.kind == "pair"
    assert planned.role_ev("test") == -2.0 and planned.role_ev("reference") == 0.0
    downloaded = {e.role: e for e in events if isinstance(e, DownloadedEvent)}
    assert set(downloaded) == {"reference", "test"}
    for role, event in downloaded.items():
        assert (session / "files" / event.file).is_file()
        assert event.index == 1 and event.role == role
    triggered = [e for e in events if isinstance(e, TriggeredEvent)]
    assert {e.role for e in triggered} == {"reference", "test"}
    assert all(e.wall_before is not None and e.movie is None for e in triggered)


def _rewrite_event(session: Path, kind: str, change: Callable[[dict], dict]) -> int:
    journal = session / "journal.jsonl"
    lines = journal.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        entry = json.loads(line)
        if entry["event"] == kind:
            lines[number - 1] = json.dumps(change(entry))
            journal.write_text("\n".join(lines) + "\n")
            return number
    raise AssertionError(f"no {kind} event")


def _without(key: str) -> Callable[[dict], dict]:
    return lambda entry: {k: v for k, v in entry.items() if k != key}


@pytest.mark.parametrize(
    ("kind", "change", "problem"),
    [
        ("downloaded", _without("index"), "field 'index' is missing"),
        ("planned", _without("index"), "field 'index' is missing"),
        ("downloaded", lambda e: {**e, "index": "one"}, "field 'index' = 'one' must be"),
        ("planned", lambda e: {**e, "roles": []}, "field 'roles' = [] must be a table"),
        ("downloaded", _without("role"), "field 'role' is missing"),
        ("shot_done", lambda e: {**e, "index": True}, "field 'index' = True must be"),
    ],
)
def test_journal_line_with_bad_field_is_refused(
    session: Path, kind: str, change: Callable[[dict], dict], problem: str
) -> None:
    journal = session / "journal.jsonl"
    line = _rewrite_event(session, kind, change)
    with pytest.raises(JournalError) as info:
        read_events(journal)
    assert str(info.value) == f"{journal}: line {line} ({kind} event): {problem}" or (
        str(info.value).startswith(f"{journal}: line {line} ({kind} event): {problem}")
    )
    _one_line_error(
        _invoke("capture", "resume", str(session), "--no-progress"), str(journal), problem
    )


def test_journal_without_index_fails_capture_resume_and_curate_build(
    session: Path, tmp_path: Path
) -> None:
    journal = session / "journal.jsonl"
    line = _rewrite_event(session, "downloaded", _without("index"))
    where = f"{journal}: line {line} (downloaded event): field 'index' is missing"
    _one_line_error(_invoke("capture", "resume", str(session), "--no-progress"), where)
    result = _invoke(
        "curate", "build", str(session), "--out", str(tmp_path / "ds"), "--no-progress"
    )
    _one_line_error(result, where)
    assert not (tmp_path / "ds" / "meta").exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"roles": {"reference": ', "not valid JSON (truncated or damaged?)"),
        (b"[1, 2]", "must be a JSON object (the resolved rig config), got list"),
        (b'{"bracket": "x"}', "bracket = 'x' must be a list of EVs"),
        (b"\xff\xfe{}", "not UTF-8 text"),
    ],
)
def test_malformed_rig_json_fails_resume(session: Path, content: bytes, problem: str) -> None:
    (session / "rig.json").write_bytes(content)
    result = _invoke("capture", "resume", str(session), "--no-progress")
    _one_line_error(result, f"{session / 'rig.json'}: ", problem)
    # the lock was released: a second try is refused for the same reason, not "in use"
    again = _invoke("capture", "resume", str(session), "--no-progress")
    _one_line_error(again, problem)


def test_truth_json_that_is_not_an_object(tmp_path: Path) -> None:
    (tmp_path / "truth.json").write_text("[1, 2, 3]")
    with pytest.raises(
        TruthError, match=re.escape(f"{tmp_path / 'truth.json'}: must be a JSON object, got list")
    ):
        load_truth(tmp_path)
