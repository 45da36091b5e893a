"""Issue 9 for calibration outputs: sync.json / --apply never replace inputs or files expokit
did not write; the geometry folder is a claimed, locked root that only loses its own QA images."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner, Result

from expokit.calibration.geometry import GeometryConfig, calibrate_geometry
from expokit.calibration.rig_calibration import RIG_CALIBRATION_NAME
from expokit.cli import cli
from expokit.core.errors import OutputError
from expokit.core.hashing import sha256_file
from expokit.core.lock import RootInUseError, RootLock
from expokit.core.roots import MARKER_FILE, claim_root, root_kind
from tests.calibration.test_sync import _flash_video

# --------------------------------------------------------------------------- sync


@pytest.fixture(scope="module")
def clip_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two small silent clips of one flashing scene, B starting 1.5 s after A."""
    folder = tmp_path_factory.mktemp("clips")
    a, b = folder / "a.mp4", folder / "b.mp4"
    _flash_video(a, "30", 0.0, 9.0)
    _flash_video(b, "30", 1.5, 7.0)
    return a, b


@pytest.fixture
def clips(clip_pair: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    a, b = (Path(shutil.copy(p, tmp_path / p.name)) for p in clip_pair)
    return a, b


def _sync(a: Path, b: Path, *extra: str) -> Result:
    return CliRunner().invoke(cli, ["calibrate", "sync", str(a), str(b), *extra])


def test_sync_out_onto_an_input_video_is_refused(clips: tuple[Path, Path]) -> None:
    a, b = clips
    before = sha256_file(a), sha256_file(b)
    for target in (a, b):
        result = _sync(a, b, "--out", str(target))
        assert result.exit_code == 1
        assert f"{target} is one of this command's inputs" in result.output
    assert (sha256_file(a), sha256_file(b)) == before


def test_sync_out_onto_a_tracked_file_of_a_root_is_refused(
    clips: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = clips
    root = claim_root(tmp_path / "ds", "dataset")
    manifest = root / "manifest.parquet"
    manifest.write_bytes(b"the dataset's rows")
    result = _sync(a, b, "--out", str(manifest))
    assert result.exit_code == 1 and "is a file of the expokit folder" in result.output
    assert manifest.read_bytes() == b"the dataset's rows"


def test_sync_out_onto_a_foreign_file_is_refused_but_an_earlier_sync_json_replaced(
    clips: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = clips
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}')
    result = _sync(a, b, "--out", str(notes))
    assert result.exit_code == 1 and "exists and is not an earlier output" in result.output
    assert notes.read_text() == '{"mine": true}'
    out = tmp_path / "sync.json"
    assert _sync(a, b, "--out", str(out)).exit_code == 0
    first = json.loads(out.read_text())
    result = _sync(b, a, "--out", str(out))  # swapped: a different result replaces it
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["offset_s"] == pytest.approx(-first["offset_s"], abs=0.05)


def test_apply_refuses_foreign_files_before_writing_anything(
    clips: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = clips
    apply_dir = tmp_path / "synced"
    apply_dir.mkdir()
    theirs = apply_dir / "b_sync.mp4"
    theirs.write_bytes(b"someone's edit")
    out = tmp_path / "sync.json"
    result = _sync(a, b, "--out", str(out), "--apply", str(apply_dir))
    assert result.exit_code == 1
    assert f"--apply output {theirs} exists and is not an earlier output" in result.output
    assert theirs.read_bytes() == b"someone's edit"
    assert not out.exists() and sorted(p.name for p in apply_dir.iterdir()) == ["b_sync.mp4"]


def test_apply_replaces_only_its_recorded_unchanged_copies(
    clips: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = clips
    out, apply_dir = tmp_path / "sync.json", tmp_path / "synced"
    args = ("--out", str(out), "--apply", str(apply_dir))
    assert _sync(a, b, *args).exit_code == 0
    recorded = {Path(r["path"]).name for r in json.loads(out.read_text())["applied_outputs"]}
    assert recorded == {"a_sync.mp4", "b_sync.mp4"}
    result = _sync(a, b, *args)  # a re-run replaces its own copies
    assert result.exit_code == 0, result.output
    edited = apply_dir / "a_sync.mp4"
    edited.write_bytes(b"edited by hand since")
    result = _sync(a, b, *args)
    assert result.exit_code == 1 and "exists and is not an earlier output" in result.output
    assert edited.read_bytes() == b"edited by hand since"


def test_apply_into_a_tracked_folder_of_a_root_is_refused(
    clips: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = clips
    root = claim_root(tmp_path / "ds", "dataset")
    result = _sync(a, b, "--out", str(tmp_path / "s.json"), "--apply", str(root / "images"))
    assert result.exit_code == 1 and "is a file of the expokit folder" in result.output
    assert not (root / "images").exists()


# --------------------------------------------------------------------------- geometry


@pytest.fixture
def image_pairs(tmp_path: Path) -> list[tuple[Path, Path]]:
    """Two quick textured pairs, test shifted by a few pixels."""
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(2):
        texture = np.zeros((256, 320))
        for sigma in (3, 9, 27):
            texture += cv2.GaussianBlur(rng.normal(0, 1, texture.shape), (0, 0), sigma) * sigma
        ref = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        shift = np.array([[1.0, 0, -6.0], [0, 1.0, 4.0], [0, 0, 1.0]])
        test = cv2.warpPerspective(ref, shift, (320, 256), borderMode=cv2.BORDER_REFLECT)
        paths = tmp_path / f"ref{i}.png", tmp_path / f"test{i}.png"
        assert cv2.imwrite(str(paths[0]), ref) and cv2.imwrite(str(paths[1]), test)
        pairs.append(paths)
    return pairs


FAST = GeometryConfig(flip="none", ecc=None)


def _calibrate(pairs: list[tuple[Path, Path]], out: Path) -> list[str]:
    calib = calibrate_geometry([r for r, _ in pairs], [t for _, t in pairs], out, config=FAST)
    return list(calib.qa_images)


def test_geometry_refuses_a_foreign_folder(
    image_pairs: list[tuple[Path, Path]], tmp_path: Path
) -> None:
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    with pytest.raises(OutputError, match="not empty and was not made by expokit"):
        _calibrate(image_pairs, out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    result = CliRunner().invoke(
        cli, ["calibrate", "geometry", str(image_pairs[0][0]), str(image_pairs[0][1]),
              "--out", str(claim_root(tmp_path / "ds", "dataset")), "--no-ecc"],
    )  # fmt: skip
    assert result.exit_code == 1 and "is an expokit dataset folder" in result.output


def test_geometry_refuses_inputs_named_like_its_outputs(
    image_pairs: list[tuple[Path, Path]], tmp_path: Path
) -> None:
    out = tmp_path / "rig"
    names = _calibrate(image_pairs, out)
    reused = out / names[0]  # a QA image given back as an input
    before = sha256_file(reused)
    with pytest.raises(OutputError, match=f"input {reused} is {names[0]} in the output folder"):
        calibrate_geometry([reused], [image_pairs[0][1]], out, config=FAST)
    assert sha256_file(reused) == before


def test_geometry_removes_only_qa_images_it_recorded(
    image_pairs: list[tuple[Path, Path]], tmp_path: Path
) -> None:
    out = tmp_path / "rig"
    names = _calibrate(image_pairs, out)
    assert len(names) == 4
    stale_own, linked = out / names[2], out / names[3]
    outside = tmp_path / "precious.png"
    outside.write_bytes(b"not a QA image")
    linked.unlink()
    linked.symlink_to(outside)  # a link where a QA image was: never deleted through
    look_alike = out / "rig_qa_42_difference.png"  # named like ours, never recorded
    look_alike.write_bytes(b"a person's file")
    kept = _calibrate(image_pairs[:1], out)
    assert kept == names[:2]
    assert not stale_own.exists()
    assert linked.is_symlink() and outside.read_bytes() == b"not a QA image"
    assert look_alike.read_bytes() == b"a person's file"


def test_geometry_adopts_a_legacy_folder_and_locks_it(
    image_pairs: list[tuple[Path, Path]], tmp_path: Path
) -> None:
    out = tmp_path / "rig"
    _calibrate(image_pairs[:1], out)
    (out / MARKER_FILE).unlink()  # as written before root markers existed
    _calibrate(image_pairs[:1], out)
    assert root_kind(out) == "calibration" and (out / RIG_CALIBRATION_NAME).is_file()
    with (
        RootLock(out, "expokit calibrate geometry"),
        pytest.raises(RootInUseError, match=f"in use by pid {os.getpid()}"),
    ):
        _calibrate(image_pairs[:1], out)
