"""A scene's completion record as typed records: its rows read as BuiltPair and written
back byte-identically; a damaged row rebuilds the scene instead of breaking the build."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from expokit.core.runs import RECORDS_DIR, BuildRecord, load_record, record_files
from expokit.core.schema import to_json
from expokit.curation.build.config import BuildConfig
from expokit.curation.build.driver import build_dataset
from expokit.curation.build.pair import ASSEMBLY_KEYS, BuiltPair
from expokit.curation.build.record import read_record
from expokit.curation.dataset.format import load_dataset
from expokit.curation.dataset.pair_row import PairRowError
from tests.conftest import shared_path

SCENES = ("seq_0002", "seq_0064")
CONFIG = BuildConfig(max_side=128)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = shared_path("exposure", "sice_7ev_sequences")
    folder = tmp_path_factory.mktemp("sice")
    for name in SCENES:
        shutil.copytree(source / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def built(sources: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "sice"
    summary = build_dataset([sources], out, CONFIG, progress=False, durable=False)
    assert summary.ok and summary.built == len(SCENES), summary.failures
    return out


def _record_text(record: BuildRecord) -> str:
    """What the one writer (write_record) puts in the file."""
    return json.dumps(to_json(record), indent=2, sort_keys=True, default=str) + "\n"


def test_record_rows_round_trip_through_built_pair_byte_identically(built: Path) -> None:
    for path in record_files(built / RECORDS_DIR):
        text = path.read_text()
        scene = read_record(built, path.stem)
        assert scene is not None and scene.ok and len(scene.pairs) == 6
        rows = json.loads(text)["rows"]
        for row, pair in zip(rows, scene.pairs, strict=True):
            assert set(ASSEMBLY_KEYS) <= set(row) and "split" not in row
            again = BuiltPair.from_json(row, "row").to_json()
            assert json.dumps(again, sort_keys=True) == json.dumps(row, sort_keys=True)
            assert pair.to_json() == again
        rewritten = dataclasses.replace(scene.record, rows=[p.to_json() for p in scene.pairs])
        assert _record_text(rewritten) == text


def test_a_video_row_keeps_its_null_target_change_and_a_still_row_has_none(built: Path) -> None:
    (path, *_) = record_files(built / RECORDS_DIR)
    still = json.loads(path.read_text())["rows"][0]
    assert "target_change" not in still
    first_frame = {**still, "frame_index": 0, "clip_id": "clip", "target_change": None}
    for row in (still, first_frame, {**first_frame, "frame_index": 1, "target_change": -0.02}):
        again = BuiltPair.from_json(row, "row").to_json()
        assert json.dumps(again, sort_keys=True) == json.dumps(row, sort_keys=True)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"valid_w": "wide"}, "valid_w"),
        ({"_frame_w": None}, "_frame_w"),
        ({"_exif_mismatch": 3}, "_exif_mismatch"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_a_bad_record_row_names_the_row_and_field(
    built: Path, change: dict[str, object], field: str
) -> None:
    (path, *_) = record_files(built / RECORDS_DIR)
    row = {**json.loads(path.read_text())["rows"][2], **change}
    with pytest.raises(PairRowError, match=rf"^{path.name} rows\[2\]: field '{field}': "):
        BuiltPair.from_json(row, f"{path.name} rows[2]")


def test_a_damaged_record_row_rebuilds_its_scene(
    built: Path, sources: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    shutil.copytree(built, out)
    path = out / RECORDS_DIR / f"{SCENES[0]}.json"
    document = json.loads(path.read_text())
    document["rows"][0]["valid_w"] = "wide"  # a field of the wrong type
    path.write_text(json.dumps(document))
    assert isinstance(load_record(path), BuildRecord)  # the record itself still fits
    assert read_record(out, SCENES[0]) is None  # its row does not: the scene is built again
    summary = build_dataset([sources], out, CONFIG, progress=False, durable=False)
    assert summary.ok and (summary.built, summary.skipped) == (1, 1), summary.failures
    assert isinstance(json.loads(path.read_text())["rows"][0]["valid_w"], int)
    assert read_record(out, SCENES[0]) is not None
    assert len(load_dataset(out).manifest) == 12
