"""`expokit capture ...` end to end against the fake backend, including a SIGKILL mid-session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from expokit.capture.journal import read_journal
from expokit.cli import cli
from tests.capture.conftest import write_rig


def _session_dirs(rig_file: Path) -> list[Path]:
    return sorted((rig_file.parent / "sessions").iterdir())


def test_list_doctor_apply_pair_bracket_video(rig_file: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["capture", "list", "--rig", str(rig_file)])
    assert (
        result.exit_code == 0
        and "serial REF-1" in result.output
        and "serial TST-2" in result.output
    )
    result = runner.invoke(cli, ["capture", "doctor", "--rig", str(rig_file)])
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output and "test settings" in result.output
    result = runner.invoke(cli, ["capture", "apply", "--rig", str(rig_file)])
    assert result.exit_code == 0 and "read back as written" in result.output
    result = runner.invoke(
        cli, ["capture", "pair", "--rig", str(rig_file), "-n", "2", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert (
        "shots done: 2, files: 4" in result.output and "trigger skew over 2 shots" in result.output
    )
    result = runner.invoke(
        cli,
        [
            "capture",
            "bracket",
            "--rig",
            str(rig_file),
            "--roles",
            "test,reference",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0 and "shots done: 3, files: 6" in result.output
    result = runner.invoke(
        cli, ["capture", "video", "--rig", str(rig_file), "--seconds", "0.2", "--no-progress"]
    )
    assert result.exit_code == 0 and "files: 2" in result.output
    assert len(_session_dirs(rig_file)) == 3


def test_bad_rig_config_message(tmp_path: Path) -> None:
    bad = tmp_path / "rig.toml"
    bad.write_text("backend = 'fake'\n")
    result = CliRunner().invoke(cli, ["capture", "pair", "--rig", str(bad)])
    assert result.exit_code == 1 and f"error: {bad}: roles missing" in result.output


def test_missing_serial_is_reported_before_shooting(rig_file: Path) -> None:
    rig_file.write_text(
        rig_file.read_text().replace('serial = "TST-2"\nsettings', 'serial = "X9"\nsettings')
    )
    result = CliRunner().invoke(cli, ["capture", "pair", "--rig", str(rig_file)])
    assert result.exit_code == 1 and "test camera serial X9 is not connected" in result.output
    assert not (rig_file.parent / "sessions").exists() or not _session_dirs(rig_file)


def test_failed_shots_exit_nonzero_and_point_to_resume(rig_file: Path) -> None:
    text = rig_file.read_text().replace(
        'vendor = "canon"', 'vendor = "canon"\nfaults = { io_error = 100 }'
    )
    rig_file.write_text(text)
    result = CliRunner().invoke(cli, ["capture", "pair", "--rig", str(rig_file), "--no-progress"])
    assert result.exit_code == 1 and "expokit capture resume" in result.output


@pytest.mark.slow
def test_sigkill_mid_session_then_resume(tmp_path: Path) -> None:
    rig_file = write_rig(tmp_path, latency=0.03)
    count = 30
    cmd = [
        sys.executable,
        "-m",
        "expokit.cli",
        "capture",
        "pair",
        "--rig",
        str(rig_file),
        "--count",
        str(count),
        "--no-progress",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 60
    journal = None
    while time.monotonic() < deadline and proc.poll() is None:
        sessions = list((tmp_path / "sessions").glob("*/journal.jsonl"))
        if sessions:
            journal = sessions[0]
            if sum(e["event"] == "shot_done" for e in read_journal(journal)[0]) >= 5:
                break
        time.sleep(0.01)
    assert proc.poll() is None, "the session ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert journal is not None
    session = journal.parent
    done_before = sum(e["event"] == "shot_done" for e in read_journal(journal)[0])
    assert 5 <= done_before < count

    result = subprocess.run(
        [sys.executable, "-m", "expokit.cli", "capture", "resume", str(session), "--no-progress"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    events, torn = read_journal(journal)
    assert torn <= 1
    planned = [e["index"] for e in events if e["event"] == "planned"]
    assert planned == list(range(1, count + 1))  # planned once, never renumbered
    downloads = Counter((e["index"], e["role"]) for e in events if e["event"] == "downloaded")
    assert set(downloads) == {(i, r) for i in range(1, count + 1) for r in ("reference", "test")}
    assert max(downloads.values()) == 1  # nothing duplicated
    files = sorted(p.name for p in (session / "files").iterdir())
    assert len(files) == 2 * count and not [f for f in files if f.startswith(".~expokit")]
    names = {e["file"] for e in events if e["event"] == "downloaded"}
    assert names == set(files)  # nothing lost, nothing unaccounted for
    assert {e["index"] for e in events if e["event"] == "shot_done"} == set(range(1, count + 1))
