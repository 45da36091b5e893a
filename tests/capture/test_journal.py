from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from expokit.capture.journal import (
    EVENTS,
    PAYLOADS,
    CommandFinished,
    Downloaded,
    Error,
    ExifCheck,
    Journal,
    JournalError,
    JournalPayload,
    Planned,
    Reconnected,
    Retry,
    SessionStarted,
    ShotDone,
    Triggered,
    read_events,
    read_journal,
)

_RETRY = Retry(index=1, role="test", error="busy", code=-110, attempt=1, pause_s=0.5)


def test_append_read_and_sequence(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.append(_RETRY)
        journal.append(Error(index=1, role="test", error="gone"))
    events, torn = read_journal(path)
    assert [e["event"] for e in events] == ["retry", "error"] and torn == 0
    assert [e["seq"] for e in events] == [1, 2]
    assert events[0]["code"] == -110 and "t_wall" in events[0] and "t_mono" in events[0]
    with Journal(path) as journal:  # reopening continues the sequence, appends only
        journal.append(Reconnected(role="test", port="usb:001,004"))
    events, _ = read_journal(path)
    assert [e["seq"] for e in events] == [1, 2, 3]


def test_torn_last_line_is_skipped_and_terminated_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.append(_RETRY)
    before = path.read_bytes()
    with path.open("ab") as handle:
        handle.write(b'{"seq": 2, "event": "downl')  # died mid-write
    events, torn = read_journal(path)
    assert [e["event"] for e in events] == ["retry"] and torn == 1
    with Journal(path) as journal:
        journal.append(CommandFinished(kind="pair", shots_done=1, shots_failed=[]))
    data = path.read_bytes()
    assert data.startswith(before + b'{"seq": 2, "event": "downl\n')  # nothing rewritten
    events, torn = read_journal(path)
    assert [e["event"] for e in events] == ["retry", "command_finished"] and torn == 1
    assert json.loads(data.splitlines()[-1])["seq"] == 2


def test_an_unknown_event_kind_is_refused(tmp_path: Path) -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class ShotDnoe(JournalPayload):  # not one of PAYLOADS
        EVENT = "shot_dnoe"
        index: int

    with Journal(tmp_path / "journal.jsonl") as journal, pytest.raises(ValueError, match="unknown"):
        journal.append(ShotDnoe(index=1))
    assert "shot_done" in EVENTS and not (tmp_path / "journal.jsonl").read_text()


def test_every_event_kind_has_exactly_one_payload_class() -> None:
    names = [payload.EVENT for payload in PAYLOADS]
    assert sorted(names) == sorted(EVENTS) and len(set(names)) == len(names)
    subclasses: list[type] = []
    pending: list[type] = [JournalPayload]
    while pending:  # every payload class defined anywhere names a kind of EVENTS
        for sub in pending.pop().__subclasses__():
            pending.append(sub)
            if sub.__dict__.get("EVENT") and sub.__module__ == JournalPayload.__module__:
                subclasses.append(sub)
    payload_classes = [c for c in subclasses if c in PAYLOADS]
    assert sorted(c.EVENT for c in payload_classes) == sorted(EVENTS)
    for payload in PAYLOADS:
        assert payload.__doc__ and len(payload.__doc__.strip().splitlines()) == 1


# The lines the keyword writers (``Journal.append("kind", **fields)``) wrote before typed
# payloads, field for field: the typed writer must give the same bytes after the header.
_TODAY: list[tuple[JournalPayload, dict[str, Any]]] = [
    (
        SessionStarted(session="s1", rig={"a": 1}, simulated=True),
        {"session": "s1", "rig": {"a": 1}, "simulated": True},
    ),
    (SessionStarted(session="s1", rig={}), {"session": "s1", "rig": {}}),
    (
        Planned(index=2, kind="pair", roles={"test": {"ev": -1.0}}),
        {"index": 2, "kind": "pair", "roles": {"test": {"ev": -1.0}}, "seconds": None},
    ),
    (
        Triggered(index=1, role="test", t_before=1.5, t_after=1.6, wall_before=9.0, attempt=1,
                  trigger="usb"),
        {"index": 1, "role": "test", "t_before": 1.5, "t_after": 1.6, "wall_before": 9.0,
         "attempt": 1, "trigger": "usb"},
    ),
    (
        Triggered(index=1, role="test", t_before=2.0, movie="stop"),
        {"index": 1, "role": "test", "t_before": 2.0, "movie": "stop"},
    ),
    (
        Triggered(index=1, role="test", t_before=1.0, t_after=1.0, attempt=1, movie="start",
                  simulated=True),
        {"index": 1, "role": "test", "t_before": 1.0, "t_after": 1.0, "attempt": 1,
         "movie": "start", "simulated": True},
    ),
    (
        Downloaded(index=1, role="test", file="a.jpg", size=3, sha256="ab", camera_file="/a",
                   attempts=1, synchronized=False),
        {"index": 1, "role": "test", "file": "a.jpg", "size": 3, "sha256": "ab",
         "camera_file": "/a", "attempts": 1, "synchronized": False},
    ),
    (
        Downloaded(index=1, role="test", file="a.jpg", size=3, sha256="ab", recovered=True),
        {"index": 1, "role": "test", "file": "a.jpg", "size": 3, "sha256": "ab",
         "recovered": True},
    ),
    (
        ExifCheck(index=1, role="test", file="a.jpg",
                  **{"ok": None, "exif": {}, "mismatches": [], "unchecked": ["iso"]}),
        {"index": 1, "role": "test", "file": "a.jpg", "ok": None, "exif": {}, "mismatches": [],
         "unchecked": ["iso"]},
    ),
    (
        Error(index=1, role="test", error="gone", attempt=2, kind="disconnected"),
        {"index": 1, "role": "test", "error": "gone", "attempt": 2, "kind": "disconnected"},
    ),
    (ShotDone(index=3), {"index": 3}),
    (ShotDone(index=3, adopted=True), {"index": 3, "adopted": True}),
    (ShotDone(index=3, scene_time_s=0.25), {"index": 3, "scene_time_s": 0.25}),
]  # fmt: skip


@pytest.mark.parametrize(("payload", "fields"), _TODAY)
def test_a_typed_event_writes_the_line_the_keyword_writer_wrote(
    tmp_path: Path, payload: JournalPayload, fields: dict[str, Any]
) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        entry = journal.append(payload)
    header = {k: entry[k] for k in ("seq", "event", "t_wall", "t_mono")}
    assert list(entry)[:4] == ["seq", "event", "t_wall", "t_mono"]
    today = {**header, **fields}  # what ``append(event, **fields)`` built
    assert path.read_bytes() == (json.dumps(today, default=str) + "\n").encode()
    (event,), _ = read_events(path)
    assert event.event == payload.EVENT and event.data == today


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"event": "triggered", "index": 1, "role": "test"}, "t_before"),
        ({"event": "downloaded", "index": 1, "file": "a.jpg"}, "role"),
        ({"event": "planned", "index": 1, "roles": {}}, "kind"),
    ],
)
def test_a_line_missing_a_required_field_names_journal_line_and_field(
    tmp_path: Path, entry: dict[str, Any], field: str
) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.append(_RETRY)
    with path.open("a") as handle:
        handle.write(json.dumps({"seq": 2, **entry}) + "\n")
    with pytest.raises(JournalError) as info:
        read_events(path)
    assert str(info.value).startswith(
        f"{path}: line 2 ({entry['event']} event): field '{field}' is missing"
    )
