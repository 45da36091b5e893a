"""Multi-EV rendering: exactness, layouts, manifest, determinism, bad input, skip/resume."""

from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from expokit.core.errors import ExpokitError, InputFileError, OutputError
from expokit.core.ev import MSEC_LADDER
from expokit.core.hashing import sha256_file
from expokit.core.images import read_image
from expokit.core.runs import RECORDS_DIR
from expokit.core.synthetic import chart_patches
from expokit.curation.rendering.config import MeterSpec, OutputFormat, RenderConfig
from expokit.curation.rendering.raw_decode import decode_raw
from expokit.curation.rendering.render import (
    discover_raw_files,
    meter_offset,
    render_arrays,
    render_batch,
)
from tests.conftest import shared_path

LINEAR = RenderConfig(formats=(OutputFormat.TIFF16_LINEAR,))


def measured_ev(image: np.ndarray, base: np.ndarray) -> float:
    """log2 of the mean ratio over pixels unclipped (and above the noise floor) in both."""
    a, b = image.astype(np.float64), base.astype(np.float64)
    valid = (a > 200) & (a < 65000) & (b > 200) & (b < 65000)
    assert valid.mean() > 0.05, "too few unclipped pixels to measure"
    return math.log2(a[valid].mean() / b[valid].mean())


@pytest.mark.parametrize("name", ["RAW_CANON_D30_SRGB.CRW", "RAW_KODAK_DC50.KDC", "Blackmagic.dng"])
def test_ev_ladder_exact_on_real_raws(name: str) -> None:
    decoded = decode_raw(shared_path("raw", name))
    images = {ev: img for ev, _, img in render_arrays(decoded.linear, LINEAR)}
    for ev in MSEC_LADDER:
        assert measured_ev(images[ev], images[0.0]) == pytest.approx(ev, abs=0.02)


def test_ev_ladder_files_match_known_radiance(chart_dng: Path, tmp_path: Path) -> None:
    summary = render_batch([chart_dng], tmp_path / "out", LINEAR, progress=False)
    assert summary.ok and summary.outputs == 5
    frame = pd.read_parquet(summary.manifest_path)
    images = {
        float(ev): read_image(summary.out_dir / rel)
        for ev, rel in zip(frame["ev"], frame["output_path"], strict=True)
    }
    for ev in MSEC_LADDER:
        assert measured_ev(images[ev], images[0.0]) == pytest.approx(ev, abs=0.02)
    # Against the scene itself: every unclipped chart patch at EV e is 2**e * radiance.
    for ev in MSEC_LADDER:
        rgb = images[ev][..., ::-1].astype(np.float64) / 65535
        for y0, y1, x0, x1, radiance in chart_patches(212, 318):
            want = np.asarray(radiance) * 2.0**ev
            if want.max() > 0.9 or want.min() < 0.01:
                continue
            got = rgb[y0 + 10 : y1 - 10, x0 + 10 : x1 - 10].reshape(-1, 3).mean(0)
            np.testing.assert_allclose(got, want, rtol=0.03)


def test_srgb_outputs_are_the_transfer_of_linear(chart_dng: Path, tmp_path: Path) -> None:
    config = RenderConfig(evs=(0.0,), formats=(OutputFormat.PNG16, OutputFormat.PNG16_LINEAR))
    summary = render_batch([chart_dng], tmp_path / "o", config, progress=False)
    srgb = read_image(summary.out_dir / "chart/chart_0.srgb16.png") / 65535.0
    lin = read_image(summary.out_dir / "chart/chart_0.lin16.png") / 65535.0
    from expokit.core.transfer import srgb_encode

    np.testing.assert_allclose(srgb, srgb_encode(lin), atol=1.5 / 65535)


def test_manifest_columns_and_values(chart_dng: Path, tmp_path: Path) -> None:
    summary = render_batch([chart_dng], tmp_path / "out", RenderConfig(), progress=False)
    frame = pd.read_parquet(summary.manifest_path)
    assert len(frame) == 5 and set(frame["status"]) == {"ok"}
    row = frame.iloc[0]
    assert row["raw_sha256"] == sha256_file(chart_dng)
    assert row["camera_make"] == "expokit" and row["iso"] == 100
    assert row["exposure_time_s"] == pytest.approx(1 / 125, rel=1e-4)
    assert row["wb_source"] == "camera" and row["libraw_version"] and row["rawpy_version"]
    for rel, digest in zip(frame["output_path"], frame["output_sha256"], strict=True):
        assert sha256_file(summary.out_dir / rel) == digest
    assert list(frame["ev_token"]) == ["N1.5", "N1", "0", "P1", "P1.5"]
    params = json.loads(summary.params_path.read_text())
    assert params["params_hash"] == row["params_hash"]
    assert params["config"]["evs"] == list(MSEC_LADDER)
    run = json.loads(summary.run_path.read_text())
    assert run["status"] == "ok" and run["rendered"] == 1


