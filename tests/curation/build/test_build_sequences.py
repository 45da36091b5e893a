"""`curate build` on SICE-style sequence folders: dataset validity, gains, splits, skipping,
worker determinism, bad input and the command line."""

from __future__ import annotations

import io
import shutil
from fractions import Fraction
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from expokit.core.hashing import sha256_file
from expokit.core.runs import RECORDS_DIR
from expokit.curation.build.config import BuildConfig, QaThresholds
from expokit.curation.build.driver import build_dataset
from expokit.curation.build.splits import SplitSpec, check_disjoint
from expokit.curation.dataset.format import load_dataset
from tests.conftest import shared_path

SCENES = ("seq_0002", "seq_0064", "seq_0174", "seq_0433")
CONFIG = BuildConfig(max_side=256)


@pytest.fixture(scope="module")
def sice_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = shared_path("exposure", "sice_7ev_sequences")
    folder = tmp_path_factory.mktemp("sice")
    for name in SCENES:
        shutil.copytree(source / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def built(sice_subset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "sice"
    summary = build_dataset([sice_subset], out, CONFIG, progress=False, durable=False)
    assert summary.ok, summary.failures
    assert (summary.built, summary.skipped, summary.pairs) == (4, 0, 24)
    return out


def test_sice_dataset_is_valid_and_complete(built: Path) -> None:
    dataset = load_dataset(built)
    frame = dataset.manifest
    assert sorted(frame["scene_id"].unique()) == list(SCENES)
    assert frame.groupby("scene_id").size().tolist() == [6, 6, 6, 6]
    assert set(frame["source"]) == {"sequences"} and frame["mask_path"].isna().all()
    assert frame["input_ev"].tolist()[:6] == [-3.0, -2.0, -1.0, 1.0, 2.0, 3.0]  # by rank
    assert (frame["target_ev"] == 0).all() and frame["clip_id"].isna().all()
    assert frame["width"].max() <= 256 and frame["height"].max() <= 256
    assert dataset.info.provenance["sources"][0]["ev_basis"] == ["rank"]
    for row in frame.to_dict("records"):
        input_path, target_path = str(row["input_path"]), str(row["target_path"])
        assert dataset.path(input_path).is_file() and dataset.path(target_path).is_file()
        assert sha256_file(dataset.path(input_path)) == row["input_sha256"]
        assert sha256_file(dataset.path(target_path)) == row["target_sha256"]
        assert str(row["source_input"]).endswith(".jpg")
        assert str(row["pair_id"]).startswith(f"{row['scene_id']}/-/")
    # One shared target per scene (uncropped), the 4th exposure (middle of 7).
    targets = frame.groupby("scene_id")["target_path"].nunique()
    assert (targets == 1).all()
    assert frame.loc[frame["scene_id"] == "seq_0002", "source_target"].iloc[0].endswith("/5.jpg")
    check_disjoint(frame)
    assert dataset.info.splits["method"] == "hash"
    assert dataset.info.qa_thresholds == QaThresholds().to_dict()


def test_gains_follow_the_exposure_order(built: Path) -> None:
    frame = load_dataset(built).manifest
    for _, rows in frame.groupby("scene_id"):
        gains = rows.sort_values("input_ev")["photometric_gain"].to_numpy(dtype=float)
        assert np.all(np.diff(gains) < 0)  # brighter input -> smaller gain
        evs = rows.sort_values("input_ev")["input_ev"].to_numpy(dtype=float)
        assert np.all(gains[evs < 0] > 1.0) and np.all(gains[evs > 0] < 1.0)
    near = frame[frame["input_ev"].abs() == 1]
    assert (near["alignment_residual_px"] < 0.5).all()  # tripod sequences: aligned
    darker = frame[frame["input_ev"] == -1]  # one step darker: little clipping, close match
    assert (darker["psnr_db"] > 25).all() and (darker["ssim"] > 0.9).all()


def test_splits_stable_and_salted(built: Path, sice_subset: Path, tmp_path: Path) -> None:
    first = load_dataset(built).manifest.groupby("scene_id")["split"].first().to_dict()
    again = tmp_path / "again"
    build_dataset([sice_subset], again, CONFIG, progress=False, durable=False)
    assert load_dataset(again).manifest.groupby("scene_id")["split"].first().to_dict() == first
    salted = BuildConfig(max_side=256, splits=SplitSpec(salt="another salt"))
    summary = build_dataset([sice_subset], again, salted, progress=False, durable=False)
    assert summary.skipped == 4 and summary.built == 0  # a split change re-processes nothing
    other = load_dataset(again).manifest.groupby("scene_id")["split"].first().to_dict()
    assert other != first
    assert load_dataset(again).info.splits["salt"] == "another salt"


def test_second_build_skips_and_param_change_rebuilds(sice_subset: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    build_dataset([sice_subset], out, CONFIG, progress=False, durable=False)
    files = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "images").rglob("*.png")}
    manifest = pd.read_parquet(out / "manifest.parquet")
    summary = build_dataset([sice_subset], out, CONFIG, progress=False, durable=False)
    assert (summary.built, summary.skipped) == (0, 4)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == files
    pd.testing.assert_frame_equal(pd.read_parquet(out / "manifest.parquet"), manifest)
    # A QA threshold only re-flags.
    strict = BuildConfig(max_side=256, qa=QaThresholds(min_psnr_db=60))
    summary = build_dataset([sice_subset], out, strict, progress=False, durable=False)
    assert summary.built == 0 and summary.flag_counts["low_psnr"] == 24
    # A damaged output is noticed (its recorded hash no longer matches) and rebuilt.
    victim = next(iter(files))
    victim.write_bytes(b"damaged")
    summary = build_dataset([sice_subset], out, CONFIG, progress=False, durable=False)
    assert summary.built == 1 and victim.read_bytes() == files[victim][0]
    # A per-scene parameter rebuilds every scene.
    summary = build_dataset([sice_subset], out, BuildConfig(max_side=200), progress=False)
    assert (summary.built, summary.skipped) == (4, 0)
    assert load_dataset(out).manifest["width"].max() == 200


def test_two_workers_give_the_same_manifest(built: Path, sice_subset: Path, tmp_path: Path) -> None:
    out = tmp_path / "two"
    summary = build_dataset([sice_subset], out, CONFIG, workers=2, progress=False, durable=False)
    assert summary.ok and summary.built == 4
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "manifest.parquet"), pd.read_parquet(built / "manifest.parquet")
    )


