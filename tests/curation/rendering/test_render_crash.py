"""A render killed with SIGKILL resumes with no partial, missing or duplicate outputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from expokit.core.atomic import TEMP_PREFIX
from expokit.core.hashing import sha256_file
from expokit.core.images import read_image
from expokit.core.runs import RECORDS_DIR, record_files
from expokit.core.synthetic import demo_scene, write_dng

N_RAWS = 10
ARGS = ["--ev=-1.5,-1,0,1,1.5", "-f", "jpg", "-f", "png16", "--no-progress"]


def _render_cmd(raws: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "expokit.cli", "render", str(raws), "--out", str(out), *ARGS]


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_batch_then_resume(tmp_path: Path) -> None:
    raws = tmp_path / "raws"
    raws.mkdir()
    for i in range(N_RAWS):
        write_dng(raws / f"r{i:02d}.dng", demo_scene("texture", 300, 450, seed=i), seed=i)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        _render_cmd(raws, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    records = out / RECORDS_DIR
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if records.is_dir() and len(record_files(records)) >= 3:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the render finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(record_files(records))
    assert 3 <= done_before < N_RAWS
    assert not (out / "manifest.parquet").exists()  # only written at the end of a run

    resumed = subprocess.run(
        _render_cmd(raws, out), env=env, capture_output=True, text=True, check=False
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"skipped {done_before} already done" in resumed.stdout

    reference = tmp_path / "reference"
    clean = subprocess.run(_render_cmd(raws, reference), env=env, capture_output=True, check=False)
    assert clean.returncode == 0

    frame = pd.read_parquet(out / "manifest.parquet")
    assert len(frame) == N_RAWS * 5 * 2 and frame["output_path"].is_unique
    assert set(frame["status"]) == {"ok"}
    files = sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and p.suffix in (".jpg", ".png")
    )
    assert files == sorted(frame["output_path"])  # nothing extra, nothing missing
    assert not list(out.rglob(f"{TEMP_PREFIX}*"))
    ref = pd.read_parquet(reference / "manifest.parquet")
    assert dict(zip(frame["output_path"], frame["output_sha256"], strict=True)) == dict(
        zip(ref["output_path"], ref["output_sha256"], strict=True)
    )
    for rel, digest in zip(frame["output_path"], frame["output_sha256"], strict=True):
        assert sha256_file(out / rel) == digest
        assert read_image(out / rel).shape[:2] == (300, 450)  # decodes: no partial file