def test_msec_layout(small_raw_dir: Path, tmp_path: Path) -> None:
    summary = render_batch(
        [small_raw_dir], tmp_path / "msec", RenderConfig(layout="msec"), progress=False
    )
    out = summary.out_dir
    inputs = sorted(p.name for p in (out / "INPUT_IMAGES").iterdir())
    gts = sorted(p.name for p in (out / "GT_IMAGES").iterdir())
    names = ["s0-chart_DNG", "s1-window_DNG", "s2-texture_DNG"]
    assert gts == [f"{n}.jpg" for n in names]
    assert inputs == sorted(
        f"{n}_{t}.JPG" for n in names for t in ("N1.5", "N1", "0", "P1", "P1.5")
    )
    # MSEC: GT = input name minus its last "_" field + ".jpg"; UEC: minus the last two.
    for name in inputs:
        assert (out / "GT_IMAGES" / (name.rsplit("_", 1)[0] + ".jpg")).exists()
        assert name.rsplit("_", 2)[0] in {n.split("_")[0] for n in names}
    assert (out / "GT_IMAGES/s0-chart_DNG.jpg").read_bytes() == (
        out / "INPUT_IMAGES/s0-chart_DNG_0.JPG"
    ).read_bytes()
    frame = pd.read_parquet(summary.manifest_path)
    assert (frame["role"] == "gt").sum() == 3


def test_meter_normalises_median_luminance(chart_dng: Path, tmp_path: Path) -> None:
    config = RenderConfig(
        evs=(0.0,), formats=(OutputFormat.TIFF16_LINEAR,), meter=MeterSpec("median", 0.18)
    )
    summary = render_batch([chart_dng], tmp_path / "m", config, progress=False)
    frame = pd.read_parquet(summary.manifest_path)
    offset = float(frame["base_ev_offset"].iloc[0])
    assert offset != 0.0
    rgb = read_image(summary.out_dir / frame["output_path"].iloc[0])[..., ::-1] / 65535.0
    luminance = rgb @ np.array([0.2126, 0.7152, 0.0722])
    assert float(np.median(luminance)) == pytest.approx(0.18, rel=0.02)


def test_meter_rejects_black() -> None:
    with pytest.raises(ValueError, match="cannot meter"):
        meter_offset(np.zeros((8, 8, 3), np.uint16), MeterSpec())


def _hashes(out: Path) -> dict[str, str]:
    frame = pd.read_parquet(out / "manifest.parquet")
    return dict(zip(frame["output_path"], frame["output_sha256"], strict=True))


def test_byte_identical_across_runs_and_worker_counts(small_raw_dir: Path, tmp_path: Path) -> None:
    config = RenderConfig(formats=(OutputFormat.JPG, OutputFormat.PNG16))
    a = render_batch([small_raw_dir], tmp_path / "a", config, progress=False)
    b = render_batch([small_raw_dir], tmp_path / "b", config, progress=False)
    c = render_batch([small_raw_dir], tmp_path / "c", config, workers=2, progress=False)
    assert a.ok and b.ok and c.ok
    ha, hb, hc = _hashes(a.out_dir), _hashes(b.out_dir), _hashes(c.out_dir)
    assert len(ha) == 3 * 5 * 2 and ha == hb == hc
    for rel, digest in hc.items():
        assert sha256_file(c.out_dir / rel) == digest


def test_bad_files_are_recorded_and_batch_continues(chart_dng: Path, tmp_path: Path) -> None:
    invalid = shared_path("raw", "invalid")
    summary = render_batch([invalid, chart_dng], tmp_path / "o", RenderConfig(), progress=False)
    assert not summary.ok and summary.rendered == 1 and len(summary.failures) == 5
    frame = pd.read_parquet(summary.manifest_path)
    failed = frame[frame["status"] == "failed"]
    assert len(failed) == 5 and (frame["status"] == "ok").sum() == 5
    for raw_path, error in zip(failed["raw_path"], failed["error"], strict=True):
        assert error.startswith(raw_path) and len(error) > len(raw_path) + 10
    run = json.loads(summary.run_path.read_text())
    assert run["status"] == "failed" and len(run["failures"]) == 5


def test_rerun_retries_failures_but_skips_done(chart_dng: Path, tmp_path: Path) -> None:
    invalid = shared_path("raw", "invalid", "truncated_NIKON_D70s.nef")
    first = render_batch([invalid, chart_dng], tmp_path / "o", RenderConfig(), progress=False)
    second = render_batch([invalid, chart_dng], tmp_path / "o", RenderConfig(), progress=False)
    assert (first.rendered, len(first.failures)) == (1, 1)
    assert (second.rendered, second.skipped, len(second.failures)) == (0, 1, 1)


