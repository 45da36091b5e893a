"""The ``sync.json`` record: one writer, one reader, strict field validation on load."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from expokit.calibration.sync_record import (
    APPLIED_KEY,
    SYNC_FORMAT_VERSION,
    SyncConfig,
    SyncFileError,
    SyncResult,
    WindowOffset,
    check_sync_json_target,
    is_sync_json,
    load_sync_json,
    read_sync_record,
    recorded_outputs,
    write_sync_json,
)
from expokit.core.errors import InputFileError
from expokit.core.video_io import SYNC_CONVENTION as CONVENTION
from expokit.core.video_io import MediaInfo


def _media(name: str, frames: int, fps: float) -> MediaInfo:
    times = np.arange(frames) / fps
    return MediaInfo(
        path=Path(f"/clips/{name}.mp4"),
        size_bytes=1234,
        duration_s=frames / fps,
        start_s=0.0,
        has_video=True,
        has_audio=True,
        video_codec="h264",
        width=64,
        height=48,
        fps_container=fps,
        container_frames=frames,
        decoded_frames=frames,
        audio_codec="aac",
        audio_rate=48000,
        audio_channels="mono",
        warnings=("header says 11 frames",),
        frame_times=times,
        frame_means=np.zeros(frames),
    )


def _result() -> SyncResult:
    return SyncResult(
        media_a=_media("a", 10, 25.0),
        media_b=_media("b", 12, 30.0),
        method="audio",
        offset_s=-1.25,
        confidence=0.8,
        peak_correlation=0.7,
        rate_hz=16000.0,
        drift_ppm=12.5,
        drift_estimated=True,
        drift_residual_rms_s=1e-5,
        second_peak_ratio=0.2,
        windows=(WindowOffset(5.0, -1.25, 0.9), WindowOffset(40.0, -1.2495, 0.8)),
        events_matched=None,
        events_in_overlap=None,
        frame_map=(None, 0, 1, 2, None, 5, 6, 7, 8, 11),
        warnings=("low confidence",),
        attempts=("audio: offset -1.25 s",),
        config=SyncConfig(method="audio", max_offset_s=5.0, drift_windows=3),
        elapsed_s=2.5,
    )


@pytest.fixture
def written(tmp_path: Path) -> Path:
    return write_sync_json(_result(), tmp_path / "sync.json")


def _rewrite(path: Path, change: Any) -> Path:
    document = json.loads(path.read_text(encoding="utf-8"))
    change(document)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_round_trip_keeps_every_field(written: Path) -> None:
    original = _result()
    loaded = load_sync_json(written)
    for name in (
        "method", "offset_s", "confidence", "peak_correlation", "rate_hz", "drift_ppm",
        "drift_estimated", "drift_residual_rms_s", "second_peak_ratio", "windows",
        "events_matched", "events_in_overlap", "frame_map", "warnings", "attempts", "config",
        "elapsed_s",
    ):  # fmt: skip
        assert getattr(loaded, name) == getattr(original, name), name
    assert loaded.media_a.path == original.media_a.path
    assert loaded.media_b.decoded_frames == 12 and loaded.media_b.audio_channels == "mono"
    assert loaded.media_a.warnings == ("header says 11 frames",)
    # The layout on disk is unchanged: the keys readers outside expokit rely on.
    document = json.loads(written.read_text(encoding="utf-8"))
    assert document["format_version"] == SYNC_FORMAT_VERSION == 1
    assert document["convention"] == CONVENTION
    assert document["frame_map"]["b_index_for_a"] == [None, 0, 1, 2, None, 5, 6, 7, 8, 11]
    assert document["offset_frames"] == {"a": pytest.approx(-31.25), "b": pytest.approx(-37.5)}
    assert document["windows"][1] == {"t_a_s": 40.0, "offset_s": -1.2495, "correlation": 0.8}
    assert APPLIED_KEY not in document
    # Written, read and written again: the same document, but for what sync.json derives
    # from the per-frame timestamps it does not store (decoded fps, first frame time).
    again = json.loads(write_sync_json(loaded, written.parent / "again.json").read_text())
    derived = {"fps", "first_frame_s"}
    for key in ("a", "b"):
        assert {k: v for k, v in again.pop(key).items() if k not in derived} == {
            k: v for k, v in document.pop(key).items() if k not in derived
        }
    assert again.pop("offset_frames") == pytest.approx(document.pop("offset_frames"))
    assert again == document


def test_brightness_result_round_trips_events_and_no_frame_map(tmp_path: Path) -> None:
    import dataclasses

    result = dataclasses.replace(
        _result(), method="brightness", events_matched=3, events_in_overlap=4, frame_map=None
    )
    loaded = load_sync_json(write_sync_json(result, tmp_path / "sync.json"))
    assert (loaded.events_matched, loaded.events_in_overlap) == (3, 4)
    assert loaded.frame_map is None


def test_applied_outputs_are_read_by_the_same_reader(tmp_path: Path) -> None:
    copy = tmp_path / "a_sync.mp4"
    copy.write_bytes(b"video")
    path = write_sync_json(_result(), tmp_path / "sync.json", applied=[copy])
    record = read_sync_record(path)
    assert list(record.applied) == [copy.resolve()]
    assert len(record.applied[copy.resolve()]) == 64  # sha256 hex
    assert recorded_outputs(path) == dict(record.applied)
    # A damaged applied list is never trusted: nothing may be replaced.
    _rewrite(path, lambda d: d[APPLIED_KEY].append({"path": 5}))
    with pytest.raises(SyncFileError, match=r"applied_outputs\[1\]\.path"):
        read_sync_record(path)
    assert recorded_outputs(path) == {}


def _set(key: str, value: Any) -> Any:
    def change(document: dict[str, Any]) -> None:
        document[key] = value

    return change


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        (_set("offset_s", "1.5"), "'offset_s'", "expected a number, got a string"),
        (_set("offset_s", True), "'offset_s'", "expected a number, got a boolean"),
        (_set("offset_s", math.nan), "'offset_s'", "finite number, got nan"),
        (_set("confidence", None), "'confidence'", "expected a number, got null"),
        (lambda d: d.pop("offset_s"), "'offset_s'", "missing"),
        (lambda d: d["frame_map"]["b_index_for_a"].__setitem__(3, "2"),
         r"'frame_map\.b_index_for_a\[3\]'", "B frame index"),
        (lambda d: d["frame_map"]["b_index_for_a"].__setitem__(0, -1),
         r"'frame_map\.b_index_for_a\[0\]'", "B frame index"),
        (lambda d: d["frame_map"]["b_index_for_a"].__setitem__(0, 1.5),
         r"'frame_map\.b_index_for_a\[0\]'", "B frame index"),
        (lambda d: d["frame_map"].pop("b_index_for_a"), r"'frame_map\.b_index_for_a'", "missing"),
        (_set("frame_map", [1, 2]), "'frame_map'", "expected a JSON object"),
        (_set("method", "ouija"), "'method'", "audio, brightness"),
        (_set("convention", "t_A - t_B"), "'convention'", "unknown sign convention"),
        (_set("warnings", "one"), "'warnings'", "expected a JSON array"),
        (_set("attempts", [1]), r"'attempts\[0\]'", "expected a string"),
        (lambda d: d["windows"][0].pop("t_a_s"), r"'windows\[0\]\.t_a_s'", "missing"),
        (lambda d: d["a"].__setitem__("has_video", "yes"), r"'a\.has_video'", "true or false"),
        (lambda d: d["b"].__setitem__("decoded_frames", 1.5), r"'b\.decoded_frames'", "integer"),
        (lambda d: d["b"].pop("path"), r"'b\.path'", "missing"),
        (_set("a", None), "'a'", "missing|JSON object"),
        (_set("brightness_events", {"matched": "3"}), r"'brightness_events\.matched'", "integer"),
        (lambda d: d["config"].__setitem__("sample_rate", "16k"), r"'config\.sample_rate'",
         "integer"),
        (lambda d: d["config"].__setitem__("window_s", -1.0), "'config'", "window_s must be > 0"),
        (_set("drift_estimated", 1), "'drift_estimated'", "true or false"),
    ],
)  # fmt: skip
def test_malformed_fields_name_file_and_field(
    written: Path, change: Any, field: str, problem: str
) -> None:
    _rewrite(written, change)
    with pytest.raises(SyncFileError, match=f"sync.json field {field}: .*({problem})") as info:
        load_sync_json(written)
    assert isinstance(info.value, InputFileError) and info.value.path == written
    assert str(written) in str(info.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[1, 2, 3]", "'top level': expected a JSON object, got a JSON array"),
        ('"sync"', "'top level': expected a JSON object, got a string"),
        ('{"format_version": 1', "not a JSON file"),
        ('{"offset_s": 1.0}', "no format_version"),
    ],
)
def test_not_a_sync_json(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "sync.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SyncFileError, match=problem):
        load_sync_json(path)
    assert recorded_outputs(path) == {}


def test_non_utf8_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "sync.json"
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(SyncFileError, match="not a JSON file"):
        load_sync_json(path)
    with pytest.raises(SyncFileError, match="no such file"):
        load_sync_json(tmp_path / "absent.json")


@pytest.mark.parametrize("version", [2, 0, "1", True, 1.5])
def test_other_format_versions_are_refused_by_name(written: Path, version: object) -> None:
    _rewrite(written, _set("format_version", version))
    with pytest.raises(SyncFileError, match=rf"format_version {version!r} is not supported"):
        load_sync_json(written)


def test_damaged_own_file_may_still_be_replaced(written: Path) -> None:
    # Ownership is a loose check, so a re-run can overwrite a damaged earlier sync.json.
    _rewrite(written, _set("offset_s", "garbage"))
    assert is_sync_json(written)
    assert check_sync_json_target(written, []) == written
    # A JSON file that is not ours is refused as an output.
    other = written.parent / "other.json"
    other.write_text('{"hello": 1}', encoding="utf-8")
    assert not is_sync_json(other)
    with pytest.raises(Exception, match=r"other\.json"):
        check_sync_json_target(other, [])


def test_result_from_dict_names_its_source() -> None:
    with pytest.raises(SyncFileError, match=r"here\.json: sync\.json field 'offset_s': missing"):
        document = json.loads(json.dumps(_result().to_dict()))
        del document["offset_s"]
        SyncResult.from_dict(document, "here.json")