def _cli() -> click.Group:
    from expokit.cli.curate_build import register

    @click.group()
    def curate() -> None:
        """Test group standing in for `expokit curate`."""

    register(curate)
    return curate


def test_corrupt_image_fails_its_scene_only_and_cli_exits_1(
    sice_subset: Path, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    for name in SCENES[:2]:
        shutil.copytree(sice_subset / name, source / name)
    bad = source / "seq_9999"
    shutil.copytree(sice_subset / SCENES[2], bad)
    corrupt = sorted(bad.glob("*.jpg"))[1]
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    short = source / "seq_9998"
    short.mkdir()
    shutil.copy(sorted(bad.glob("*.jpg"))[0], short / "1.jpg")
    out = tmp_path / "ds"
    result = CliRunner().invoke(
        _cli(),
        ["build", str(source), "--out", str(out), "--max-side", "128", "--no-progress", "--csv"],
    )
    assert result.exit_code == 1, result.output
    assert f"scene seq_9999: {corrupt}" in result.output and "not a readable image" in result.output
    assert "scene seq_9998" in result.output and "at least 2 exposures" in result.output
    dataset = load_dataset(out)
    assert sorted(dataset.manifest["scene_id"].unique()) == list(SCENES[:2])
    failures = dataset.info.provenance["build"]["failures"]
    assert [f["scene_id"] for f in failures] == ["seq_9998", "seq_9999"]
    assert (out / "manifest.csv").is_file()
    record = (out / RECORDS_DIR / "seq_9999.json").read_text()
    assert '"status": "failed"' in record
    # Repaired input: only that scene is built on the next run.
    shutil.copy(sice_subset / SCENES[2] / corrupt.name, corrupt)
    shutil.rmtree(short)
    result = CliRunner().invoke(
        _cli(), ["build", str(source), "--out", str(out), "--max-side", "128", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "built 1 scene(s), skipped 2 already done, 0 failed" in result.output


def _jpeg_with_exposure(path: Path, level: float, exposure: float) -> None:
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    from expokit.core.synthetic import demo_scene
    from expokit.core.transfer import srgb_encode

    rgb = np.rint(srgb_encode(demo_scene("texture", 96, 128, seed=1) * level) * 255)
    image = Image.fromarray(rgb.astype(np.uint8))
    exif = Image.Exif()
    sub = exif.get_ifd(0x8769)
    sub[0x829A] = IFDRational(Fraction(exposure).limit_denominator(100000))
    sub[0x829D] = IFDRational(Fraction(8))
    sub[0x8827] = 100
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, exif=exif)
    path.write_bytes(buffer.getvalue())


def test_exif_orders_the_sequence_and_gives_evs(tmp_path: Path) -> None:
    scene = tmp_path / "src" / "room"
    scene.mkdir(parents=True)
    # File names deliberately out of exposure order.
    for name, stops in (("a.jpg", 1.0), ("b.jpg", -2.0), ("c.jpg", 0.0), ("d.jpg", -1.0)):
        _jpeg_with_exposure(scene / name, 0.4 * 2.0**stops, (1 / 125) * 2.0**stops)
    summary = build_dataset([tmp_path / "src"], tmp_path / "ds", BuildConfig(), progress=False)
    assert summary.ok, summary.failures
    frame = load_dataset(tmp_path / "ds").manifest.sort_values("input_ev")
    # Ordered by exposure b(-2) d(-1) c(0) a(+1); the middle (rank (4-1)//2 = 1) is d.
    assert frame["source_target"].iloc[0].endswith("/d.jpg")
    assert frame["input_ev"].tolist() == pytest.approx([-1.0, 1.0, 2.0], abs=0.01)
    assert frame["input_exposure_time_s"].tolist() == pytest.approx([1 / 500, 1 / 125, 1 / 62.5])
    assert frame["photometric_gain"].tolist() == pytest.approx([2.0, 0.5, 0.25], rel=0.1)
    # By name instead, with the darkest as target: a b c d -> target a (rank 0).
    by_name = BuildConfig(sequence_order="name", target_rank=0)
    build_dataset([tmp_path / "src"], tmp_path / "ds2", by_name, progress=False)
    frame = load_dataset(tmp_path / "ds2").manifest
    assert frame["source_target"].iloc[0].endswith("/a.jpg")
    assert sorted(frame["input_ev"]) == pytest.approx([-3.0, -2.0, -1.0], abs=0.01)  # still EXIF


def test_size_mismatch_is_a_scene_failure(tmp_path: Path) -> None:
    scene = tmp_path / "src" / "odd"
    scene.mkdir(parents=True)
    for i, size in enumerate(((64, 64), (64, 64), (48, 64))):
        import cv2

        cv2.imwrite(str(scene / f"{i}.png"), np.full((*size, 3), 40 * (i + 1), np.uint8))
    summary = build_dataset([tmp_path / "src"], tmp_path / "ds", BuildConfig(), progress=False)
    assert not summary.ok
    ((scene_id, error),) = summary.failures
    assert scene_id == "odd" and "2.png" in error and "input is 64x48, target is 64x64" in error


def test_cli_choices_match_the_config() -> None:
    from expokit.cli import curate_build as front
    from expokit.curation.build import config as cfg

    assert front.KINDS == cfg.KIND_CHOICES and front.ORDERS == cfg.SEQUENCE_ORDERS
    assert front.FORMATS == cfg.IMAGE_FORMATS and front.CAPTURE_SCENES == cfg.CAPTURE_SCENES
    fields = set(BuildConfig().scene_params()) | {"kind"}
    assert set(front.CONFIG_OPTIONS.values()) <= fields
    assert set(front.QA_OPTIONS.values()) == set(QaThresholds().to_dict())


def test_cli_config_file_and_overrides(sice_subset: Path, tmp_path: Path) -> None:
    config = tmp_path / "build.toml"
    config.write_text(
        "max_side = 96\ntarget_rank = 2\n[qa]\nmin_psnr_db = 5.0\n"
        '[splits]\nfractions = [["train", 0.5], ["test", 0.5]]\nsalt = "fixed"\n'
    )
    lists = tmp_path / "lists.json"
    lists.write_text('{"test": ["seq_0002"]}')
    out = tmp_path / "ds"
    args = ["build", str(sice_subset), "-o", str(out), "--config", str(config), "--no-progress"]
    result = CliRunner().invoke(_cli(), [*args, "--max-side", "64", "--min-ssim", "0.1"])
    assert result.exit_code == 0, result.output
    dataset = load_dataset(out)
    build = dataset.info.provenance["build"]["config"]
    assert build["max_side"] == 64 and build["target_rank"] == 2  # option beats file
    assert dataset.info.qa_thresholds["min_psnr_db"] == 5.0
    assert dataset.info.qa_thresholds["min_ssim"] == 0.1
    assert dataset.info.splits["fractions"] == [["train", 0.5], ["test", 0.5]]
    assert set(dataset.manifest["split"]) <= {"train", "test"}
    result = CliRunner().invoke(_cli(), [*args, "--split-lists", str(lists)])
    assert result.exit_code == 1 and "3 scene(s) are in no split list" in result.output
    result = CliRunner().invoke(
        _cli(), [*args, "--split-lists", str(lists), "--default-split", "train"]
    )
    assert result.exit_code == 0, result.output
    frame = load_dataset(out).manifest
    assert frame.groupby("scene_id")["split"].first().to_dict() == {
        "seq_0002": "test", "seq_0064": "train", "seq_0174": "train", "seq_0433": "train"
    }  # fmt: skip
    result = CliRunner().invoke(_cli(), [*args, "--split-fractions", "0.5,0.2"])
    assert result.exit_code == 2 and "sum to 0.7" in result.output


@pytest.mark.slow
def test_all_22_shared_sice_scenes(tmp_path: Path) -> None:
    source = shared_path("exposure", "sice_7ev_sequences")
    summary = build_dataset([source], tmp_path / "ds", BuildConfig(max_side=128), progress=False)
    assert summary.ok and summary.scenes == 22 and summary.pairs == 132
    frame = load_dataset(tmp_path / "ds").manifest
    check_disjoint(frame)
    for _, rows in frame.groupby("scene_id"):
        gains = rows.sort_values("input_ev")["photometric_gain"].to_numpy(dtype=float)
        assert np.all(np.diff(gains) < 0)
    assert set(frame["split"]) == {"train", "val", "test"}


def test_config_round_trip_and_validation() -> None:
    from expokit.curation.build.config import BuildConfigError

    config = BuildConfig(
        ecc_refine=True, max_side=300, qa=QaThresholds(min_psnr_db=21),
        splits=SplitSpec(fractions=(("a", 0.3), ("b", 0.7)), salt="x"),
    )  # fmt: skip
    assert BuildConfig.from_dict(config.to_dict()) == config
    listed = BuildConfig(splits=SplitSpec(lists={"t": ("s",)}, default_split="t"))
    assert BuildConfig.from_dict(listed.to_dict()) == listed
    # Thresholds and splits do not enter the per-scene hash; per-scene parameters do.
    assert config.params_hash() == BuildConfig(ecc_refine=True, max_side=300).params_hash()
    assert config.params_hash() != BuildConfig(ecc_refine=True, max_side=301).params_hash()
    for bad in ({"kind": "video"}, {"clip_dark": 254}, {"max_side": 8}, {"ecc_motions": ()}):
        with pytest.raises(BuildConfigError):
            BuildConfig.from_dict(bad)
    with pytest.raises(BuildConfigError, match="unknown build parameter"):
        BuildConfig.from_dict({"maxside": 3})
