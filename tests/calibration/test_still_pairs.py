"""Pairing the two cameras' stills of a capture session by host trigger time."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest

from expokit.calibration.still_pairs import SessionError, exif_datetime, pair_stills
from expokit.capture.commands import shoot
from expokit.capture.rig_config import load_rig_config
from tests.capture.conftest import write_rig


def _fake_session(tmp_path: Path, count: int = 3) -> Path:
    config = load_rig_config(write_rig(tmp_path))
    session, report = shoot(config, "pair", count=count, progress=False)
    assert report.shots_done == count
    return session.root


def test_fake_capture_session_pairs_everything(tmp_path: Path) -> None:
    root = _fake_session(tmp_path)
    pairing = pair_stills(root)
    assert len(pairing.pairs) == 3
    assert not pairing.unmatched and not pairing.missing_files
    assert pairing.ok
    for pair in pairing.pairs:
        assert pair.first.role == "reference" and pair.second.role == "test"
        assert pair.first.index == pair.second.index  # one command shot both: same index
        assert abs(pair.dt_s) < pairing.tolerance_s
    document = pairing.to_dict()
    assert len(document["pairs"]) == 3 and document["unmatched"] == []
    json.dumps(document)  # JSON-ready


def test_removed_download_is_reported_unmatched(tmp_path: Path) -> None:
    root = _fake_session(tmp_path)
    journal = root / "journal.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    dropped = [
        i
        for i, line in enumerate(lines)
        if (e := json.loads(line))["event"] == "downloaded"
        and e["role"] == "test"
        and e["index"] == 2
    ]
    assert len(dropped) == 1
    journal.write_text("".join(line for i, line in enumerate(lines) if i not in dropped))
    pairing = pair_stills(root)
    assert len(pairing.pairs) == 2
    assert len(pairing.unmatched) == 1
    shot, reason = pairing.unmatched[0]
    assert (shot.role, shot.index) == ("reference", 2)
    assert "no test shot" in reason
    assert not pairing.ok
    assert any("unmatched reference #2" in line for line in pairing.describe())


def _jpeg_with_time(path: Path, when: dt.datetime | None) -> None:
    from PIL import Image

    exif = Image.Exif()
    if when is not None:
        exif.get_ifd(0x8769)[0x9003] = when.strftime("%Y:%m:%d %H:%M:%S")  # DateTimeOriginal
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 90, 90)).save(buffer, "JPEG", exif=exif)
    path.write_bytes(buffer.getvalue())


def _hand_session(tmp_path: Path, shots: list[tuple[int, str, float, float | None]]) -> Path:
    """A session journal of separate single-camera runs: (index, role, host time, EXIF skew)."""
    root = tmp_path / "session"
    (root / "files").mkdir(parents=True)
    events: list[dict[str, Any]] = []
    for index, role, when, skew in shots:
        name = f"{index:03d}_{role}.jpg"
        stamp = None if skew is None else dt.datetime.fromtimestamp(when + skew)
        _jpeg_with_time(root / "files" / name, stamp)
        events.append({"event": "planned", "index": index, "kind": "pair", "roles": {}})
        events.append(
            {"event": "triggered", "index": index, "role": role, "t_before": 1.0,
             "wall_before": when}
        )  # fmt: skip
        events.append({"event": "downloaded", "index": index, "role": role, "file": name})
    (root / "journal.jsonl").write_text(
        "".join(json.dumps({"seq": i + 1, **e}) + "\n" for i, e in enumerate(events))
    )
    return root


def test_separate_runs_pair_by_time_and_exif_is_checked(tmp_path: Path) -> None:
    t0 = 1_790_000_000.0
    root = _hand_session(
        tmp_path,
        [
            # run 1: reference only
            (1, "reference", t0, 0.2),
            (2, "reference", t0 + 10, 0.4),
            (3, "reference", t0 + 20, 0.1),
            (4, "reference", t0 + 30, 0.3),
            # run 2: test only, other indices; shot 7's camera clock says 5 s later
            (5, "test", t0 + 0.3, 0.5),
            (6, "test", t0 + 10.2, 0.2),
            (7, "test", t0 + 20.4, 5.4),
            (8, "test", t0 + 45, 0.6),
        ],
    )
    pairing = pair_stills(root, tolerance_s=1.0)
    assert [(p.first.index, p.second.index) for p in pairing.pairs] == [(1, 5), (2, 6), (3, 7)]
    assert pairing.pairs[0].dt_s == pytest.approx(0.3)
    unmatched = {(s.role, s.index) for s, _ in pairing.unmatched}
    assert unmatched == {("reference", 4), ("test", 8)}
    assert len(pairing.exif_flags) == 1
    assert "test #7" in pairing.exif_flags[0]
    assert pairing.clock_offsets_s["reference"] is not None
    assert abs(pairing.clock_offsets_s["reference"]) < 1.5  # 1 s EXIF resolution

    tight = pair_stills(root, tolerance_s=0.25)
    assert len(tight.pairs) == 1  # only 2/6 (0.2 s apart)
    without_exif = pair_stills(root, check_exif=False)
    assert without_exif.exif_flags == () and len(without_exif.pairs) == 3


def test_exif_reader_and_errors(tmp_path: Path) -> None:
    image = tmp_path / "a.jpg"
    when = dt.datetime(2026, 11, 22, 10, 15, 30)
    _jpeg_with_time(image, when)
    assert exif_datetime(image) == pytest.approx(when.timestamp())
    _jpeg_with_time(image, None)
    assert exif_datetime(image) is None
    (tmp_path / "junk.jpg").write_bytes(b"not a jpeg")
    assert exif_datetime(tmp_path / "junk.jpg") is None
    with pytest.raises(SessionError, match="not a capture session"):
        pair_stills(tmp_path)
    with pytest.raises(ValueError, match="tolerance"):
        pair_stills(tmp_path, tolerance_s=0)
