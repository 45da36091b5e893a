"""Format v1 datasets still load (converted in memory) and `curate upgrade` rewrites them as
v2 with the figures measured again: the same figures and flags a v2 build gives."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from expokit.curation.build.config import BuildConfig
from expokit.curation.build.driver import build_dataset
from expokit.curation.build.upgrade import upgrade_dataset
from expokit.curation.dataset.format import INFO_FILE, MANIFEST_FILE, load_dataset, read_info

FIGURES = ("psnr_db", "ssim", "usable_fraction", "focus_ratio", "target_luma")


def _sequences(folder: Path, scenes: int = 3) -> Path:
    """Scenes of 5 exposures of one textured radiance map (no EXIF: exposure ranks)."""
    rng = np.random.default_rng(4)
    for index in range(scenes):
        radiance = cv2.GaussianBlur(rng.uniform(0.02, 0.6, (96, 128, 3)), (0, 0), 1.5)
        scene = folder / f"scene{index}"
        scene.mkdir(parents=True)
        for rank, ev in enumerate((-2, -1, 0, 1, 2)):
            linear = np.clip(radiance * 2.0**ev, 0, 1)
            encoded = np.where(
                linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055
            )
            image = np.round(encoded * 255).astype(np.uint8)
            cv2.imwrite(str(scene / f"{rank}.png"), image[..., ::-1])
    return folder


def _as_v1(root: Path) -> None:
    """Rewrite a v2 dataset the way format v1 stored it."""
    info = json.loads((root / INFO_FILE).read_text())
    info["format_version"] = 1
    columns = info["schema"]["columns"]
    for name in ("ev_basis", "usable_fraction", "focus_ratio", "target_luma", "target_change",
                 "gain_deviation_ev", "gain_instability_ev", "target_flicker"):  # fmt: skip
        columns.pop(name)
    columns["flicker"] = {"dtype": "Float64", "unit": "", "meaning": "v1"}
    columns["flags"] = columns.pop("qa_flags")
    info["qa_thresholds"]["max_flicker"] = 0.02
    (root / INFO_FILE).write_text(json.dumps(info))
    frame = pd.read_parquet(root / MANIFEST_FILE)
    frame = frame.rename(columns={"qa_flags": "flags"})
    frame["flicker"] = pd.array([None] * len(frame), dtype="Float64")
    frame.loc[frame.index[0], "flags"] = "flicker"  # v1's meaningless flag
    frame = frame.drop(columns=["ev_basis", "usable_fraction", "focus_ratio", "target_luma",
                                "target_change", "gain_deviation_ev", "gain_instability_ev",
                                "target_flicker"])  # fmt: skip
    frame.to_parquet(root / MANIFEST_FILE, index=False)


@pytest.fixture(scope="module")
def v2_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = _sequences(tmp_path_factory.mktemp("seq") / "src")
    out = tmp_path_factory.mktemp("ds") / "ds"
    summary = build_dataset([source], out, BuildConfig(), progress=False, durable=False)
    assert summary.ok, summary.failures
    return out


def test_v1_loads_in_memory_and_upgrade_measures_it_again(v2_build: Path, tmp_path: Path) -> None:
    import shutil

    built = load_dataset(v2_build).manifest
    root = tmp_path / "old"
    shutil.copytree(v2_build, root)
    _as_v1(root)
    with pytest.warns(UserWarning, match="format v1.*curate upgrade"):
        old = load_dataset(root)
    assert "qa_flags" in old.manifest.columns and "flags" not in old.manifest.columns
    assert old.manifest["qa_flags"].iloc[0] == ""  # v1's flicker flag is dropped
    assert (old.manifest["ev_basis"] == "rank").all()  # sequences without EXIF
    assert old.manifest["focus_ratio"].isna().all()

    steps = upgrade_dataset(root)
    assert steps == ["converted v1 -> v2"]
    assert read_info(root).format_version == 2
    assert (root / (INFO_FILE + ".v1")).is_file() and (root / (MANIFEST_FILE + ".v1")).is_file()
    new = load_dataset(root).manifest
    assert new["pair_id"].tolist() == built["pair_id"].tolist()
    for column in FIGURES:
        a = new[column].astype(float).to_numpy()
        b = built[column].astype(float).to_numpy()
        assert np.allclose(a, b, rtol=1e-6, atol=1e-9, equal_nan=True), column
    assert new["qa_flags"].tolist() == built["qa_flags"].tolist()
    assert "max_flicker" not in read_info(root).qa_thresholds
    assert upgrade_dataset(root) == [f"{root} is already format v2; nothing to do"]


def test_build_gives_rank_scenes_their_basis_and_measured_ev(v2_build: Path) -> None:
    from expokit.curation.dataset.card import ev_distribution, render_card

    dataset = load_dataset(v2_build)
    frame = dataset.manifest
    assert (frame["ev_basis"] == "rank").all()
    rows = {rank: measured for rank, _, measured in ev_distribution(frame)}
    # Rank -2 of these scenes is exactly 2 EV darker where nothing is clipped.
    assert float(rows["-2"]) == pytest.approx(-2.0, abs=0.05)
    card = render_card(dataset)
    assert "exposure rank (input − target; not EV)" in card and "measured EV" in card
    assert not math.isnan(float(rows["+1"]))
