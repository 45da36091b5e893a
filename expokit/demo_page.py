"""The demo's page: ``OUT/index.html`` and the figures it shows (``OUT/figures/*.png``).

:mod:`expokit.demo` runs the stages and calls the ``*_figure`` functions here as each stage's
outputs appear; :func:`write_page` then writes one self-contained page that *shows* the
results (HTML tables, embedded PNGs) in numbered sections, with the links to every report
and export kept as its last section. Figures are drawn with matplotlib's Agg backend (no
display needed); matplotlib and pandas are imported lazily (heavy, and only the demo needs
them).
"""

from __future__ import annotations

import csv
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from expokit.calibration.rig_calibration import read_rig_calibration
from expokit.calibration.sync_audio import xcorr
from expokit.calibration.warp import warp_test_to_reference
from expokit.core.images import read_image
from expokit.core.video_io import decode_audio

#: Folder of the page's figures, under the demo's output folder.
FIGURES = "figures"
#: Width (inches) of a full-width figure; at :data:`DPI` it fills the page's 1000 px column.
FULL_WIDTH = 10.0
DPI = 100


@dataclass(frozen=True)
class Figure:
    """One PNG of the page and the sentence under it."""

    path: Path
    caption: str


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def display_rgb(image: npt.NDArray[Any], linear: bool = False) -> npt.NDArray[np.float32]:
    """An image as read by :func:`expokit.core.images.read_image` (BGR or grey, any of
    uint8 / uint16 / float) as RGB float32 in [0, 1] for ``imshow``, shape (H, W, 3).

    ``linear``: the values are linear light; they get the sRGB curve so they look as a
    camera JPEG would."""
    if image.dtype == np.uint8:
        values = image.astype(np.float32) / 255.0
    elif image.dtype == np.uint16:
        values = image.astype(np.float32) / 65535.0
    else:
        values = image.astype(np.float32)
    if values.ndim == 2:
        values = np.repeat(values[..., None], 3, axis=2)
    rgb = np.clip(values[..., 2::-1], 0.0, 1.0)
    if linear:
        rgb = np.where(rgb <= 0.0031308, rgb * 12.92, 1.055 * rgb ** (1 / 2.4) - 0.055)
    return np.ascontiguousarray(rgb, dtype=np.float32)


