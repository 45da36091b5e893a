"""The HTML QA report: self-contained, every referenced file exists, the table sorts."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import click
import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from expokit.cli.curate_tools import register
from expokit.curation.dataset import report as report_module
from expokit.curation.dataset.format import load_dataset
from expokit.curation.dataset.report import (
    THUMB_SIDE,
    ReportError,
    build_report,
    checkerboard,
    difference_map,
    gain_lut,
    histogram_figure,
    pair_label,
    select_thumbnails,
    thumb_size,
)
from tests.curation.conftest_tools import Spec, make_dataset

CHROMIUM = Path("/usr/bin/chromium")


class _Collector(HTMLParser):
    """Every URL an HTML page references, and its table rows."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self.ids: list[str] = []
        self.pair_rows = 0
        self.scripts_with_src = 0
        self._in_tbody = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        for key in ("src", "href"):
            if key in values:
                self.urls.append((tag, values[key]))
        if "id" in values:
            self.ids.append(values["id"])
        if tag == "script" and "src" in values:
            self.scripts_with_src += 1
        if tag == "tbody":
            self._in_tbody = True
        if tag == "tr" and self._in_tbody and "data-flagged" in values:
            self.pair_rows += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_tbody = False


def _parse(page: Path) -> _Collector:
    collector = _Collector()
    collector.feed(page.read_text(encoding="utf-8"))
    return collector


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report") / "ds"
    spec = Spec(size=(60, 90), shifts={"kitchen": 5})
    make_dataset(root, spec)
    return root


