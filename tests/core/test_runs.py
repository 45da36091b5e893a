"""The shared runs/records module: ids, record paths, reading, writing, summaries."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import pytest

from expokit.core.atomic import TEMP_PREFIX, atomic_path
from expokit.core.errors import OutputError
from expokit.core.paths import PathEscapeError, UnsafeNameError
from expokit.core.runs import (
    DISK_FULL,
    RECORDS_DIR,
    BuildRecord,
    RenderRecord,
    RunSummary,
    new_run_id,
    output_error_kind,
    read_record,
    record_files,
    record_path,
    recorded_names,
    utc_timestamp,
    write_record,
)
from expokit.core.schema import to_json
from expokit.curation.build import driver as build
from expokit.curation.build import record as scene_record
from expokit.curation.rendering import render


def test_run_id_format_and_uniqueness() -> None:
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50
    for run_id in ids:
        assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", run_id), run_id


def test_utc_timestamp() -> None:
    assert utc_timestamp(0) == "1970-01-01T00:00:00Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", utc_timestamp())


def test_record_round_trip(tmp_path: Path) -> None:
    path = record_path(tmp_path, "scene_1", "scene id")
    assert path == tmp_path.resolve() / RECORDS_DIR / "scene_1.json"
    assert read_record(tmp_path, "scene_1", "scene id") is None  # not written yet
    record = BuildRecord(
        record_version=1, scene_id="scene_1", source="render", source_root="/r",
        status="ok", error=None, error_kind=None, inputs=[], rows=[{"a": 1}], outputs={},
    )  # fmt: skip
    write_record(path, record, durable=False)
    assert read_record(tmp_path, "scene_1", "scene id") == record
    assert json.loads(path.read_text()) == to_json(record)  # the model's JSON, nothing else
    assert recorded_names(tmp_path) == {"scene_1"}
    assert record_files(tmp_path / RECORDS_DIR) == [path]


def test_write_record_writes_the_json_of_the_model_unchanged(tmp_path: Path) -> None:
    """The JSON written is the one a dict record made before typed records gave: sorted
    keys, and a render record's RAW facts absent (not null) when unknown."""
    document = {
        "record_version": 1, "name": "a", "raw_path": "/raw/a.dng", "params_hash": "h",
        "run_id": "r", "status": "failed", "error": "/raw/a.dng: no such file",
        "error_kind": "input", "rows": [{"name": "a", "status": "failed"}],
    }  # fmt: skip
    path = record_path(tmp_path, "a", "output name")
    record = RenderRecord(**document)  # type: ignore[arg-type]
    write_record(path, record, durable=False)
    assert path.read_text() == json.dumps(document, indent=2, sort_keys=True) + "\n"
    assert read_record(tmp_path, "a", "output name") == record


def test_write_record_refuses_a_model_with_a_wrong_value(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    bad = RenderRecord(
        record_version=1, name="a", raw_path="/a", params_hash="h", run_id="r",
        status="done", error=None, error_kind=None, rows=[],  # type: ignore[arg-type]
    )  # fmt: skip
    with pytest.raises(ValueError, match="field 'status'"):
        write_record(path, bad, durable=False)
    assert not path.exists()


def test_unsafe_name_is_refused_naming_what_it_is(tmp_path: Path) -> None:
    with pytest.raises(UnsafeNameError, match="scene id"):
        record_path(tmp_path, "../evil", "scene id")
    assert read_record(tmp_path, "../evil", "scene id") is None


def test_records_folder_linked_out_of_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / ".expokit").mkdir(parents=True)
    outside.mkdir()
    (outside / "s.json").write_text('{"status": "ok"}')
    (root / RECORDS_DIR).symlink_to(outside, target_is_directory=True)
    with pytest.raises(PathEscapeError, match="completion record"):
        record_path(root, "s", "scene id", record_what="completion record")
    assert read_record(root, "s", "scene id") is None
    assert recorded_names(root) == set()


def test_damaged_record_reads_as_none(tmp_path: Path) -> None:
    folder = tmp_path / RECORDS_DIR
    folder.mkdir(parents=True)
    (folder / "a.json").write_text("{not json")
    (folder / "b.json").write_text("[1, 2]")
    assert read_record(tmp_path, "a", "name") is None
    assert read_record(tmp_path, "b", "name") is None


def test_listing_skips_temp_files_and_unsafe_names(tmp_path: Path) -> None:
    folder = tmp_path / RECORDS_DIR
    folder.mkdir(parents=True)
    (folder / "ok.json").write_text("{}")
    (folder / f"{TEMP_PREFIX}123-abc-ok.json").write_text("{}")
    (folder / "not a name.json").write_text("{}")
    assert [p.name for p in record_files(folder)] == ["not a name.json", "ok.json"]
    assert recorded_names(tmp_path) == {"ok"}
    assert recorded_names(tmp_path / "missing") == set()


def test_output_error_kind(tmp_path: Path) -> None:
    with pytest.raises(OutputError) as info, atomic_path(tmp_path / "f.json"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert output_error_kind(info.value) == DISK_FULL
    assert output_error_kind(OutputError("permission denied: x")) == "output"


def test_summary_ok_and_problem_lines(tmp_path: Path) -> None:
    summary = RunSummary(out_dir=tmp_path)
    assert summary.ok and summary.problem_lines() == []
    summary.failures.append(("a", "a: broken"))
    summary.aborted = "stopped: disk full"
    assert not summary.ok
    assert summary.problem_lines() == [
        ("failed: a: broken", True),
        ("aborted: stopped: disk full", True),
    ]
    assert summary.report()[-2:] == summary.problem_lines()


def test_render_and_build_share_the_module(tmp_path: Path) -> None:
    assert render.record_path(tmp_path, "x") == scene_record.record_path(tmp_path, "x")
    assert render.record_path(tmp_path, "x").parent == tmp_path / RECORDS_DIR
    with pytest.raises(UnsafeNameError, match="output name"):
        render.record_path(tmp_path, "a/b")
    with pytest.raises(UnsafeNameError, match="scene id"):
        scene_record.record_path(tmp_path, "a/b")
    summaries = [
        render.RenderSummary(
            out_dir=tmp_path, manifest_path=tmp_path, params_path=tmp_path, run_path=tmp_path
        ),
        build.BuildSummary(out_dir=tmp_path),
    ]
    for summary in summaries:
        assert isinstance(summary, RunSummary)
        summary.failures.append(("u", "u: bad"))
        summary.aborted = "stopped"
        assert not summary.ok
        assert summary.report()[-2:] == [("failed: u: bad", True), ("aborted: stopped", True)]
