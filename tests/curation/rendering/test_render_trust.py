"""Issue 9 for renders: the --out folder is a claimed, locked root; names and writes stay in it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result

from expokit.cli import cli
from expokit.core.errors import OutputError
from expokit.core.lock import RootInUseError, RootLock
from expokit.core.paths import is_safe_name
from expokit.core.roots import MARKER_FILE, claim_root, root_kind
from expokit.core.runs import RECORDS_DIR
from expokit.curation.rendering.config import RenderConfig
from expokit.curation.rendering.render import render_batch

ONE_EV = RenderConfig(evs=(0.0,))


def _render_cli(raw: Path, out: Path) -> Result:
    return CliRunner().invoke(
        cli, ["render", str(raw), "--out", str(out), "--ev", "0", "--no-progress"]
    )


def test_foreign_manifest_in_out_is_refused_and_unchanged(chart_dng: Path, tmp_path: Path) -> None:
    out = tmp_path / "theirs"
    out.mkdir()
    manifest = out / "manifest.parquet"
    manifest.write_bytes(b"someone else's manifest")
    result = _render_cli(chart_dng, out)
    assert result.exit_code == 1
    assert "not empty and was not made by expokit (it holds manifest.parquet)" in (result.output)
    assert manifest.read_bytes() == b"someone else's manifest"
    assert sorted(p.name for p in out.iterdir()) == ["manifest.parquet"]  # nothing written


def test_other_kind_of_root_is_refused(chart_dng: Path, tmp_path: Path) -> None:
    dataset = claim_root(tmp_path / "ds", "dataset")
    with pytest.raises(OutputError, match="is an expokit dataset folder, not a render folder"):
        render_batch([chart_dng], dataset, ONE_EV, progress=False)
    assert not (dataset / "manifest.parquet").exists()


def test_earlier_render_folder_is_reused_and_legacy_one_adopted(
    chart_dng: Path, tmp_path: Path
) -> None:
    out = tmp_path / "o"
    first = render_batch([chart_dng], out, ONE_EV, progress=False)
    assert first.rendered == 1 and root_kind(out) == "render"
    again = render_batch([chart_dng], out, ONE_EV, progress=False)
    assert again.ok and again.skipped == 1 and again.rendered == 0
    (out / MARKER_FILE).unlink()  # as a render folder written before markers existed
    legacy = render_batch([chart_dng], out, ONE_EV, progress=False)
    assert legacy.ok and legacy.skipped == 1 and root_kind(out) == "render"


def test_second_render_into_a_locked_folder_is_refused(chart_dng: Path, tmp_path: Path) -> None:
    out = claim_root(tmp_path / "o", "render")
    with RootLock(out, "expokit render"):
        with pytest.raises(RootInUseError, match=f"in use by pid {os.getpid()} \\(expokit render"):
            render_batch([chart_dng], out, ONE_EV, progress=False)
        result = _render_cli(chart_dng, out)
        assert result.exit_code == 1 and "in use by pid" in result.output
    assert not (out / "manifest.parquet").exists()
    assert render_batch([chart_dng], out, ONE_EV, progress=False).ok  # released


def test_output_names_from_odd_raw_names_stay_safe_and_inside(
    chart_dng: Path, tmp_path: Path
) -> None:
    raws = tmp_path / "odd"
    raws.mkdir()
    for name in ("-..a b$c;(1).dng", "(..).dng", "x%2F..%2Fy.DNG"):
        shutil.copy(chart_dng, raws / name)
    out = tmp_path / "o"
    summary = render_batch([raws], out, ONE_EV, progress=False)
    assert summary.ok and summary.rendered == 3
    frame = pd.read_parquet(summary.manifest_path)
    for rel in frame["output_path"]:
        assert all(is_safe_name(part) for part in rel.split("/")), rel
        assert (out / rel).resolve().is_relative_to(out.resolve())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "odd", "raws"]


def test_crafted_record_path_is_never_trusted(chart_dng: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    render_batch([chart_dng], out, ONE_EV, progress=False)
    victim = tmp_path / "victim.jpg"
    victim.write_bytes(b"keep me")
    record_file = out / RECORDS_DIR / "chart.json"
    record = json.loads(record_file.read_text())
    record["rows"][0]["output_path"] = "../victim.jpg"
    record_file.write_text(json.dumps(record))
    summary = render_batch([chart_dng], out, ONE_EV, progress=False)
    assert summary.ok and summary.rendered == 1 and summary.skipped == 0  # redone, not trusted
    assert victim.read_bytes() == b"keep me"
    assert list(pd.read_parquet(summary.manifest_path)["output_path"]) == ["chart/chart_0.jpg"]


def test_symlinked_output_folder_is_not_written_through(chart_dng: Path, tmp_path: Path) -> None:
    out = claim_root(tmp_path / "o", "render")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "chart").symlink_to(elsewhere, target_is_directory=True)
    summary = render_batch([chart_dng], out, ONE_EV, progress=False)
    assert not summary.ok
    ((raw, error),) = summary.failures
    assert raw == str(chart_dng.resolve()) and "outside" in error
    assert list(elsewhere.iterdir()) == []
