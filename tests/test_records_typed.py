"""Typed file models of issue 12: sync.json, meta/info.json, truth.json, completion records
and run sidecars. Each reads back what its writer wrote, and a malformed file is refused
with an error naming the file and the field."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import pytest

from expokit.core.errors import InputFileError
from expokit.core.schema import FieldError, from_json, to_json

# --------------------------------------------------------------------------- helpers


def tiny_session(folder: Path) -> Path:
    """A simulated 2 s session with one still pair (writes truth.json)."""
    from expokit.capture.simulate import simulate
    from expokit.capture.simulator import SimulationConfig

    out = folder / "session"
    simulate(SimulationConfig(seconds=2.0, still_pairs=1), out)
    return out


def tiny_render(folder: Path) -> Path:
    """A 1-RAW render (completion record + run sidecar); returns the output folder."""
    from expokit.core.synthetic import demo_scene, write_dng
    from expokit.curation.rendering.config import RenderConfig
    from expokit.curation.rendering.render import render_batch

    raw = folder / "raws" / "chart.dng"
    raw.parent.mkdir(parents=True)
    write_dng(raw, demo_scene("chart", 64, 96), black_level=512, white_level=16383)
    out = folder / "render"
    config = RenderConfig(evs=(-1.0, 0.0), meter=None)
    summary = render_batch([raw], out, config, progress=False, durable=False)
    assert summary.ok, summary.failures
    return out


def tiny_build(folder: Path) -> Path:
    """A one-scene sequences dataset from `curate build` (info.json + build record)."""
    from expokit.core.synthetic import demo_scene
    from expokit.core.transfer import srgb_encode
    from expokit.curation.build.config import BuildConfig
    from expokit.curation.build.driver import build_dataset
    from expokit.curation.build.splits import SplitSpec

    scene = folder / "src" / "scene0"
    scene.mkdir(parents=True)
    radiance = demo_scene("texture", 40, 56, seed=0)
    for k, ev in enumerate((-1, 0, 1)):
        rgb = srgb_encode(np.clip(radiance * 2.0**ev, 0, 1))
        cv2.imwrite(str(scene / f"{k + 1}.png"), np.rint(rgb * 255).astype(np.uint8)[..., ::-1])
    out = folder / "seq"
    config = BuildConfig(splits=SplitSpec(fractions=(("train", 1.0),)))
    summary = build_dataset([folder / "src"], out, config, progress=False, durable=False)
    assert summary.ok, summary.failures
    return out


def _edit(path: Path, change: Callable[[Any], Any]) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    result = change(document)
    document = result if isinstance(result, list) else document  # (a list replaces it)
    path.write_text(json.dumps(document), encoding="utf-8")


def _only_record(root: Path) -> Path:
    from expokit.core.runs import RECORDS_DIR, record_files

    files = record_files(root / RECORDS_DIR)
    assert len(files) >= 1
    return files[0]


# --------------------------------------------------------------------------- generic loader


@dataclass(frozen=True)
class _Point:
    x: int
    y: float = 0.0


@dataclass(frozen=True)
class _Thing:
    name: str
    mode: Literal["a", "b"]
    points: tuple[_Point, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    note: str | None = field(default=None, metadata={"omit_if_default": True})

    def __post_init__(self) -> None:
        if self.name == "bad":
            raise FieldError("name", "must not be 'bad'")


def test_from_json_round_trip_and_omitted_default() -> None:
    document = {"name": "n", "mode": "b", "points": [{"x": 1, "y": 2.5}], "tags": {"k": "v"}}
    thing = from_json(_Thing, document, "f.json")
    assert thing == _Thing("n", "b", (_Point(1, 2.5),), {"k": "v"})
    assert to_json(thing) == document  # note left out at its default
    assert to_json(_Thing("n", "a", note="x"))["note"] == "x"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"mode": "a"}, "field 'name': missing"),
        ({"name": "n", "mode": "c"}, "field 'mode': expected one of 'a', 'b', got a string 'c'"),
        ({"name": "n", "mode": "a", "points": [{"x": True}]}, r"'points\[0\]\.x': expected an int"),
        ({"name": "n", "mode": "a", "points": [{"x": 1, "y": float("nan")}]}, "finite number"),
        ({"name": "n", "mode": "a", "tags": {"k": 1}}, "field 'tags.k': expected a string"),
        ({"name": "n", "mode": "a", "typo": 1}, "field 'typo': unknown field"),
        ({"name": "bad", "mode": "a"}, "field 'name': must not be 'bad'"),
        ([1], "field 'top level': expected a JSON object, got a JSON array"),
    ],
)
def test_from_json_names_file_and_field(document: Any, message: str) -> None:
    with pytest.raises(InputFileError, match=message) as info:
        from_json(_Thing, document, "dir/f.json", kind="thing")
    assert str(info.value).startswith("dir/f.json: thing field")


# --------------------------------------------------------------------------- sync.json


def _sync_result() -> Any:
    from expokit.calibration.sync_record import SyncConfig, SyncResult, WindowOffset
    from expokit.core.video_io import MediaInfo

    def media(name: str, fps: float) -> MediaInfo:
        return MediaInfo(
            path=Path(f"/v/{name}.mp4"), size_bytes=100, duration_s=4.0, start_s=0.0,
            has_video=True, has_audio=True, width=32, height=24, fps_container=fps,
            container_frames=8, decoded_frames=8, audio_rate=16000, audio_channels="mono",
            frame_times=np.arange(8) / fps,
        )  # fmt: skip

    return SyncResult(
        media_a=media("a", 25.0), media_b=media("b", 30.0), method="brightness",
        offset_s=0.5, confidence=0.9, peak_correlation=0.8, rate_hz=25.0,
        windows=(WindowOffset(1.0, 0.5, 0.7),), events_matched=3, events_in_overlap=4,
        frame_map=(None, 1, 2), warnings=("w",), attempts=("a",),
        config=SyncConfig(method="brightness"),
    )  # fmt: skip


def test_sync_file_round_trip(tmp_path: Path) -> None:
    from expokit.calibration.sync_record import SyncFile, read_sync_record, write_sync_json

    copy = tmp_path / "copy.mp4"
    copy.write_bytes(b"video")
    path = write_sync_json(_sync_result(), tmp_path / "sync.json", applied=[copy])
    document = json.loads(path.read_text(encoding="utf-8"))
    model = SyncFile.from_file(document, path)
    assert model.to_file() == document  # the model mirrors the file key by key
    record = read_sync_record(path)
    assert record.result.frame_map == (None, 1, 2)
    assert record.result.events_matched == 3 and record.result.media_b.width == 32
    assert record.applied == {copy.resolve(): model.applied_outputs[0].sha256}
    # without --apply copies the key is not written at all
    plain = write_sync_json(_sync_result(), tmp_path / "plain.json")
    assert "applied_outputs" not in json.loads(plain.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.__setitem__("offset_seconds", 1.0), "'offset_seconds': unknown field"),
        (lambda d: d["a"].__setitem__("width", 0), r"'a\.width': expected an integer >= 1"),
        (lambda d: d["brightness_events"].__setitem__("matched", -1), "'brightness_events.matc"),
        (lambda d: d["offset_frames"].__setitem__("a", "1"), r"'offset_frames\.a': expected"),
    ],
)
def test_malformed_sync_json(tmp_path: Path, change: Any, message: str) -> None:
    from expokit.calibration.sync_record import SyncFileError, read_sync_record, write_sync_json

    path = write_sync_json(_sync_result(), tmp_path / "sync.json")
    _edit(path, change)
    with pytest.raises(SyncFileError, match=message) as info:
        read_sync_record(path)
    assert info.value.path == path


# --------------------------------------------------------------------------- meta/info.json


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_build(tmp_path_factory.mktemp("typed_build"))


def test_info_file_round_trip(dataset: Path) -> None:
    from expokit.curation.dataset.format import INFO_FILE, InfoFile, read_info

    document = json.loads((dataset / INFO_FILE).read_text(encoding="utf-8"))
    model = from_json(InfoFile, document, dataset / INFO_FILE)
    assert model.format == "expokit-dataset" and model.counts == document["counts"]
    assert model.schema is not None and model.schema.columns is not None
    assert model.schema.columns["pair_id"].dtype == "string"
    info = read_info(dataset)
    assert info.declared_dtypes["frame_index"] == "Int64"
    assert info.path_templates == document["path_templates"]
    kept = {k: v for k, v in to_json(model).items() if v is not None}
    assert kept == document  # every key of the file is a field of the model


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: [d], "expected a JSON object with 'format' and 'format_version'"),
        (lambda d: d["schema"]["columns"]["pair_id"].__setitem__("dtype", 5),
         r"field 'schema\.columns\.pair_id\.dtype': expected a string, got int 5"),
        (lambda d: d.__setitem__("path_templates", {"input": 3}),
         r"field 'path_templates\.input': expected a string"),
        (lambda d: d.__setitem__("name", ["x"]), "field 'name': expected a string, got a JSON"),
    ],
)  # fmt: skip
def test_malformed_info_json(dataset: Path, tmp_path: Path, change: Any, message: str) -> None:
    import shutil

    from expokit.curation.dataset.format import INFO_FILE, DatasetError, read_info

    root = tmp_path / "copy"
    (root / "meta").mkdir(parents=True)
    shutil.copy(dataset / INFO_FILE, root / INFO_FILE)
    _edit(root / INFO_FILE, change)
    with pytest.raises(DatasetError, match=message) as info:
        read_info(root)
    assert str(root / INFO_FILE) in str(info.value)


# --------------------------------------------------------------------------- truth.json


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_session(tmp_path_factory.mktemp("typed_session"))


def test_truth_round_trip(session: Path) -> None:
    from expokit.capture.simulator import TRUTH_FILE, TruthFile
    from expokit.curation.truth import load_truth

    document = json.loads((session / TRUTH_FILE).read_text(encoding="utf-8"))
    truth = load_truth(session)
    assert truth.to_json() == document
    model = TruthFile.from_json(document, session / TRUTH_FILE, InputFileError)
    assert len(model.homography) == 3 and model.image_size[0] > 0
    assert set(model.sha256) == set(model.files) and model.capture is None
    assert "capture" not in model.to_json()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.__setitem__("homography", d["homography"][:2]),
         "field 'homography': expected 3 items, got 2"),
        (lambda d: d.__setitem__("photometric_gain", "4"),
         "field 'photometric_gain': expected a number, got a string"),
        (lambda d: d["files"].__setitem__("board_reference", 5),
         r"field 'files\.board_reference': expected a string"),
        (lambda d: d.pop("flip"), "field 'flip': missing"),
        (lambda d: d.__setitem__("format_version", 2), "format_version 2 is not 1"),
    ],
)  # fmt: skip
def test_malformed_truth_json(session: Path, tmp_path: Path, change: Any, message: str) -> None:
    from expokit.capture.simulator import TRUTH_FILE
    from expokit.curation.truth import TruthError, load_truth

    path = tmp_path / TRUTH_FILE
    path.write_bytes((session / TRUTH_FILE).read_bytes())
    _edit(path, change)
    with pytest.raises(TruthError, match=f"{re.escape(str(path))}: .*{message}"):
        load_truth(tmp_path)


# --------------------------------------------------------------------------- records


@pytest.fixture(scope="module")
def render_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_render(tmp_path_factory.mktemp("typed_render"))


def test_render_record_and_sidecar_round_trip(render_out: Path) -> None:
    from expokit.core.runs import (
        RUNS_DIR,
        RenderRecord,
        load_record,
        read_record,
        read_run_sidecar,
    )

    path = _only_record(render_out)
    model = load_record(path)
    assert isinstance(model, RenderRecord) and model.status == "ok" and model.rows
    document = json.loads(path.read_text(encoding="utf-8"))
    assert read_record(render_out, path.stem, "name") == model
    assert to_json(model) == document
    (sidecar_path,) = sorted((render_out / RUNS_DIR).glob("*.json"))
    sidecar = read_run_sidecar(sidecar_path)
    assert sidecar.status == "ok" and sidecar.rendered == 1 and sidecar.failures == []
    assert sidecar.run_id == model.run_id == sidecar_path.stem


def test_build_record_round_trip(dataset: Path) -> None:
    from expokit.core.runs import BuildRecord, load_record

    path = _only_record(dataset)
    model = load_record(path)
    assert isinstance(model, BuildRecord) and model.status == "ok"
    assert model.inputs and all(len(i.sha256) == 64 for i in model.inputs)
    assert to_json(model) == json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("which", "change", "message"),
    [
        ("render", lambda d: d.__setitem__("status", "done"), "field 'status': expected one of"),
        ("render", lambda d: d.__setitem__("rows", {}), "field 'rows': expected a JSON array"),
        ("render", lambda d: d.__setitem__("record_version", 2), "record_version 2 is not sup"),
        ("build", lambda d: d["inputs"][0].__setitem__("size", "x"), r"'inputs\[0\]\.size'"),
        ("build", lambda d: d.pop("outputs"), "field 'outputs': missing"),
    ],
)
def test_malformed_records(
    render_out: Path, dataset: Path, tmp_path: Path, which: str, change: Any, message: str
) -> None:
    from expokit.core.runs import RECORDS_DIR, RecordFileError, load_record, read_record

    source = _only_record(render_out if which == "render" else dataset)
    path = tmp_path / RECORDS_DIR / source.name
    path.parent.mkdir(parents=True)
    path.write_bytes(source.read_bytes())
    _edit(path, change)
    with pytest.raises(RecordFileError, match=message) as info:
        load_record(path)
    assert info.value.path == path
    assert read_record(tmp_path, path.stem, "name") is None  # the unit is done again


def test_write_record_refuses_a_record_that_does_not_fit(tmp_path: Path) -> None:
    from expokit.core.runs import write_record

    path = tmp_path / "r.json"
    with pytest.raises(ValueError, match=r"field 'scene_id'|field 'name'"):
        write_record(path, {"record_version": 1, "status": "ok"}, durable=False)
    assert not path.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.__setitem__("workers", "4"), "field 'workers': expected an integer"),
        (lambda d: d.pop("run_id"), "field 'run_id': missing"),
        (lambda d: d.__setitem__("failures", [{"raw_path": "x"}]), r"'failures\[0\]\.error'"),
        (lambda d: d.__setitem__("status", "paused"), "field 'status'"),
    ],
)
def test_malformed_run_sidecar(render_out: Path, tmp_path: Path, change: Any, message: str) -> None:
    from expokit.core.runs import RUNS_DIR, RecordFileError, read_run_sidecar

    (source,) = sorted((render_out / RUNS_DIR).glob("*.json"))
    path = tmp_path / source.name
    path.write_bytes(source.read_bytes())
    _edit(path, change)
    with pytest.raises(RecordFileError, match=f"run sidecar {message}|{message}"):
        read_run_sidecar(path)
