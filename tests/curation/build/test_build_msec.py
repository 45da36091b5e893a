"""`curate build` on MSEC-style folders (INPUT_IMAGES/<name>_<EV>.JPG + GT_IMAGES/<name>.jpg)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from expokit.core.ev import parse_ev_token
from expokit.curation.build.align import from_linear, to_linear
from expokit.curation.build.config import BuildConfig
from expokit.curation.build.driver import build_dataset
from expokit.curation.build.sources import SourceError, detect_kind, discover_msec
from expokit.curation.dataset.format import load_dataset
from tests.conftest import shared_path


def msec_folder(tmp_path: Path, with_gt: int | None = None) -> Path:
    """MSEC layout from the shared Afifi examples; GT = the input moved back to EV 0 in
    linear light (the released expert-C GT is not in the shared data)."""
    examples = sorted(shared_path("exposure", "msec_afifi_examples").glob("*.JPG"))
    root = tmp_path / "msec"
    (root / "INPUT_IMAGES").mkdir(parents=True)
    (root / "GT_IMAGES").mkdir()
    for i, file in enumerate(examples):
        shutil.copy(file, root / "INPUT_IMAGES" / file.name)
        if with_gt is not None and i >= with_gt:
            continue
        name, _, token = file.stem.rpartition("_")
        image = np.asarray(cv2.imread(str(file)))
        small = cv2.resize(
            image, (image.shape[1] // 4, image.shape[0] // 4), interpolation=cv2.INTER_AREA
        )
        gt = from_linear(to_linear(small) * 2.0 ** -parse_ev_token(token), 8)
        big = cv2.resize(gt, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(root / "GT_IMAGES" / f"{name}.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return root


def test_msec_names_evs_and_gains(tmp_path: Path) -> None:
    root = msec_folder(tmp_path)
    assert detect_kind(root) == "msec"
    summary = build_dataset([root], tmp_path / "ds", BuildConfig(max_side=256), progress=False)
    assert summary.ok, summary.failures
    frame = load_dataset(tmp_path / "ds").manifest
    assert len(frame) == 9 and frame["scene_id"].nunique() == 9
    # The EV token is the last `_` field; names keep their inner underscores.
    row = frame[frame["scene_id"] == "a0964-20061224_140610__E6B7217"].iloc[0]
    assert row["input_ev"] == -1.5 and row["pair_id"] == "a0964-20061224_140610__E6B7217/-/N1.5"
    assert row["target_role"] == "gt" and row["input_role"] == "ev" and pd.isna(row["target_ev"])
    assert set(frame["input_ev"]) == {-1.5, 1.0, 1.5}
    for gain, ev in zip(frame["photometric_gain"], frame["input_ev"], strict=True):
        assert gain == pytest.approx(2.0**-ev, rel=0.15)
    assert frame["target_path"].str.endswith("_target.png").all()


def test_missing_gt_and_bad_names_fail_their_scene(tmp_path: Path) -> None:
    root = msec_folder(tmp_path, with_gt=7)
    (root / "INPUT_IMAGES" / "nonsense_X3.JPG").write_bytes(b"")
    summary = build_dataset([root], tmp_path / "ds", BuildConfig(max_side=128), progress=False)
    errors = dict(summary.failures)
    assert summary.built == 7 and len(errors) == 3
    assert "GT_IMAGES/a2490-WP_CRW_3690.jpg: no ground truth" in errors["a2490-WP_CRW_3690"]
    assert "nonsense_X3.JPG: not an MSEC input name" in errors["nonsense_X3"]
    assert len(load_dataset(tmp_path / "ds").manifest) == 7


def test_flat_example_folder_is_not_a_source() -> None:
    flat = shared_path("exposure", "msec_afifi_examples")
    with pytest.raises(SourceError, match="not a capture session"):
        detect_kind(flat)
    with pytest.raises(SourceError, match="no INPUT_IMAGES"):
        discover_msec(flat)


def test_split_subfolders_and_expert_gt(tmp_path: Path) -> None:
    root = tmp_path / "release"
    for split, gt in (("training", "GT_IMAGES"), ("testing", "expert_c_testing_set")):
        (root / split / "INPUT_IMAGES").mkdir(parents=True)
        (root / split / gt).mkdir()
        image = np.full((32, 48, 3), 60, np.uint8)
        cv2.imwrite(str(root / split / "INPUT_IMAGES" / f"{split}-a_DNG_N1.JPG"), image)
        cv2.imwrite(str(root / split / gt / f"{split}-a_DNG.jpg"), image * 2)
    found = discover_msec(root)
    assert [s.scene_id for s in found.scenes] == ["training-a_DNG", "testing-a_DNG"]
    assert found.provenance["gt_dirs"] == ["training/GT_IMAGES", "testing/expert_c_testing_set"]
    assert all(math.isclose(s.pairs[0].input.ev or 0, -1.0) for s in found.scenes)