def _grey(image: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """Mean of the channels of :func:`display_rgb` (H, W), in [0, 1]."""
    return display_rgb(image).mean(axis=2)


# ----------------------------------------------------------------------------- figures
def overlay_figure(reference: Path, test: Path, calibration: Path, path: Path) -> Figure:
    """The rig's still pair blended before and after calibration.

    The reference is drawn in red and the test camera in cyan (its exposure matched to the
    reference's by the median ratio, since it is shot darker): where the two agree the
    blend is grey, misregistration shows as colour fringes. Before: the raw test frame
    (mirrored, misregistered). After: the test frame warped by ``rig_calibration.json``.
    """
    plt = _pyplot()
    ref = _grey(read_image(reference))
    raw_test = read_image(test)
    warped, valid = warp_test_to_reference(raw_test, read_rig_calibration(calibration))
    tests = {"before calibration (raw test)": _grey(raw_test),
             "after calibration (test warped)": _grey(warped) * valid}  # fmt: skip
    fig, axes = plt.subplots(
        1, 3, figsize=(FULL_WIDTH, FULL_WIDTH * ref.shape[0] / ref.shape[1] / 3 + 0.6)
    )
    axes[0].imshow(ref, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("reference camera", fontsize=10)
    for axis, (title, other) in zip(axes[1:], tests.items(), strict=True):
        if other.shape != ref.shape:  # only the raw frame can differ in size
            other = np.resize(other, ref.shape)
        both = (ref > 0.02) & (other > 0.02)
        gain = float(np.median(ref[both] / other[both])) if both.any() else 1.0
        blend = np.stack([ref, np.clip(other * gain, 0, 1), np.clip(other * gain, 0, 1)], axis=2)
        axis.imshow(blend)
        axis.set_title(title, fontsize=10)
    for axis in axes:
        axis.axis("off")
    _save(fig, path)
    return Figure(path, "Reference (red) over test camera (cyan): colour fringes before the "
                  "calibration, grey where they agree after it.")  # fmt: skip


def sync_figure(
    reference_movie: Path, test_movie: Path, measured_s: float, truth_s: float, path: Path,
    rate: int = 8000, window_s: float = 1.0,
) -> Figure:  # fmt: skip
    """Cross-correlation of the two clips' sound against the offset, truth and measurement
    marked. The sound is decoded at ``rate`` Hz; offsets within ``window_s`` of 0 are shown
    (s, the ``sync.json`` convention: the test body's start offset)."""
    plt = _pyplot()
    ref = decode_audio(reference_movie, rate).astype(np.float64)
    test = decode_audio(test_movie, rate).astype(np.float64)
    span = round(window_s * rate)
    # xcorr peaks at lag k where test[n + k] matches ref[n]; sync.json's offset is that lag
    # in seconds (checked against the measured offset on the demo's clips).
    correlation = xcorr(ref - ref.mean(), test - test.mean(), -span, span)
    norm = math.sqrt(float(np.sum(ref**2)) * float(np.sum(test**2))) or 1.0
    offsets = np.arange(-span, span + 1) / rate
    fig, axis = plt.subplots(figsize=(FULL_WIDTH, 2.6))
    axis.plot(offsets, correlation / norm, lw=0.8, color="#333")
    axis.axvline(truth_s, color="#2a7", lw=3, alpha=0.6, label=f"truth {truth_s:+.4f} s")
    axis.axvline(measured_s, color="#c33", lw=1, ls="--", label=f"measured {measured_s:+.4f} s")
    axis.set_xlabel("test body's start offset (s)")
    axis.set_ylabel("normalised correlation")
    axis.legend(loc="upper left", fontsize=9)
    _save(fig, path)
    return Figure(path, "Audio cross-correlation of the reference and test clips: one sharp "
                  "peak, where the measured offset (dashed) meets the truth (green).")  # fmt: skip


def ev_ladder_figure(
    manifest: Path, ratios: Sequence[tuple[str, float, float]], path: Path
) -> Figure:
    """One RAW's renders at every EV in a strip, the measured EV (from the 16-bit linear
    TIFFs, :func:`expokit.demo.measured_ev_ratios`) under each rung."""
    import pandas as pd

    plt = _pyplot()
    frame = pd.read_parquet(manifest)
    jpegs = frame[(frame["status"] == "ok") & (frame["output_format"] == "jpg")]
    name = (
        "synthetic-chart" if "synthetic-chart" in set(jpegs["name"]) else str(jpegs["name"].iloc[0])
    )
    rungs = jpegs[jpegs["name"] == name].sort_values("ev")
    measured = {ev: m for n, ev, m in ratios if n == name}
    fig, axes = plt.subplots(1, len(rungs), figsize=(FULL_WIDTH, 2.4))
    for axis, (_, row) in zip(np.atleast_1d(axes), rungs.iterrows(), strict=True):
        axis.imshow(display_rgb(read_image(manifest.parent / str(row["output_path"]))))
        axis.set_title(f"EV {float(row['ev']):+g}", fontsize=10)
        value = measured.get(float(row["ev"]))
        text = "" if value is None else f"measured {value:+.3f} EV"
        axis.set_xlabel(text, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    _save(fig, path)
    return Figure(path, f"EV ladder of {name}.dng: the requested EV over each render, the "
                  "EV measured on its linear TIFF under it.")  # fmt: skip


def sample_pairs_figure(dataset: Path, path: Path, title: str, count: int = 4) -> Figure:
    """Input / target thumbnails of ``count`` pairs of a dataset, spread over its scenes."""
    import pandas as pd

    plt = _pyplot()
    frame = pd.read_parquet(dataset / "manifest.parquet")
    per_scene = [group for _, group in frame.groupby("scene_id", sort=True)]
    picked = []
    for index in range(count):  # round-robin over scenes, so every scene shows once first
        group = per_scene[index % len(per_scene)]
        position = (index // len(per_scene)) * max(1, len(group) // 3)
        if position < len(group):
            picked.append(group.iloc[position])
    linear = "lin" in str(frame["input_path"].iloc[0]) or "tif" in str(frame["input_path"].iloc[0])
    fig, axes = plt.subplots(2, len(picked), figsize=(FULL_WIDTH, 4.2), squeeze=False)
    for column, row in enumerate(picked):
        for line, (label, key) in enumerate((("input", "input_path"), ("target", "target_path"))):
            axis = axes[line][column]
            axis.imshow(display_rgb(read_image(dataset / str(row[key])), linear=linear))
            ev = row.get(f"{label}_ev")
            ev_text = "" if ev is None or pd.isna(ev) else f" EV {float(ev):+g}"
            axis.set_title(f"{label}{ev_text}", fontsize=9)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[1][column].set_xlabel(str(row["scene_id"])[-28:], fontsize=8)
    fig.suptitle(title, fontsize=11)
    _save(fig, path)
    return Figure(path, f"{title}: inputs (top) and their targets (bottom).")


def training_curves_figure(runs: dict[str, Path], path: Path) -> Figure:
    """Training loss and validation PSNR (with the fair baseline's) against the step, from
    each run's ``log.csv``."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(FULL_WIDTH, 3.0))
    for name, run in runs.items():
        with (run / "log.csv").open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        train = [(int(r["step"]), float(r["loss"])) for r in rows if r.get("loss")]
        val = [(int(r["step"]), float(r["val_psnr"]), r.get("val_baseline_psnr") or "")
               for r in rows if r.get("val_psnr")]  # fmt: skip
        if train:
            axes[0].plot(*zip(*train, strict=True), marker=".", label=name)
        if val:
            line = axes[1].plot([v[0] for v in val], [v[1] for v in val], marker="o",
                                label=f"{name} (val)")  # fmt: skip
            baseline = [(v[0], float(v[2])) for v in val if v[2]]
            if baseline:
                axes[1].plot(*zip(*baseline, strict=True), ls="--", color=line[0].get_color(),
                             label=f"{name}: fair baseline")  # fmt: skip
    axes[0].set_title("training loss", fontsize=10)
    axes[0].set_yscale("log")
    axes[1].set_title("validation PSNR (dB)", fontsize=10)
    for axis in axes:
        axis.set_xlabel("step")
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
        else:
            axis.text(
                0.5, 0.5, "no val split in these datasets", ha="center", transform=axis.transAxes
            )
    _save(fig, path)
    return Figure(path, "Loss and validation curves of the two short runs (log.csv).")


def triptych_figures(images: Path, figures: Path, name: str, count: int = 2) -> list[Figure]:
    """The first ``count`` input | output | target triptychs ``evaluate(images=...)`` wrote
    under ``images`` (its page lists the best pairs first), copied under ``figures``."""
    found = sorted(p for p in images.rglob("*.png") if p.is_file())
    shown = []
    for index, source in enumerate(found[:count]):
        target = figures / f"triptych_{name}_{index}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        shown.append(Figure(target, f"{name}: input | output | target ({source.stem})"))
    return shown


# ----------------------------------------------------------------------------- tables
def _cell(text: str, css: str = "") -> str:
    return f"<td class='{css}'>{html.escape(text)}</td>" if css else f"<td>{html.escape(text)}</td>"


def evaluation_table(summary: dict[str, Any], split: str, verdict: dict[str, Any]) -> str:
    """An evaluation summary's ``split`` as an HTML table: one row per method (PSNR, SSIM
    over all pairs), the model's row carrying its verdict (green ``clearly above baseline``,
    amber ``not clearly above``, red ``BELOW``) and the fair baseline's row marked; the
    verdict's evidence (better on k of n scenes) is in the model's text below the table."""
    scores = summary["splits"][split]
    rows = ["<table><tr><th>method</th><th>peeks</th><th>PSNR dB</th><th>SSIM</th>"
            "<th>against the best fair baseline</th></tr>"]  # fmt: skip
    for method, info in summary["methods"].items():
        score = scores.get(method, {}).get("all", {})
        psnr, ssim = score.get("psnr"), score.get("ssim")
        label = str(info.get("label", method))
        if info.get("kind") == "model":
            state = verdict["state"]
            marks = {"ok": ("clearly above baseline", "good"), "UNCLEAR": ("not clearly above",
                     "unclear")}  # fmt: skip
            mark = marks.get(state, (state, "bad"))
            delta = verdict.get("delta_psnr")
            note = f"{mark[0]} ({delta:+.2f} dB)" if delta is not None else mark[0]
            verdict_cell = _cell(note, mark[1])
        elif method == verdict.get("baseline"):
            verdict_cell = _cell("best fair baseline", "base")
        else:
            verdict_cell = _cell("")
        rows.append(
            f"<tr>{_cell(label)}{_cell('yes' if info.get('peeks') else 'no')}"
            f"{_cell('–' if psnr is None else f'{psnr:.2f}')}"
            f"{_cell('–' if ssim is None else f'{ssim:.3f}')}{verdict_cell}</tr>"
        )
    rows.append("</table>")
    return "".join(rows)


# ----------------------------------------------------------------------------- the page
STYLE = (
    "body{font:14px sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1em}td,th{padding:3px 10px;"
    "border-bottom:1px solid #ddd;text-align:left}th{background:#f3f3f3}"
    ".good{background:#d7f5dd;color:#075;font-weight:bold}"
    ".bad{background:#fbdada;color:#b00;font-weight:bold}"
    ".unclear{background:#fdf0cc;color:#850;font-weight:bold}.base{color:#555;font-style:italic}"
    "figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}"
    "figcaption{color:#555;font-size:13px}code{font-size:12px;color:#555}"
)


@dataclass(frozen=True)
class Section:
    """A numbered section of the page: its title and HTML body."""

    title: str
    body: str


def figure_html(figure: Figure, root: Path) -> str:
    src = html.escape(figure.path.relative_to(root).as_posix())
    return (f"<figure><img src='{src}' alt='{html.escape(figure.caption)}'>"
            f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>")  # fmt: skip


def stages_table(stages: Sequence[tuple[str, bool, str]]) -> str:
    rows = ["<table><tr><th>stage</th><th>result</th><th>figure</th></tr>"]
    for name, ok, text in stages:
        rows.append(f"<tr>{_cell(name)}{_cell('ok' if ok else 'PROBLEM', 'good' if ok else 'bad')}"
                    f"{_cell(text)}</tr>")  # fmt: skip
    rows.append("</table>")
    return "".join(rows)


def truth_table(checks: Sequence[Any], value: Any) -> str:
    """The :class:`expokit.curation.truth` checks as a table (``value`` formats a measured
    or true value)."""
    rows = ["<table><tr><th>check</th><th>measured</th><th>truth</th><th>tolerance</th>"
            "<th>result</th></tr>"]  # fmt: skip
    for c in checks:
        verdict = _cell("PASS", "good") if c.passed else _cell("FAIL", "bad")
        rows.append(f"<tr>{_cell(c.stage)}{_cell(value(c.measured))}{_cell(value(c.truth))}"
                    f"{_cell(c.tolerance)}{verdict}</tr>")  # fmt: skip
    rows.append("</table>")
    return "".join(rows)


def links_list(links: Sequence[tuple[str, str, Path]], root: Path) -> str:
    """The outputs as a list of links (a folder with an ``index.html`` links to it)."""

    def href(path: Path) -> str:
        target = path / "index.html" if (path / "index.html").is_file() else path
        text = (
            target.relative_to(root).as_posix()
            if target.is_relative_to(root)
            else target.as_posix()
        )
        return html.escape(text)

    parts, heading = [], None
    for section, label, path in links:
        if section != heading:
            parts.append(("</ul>" if heading else "") + f"<h3>{html.escape(section)}</h3><ul>")
            heading = section
        parts.append(f"<li><a href='{href(path)}'>{html.escape(label)}</a> "
                     f"<code>{html.escape(str(path))}</code></li>")  # fmt: skip
    parts.append("</ul>" if heading else "")
    return "".join(parts)


def write_page(root: Path, title: str, sections: Sequence[Section]) -> Path:
    """``root/index.html``: ``title`` and the sections numbered 1, 2, ... in order."""
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>expokit demo</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]  # fmt: skip
    for number, section in enumerate(sections, start=1):
        parts.append(f"<h2>{number}. {html.escape(section.title)}</h2>{section.body}")
    parts.append("</body></html>")
    index = root / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    return index