@pytest.fixture(scope="module")
def report(dataset_root: Path) -> Path:
    """The report made through the command line, as a person would."""
    group = click.Group("curate")
    register(group)
    result = CliRunner().invoke(
        group, ["report", str(dataset_root), "--per-page", "10", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    index = dataset_root / "report" / "index.html"
    assert f"report: {index}" in result.output
    return index


def test_every_referenced_file_exists_and_nothing_is_remote(report: Path) -> None:
    folder = report.parent
    pages = sorted(folder.glob("*.html"))
    assert report in pages and len(pages) == 1 + 4  # 34 pairs, 10 per page
    for page in pages:
        parsed = _parse(page)
        assert parsed.scripts_with_src == 0  # inline script only
        for tag, url in parsed.urls:
            parts = urlparse(url)
            assert parts.scheme in ("", "file"), f"{page.name} references {url} ({tag})"
            if not parts.path:
                continue  # an in-page anchor
            target = folder / unquote(parts.path)
            assert target.is_file(), f"{page.name}: <{tag}> {url} is missing"
            if parts.fragment and target.suffix == ".html":
                assert parts.fragment in _parse(target).ids, url
        text = page.read_text()
        assert "http://" not in text and "https://" not in text


def test_table_lists_every_pair_and_pages_hold_every_thumbnail(report: Path) -> None:
    folder = report.parent
    index = _parse(report)
    assert index.pair_rows == 34
    anchors = [
        i
        for page in sorted(folder.glob("pairs-*.html"))
        for i in _parse(page).ids
        if re.fullmatch(r"p\d{5}", i)
    ]
    assert len(anchors) == len(set(anchors)) == 34
    thumbs = sorted((folder / "thumbs").iterdir())
    assert len(thumbs) == 4 * 34
    for thumb in thumbs[:8]:
        image = cv2.imread(str(thumb))
        assert thumb.suffix == ".jpg" and image is not None
        assert max(image.shape[:2]) <= THUMB_SIDE


def test_figures_cover_the_required_metrics(report: Path) -> None:
    figures = {p.name for p in (report.parent / "fig").iterdir()}
    for metric in (
        "psnr_db",
        "ssim",
        "alignment_residual_px",
        "photometric_gain",
        "clipped_dark_input",
        "clipped_bright_input",
        "clipped_dark_target",
        "clipped_bright_target",
    ):
        assert f"hist-{metric}.png" in figures
    assert "ev.png" in figures
    assert "clips-01.png" in figures  # per-clip luminance over time
    for name in figures:
        assert cv2.imread(str(report.parent / "fig" / name)) is not None
    html = report.read_text()
    assert "low_psnr" in html and "misaligned" in html  # flags in the summary table
    assert "street / c01" not in html  # clip labels live in the PNG, not as text


def test_thumbnails_show_misalignment(report: Path, dataset_root: Path) -> None:
    """The heat map of a shifted pair is brighter than the one of an aligned pair."""
    html = report.read_text()
    ids = re.findall(r'<td class="id" data-v="([^"]+)"', html)
    thumbs = re.findall(
        r'<td class="thumb">(?:<a href="[^"]+"><img loading="lazy" '
        r'src="thumbs/(\d{5})_in.jpg")?',
        html,
    )
    position = dict(zip(ids, thumbs, strict=True))
    shifted = cv2.imread(str(report.parent / f"thumbs/{position['kitchen/ev+0.0']}_diff.jpg"))
    aligned = cv2.imread(str(report.parent / f"thumbs/{position['lab.x/ev+0.0']}_diff.jpg"))
    assert shifted.mean() > aligned.mean() + 10


def test_headless_chromium_renders_and_sorts(report: Path, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("chromium not installed (apt-get install chromium)")
    url = report.as_uri() + "#sort=psnr_db:desc"
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-extensions",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=3000",
        "--dump-dom",
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    dom = result.stdout
    assert result.returncode == 0 and "</html>" in dom, result.stderr[-2000:]
    assert 'data-table-ready="1"' in dom  # the inline script ran without error
    assert 'aria-sort="descending"' in dom
    from expokit.curation.dataset.format import load_dataset

    psnr = load_dataset(report.parent.parent).manifest.set_index("pair_id")["psnr_db"]
    order = re.findall(r'<td class="id" data-v="([^"]+)"', dom)
    assert sorted(order) == sorted(psnr.index)
    values = [float(psnr[pair_id]) for pair_id in order]
    assert values == sorted(values, reverse=True)
    assert "34 of 34 pairs shown" in dom


def test_cli_errors(tmp_path: Path) -> None:
    group = click.Group("curate")
    register(group)
    missing = CliRunner().invoke(group, ["report", str(tmp_path), "--no-progress"])
    assert missing.exit_code == 1 and "not an expokit dataset" in missing.output


def test_select_thumbnails_prefers_flagged_rows(dataset_root: Path) -> None:
    from expokit.curation.dataset.format import load_dataset

    frame = load_dataset(dataset_root).manifest
    flagged = [i for i, f in enumerate(frame["qa_flags"]) if f]
    assert len(flagged) > 5
    chosen = select_thumbnails(frame, 10)
    assert len(chosen) == 10 and chosen == sorted(set(chosen))
    # half the budget goes to the flagged rows with the lowest PSNR (ties: by pair_id)
    worst = sorted(flagged, key=lambda i: (frame["psnr_db"].iloc[i], frame["pair_id"].iloc[i]))
    worst = worst[:5]
    assert set(worst) <= set(chosen)
    assert select_thumbnails(frame, 100) == list(range(34))
    assert select_thumbnails(frame, 0) == []


def test_unreadable_images_and_output_folder_rules(dataset_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    shutil.copytree(dataset_root, root, ignore=shutil.ignore_patterns("report"))
    (root / "images" / "street" / "c01_00002_input.png").unlink()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("x")
    with pytest.raises(ReportError, match="not an expokit report folder"):
        build_report(root, foreign, progress=False)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    # a missing image does not stop the report; the row says so
    out = tmp_path / "rep"
    index = build_report(root, out, per_page=5, progress=False)
    html = index.read_text()
    assert "1 pair(s) have images the report could not read" in html
    assert 'title="cannot read c01_00002_input.png">unreadable' in html
    assert _parse(index).pair_rows == 34
    assert len(list(out.glob("pairs-*.html"))) == 7  # 33 pairs with thumbnails, 5 per page
    # a second report into the same folder replaces the first: no stale pages or thumbnails;
    # with thumbnails capped, the table still lists every pair
    index = build_report(root, out, max_thumbnails=3, progress=False)
    assert len(list(out.glob("pairs-*.html"))) == 1
    assert len(list((out / "thumbs").iterdir())) == 12
    assert _parse(index).pair_rows == 34
    assert index.read_text().count('<span class="muted">–</span></td>') == 34 - 3


def test_importing_the_report_module_has_no_side_effects() -> None:
    code = (
        "import sys, expokit.curation.dataset.report, expokit.cli.curate_tools; "
        "print('matplotlib' in sys.modules, 'jinja2' in sys.modules, 'cv2' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False", "False"]


def test_image_helpers() -> None:
    a = np.zeros((20, 40, 3), np.uint8)
    b = np.full((20, 40, 3), 200, np.uint8)
    board = checkerboard(a, b, squares=4)
    assert board[0, 0].tolist() == [0, 0, 0] and board[0, 10].tolist() == [200, 200, 200]
    assert board[10, 0].tolist() == [200, 200, 200]
    same = difference_map(b, b, None)
    far = difference_map(a, b, None)
    assert same.mean() < far.mean()
    mask = np.zeros((20, 40), bool)
    mask[5:15, 5:35] = True
    masked = difference_map(a, b, mask)
    assert masked[0, 0].tolist() == [96, 96, 96]
    identity = gain_lut(1.0)
    assert np.abs(identity.astype(int) - np.arange(256)).max() <= 1
    brighter = gain_lut(2.0)
    assert (brighter.astype(int) >= identity.astype(int)).all() and brighter[128] > 170
    assert thumb_size(4000, 3000) == (256, 192) and thumb_size(90, 60) == (90, 60)


@pytest.mark.parametrize("end", ["right", "left"])
def test_threshold_labels_lie_inside_the_figure(
    dataset_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, end: str
) -> None:
    """A threshold at either end of the axis keeps its label (all text) inside the figure."""
    from dataclasses import replace

    dataset = load_dataset(dataset_root)
    frame = dataset.manifest
    metrics = {"psnr_db": "min_psnr_db", "alignment_residual_px": "max_residual_px"}
    pick = max if end == "right" else min
    thresholds: dict[str, float | None] = {
        key: float(pick(frame[metric])) for metric, key in metrics.items()
    }
    info = replace(dataset.info, qa_thresholds=thresholds)
    drawn: list[Figure] = []
    save = report_module._save

    def keep_and_save(figure: Figure, path: Path) -> None:
        drawn.append(figure)
        save(figure, path)

    monkeypatch.setattr(report_module, "_save", keep_and_save)
    for metric in metrics:
        path = tmp_path / f"hist-{metric}.png"
        assert histogram_figure(frame, metric, metric, info, path) is None
        assert cv2.imread(str(path)) is not None
    assert len(drawn) == len(metrics)
    for figure in drawn:
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
        texts = [t for t in figure.findobj(Text) if t.get_visible() and t.get_text()]
        labels = [t for t in texts if t.get_text().startswith(("min ", "max "))]
        assert len(labels) == 1
        extent, box = labels[0].get_window_extent(), figure.bbox  # pixels
        inside = (
            extent.x0 >= box.x0
            and extent.x1 <= box.x1
            and extent.y0 >= box.y0
            and extent.y1 <= box.y1
        )
        assert inside, f"{labels[0].get_text()!r} at {extent} leaves the figure {box}"
        # Everything drawn (tick and axis labels too; ticks past the view limits are not),
        # in inches: within the figure, so nothing in the PNG is cut at an edge.
        drawn_box = figure.get_tightbbox(canvas.get_renderer())
        width, height = figure.get_size_inches()
        assert drawn_box.x0 >= 0 and drawn_box.y0 >= 0, drawn_box
        assert drawn_box.x1 <= width and drawn_box.y1 <= height, drawn_box


def test_pair_labels_do_not_repeat_scene_and_clip(report: Path) -> None:
    html = report.read_text()
    cells = dict(re.findall(r'<td class="id" data-v="([^"]+)" title="[^"]+">([^<]*)</td>', html))
    assert len(cells) == 34
    assert cells["street/c01/00002"] == "00002"  # the clip column beside it says c01
    assert cells["kitchen/ev+0.0"] == "ev+0.0"  # a still: no clip
    for pair_id, shown in cells.items():
        scene = pair_id.split("/")[0]
        assert not shown.startswith(f"{scene}/") and "c01/" not in shown and shown
    assert pair_label("park/c01/000004", "park", "c01") == "000004"
    assert pair_label("kitchen/-/r1_ev-1", "kitchen", None) == "r1_ev-1"
    assert pair_label("odd-id", "kitchen", None) == "odd-id"
    assert pair_label("a/b", "x", "b") == "a/b"  # only a leading scene/clip is dropped
