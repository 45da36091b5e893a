"""Whatever `curate build` makes, `curate validate` accepts: every source kind (capture stills
through a rig calibration, capture video through sync.json, render, sequences, msec), each
with and without crop and ECC, validates with 0 errors.

The sources are tiny and synthetic; some inputs are shifted by a few pixels so ECC moves them
and the crop cuts a border (the case where validate used to disagree with build).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from expokit.capture.commands import shoot
from expokit.capture.rig_config import load_rig_config
from expokit.core.synthetic import demo_scene, write_dng
from expokit.curation.build.config import BuildConfig
from expokit.curation.build.driver import build_dataset
from expokit.curation.dataset.format import load_dataset
from expokit.curation.dataset.validate import format_problems, validate_dataset
from expokit.curation.rendering.config import RenderConfig
from expokit.curation.rendering.render import render_batch
from tests.capture.conftest import write_rig
from tests.curation.build.test_build_capture import (
    SHIFT,
    SIZE,
    rig_with_sources,
    translation,
    write_rig_calibration,
    write_sync,
)
from tests.curation.conftest_tools import render

KINDS = ("capture-stills", "capture-video", "render", "sequences", "msec")
HEIGHT, WIDTH = 72, 96


def _radiance(seed: int) -> np.ndarray:
    return demo_scene("texture", HEIGHT, WIDTH, seed=seed).astype(np.float64) * 0.6


def _shifted(image: np.ndarray, dx: int) -> np.ndarray:
    """``image`` moved ``dx`` px right (edge replicated): ECC has a translation to find."""
    return np.ascontiguousarray(np.concatenate([image[:, :1].repeat(dx, 1), image[:, :-dx]], 1))


def _capture_stills(root: Path) -> tuple[list[Path], dict[str, Path]]:
    session, _ = shoot(rig_with_sources(root), "pair", count=2, progress=False)
    calibration = write_rig_calibration(
        root / "rig_calibration.json", translation(*SHIFT), SIZE, "horizontal"
    )
    return [session.root], {"rig_calibration": calibration}


def _capture_video(root: Path) -> tuple[list[Path], dict[str, Path]]:
    session, _ = shoot(load_rig_config(write_rig(root)), "video", seconds=0.5, progress=False)
    write_rig_calibration(session.root / "rig_calibration.json", np.eye(3), (96, 64))
    write_sync(session.root, session.root / "sync.json")
    return [session.root], {}


def _render(root: Path) -> tuple[list[Path], dict[str, Path]]:
    raws = []
    for seed in (1, 2):
        raw = root / "raws" / f"scene{seed}.dng"
        raw.parent.mkdir(parents=True, exist_ok=True)
        write_dng(raw, demo_scene("texture", HEIGHT, WIDTH, seed=seed) * 0.5)
        raws.append(raw)
    summary = render_batch(raws, root / "render", RenderConfig(), progress=False)
    assert summary.ok
    return [root / "render"], {}


def _sequences(root: Path) -> tuple[list[Path], dict[str, Path]]:
    for seed in (1, 2):
        folder = root / "seq" / f"scene{seed}"
        folder.mkdir(parents=True)
        for rank, ev in enumerate((-1.0, 0.0, 1.0)):
            image = render(_radiance(seed), ev)
            if ev != 0:  # hand-held: the other exposures moved
                image = _shifted(image, 2)
            cv2.imwrite(str(folder / f"{rank}.png"), image)
    return [root / "seq"], {}


def _msec(root: Path) -> tuple[list[Path], dict[str, Path]]:
    (root / "msec" / "INPUT_IMAGES").mkdir(parents=True)
    (root / "msec" / "GT_IMAGES").mkdir(parents=True)
    for seed in (1, 2):
        name = f"a{seed:04d}"
        cv2.imwrite(str(root / "msec" / "GT_IMAGES" / f"{name}.jpg"), render(_radiance(seed), 0))
        for token, ev in (("N1", -1.0), ("P1", 1.0)):
            image = _shifted(render(_radiance(seed), ev), 2)
            cv2.imwrite(str(root / "msec" / "INPUT_IMAGES" / f"{name}_{token}.JPG"), image)
    return [root / "msec"], {}


MAKERS = {
    "capture-stills": _capture_stills,
    "capture-video": _capture_video,
    "render": _render,
    "sequences": _sequences,
    "msec": _msec,
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[Path], dict]]:
    """Each kind's source folders, made once for the module."""
    return {kind: MAKERS[kind](tmp_path_factory.mktemp(kind)) for kind in KINDS}


@pytest.mark.parametrize("ecc", [False, True], ids=["no-ecc", "ecc"])
@pytest.mark.parametrize("crop", [True, False], ids=["crop", "no-crop"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_built_dataset_validates(
    sources: dict[str, tuple[list[Path], dict]], tmp_path: Path, kind: str, crop: bool, ecc: bool
) -> None:
    folders, options = sources[kind]
    config = BuildConfig(crop=crop, ecc_refine=ecc, max_side=128, ecc_max_side=128)
    summary = build_dataset(folders, tmp_path / "ds", config, progress=False, **options)
    assert summary.ok, summary.failures
    assert summary.pairs > 0
    report = validate_dataset(tmp_path / "ds")
    assert report.rows == summary.pairs
    assert report.errors == [], "\n".join(format_problems(report.problems))
    frame = load_dataset(tmp_path / "ds").manifest
    if crop:
        # The stored images are the valid rectangle: it starts at their corner.
        assert (frame["valid_x"] == 0).all() and (frame["valid_y"] == 0).all()
        assert (frame["valid_w"] == frame["width"]).all()
        assert (frame["valid_h"] == frame["height"]).all()
    if kind == "capture-video":
        assert frame["frame_index"].notna().all()
    if kind == "capture-stills":
        assert frame["clip_id"].notna().all() and frame["frame_index"].isna().all()


def test_stills_and_cropped_offsets_reach_validate_where_they_used_to_fail(
    sources: dict[str, tuple[list[Path], dict]], tmp_path: Path
) -> None:
    """The two reported disagreements: a capture session's stills carry a clip id without
    frame indices, and with the rig warp's border cropped away the rectangle used to keep
    its full-frame offset (x=5) while the stored image is the crop."""
    folders, options = sources["capture-stills"]
    summary = build_dataset(folders, tmp_path / "ds", BuildConfig(), progress=False, **options)
    assert summary.ok, summary.failures
    frame = load_dataset(tmp_path / "ds").manifest
    assert frame["clip_id"].notna().all() and frame["frame_index"].isna().all()
    # The warp's border was cut: the stored image is narrower than the frame.
    assert (frame["width"] < SIZE[0]).all()
    codes = {p.code for p in validate_dataset(tmp_path / "ds").problems}
    assert not codes & {"clip-frame-index", "valid-region", "frame-count-mismatch"}