def test_discovery_recurses_case_insensitive_and_rejects_unknown(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.DNG", "a/b/y.nef", "a/b/notes.txt", "a/.hidden.dng"):
        (tmp_path / name).write_bytes(b"")
    files, ignored = discover_raw_files([tmp_path / "a"])
    assert sorted(f.name for f in files) == ["x.DNG", "y.nef"] and ignored == 1
    with pytest.raises(InputFileError, match=r"notes\.txt: unknown RAW extension '\.txt'"):
        discover_raw_files([tmp_path / "a/b/notes.txt"])
    with pytest.raises(InputFileError, match="no such file or folder"):
        discover_raw_files([tmp_path / "missing"])


def test_no_raw_files(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(b"")
    with pytest.raises(ExpokitError, match=r"no RAW files found .*1 non-RAW files ignored"):
        render_batch([tmp_path / "in"], tmp_path / "out", RenderConfig(), progress=False)


def test_output_folder_is_a_file(chart_dng: Path, tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        render_batch([chart_dng], target, RenderConfig(), progress=False)


def test_disk_full_stops_the_batch_with_a_clear_message(
    small_raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import expokit.curation.rendering.render as render_module

    real_write = render_module.atomic_write_bytes
    calls = {"n": 0}

    def filling_disk(path: Path, data: bytes, durable: bool = True) -> None:
        calls["n"] += 1
        if calls["n"] > 7:
            full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise OutputError(f"disk full while writing {path}") from full
        real_write(path, data, durable)

    monkeypatch.setattr(render_module, "atomic_write_bytes", filling_disk)
    summary = render_batch([small_raw_dir], tmp_path / "o", RenderConfig(), progress=False)
    assert (
        summary.rendered == 1 and summary.aborted and "disk full while writing" in summary.aborted
    )
    assert len(summary.failures) == 1  # the batch stopped at the first full-disk failure
    frame = pd.read_parquet(summary.manifest_path)
    assert (frame["status"] == "failed").sum() == 1


def test_skip_when_done_redo_when_changed(small_raw_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    first = render_batch([small_raw_dir], out, RenderConfig(), progress=False)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}
    again = render_batch([small_raw_dir], out, RenderConfig(), progress=False)
    assert (again.rendered, again.skipped) == (0, 3)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")} == mtimes
    assert _hashes(out) == _hashes(first.out_dir)
    # A lost output of RAW 0, a touched RAW 1 and a corrupt record of RAW 2 cause exactly
    # one re-render each (output folders and records are named after the RAW, _ -> -).
    raws = sorted(small_raw_dir.iterdir())
    names = [r.stem.replace("_", "-") for r in raws]
    next((out / names[0]).glob("*.jpg")).unlink()
    raws[1].touch()
    (out / RECORDS_DIR / f"{names[2]}.json").write_text("{not json")
    redo = render_batch([small_raw_dir], out, RenderConfig(), progress=False)
    assert (redo.rendered, redo.skipped) == (3, 0)
    assert len(pd.read_parquet(out / "manifest.parquet")) == 15


def test_other_parameters_into_same_folder_are_refused(chart_dng: Path, tmp_path: Path) -> None:
    render_batch([chart_dng], tmp_path / "o", RenderConfig(), progress=False)
    with pytest.raises(ExpokitError, match="other parameters"):
        render_batch([chart_dng], tmp_path / "o", RenderConfig(jpeg_quality=80), progress=False)


def test_stale_temp_files_are_removed(chart_dng: Path, tmp_path: Path) -> None:
    from expokit.core.roots import claim_root

    out = claim_root(tmp_path / "o", "render")  # as the killed run left it
    (out / "chart").mkdir(parents=True)
    stale = out / "chart" / ".~expokit-deadbeef-chart_0.jpg"
    stale.write_bytes(b"partial")
    summary = render_batch([chart_dng], out, RenderConfig(), progress=False)
    assert summary.stale_temp_removed == 1 and not stale.exists()


@pytest.mark.slow
@pytest.mark.ray
def test_ray_executor_gives_identical_outputs(small_raw_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    local = render_batch([small_raw_dir], tmp_path / "local", RenderConfig(), progress=False)
    ray_run = render_batch(
        [small_raw_dir],
        tmp_path / "ray",
        RenderConfig(),
        executor="ray",
        workers=2,
        progress=False,
    )
    assert ray_run.ok and ray_run.rendered == 3
    assert _hashes(ray_run.out_dir) == _hashes(local.out_dir)
