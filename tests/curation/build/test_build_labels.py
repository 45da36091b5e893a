"""No silent wrong label: the capture's EXIF check reaches the dataset, build parameters are
type-checked, and a truncated image fails its scene instead of becoming a grey-filled pair."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from expokit.capture.commands import shoot
from expokit.capture.rig_config import load_rig_config
from expokit.cli import cli
from expokit.core.errors import InputFileError
from expokit.curation.build.config import BuildConfig, BuildConfigError, load_build_config
from expokit.curation.build.driver import build_dataset
from expokit.curation.build.sources import check_complete
from expokit.curation.dataset.format import load_dataset
from expokit.curation.dataset.validate import validate_dataset
from tests.capture.conftest import write_rig
from tests.curation.build.test_build_capture import write_rig_calibration
from tests.curation.conftest_tools import render

# --------------------------------------------------------------------------- EXIF mismatch


def _session(tmp_path: Path, ignore: tuple[str, ...]) -> Path:
    """A fake-rig session of 3 synthetic JPEG pairs (EXIF = exposure applied); the test
    body silently ignores ``ignore``. Identity rig calibration (both bodies see one scene)."""
    config = load_rig_config(write_rig(tmp_path))
    if ignore:
        config.fake["cameras"][1]["faults"] = {"ignore_settings": list(ignore)}
    session, report = shoot(config, "pair", count=3, progress=False)
    assert report.shots_done == 3 and report.exif_mismatches == (3 if ignore else 0)
    write_rig_calibration(session.root / "rig_calibration.json", np.eye(3), (96, 64))
    return session.root


def test_ignored_shutter_gets_the_evs_the_camera_did_and_a_flag(tmp_path: Path) -> None:
    session = _session(tmp_path, ignore=("shutterspeed",))
    summary = build_dataset([session], tmp_path / "ds", BuildConfig(), progress=False)
    assert summary.ok, summary.failures
    assert summary.flag_counts.get("exif_mismatch") == 3
    dataset = load_dataset(tmp_path / "ds")
    frame = dataset.manifest
    assert len(frame) == 3
    # The test body was asked for 1/500 s (-2 EV) but stayed at 1/125 s: EV 0, as EXIF says.
    assert (frame["input_ev"] == 0.0).all() and (frame["target_ev"] == 0.0).all()
    assert frame["input_exposure_time_s"].tolist() == pytest.approx([1 / 125] * 3)
    assert frame["qa_flags"].str.split(",").apply(lambda f: "exif_mismatch" in f).all()
    # The measured gain agrees with the EXIF EVs, not with the plan (which predicts 4).
    assert frame["photometric_gain"].astype(float).tolist() == pytest.approx([1.0] * 3, rel=0.1)
    # What was requested stays visible in info.json.
    (record,) = dataset.info.provenance["sources"][0]["sessions"]
    mismatches = record["exif_mismatches"]
    assert len(mismatches) == 3 and {m["role"] for m in mismatches} == {"test"}
    assert all(m["requested_ev"] == -2.0 and m["ev"] == 0.0 for m in mismatches)
    assert all("shutter requested 1/500" in m["mismatch"] for m in mismatches)
    assert validate_dataset(tmp_path / "ds").ok


def test_applied_settings_keep_their_evs_and_raise_no_flag(tmp_path: Path) -> None:
    session = _session(tmp_path, ignore=())
    summary = build_dataset([session], tmp_path / "ds", BuildConfig(), progress=False)
    assert summary.ok, summary.failures
    frame = load_dataset(tmp_path / "ds").manifest
    assert (frame["input_ev"] == -2.0).all()
    assert not frame["qa_flags"].str.contains("exif_mismatch").any()
    assert frame["photometric_gain"].astype(float).tolist() == pytest.approx([4.0] * 3, rel=0.1)
    info = load_dataset(tmp_path / "ds").info
    assert info.provenance["sources"][0]["sessions"][0]["exif_mismatches"] == []


# --------------------------------------------------------------------------- typed config

BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    ({"ecc_refine": "false"}, r"ecc_refine: expected true or false.*'false' \(str\)"),
    ({"crop": "no"}, r"crop: expected true or false.*'no'"),
    ({"crop": 0}, r"crop: expected true or false.*0 \(int\)"),
    ({"video_frame_step": 1.5}, r"video_frame_step: expected an integer, got 1\.5 \(float\)"),
    ({"clip_dark": 2.5}, r"clip_dark: expected an integer, got 2\.5"),
    ({"clip_dark": 300}, r"0 <= dark < bright <= 255"),
    ({"max_side": True}, r"max_side: expected an integer or null, got True \(bool\)"),
    ({"jpeg_quality": "95"}, r"jpeg_quality: expected an integer, got '95'"),
    ({"target_ev": "1"}, r"target_ev: expected a number, got '1'"),
    ({"target_rank": 1.0}, r"target_rank: expected an integer or null"),
    ({"ecc_motions": "affine"}, r"ecc_motions: expected a list of strings"),
    ({"render_format": 16}, r"render_format: expected a string or null"),
    ({"qa": {"min_psnr_db": "20"}}, r"QA threshold min_psnr_db: expected a number, got '20'"),
    ({"qa": {"max_target_flicker": False}}, r"max_target_flicker: expected a number, got False"),
    ({"qa": 3}, r"qa: expected a table"),
]


@pytest.mark.parametrize(("data", "message"), BAD_VALUES)
def test_config_values_are_type_checked(data: dict[str, Any], message: str) -> None:
    with pytest.raises(BuildConfigError, match=message):
        BuildConfig.from_dict(data)


def test_direct_construction_is_checked_and_good_values_convert() -> None:
    with pytest.raises(BuildConfigError, match="ecc_refine"):
        BuildConfig(ecc_refine="false")  # type: ignore[arg-type]
    config = BuildConfig.from_dict({"target_ev": 1, "ecc_motions": ["affine"], "max_side": None})
    assert config.target_ev == 1.0 and isinstance(config.target_ev, float)
    assert config.ecc_motions == ("affine",) and config.max_side is None
    assert BuildConfig.from_dict(config.to_dict()) == config


def test_config_files_and_the_command_line_refuse_strings_as_bools(tmp_path: Path) -> None:
    toml = tmp_path / "build.toml"
    toml.write_text('crop = "no"\nvideo_frame_step = 2\n')
    with pytest.raises(BuildConfigError, match="crop: expected true or false"):
        BuildConfig.from_dict(load_build_config(toml))
    good = tmp_path / "good.toml"
    good.write_text("crop = false\nvideo_frame_step = 2\n")
    assert BuildConfig.from_dict(load_build_config(good)).video_frame_step == 2
    config = tmp_path / "build.json"
    config.write_text(json.dumps({"ecc_refine": "false"}))
    source = tmp_path / "seq" / "scene"
    source.mkdir(parents=True)
    result = CliRunner().invoke(
        cli, ["curate", "build", str(source.parent), "--out", str(tmp_path / "ds"),
              "--config", str(config), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code != 0
    output = " ".join(result.output.split())
    assert "build.json: build parameter ecc_refine: expected true or false" in output
    assert "'false'" in result.output
    assert not (tmp_path / "ds" / "manifest.parquet").exists()


# --------------------------------------------------------------------------- truncated files


def _sequences(root: Path, ext: str) -> Path:
    """Two 3-exposure scenes of small synthetic images."""
    rng = np.random.default_rng(0)
    for scene in ("alpha", "beta"):
        folder = root / scene
        folder.mkdir(parents=True)
        radiance = rng.uniform(0.05, 0.6, (96, 128, 3))
        for rank, ev in enumerate((-1.0, 0.0, 1.0)):
            assert cv2.imwrite(str(folder / f"{rank}{ext}"), render(radiance, ev))
    return root


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_truncated_image_fails_its_scene_and_the_others_build(tmp_path: Path, ext: str) -> None:
    source = _sequences(tmp_path / "seq", ext)
    victim = source / "beta" / f"0{ext}"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) * 3 // 4])
    if ext == ".jpg":  # the reported case: OpenCV decodes it, grey-filling the missing rows
        assert cv2.imread(str(victim)) is not None
    summary = build_dataset([source], tmp_path / "ds", BuildConfig(), progress=False)
    ((scene, error),) = summary.failures
    assert scene == "beta" and f"{victim.resolve()}: truncated: the " in error
    frame = load_dataset(tmp_path / "ds").manifest
    assert set(frame["scene_id"]) == {"alpha"} and len(frame) == 2
    result = CliRunner().invoke(
        cli, ["curate", "build", str(source), "--out", str(tmp_path / "cli"), "--no-progress"]
    )
    assert result.exit_code == 1
    assert f"0{ext}: truncated: the " in result.output


def test_truncation_check_needs_the_whole_jpeg_but_allows_trailing_data(tmp_path: Path) -> None:
    ok, buffer = cv2.imencode(".jpg", render(np.full((32, 48, 3), 0.3), 0.0))
    data = buffer.tobytes()
    assert ok and data.endswith(b"\xff\xd9")
    path = tmp_path / "x.jpg"
    check_complete(path, data)
    with pytest.raises(InputFileError, match=r"x\.jpg: truncated"):
        check_complete(path, data[:-2])  # only the end-of-image marker is missing
    # Data appended after the image (a phone's motion-photo video) is not damage.
    check_complete(path, data + b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    ok, buffer = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    png = buffer.tobytes()
    check_complete(tmp_path / "x.png", png)
    with pytest.raises(InputFileError, match=r"x\.png: truncated"):
        check_complete(tmp_path / "x.png", png[:-12])  # no IEND chunk
