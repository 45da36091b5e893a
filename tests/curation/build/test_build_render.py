"""`curate build` on `expokit render` output: the target EV is the target, other EVs inputs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from expokit.curation.build.config import BuildConfig
from expokit.curation.build.driver import build_dataset
from expokit.curation.build.sources import detect_kind
from expokit.curation.dataset.format import load_dataset
from expokit.curation.rendering.config import OutputFormat, RenderConfig
from expokit.curation.rendering.render import render_batch

DEMO = Path(__file__).resolve().parents[3] / "curation" / "data" / "demo_raw"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("render") / "out"
    config = RenderConfig(formats=(OutputFormat.JPG, OutputFormat.PNG16))
    summary = render_batch(
        [DEMO / "synthetic_texture.dng", DEMO / "synthetic_chart.dng"], out, config, progress=False
    )
    assert summary.ok
    return out


def test_render_output_becomes_pairs(rendered: Path, tmp_path: Path) -> None:
    assert detect_kind(rendered) == "render"
    summary = build_dataset([rendered], tmp_path / "ds", BuildConfig(max_side=320), progress=False)
    assert summary.ok, summary.failures
    dataset = load_dataset(tmp_path / "ds")
    frame = dataset.manifest
    assert sorted(frame["scene_id"].unique()) == ["synthetic-chart", "synthetic-texture"]
    assert len(frame) == 8 and (frame["target_ev"] == 0).all()
    assert sorted(set(frame["input_ev"])) == [-1.5, -1.0, 1.0, 1.5]
    # No geometric alignment for renders: nothing resampled, whole frame valid.
    assert frame["mask_path"].isna().all() and frame["homography"].isna().all()
    assert (frame["valid_w"] == frame["width"]).all()
    # Exact EV scales, so the fitted gain is 2**-EV.
    for gain, ev in zip(frame["photometric_gain"], frame["input_ev"], strict=True):
        assert gain == pytest.approx(2.0**-ev, rel=0.05)
    assert (frame["alignment_residual_px"] < 0.2).all()
    # png16 is preferred over jpg when both were rendered; 16-bit stays 16-bit.
    assert frame["source_input"].str.endswith(".srgb16.png").all()
    image = np.asarray(
        cv2.imread(str(dataset.path(frame["input_path"].iloc[0])), cv2.IMREAD_UNCHANGED)
    )
    assert image.dtype.name == "uint16" and max(image.shape[:2]) == 320
    assert frame["input_exposure_time_s"].notna().all()  # from the RAW metadata
    assert dataset.info.provenance["sources"][0]["render_params_hash"]


def test_render_format_and_target_ev(rendered: Path, tmp_path: Path) -> None:
    config = BuildConfig(render_format="jpg", target_ev=-1.0, max_side=160, image_format="jpg")
    summary = build_dataset([rendered], tmp_path / "ds", config, progress=False)
    assert summary.ok, summary.failures
    frame = load_dataset(tmp_path / "ds").manifest
    assert (frame["target_ev"] == -1.0).all() and frame["source_input"].str.endswith(".jpg").all()
    assert frame["input_path"].str.endswith("_input.jpg").all()
    rows = frame[frame["input_ev"] == -1.5]
    assert rows["photometric_gain"].iloc[0] == pytest.approx(2**0.5, rel=0.1)
    missing = BuildConfig(target_ev=0.5)
    summary = build_dataset([rendered], tmp_path / "ds2", missing, progress=False)
    assert len(summary.failures) == 2
    assert "no EV P0.5 render of synthetic-chart" in dict(summary.failures)["synthetic-chart"]


def test_failed_raw_fails_its_scene(tmp_path: Path) -> None:
    broken = tmp_path / "raws" / "broken.dng"
    broken.parent.mkdir()
    broken.write_bytes(b"II*\x00" + bytes(range(256)) * 40)
    render = render_batch([broken], tmp_path / "render", RenderConfig(), progress=False)
    assert not render.ok
    summary = build_dataset([tmp_path / "render"], tmp_path / "ds", BuildConfig(), progress=False)
    ((scene, error),) = summary.failures
    assert scene == "broken" and f"{broken.resolve()}" in error and "render failed" in error
    assert load_dataset(tmp_path / "ds").manifest.empty


def test_build_writes_the_dataset_card(tmp_path: Path) -> None:
    from expokit.curation.build.driver import build_dataset
    from expokit.curation.rendering.config import RenderConfig
    from expokit.curation.rendering.render import render_batch
    from expokit.demo import demo_raw_dir

    renders = render_batch(
        sorted(demo_raw_dir().glob("*chart*.dng")), tmp_path / "r", RenderConfig(), progress=False
    )
    summary = build_dataset([renders.out_dir], tmp_path / "ds", progress=False)
    card = (summary.out_dir / "README.md").read_text()
    assert summary.ok
    assert "## Contents" in card and f"| **total** | {summary.pairs} |" in card
