"""`curate build` on capture sessions (fake backend): stills aligned through a synthetic rig
calibration (known translation + mirror), RAW sessions, video clips through sync.json."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from expokit.calibration.sync import frame_map
from expokit.calibration.sync_record import SyncResult, write_sync_json
from expokit.capture.commands import shoot
from expokit.capture.rig_config import RigConfig, load_rig_config
from expokit.core.synthetic import demo_scene
from expokit.core.transfer import srgb_encode
from expokit.core.video_io import probe_media
from expokit.curation.build.align import from_linear, to_linear
from expokit.curation.build.config import BuildConfig
from expokit.curation.build.driver import build_dataset
from expokit.curation.build.sources import SourceError, detect_kind
from expokit.curation.dataset.format import load_dataset
from tests.capture.conftest import write_rig

SIZE = (240, 160)  # width, height of the simulated stills
SHIFT = (5.0, -3.0)  # flipped test pixel + SHIFT = reference pixel


def write_rig_calibration(
    path: Path, homography: np.ndarray, size: tuple[int, int], flip: str = "none"
) -> Path:
    """A minimal rig_calibration.json (format 1) with a known homography."""
    w, h = size
    data = {
        "format_version": 1, "created_at": "", "software": {}, "flip": flip,
        "mirror": {"flip": flip, "method": "fixed", "scores": {}, "ambiguous": False},
        "method": "features", "homography": np.asarray(homography).tolist(),
        "initial_homography": np.asarray(homography).tolist(), "correspondences": 0,
        "inliers": 0, "reprojection_rms": 0.0, "initial_reprojection_rms": 0.0, "ecc": None,
        "valid_region": [0, 0, w, h], "reference_size": [w, h], "test_size": [w, h],
        "reference_intrinsics": None, "test_intrinsics": None, "stereo_rms": None,
        "board": None, "pairs": [], "qa_images": [], "config": {},
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0, dx], [0, 1, dy], [0, 0, 1]])


def rig_with_sources(tmp_path: Path, image_format: str = "JPEG Fine") -> RigConfig:
    """Fake rig whose bodies serve prepared images: the test body sees the reference scene
    shifted by -SHIFT, 2 EV darker, mirrored left-right (a beam splitter)."""
    ref_dir, test_dir = tmp_path / "ref_src", tmp_path / "test_src"
    ref_dir.mkdir()
    test_dir.mkdir()
    w, h = SIZE
    for i in range(2):
        scene = demo_scene("texture", h, w, seed=10 + i) * 0.7
        reference = np.rint(srgb_encode(scene[..., ::-1]) * 255).astype(np.uint8)
        flipped = cv2.warpPerspective(reference, translation(-SHIFT[0], -SHIFT[1]), (w, h))
        test = from_linear(to_linear(flipped) / 4.0, 8)[:, ::-1]
        cv2.imwrite(str(ref_dir / f"shot{i}.png"), reference)
        cv2.imwrite(str(test_dir / f"shot{i}.png"), np.ascontiguousarray(test))
    config = load_rig_config(write_rig(tmp_path))
    cameras = [
        {**c, "source_dir": str(ref_dir if c["serial"] == "REF-1" else test_dir)}
        for c in config.fake["cameras"]
    ]
    return dataclasses.replace(config, fake={"cameras": cameras})


def with_format(config: RigConfig, image_format: str) -> RigConfig:
    roles = {
        role: dataclasses.replace(c, settings={**c.settings, "image_format": image_format})
        for role, c in config.roles.items()
    }
    return dataclasses.replace(config, roles=roles)


def test_still_pairs_are_flipped_warped_and_measured(tmp_path: Path) -> None:
    session, report = shoot(rig_with_sources(tmp_path), "pair", count=2, progress=False)
    assert report.shots_done == 2
    assert detect_kind(session.root) == "capture" and detect_kind(session.root.parent) == "capture"
    calib = write_rig_calibration(
        tmp_path / "rig_calibration.json", translation(*SHIFT), SIZE, "horizontal"
    )
    summary = build_dataset(
        [session.root], tmp_path / "ds", BuildConfig(), rig_calibration=calib, progress=False
    )
    assert summary.ok, summary.failures
    dataset = load_dataset(tmp_path / "ds")
    frame = dataset.manifest
    assert len(frame) == 2 and set(frame["scene_id"]) == {session.session_id}
    assert set(frame["clip_id"]) == {session.session_id} and frame["frame_index"].isna().all()
    assert frame["pair_id"].tolist() == [
        f"{session.session_id}/{session.session_id}/{i:04d}" for i in (1, 2)
    ]
    assert set(frame["input_role"]) == {"test"} and set(frame["target_role"]) == {"reference"}
    assert (frame["input_ev"] == -2.0).all() and (frame["target_ev"] == 0.0).all()
    assert (frame["alignment_residual_px"] < 0.5).all()
    assert frame["photometric_gain"].astype(float).tolist() == pytest.approx([4.0, 4.0], rel=0.1)
    assert (frame["psnr_db"] > 30).all()
    assert not frame["qa_flags"].str.contains("misaligned").any()
    # The warp leaves SHIFT px of border: the crop excludes it, so the stored images are the
    # valid rectangle and valid_* (in stored pixels) cover them from (0, 0).
    row = frame.iloc[0]
    assert (row["valid_x"], row["valid_y"], row["valid_w"], row["valid_h"]) == (0, 0, 235, 157)
    assert (row["width"], row["height"]) == (235, 157)
    assert np.allclose(json.loads(row["homography"]), translation(*SHIFT))
    mask = np.asarray(cv2.imread(str(dataset.path(row["mask_path"])), cv2.IMREAD_UNCHANGED))
    assert mask.shape == (157, 235) and (mask == 255).all()
    assert dataset.info.provenance["sources"][0]["sessions"][0]["rig_calibration"].endswith(
        "rig_calibration.json"
    )


def test_misaligned_pair_is_flagged_but_kept(tmp_path: Path) -> None:
    session, _ = shoot(rig_with_sources(tmp_path), "pair", count=2, progress=False)
    wrong = translation(SHIFT[0] + 6, SHIFT[1])  # the rig moved 6 px since calibration
    calib = write_rig_calibration(
        tmp_path / "cal" / "rig_calibration.json", wrong, SIZE, "horizontal"
    )
    summary = build_dataset(
        [session.root], tmp_path / "ds", BuildConfig(), rig_calibration=calib.parent, progress=False
    )
    assert summary.ok and summary.pairs == 2 and summary.flag_counts["misaligned"] == 2
    frame = load_dataset(tmp_path / "ds").manifest
    assert (frame["alignment_residual_px"] > 4).all()
    assert frame["qa_flags"].str.split(",").apply(lambda f: "misaligned" in f).all()
    # Per-pair ECC refinement repairs it.
    summary = build_dataset(
        [session.root], tmp_path / "ecc", BuildConfig(ecc_refine=True), rig_calibration=calib,
        progress=False,
    )  # fmt: skip
    frame = load_dataset(tmp_path / "ecc").manifest
    assert "misaligned" not in summary.flag_counts
    assert (frame["alignment_residual_px"] < 0.5).all() and (frame["ecc_correlation"] > 0.9).all()
    assert np.allclose(json.loads(frame["homography"].iloc[0]), translation(*SHIFT), atol=0.2)


def test_raw_session_keeps_16_bit_and_exposure(tmp_path: Path) -> None:
    config = with_format(load_rig_config(write_rig(tmp_path)), "RAW")
    session, _ = shoot(config, "pair", count=2, progress=False)
    write_rig_calibration(session.root / "rig_calibration.json", np.eye(3), (96, 64))
    # Each fake shot has its own sensor noise, as on a real body: no two shots are the same
    # content (which the build would refuse as one capture under two names).
    shots = sorted((session.root / "files").glob("*.dng"))
    assert len({f.read_bytes() for f in shots}) == len(shots) == 4
    summary = build_dataset(
        [session.root], tmp_path / "ds", BuildConfig(capture_scene="shot"), progress=False
    )
    assert summary.ok, summary.failures
    dataset = load_dataset(tmp_path / "ds")
    frame = dataset.manifest
    assert frame["scene_id"].tolist() == [
        f"{session.session_id}-0001",
        f"{session.session_id}-0002",
    ]
    assert frame["source_input"].str.endswith("_test_N2.dng").all()
    assert frame["input_exposure_time_s"].tolist() == pytest.approx([1 / 500] * 2)
    assert frame["target_exposure_time_s"].tolist() == pytest.approx([1 / 125] * 2)
    assert frame["photometric_gain"].astype(float).tolist() == pytest.approx([4.0, 4.0], rel=0.05)
    image = np.asarray(
        cv2.imread(str(dataset.path(frame["input_path"].iloc[0])), cv2.IMREAD_UNCHANGED)
    )
    assert image.dtype == np.uint16 and image.shape == (64, 96, 3)


def write_sync(session_root: Path, out: Path, decoded_b: int | None = None) -> Path:
    files = sorted((session_root / "files").glob("*.avi"))
    reference = next(f for f in files if "_reference_" in f.name)
    test = next(f for f in files if "_test_" in f.name)
    media_a, media_b = probe_media(test), probe_media(reference)  # A = test: order must not matter
    if decoded_b is not None:
        media_b = dataclasses.replace(media_b, decoded_frames=decoded_b)
    result = SyncResult(
        media_a=media_a, media_b=media_b, method="brightness", offset_s=0.0, confidence=1.0,
        peak_correlation=1.0, rate_hz=10.0,
        frame_map=frame_map(media_a.frame_times, media_b.frame_times, 0.0),
    )  # fmt: skip
    return write_sync_json(result, out)


def test_video_clip_pairs_frames_through_sync_and_measures_clip_figures(tmp_path: Path) -> None:
    config = load_rig_config(write_rig(tmp_path))
    session, _ = shoot(config, "video", seconds=0.5, progress=False)
    write_rig_calibration(session.root / "rig_calibration.json", np.eye(3), (96, 64))
    write_sync(session.root, session.root / "sync.json")  # found in the session folder
    summary = build_dataset([session.root], tmp_path / "ds", BuildConfig(), progress=False)
    assert summary.ok, summary.failures
    frame = load_dataset(tmp_path / "ds").manifest
    clip = f"{session.session_id}-0001"
    assert set(frame["clip_id"]) == {clip} and set(frame["scene_id"]) == {clip}
    assert frame["frame_index"].tolist() == [0, 1, 2, 3, 4]
    assert frame["source_input"].str.contains(r"_test_N2\.avi#frame=\d", regex=True).all()
    # The fake movies change brightness frame to frame (a flash, then steps) for both
    # cameras: the pair's gain stays put, so nothing is unstable; 5 frames are too few to
    # tell an oscillation of the target from its steps.
    assert frame["gain_instability_ev"].nunique() == 1
    assert frame["gain_instability_ev"].iloc[0] < 0.03
    assert frame["target_flicker"].isna().all()
    assert not frame["qa_flags"].str.contains("gain_unstable|target_flicker").any()
    assert (frame["alignment_residual_px"] < 0.5).all()
    every_other = BuildConfig(video_frame_step=2)
    build_dataset([session.root], tmp_path / "ds2", every_other, progress=False)
    assert load_dataset(tmp_path / "ds2").manifest["frame_index"].tolist() == [0, 2, 4]


def test_video_frame_count_mismatch_and_missing_sync(tmp_path: Path) -> None:
    config = load_rig_config(write_rig(tmp_path))
    session, _ = shoot(config, "video", seconds=0.5, progress=False)
    write_rig_calibration(session.root / "rig_calibration.json", np.eye(3), (96, 64))
    summary = build_dataset([session.root], tmp_path / "ds", BuildConfig(), progress=False)
    ((scene, error),) = summary.failures
    assert scene.endswith("-0001") and "no sync.json pairs these movies" in error
    bad_sync = write_sync(session.root, tmp_path / "elsewhere" / "clip.json", decoded_b=12)
    summary = build_dataset(
        [session.root], tmp_path / "ds", BuildConfig(), sync_files=[bad_sync.parent], progress=False
    )
    ((scene, error),) = summary.failures
    assert "_reference_0.avi: decodes 5 frames" in error and "LQ/GT frame-count mismatch" in error


def test_session_without_calibration_is_refused(tmp_path: Path) -> None:
    session, _ = shoot(load_rig_config(write_rig(tmp_path)), "pair", count=1, progress=False)
    with pytest.raises(SourceError, match=r"no rig_calibration\.json"):
        build_dataset([session.root], tmp_path / "ds", BuildConfig(), progress=False)
    write_rig_calibration(session.root / "rig_calibration.json", np.eye(3), (640, 480))
    summary = build_dataset([session.root], tmp_path / "ds", BuildConfig(), progress=False)
    ((_, error),) = summary.failures
    assert "_reference_0.jpg" in error and "the rig calibration is for 640x480" in error


def test_no_crop_keeps_full_frames_and_the_mask_marks_the_border(tmp_path: Path) -> None:
    session, _ = shoot(rig_with_sources(tmp_path), "pair", count=1, progress=False)
    calib = write_rig_calibration(
        tmp_path / "rig_calibration.json", translation(*SHIFT), SIZE, "horizontal"
    )
    config = BuildConfig(crop=False, max_side=120)
    summary = build_dataset([session.root], tmp_path / "ds", config, rig_calibration=calib)
    assert summary.ok, summary.failures
    dataset = load_dataset(tmp_path / "ds")
    row = dataset.manifest.iloc[0]
    assert (row["width"], row["height"]) == (120, 80)  # downscaled by 2, not cropped
    assert row["valid_x"] >= 3 and row["valid_w"] <= 117  # 5 px border -> 2.5 px, conservative
    mask = np.asarray(cv2.imread(str(dataset.path(row["mask_path"])), cv2.IMREAD_UNCHANGED))
    assert mask.shape == (80, 120) and not mask[:, :2].any() and (mask[5:-5, 5:] == 255).all()
    assert row["alignment_residual_px"] < 0.5
