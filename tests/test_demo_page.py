"""The demo page (expokit/demo_page.py): numbered sections, HTML tables, embedded figures,
and, where headless Chromium is installed, a screenshot that is neither blank nor short."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from expokit.core.images import read_image
from expokit.demo_page import (
    Section,
    evaluation_table,
    figure_html,
    links_list,
    training_curves_figure,
    write_page,
)

CHROMIUM = Path("/usr/bin/chromium")

SUMMARY = {
    "methods": {
        "uec": {"label": "uec (step 9)", "kind": "model", "peeking": False},
        "identity": {"label": "identity", "kind": "reference", "peeking": False},
        "gain": {"label": "global gain to reference", "kind": "reference", "peeking": False},
    },
    "splits": {
        "test": {
            "uec": {"all": {"psnr": 24.0, "ssim": 0.9}},
            "identity": {"all": {"psnr": 16.0, "ssim": 0.8}},
            "gain": {"all": {"psnr": 22.0, "ssim": 0.88}},
        }
    },
}


def _page(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "uec"
    run.mkdir(parents=True)
    rows = "\n".join(f"{s},{0.1 / s:.4f}" for s in range(1, 11))
    (run / "log.csv").write_text(f"step,loss\n{rows}\n", encoding="utf-8")
    curves = training_curves_figure({"uec": run}, tmp_path / "figures" / "curves.png")
    verdict = {"state": "ok", "delta_psnr": 2.0, "baseline": "gain"}
    sections = [
        Section("Evaluation", evaluation_table(SUMMARY, "test", verdict)),
        Section("Training", figure_html(curves, tmp_path) * 6),  # tall enough to measure
        Section("Files", links_list([("training", "uec run", run)], tmp_path)),
    ]
    return write_page(tmp_path, "expokit demo: all stages OK", sections)


def test_the_page_numbers_its_sections_and_embeds_its_figures(tmp_path: Path) -> None:
    page = _page(tmp_path).read_text(encoding="utf-8")
    assert re.findall(r"<h2>(\d+)\. ", page) == ["1", "2", "3"]
    assert "class='good'>clearly above baseline (+2.00 dB)" in page and "best fair baseline" in page
    sources = re.findall(r"<img src='([^']+)'", page)
    assert sources and all((tmp_path / s).is_file() for s in sources)
    assert "href='runs/uec'" in page


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="headless Chromium is not installed")
def test_the_page_renders_in_a_browser(tmp_path: Path) -> None:
    index = _page(tmp_path)
    shot = tmp_path / "shot.png"
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
               f"--screenshot={shot}", "--window-size=1280,4000", index.as_uri()]  # fmt: skip
    if shutil.which(command[0]) is None:
        pytest.skip("chromium is not runnable")
    subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert shot.is_file(), "chromium wrote no screenshot"
    image = read_image(shot)
    assert image.shape[0] >= 2000  # the window height asked for
    rows = np.flatnonzero((image.reshape(image.shape[0], -1) < 200).any(axis=1))
    assert rows.size and rows[-1] > 1500, "the page content is short"  # figures drawn, tall
    assert float(image.std()) > 10, "blank screenshot"
