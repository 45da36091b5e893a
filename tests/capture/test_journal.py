from __future__ import annotations

import json
from pathlib import Path

from expokit.capture.journal import Journal, read_journal


def test_append_read_and_sequence(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.append("retry", x=1)
        journal.append("error", y="z")
    events, torn = read_journal(path)
    assert [e["event"] for e in events] == ["retry", "error"] and torn == 0
    assert [e["seq"] for e in events] == [1, 2]
    assert events[0]["x"] == 1 and "t_wall" in events[0] and "t_mono" in events[0]
    with Journal(path) as journal:  # reopening continues the sequence, appends only
        journal.append("reconnected")
    events, _ = read_journal(path)
    assert [e["seq"] for e in events] == [1, 2, 3]


def test_torn_last_line_is_skipped_and_terminated_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.append("retry")
    before = path.read_bytes()
    with path.open("ab") as handle:
        handle.write(b'{"seq": 2, "event": "downl')  # died mid-write
    events, torn = read_journal(path)
    assert [e["event"] for e in events] == ["retry"] and torn == 1
    with Journal(path) as journal:
        journal.append("command_finished")
    data = path.read_bytes()
    assert data.startswith(before + b'{"seq": 2, "event": "downl\n')  # nothing rewritten
    events, torn = read_journal(path)
    assert [e["event"] for e in events] == ["retry", "command_finished"] and torn == 1
    assert json.loads(data.splitlines()[-1])["seq"] == 2


def test_an_unknown_event_kind_is_refused(tmp_path: Path) -> None:
    import pytest

    from expokit.capture.journal import EVENTS

    with Journal(tmp_path / "journal.jsonl") as journal, pytest.raises(ValueError, match="unknown"):
        journal.append("shot_dnoe", index=1)
    assert "shot_done" in EVENTS and not (tmp_path / "journal.jsonl").read_text()
