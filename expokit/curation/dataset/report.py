"""The QA report: a self-contained HTML folder to look at a dataset rather than read it.

``build_report(ROOT)`` writes ``ROOT/report/`` (or ``out``):

``index.html``
    Summary counts per split and flag, EV and QA-metric histograms (stacked by split, QA
    thresholds as dashed lines), per-clip luminance-over-time plots, and a sortable,
    filterable table of every pair (small inline script, nothing fetched from the network).
``pairs-NNN.html``
    Pages of per-pair thumbnails, worst first (flagged, then lowest PSNR): input as stored,
    target, a checkerboard blend of input×gain and target, and a |input×gain − target| heat
    map. ``input×gain`` applies the pair's stored linear ``photometric_gain`` so alignment
    and content differences show rather than the exposure difference.
``fig/*.png``, ``thumbs/*.jpg``
    matplotlib figures (Agg) and 256-pixel JPEG thumbnails.

Thumbnails are capped (``max_thumbnails``, worst pairs and an even sample first); the table
always lists every pair. Large JPEGs are decoded at reduced size (libjpeg DCT scaling), so
cost per pair hardly depends on the image size.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from expokit import __version__
from expokit.core.atomic import atomic_write_text
from expokit.core.errors import ExpokitError, OutputError
from expokit.core.lock import RootLock
from expokit.core.paths import (
    TRACKED_ROOT_FOLDERS,
    PathEscapeError,
    find_root_above,
    resolve_inside,
    symlinks_leaving,
)
from expokit.core.progress import show_progress
from expokit.core.roots import STATE_DIR
from expokit.core.transfer import LUMA_RGB, srgb_decode, srgb_encode
from expokit.curation.dataset.card import (
    CLIP_METRICS,
    QA_METRICS,
    ev_distribution,
    exposure_axis_label,
    flag_counts,
    split_counts,
    uses_ranks,
)
from expokit.curation.dataset.flags import flag_list
from expokit.curation.dataset.format import (
    Dataset,
    DatasetInfo,
    check_not_being_written,
    load_dataset,
)
from expokit.curation.dataset.selection import selection_counts

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

REPORT_DIR = "report"
MARKER = ".expokit-report"
THUMB_SIDE = 256
THUMB_QUALITY = 85
DEFAULT_MAX_THUMBNAILS = 1000
DEFAULT_PER_PAGE = 48
MAX_CLIP_PLOTS = 48
CLIPS_PER_FIGURE = 12
#: |difference| of 8-bit code values mapped to the full colour scale of the heat map.
DIFF_SCALE = 64

SPLIT_COLOURS = {"train": "#4c72b0", "val": "#dd8452", "test": "#55a868"}
OTHER_COLOUR = "#8c8c8c"

#: metric -> (threshold key in info.json's qa_thresholds, "min" or "max")
THRESHOLD_KEYS: dict[str, tuple[str, str]] = {
    "psnr_db": ("min_psnr_db", "min"),
    "ssim": ("min_ssim", "min"),
    "alignment_residual_px": ("max_residual_px", "max"),
    "ecc_correlation": ("min_ecc_correlation", "min"),
    "clipped_dark_input": ("max_clipped_input", "max"),
    "clipped_bright_input": ("max_clipped_input", "max"),
    "clipped_dark_target": ("max_clipped_target", "max"),
    "clipped_bright_target": ("max_clipped_target", "max"),
    "usable_fraction": ("min_usable_fraction", "min"),
    "focus_ratio": ("min_focus_ratio", "min"),
    "gain_instability_ev": ("max_gain_instability_ev", "max"),
    "target_flicker": ("max_target_flicker", "max"),
}

#: Table columns: (manifest column or derived key, header, kind, format)
TABLE_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("pair_id", "pair", "text", ""),
    ("scene_id", "scene", "text", ""),
    ("clip_id", "clip", "text", ""),
    ("frame_index", "frame", "num", "d"),
    ("split", "split", "text", ""),
    ("input_ev", "EV in", "num", "+.2f"),
    ("target_ev", "EV tgt", "num", "+.2f"),
    ("relative_ev", "ΔEV", "num", "+.2f"),
    ("psnr_db", "PSNR", "num", ".1f"),
    ("ssim", "SSIM", "num", ".3f"),
    ("alignment_residual_px", "resid. px", "num", ".2f"),
    ("photometric_gain", "gain", "num", ".3g"),
    ("ecc_correlation", "ECC", "num", ".3f"),
    ("clipped_dark_input", "dark in", "num", "%"),
    ("clipped_bright_input", "bright in", "num", "%"),
    ("clipped_dark_target", "dark tgt", "num", "%"),
    ("clipped_bright_target", "bright tgt", "num", "%"),
    ("qa_flags", "flags", "text", ""),
)
#: Headers of the exposure columns when some EVs are exposure ranks (``ev_basis: rank``).
RANK_HEADERS = {"input_ev": "rank in", "target_ev": "rank tgt", "relative_ev": "Δrank"}


class ReportError(ExpokitError):
    """The report cannot be written (missing libraries, unusable output folder)."""


# --------------------------------------------------------------------------- images


def _srgb_decode_lut() -> npt.NDArray[np.float64]:
    return srgb_decode(np.arange(256) / 255.0)


def gain_lut(gain: float) -> npt.NDArray[np.uint8]:
    """8-bit sRGB -> 8-bit sRGB lookup table multiplying linear light by ``gain``."""
    linear = _srgb_decode_lut() * gain
    return np.asarray(np.round(srgb_encode(linear) * 255.0), dtype=np.uint8)


def _reduction(width: int | None, height: int | None) -> int:
    """Largest libjpeg reduction (1, 2, 4, 8) keeping the long side >= THUMB_SIDE."""
    if not width or not height:
        return 1
    long_side = max(width, height)
    for factor in (8, 4, 2):
        if long_side // factor >= THUMB_SIDE:
            return factor
    return 1


_REDUCED_COLOUR = {
    1: "IMREAD_COLOR",
    2: "IMREAD_REDUCED_COLOR_2",
    4: "IMREAD_REDUCED_COLOR_4",
    8: "IMREAD_REDUCED_COLOR_8",
}
_REDUCED_GREY = {
    1: "IMREAD_GRAYSCALE",
    2: "IMREAD_REDUCED_GRAYSCALE_2",
    4: "IMREAD_REDUCED_GRAYSCALE_4",
    8: "IMREAD_REDUCED_GRAYSCALE_8",
}


@functools.lru_cache(maxsize=64)
def _read_small(path: Path | None, factor: int, grey: bool = False) -> npt.NDArray[np.uint8] | None:
    """8-bit BGR (or grey) image decoded at 1/``factor`` size; None if unreadable.

    Cached (read-only arrays): the rows of a still scene share one target and often one
    mask, and tasks arrive in row order.
    """
    import cv2

    if path is None or not path.is_file():
        return None
    flag = getattr(cv2, (_REDUCED_GREY if grey else _REDUCED_COLOUR)[factor])
    image = cv2.imread(str(path), flag)
    if image is None:
        return None
    array = np.asarray(image)
    array.flags.writeable = False
    return array


def _fit(image: npt.NDArray[np.uint8], size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    import cv2

    if image.shape[1] == size[0] and image.shape[0] == size[1]:
        return image
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))


def thumb_size(width: int, height: int, side: int = THUMB_SIDE) -> tuple[int, int]:
    """(w, h) with the long side ``side`` (never enlarged) and the aspect ratio kept."""
    scale = min(1.0, side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def checkerboard(
    a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8], squares: int = 8
) -> npt.NDArray[np.uint8]:
    """``a`` and ``b`` in alternating squares (``squares`` along the long side)."""
    import cv2

    height, width = a.shape[:2]
    cell = max(4, math.ceil(max(height, width) / squares))
    pick = (np.arange(height)[:, None] // cell + np.arange(width)[None, :] // cell) % 2
    out = a.copy()
    cv2.copyTo(b, pick.astype(np.uint8), out)
    return out


@functools.lru_cache(maxsize=1)
def _inferno() -> npt.NDArray[np.uint8]:
    """OpenCV's inferno colour map as a (1, 256, 3) BGR table for ``cv2.LUT``.

    ``applyColorMap`` rebuilds its table on every call, which costs more than the mapping.
    """
    import cv2

    ramp = np.arange(256, dtype=np.uint8).reshape(1, 256)
    table = np.asarray(cv2.applyColorMap(ramp, cv2.COLORMAP_INFERNO), dtype=np.uint8)
    table.flags.writeable = False
    return table


def difference_map(
    a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8], mask: npt.NDArray[np.bool_] | None
) -> npt.NDArray[np.uint8]:
    """|a − b| (mean over channels) as an inferno heat map; 0..DIFF_SCALE codes = full scale.

    Pixels outside ``mask`` are drawn flat grey so invalid borders do not read as error.
    """
    import cv2

    diff = np.asarray(cv2.absdiff(a, b))
    if diff.ndim == 3:
        diff = np.asarray(cv2.transform(diff, np.full((1, diff.shape[2]), 1.0 / diff.shape[2])))
    # mean |difference| of DIFF_SCALE codes -> 255 (saturating)
    scaled = np.asarray(cv2.convertScaleAbs(diff, alpha=255.0 / DIFF_SCALE))
    heat = np.asarray(cv2.LUT(cv2.merge([scaled, scaled, scaled]), _inferno()), dtype=np.uint8)
    if mask is not None:
        heat[~mask] = (96, 96, 96)
    return heat


#: Rec. 709 luma weights in OpenCV's B, G, R order.
_REC709_BGR = LUMA_RGB[::-1]


def _channel_histograms(
    image: npt.NDArray[np.uint8], mask: npt.NDArray[np.bool_] | None
) -> npt.NDArray[np.float64]:
    """(3, 256) code-value histograms of a BGR image inside ``mask`` (all pixels if empty)."""
    import cv2

    use = None if mask is None or not mask.any() else mask.astype(np.uint8)
    return np.stack(
        [np.asarray(cv2.calcHist([image], [c], use, [256], [0, 256])).ravel() for c in range(3)]
    ).astype(np.float64)


def _mean_luminance(histograms: npt.NDArray[np.float64], decode: npt.NDArray[np.float64]) -> float:
    """Mean linear Rec. 709 luminance from channel histograms and a code -> linear table.

    Luminance is linear in the channels, so its mean is the weighted mean of the channels'
    linear means: a 256-entry dot product per channel instead of a per-pixel gather.
    """
    count = histograms[0].sum()
    if count == 0:
        return math.nan
    return float(_REC709_BGR @ (histograms @ decode) / count)


@dataclass
class _Task:
    position: int
    input_path: Path | None
    target_path: Path | None
    mask_path: Path | None
    width: int | None
    height: int | None
    gain: float | None
    thumbs: bool
    out_dir: Path
    #: Why the pair's images are not read at all (a link leaving the dataset).
    refused: str | None = None


@dataclass
class _Visual:
    position: int
    thumbs: dict[str, str] = field(default_factory=dict)
    thumb_size: tuple[int, int] | None = None
    lum_input: float | None = None
    lum_input_gain: float | None = None
    lum_target: float | None = None
    gain_used: float | None = None
    problem: str | None = None


def _make_visual(task: _Task, decode: npt.NDArray[np.float64]) -> _Visual:
    """Thumbnails (if asked) and mean luminances of one pair; never raises for bad files."""
    import cv2

    visual = _Visual(task.position)
    if task.refused:
        visual.problem = task.refused
        return visual
    factor = _reduction(task.width, task.height)
    source = _read_small(task.input_path, factor)
    target = _read_small(task.target_path, factor)
    missing = [
        p.name if p is not None else f"(no {role} path)"
        for role, p, im in (
            ("input", task.input_path, source),
            ("target", task.target_path, target),
        )
        if im is None
    ]
    if source is None or target is None:
        visual.problem = f"cannot read {', '.join(missing)}"
        return visual
    size = thumb_size(target.shape[1], target.shape[0])
    source, target = _fit(source, size), _fit(target, size)
    mask = None
    if task.mask_path is not None:
        grey = _read_small(task.mask_path, factor, grey=True)
        if grey is not None:
            mask = _fit(grey, size) >= 128
    hist_source = _channel_histograms(source, mask)
    hist_target = _channel_histograms(target, mask)
    visual.lum_input = _mean_luminance(hist_source, decode)
    visual.lum_target = _mean_luminance(hist_target, decode)
    gain = task.gain
    if gain is None or not math.isfinite(gain) or gain <= 0:
        # No stored gain: the ratio of mean linear luminances is a fair stand-in for a look.
        gain = visual.lum_target / visual.lum_input if visual.lum_input > 0 else 1.0
    visual.gain_used = gain
    lut = gain_lut(gain)
    normalised = np.asarray(cv2.LUT(source, lut), dtype=np.uint8)
    visual.lum_input_gain = _mean_luminance(hist_source, decode[lut])
    if task.thumbs:
        visual.thumb_size = size
        images = {
            "in": source,
            "gt": target,
            "cb": checkerboard(normalised, target),
            "diff": difference_map(normalised, target, mask),
        }
        for kind, image in images.items():
            rel = f"thumbs/{task.position:05d}_{kind}.jpg"
            # imwrite encodes and writes in C++ without the GIL, unlike imencode + write.
            # It follows links, so the path is resolved inside the report folder first.
            if not cv2.imwrite(
                str(resolve_inside(task.out_dir, rel, what="thumbnail")),
                image,
                [cv2.IMWRITE_JPEG_QUALITY, THUMB_QUALITY],
            ):
                visual.problem = f"cannot write the {kind} thumbnail"
                continue
            visual.thumbs[kind] = rel
    return visual


def select_thumbnails(frame: pd.DataFrame, limit: int) -> list[int]:
    """Positions of the rows that get thumbnails: all if they fit, else the flagged and
    lowest-PSNR rows first, then an even sample of the rest (sorted by position)."""
    count = len(frame)
    if limit >= count:
        return list(range(count))
    if limit <= 0:
        return []
    order = _worst_first(frame)
    flagged = [p for p in order if flag_list(frame["qa_flags"].iloc[p])]
    chosen = set(flagged[: limit // 2])
    rest = [p for p in range(count) if p not in chosen]
    step = len(rest) / max(1, limit - len(chosen))
    chosen.update(rest[int(i * step)] for i in range(limit - len(chosen)))
    return sorted(chosen)


def _worst_first(frame: pd.DataFrame) -> list[int]:
    """Row positions: flagged first, then by PSNR ascending (unknown PSNR last), then id."""
    flagged = [bool(flag_list(v)) for v in frame["qa_flags"].tolist()]
    psnr = [math.inf if v is None or _nan(v) else float(v) for v in _values(frame["psnr_db"])]
    ids = frame["pair_id"].astype(str).tolist()
    return sorted(range(len(frame)), key=lambda p: (not flagged[p], psnr[p], ids[p]))


def _values(series: pd.Series[Any]) -> list[Any]:
    import pandas as pd

    return [None if pd.isna(v) else v for v in series.tolist()]


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


# --------------------------------------------------------------------------- figures


def _colour(split: str) -> str:
    return SPLIT_COLOURS.get(split, OTHER_COLOUR)


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110)


def _margins(
    figure: Figure,
    left: float = 0.55,
    bottom: float = 0.42,
    right: float = 0.12,
    top: float = 0.12,
    wspace: float = 0.3,
    hspace: float = 0.6,
) -> None:
    """Fixed margins in inches: a layout engine would cost a second full draw per figure."""
    width, height = figure.get_size_inches()
    figure.subplots_adjust(
        left=left / width,
        bottom=bottom / height,
        right=1 - right / width,
        top=1 - top / height,
        wspace=wspace,
        hspace=hspace,
    )


def _style(ax: Axes) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=8)


def _save(figure: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Light PNG compression: these figures are small and written on every report.
    figure.savefig(path, format="png", facecolor="white", pil_kwargs={"compress_level": 3})


def _split_order(names: Sequence[str]) -> list[str]:
    known = {"train": 0, "val": 1, "test": 2}
    return sorted(names, key=lambda n: (known.get(n, 3), n))


def _threshold(info: DatasetInfo, metric: str) -> tuple[float, str] | None:
    thresholds = info.qa_thresholds or {}
    if not isinstance(thresholds, dict):
        return None
    candidates = []
    if metric in THRESHOLD_KEYS:
        candidates.append(THRESHOLD_KEYS[metric])
    candidates += [
        (f"min_{metric}", "min"),
        (f"max_{metric}", "max"),
        (f"{metric}_min", "min"),
        (f"{metric}_max", "max"),
    ]
    for key, kind in candidates:
        value = thresholds.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value), kind
    return None


def _threshold_label(ax: Axes, value: float, text: str) -> None:
    """Label the threshold line at ``value`` (data units) just below the top of the axes.

    The text goes on the side of the line with more room, so a threshold near either end of
    the axis keeps its label inside the axes (and so inside the figure) instead of clipped.
    """
    ax.autoscale_view()  # the final x limits, which place the line
    display = ax.transData.transform((value, 0.0))
    position = float(ax.transAxes.inverted().transform(display)[0])  # 0..1 across the axes
    right_of_line = position < 0.5
    ax.annotate(
        text,
        (value, 1),
        xycoords=("data", "axes fraction"),
        xytext=(3 if right_of_line else -3, -10),
        textcoords="offset points",
        horizontalalignment="left" if right_of_line else "right",
        color="#c44e52",
        fontsize=7,
        # legible where the tallest bar reaches up to it
        bbox={
            "boxstyle": "square,pad=0.15",
            "facecolor": "white",
            "edgecolor": "none",
            "alpha": 0.8,
        },
    )


def histogram_figure(
    frame: pd.DataFrame, metric: str, label: str, info: DatasetInfo, path: Path
) -> str | None:
    """Histogram of one QA metric stacked by split; returns a caption note or None.

    Returns the string ``"empty"`` and writes nothing when the metric has no finite values.
    """
    data = frame
    if metric in CLIP_METRICS:  # one value per clip, repeated on its rows
        data = frame.dropna(subset=["clip_id"]).drop_duplicates(["scene_id", "clip_id"])
    values = data[metric].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    splits = data["split"].fillna("(none)").astype(str).to_numpy()
    finite = np.isfinite(values)
    note_parts = []
    infinite = int(np.isinf(values).sum())
    if not finite.any():
        return "empty"
    percent = metric.startswith("clipped_")
    log_axis = metric == "photometric_gain"
    shown = values.copy()
    if infinite:
        # Identical pairs have infinite PSNR: draw them in one bar past the largest value.
        top = float(np.nanmax(values[finite]))
        shown[np.isposinf(values)] = top + 1.0
        note_parts.append(f"{infinite} identical pair(s) (∞ dB) drawn at the right edge")
    if log_axis:
        positive = shown > 0
        if (~positive & np.isfinite(shown)).any():
            note_parts.append(
                f"{int((~positive & np.isfinite(shown)).sum())} gain(s) <= 0 left out"
            )
        shown = np.where(positive, shown, np.nan)
    if percent:
        shown = shown * 100.0
    ok = np.isfinite(shown)
    low, high = float(shown[ok].min()), float(shown[ok].max())
    if log_axis:
        lo, hi = math.log2(low), math.log2(high)
        if hi - lo < 1e-6:
            lo, hi = lo - 0.5, hi + 0.5
        bins: Any = np.logspace(lo, hi, 25, base=2.0)
    else:
        if high - low < 1e-9:
            pad = abs(low) * 0.05 or 0.5
            low, high = low - pad, high + pad
        bins = np.histogram_bin_edges(
            shown[ok], bins=int(min(30, max(8, math.sqrt(ok.sum())))), range=(low, high)
        )
    order = _split_order(sorted(set(splits[ok].tolist())))
    figure = _new_figure(3.6, 2.3)
    ax = figure.add_subplot()
    # Stacked filled steps: three artists instead of one rectangle per bin and split.
    bottom = np.zeros(len(bins) - 1)
    for split in order:
        counts, _ = np.histogram(shown[ok & (splits == split)], bins=bins)
        ax.stairs(
            bottom + counts,
            bins,
            baseline=bottom.copy(),
            fill=True,
            color=_colour(split),
            label=split,
        )
        bottom = bottom + counts
    ax.stairs(bottom, bins, color="#1c2230", linewidth=0.6)
    ax.set_ylim(0, max(1.0, float(bottom.max())) * 1.08)
    if log_axis:
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    limit = _threshold(info, metric)
    if limit is not None:
        value = limit[0] * (100.0 if percent else 1.0)
        ax.axvline(value, color="#c44e52", linestyle="--", linewidth=1.2)
        _threshold_label(ax, value, f"{limit[1]} {limit[0]:g}")
    ax.set_xlabel(label.replace("(fraction)", "(%)") if percent else label, fontsize=8)
    ax.set_ylabel("clips" if metric in CLIP_METRICS else "pairs", fontsize=8)
    _style(ax)
    _margins(figure)
    _save(figure, path)
    return "; ".join(note_parts) or None


def ev_figure(frame: pd.DataFrame, path: Path) -> bool:
    """Bars of input EV relative to the target and of absolute input EV, stacked by split.

    When some EVs are exposure ranks the axes say so, and each relative bar is labelled
    with the measured EV (``-log2`` of the median fitted gain) beside its rank.
    """
    relative = (frame["input_ev"] - frame["target_ev"]).astype("Float64")
    ranks = uses_ranks(frame)
    panels = [
        (exposure_axis_label(frame), relative),
        ("input exposure rank" if ranks else "input EV", frame["input_ev"]),
    ]
    measured = {key: ev for key, _, ev in ev_distribution(frame)}
    if all(series.isna().all() for _, series in panels):
        return False
    splits = frame["split"].fillna("(none)").astype(str)
    order = _split_order(sorted(set(splits.tolist())))
    figure = _new_figure(7.4, 2.8 if ranks else 2.4)
    for index, (label, series) in enumerate(panels):
        ax = figure.add_subplot(1, 2, index + 1)
        rounded = series.round(2)
        keys = sorted(float(v) for v in rounded.dropna().unique())
        if not keys:
            ax.set_axis_off()
            continue
        positions = np.arange(len(keys))
        bottom = np.zeros(len(keys))
        for split in order:
            counts = np.array([int(((rounded == k) & (splits == split)).sum()) for k in keys])
            ax.bar(
                positions,
                counts,
                bottom=bottom,
                color=_colour(split),
                label=split,
                edgecolor="white",
                linewidth=0.4,
            )
            bottom += counts
        step = max(1, len(keys) // 12)
        names = [f"{k:+g}" if k else "0" for k in keys]
        if ranks and index == 0:  # the measured EV under each rank difference
            names = [f"{n}\n({measured.get(n, '–')})" for n in names]
            label += "\n(measured EV: median fitted gain)"
        ax.set_xticks(positions[::step], names[::step], fontsize=7)
        ax.set_xlabel(label, fontsize=8)
        ax.set_ylabel("pairs", fontsize=8)
        _style(ax)
    _margins(figure, wspace=0.25, bottom=0.75 if ranks else 0.42)
    _save(figure, path)
    return True


@dataclass
class ClipSeries:
    """Per-frame mean luminance of one clip (for the luminance-over-time plot)."""

    scene_id: str
    clip_id: str
    split: str
    frames: list[int]
    target: list[float]
    input_gain: list[float]
    input_raw: list[float]
    flagged: list[bool]
    target_flicker: float | None
    gain_instability_ev: float | None

    @property
    def label(self) -> str:
        """``scene / clip``, or the clip alone when it is its own scene (capture video)."""
        if self.clip_id == self.scene_id:
            return self.clip_id
        return f"{self.scene_id} / {self.clip_id}"


def clip_figures(clips: Sequence[ClipSeries], folder: Path) -> list[str]:
    """Small multiples of luminance over time, :data:`CLIPS_PER_FIGURE` per PNG.

    Each clip is drawn relative to the mean of its target so flicker reads as the wiggle of
    the target line around 1; input×gain should lie on it when gain and alignment are right.
    """
    from matplotlib.ticker import MaxNLocator

    names = []
    for start in range(0, len(clips), CLIPS_PER_FIGURE):
        chunk = clips[start : start + CLIPS_PER_FIGURE]
        columns = min(3, len(chunk))
        rows = math.ceil(len(chunk) / columns)
        figure = _new_figure(3.4 * columns, 2.2 * rows)
        for index, clip in enumerate(chunk):
            ax = figure.add_subplot(rows, columns, index + 1)
            mean = float(np.mean(clip.target)) or 1.0
            target = np.asarray(clip.target) / mean
            ax.plot(clip.frames, target, color="#222222", linewidth=1.4, label="target")
            ax.plot(
                clip.frames,
                np.asarray(clip.input_gain) / mean,
                color=_colour(clip.split),
                linewidth=1.2,
                label="input × gain",
            )
            bad = [i for i, f in enumerate(clip.flagged) if f]
            if bad:
                ax.scatter(
                    [clip.frames[i] for i in bad],
                    target[bad],
                    marker="x",
                    color="#c44e52",
                    s=18,
                    zorder=3,
                    label="flagged",
                )
            title = clip.label
            figures = []
            if clip.target_flicker is not None:
                figures.append(f"target flicker {clip.target_flicker:.3f}")
            if clip.gain_instability_ev is not None:
                figures.append(f"gain spread {clip.gain_instability_ev:.3f} EV")
            if figures:
                title += "\n" + ", ".join(figures)
            ax.set_title(title, fontsize=7, loc="left", wrap=True)
            ax.set_xlabel("frame", fontsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel("luminance / mean", fontsize=7)
            _style(ax)
            if index == 0:
                ax.legend(fontsize=6, frameon=False, loc="best")
        _margins(figure, left=0.6, top=0.3, bottom=0.45, wspace=0.35, hspace=0.7)
        name = f"fig/clips-{start // CLIPS_PER_FIGURE + 1:02d}.png"
        _save(figure, resolve_inside(folder, name, what="figure"))
        names.append(name)
    return names


# --------------------------------------------------------------------------- html


def _fmt_cell(value: Any, fmt: str) -> str:
    if value is None or _nan(value):
        return "–"
    if fmt == "%":
        return f"{float(value) * 100:.1f}%"
    if fmt == "d":
        return str(int(value))
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if fmt:
        text = format(float(value), fmt)
        return "0" if fmt.startswith("+") and float(value) == 0 else text
    return str(value)


def _sort_value(value: Any) -> str:
    if value is None or _nan(value):
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "1e308" if value > 0 else "-1e308"
    return str(value)


def _check_out(out: Path, dataset_root: Path) -> None:
    """Refuse a report folder whose writes could land on data (checks only, writes nothing).

    Refused: a file; a symbolic link; the dataset's own data folders (``images/``, ...) or
    those of any expokit root; a non-empty folder that is not an earlier report; a report
    folder holding links that leave it (``thumbs -> /elsewhere`` would have report
    overwrite the files there).
    """
    if out.is_symlink():
        raise ReportError(f"report folder {out} is a symbolic link; give the real folder")
    if out.exists() and not out.is_dir():
        raise OutputError(f"report folder {out} exists and is a file")
    target = out.resolve()
    if target == dataset_root.resolve():
        raise ReportError(f"{out} is the dataset root; the report goes into a folder of its own")
    owner = find_root_above(target)
    if owner is not None and owner.resolve() != target:
        first = target.relative_to(owner.resolve()).parts[0]
        if first in TRACKED_ROOT_FOLDERS:
            raise ReportError(
                f"report folder {out} is inside the data of the expokit folder {owner} "
                f"({first}/); choose another --out"
            )
    if out.is_dir():
        entries = [p for p in out.iterdir() if p.name != STATE_DIR]
        if entries and not (out / MARKER).is_file():
            raise ReportError(
                f"{out} is not empty and is not an expokit report folder ({MARKER} missing); "
                "choose another --out"
            )
        leaving = symlinks_leaving(out)
        if leaving:
            shown = ", ".join(str(p.relative_to(out.resolve())) for p in leaving[:5])
            raise ReportError(
                f"report folder {out} holds symbolic links that leave it ({shown}); "
                "the report will not write through them: remove them"
            )


def _prepare_out(out: Path) -> None:
    """Empty an earlier report (only its own parts) and create the folder's skeleton."""
    if out.is_dir():
        # Replace the previous report wholesale so no stale thumbnail survives. rmtree
        # refuses links (checked above, so none is left to refuse).
        for child in ("thumbs", "fig"):
            path = out / child
            if path.is_symlink():
                raise ReportError(f"{path} is a symbolic link; remove it")
            if path.is_dir():
                shutil.rmtree(path)
        for page in out.glob("*.html"):
            page.unlink()
    for child in ("thumbs", "fig"):
        resolve_inside(out, child, what="report folder").mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        resolve_inside(out, MARKER, what="report marker"),
        "generated by expokit curate report; safe to delete this folder\n",
    )


def _environment() -> Any:
    try:
        import jinja2
    except ImportError:  # pragma: no cover - jinja2 ships with the report dependencies
        raise ReportError("the report needs jinja2: pip install jinja2 matplotlib") from None
    return jinja2.Environment(
        loader=jinja2.PackageLoader("expokit.curation.dataset", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def build_report(
    root: str | Path | Dataset,
    out: str | Path | None = None,
    *,
    max_thumbnails: int = DEFAULT_MAX_THUMBNAILS,
    per_page: int = DEFAULT_PER_PAGE,
    workers: int = 2,
    progress: bool = True,
) -> Path:
    """Write the QA report folder of a dataset; return the path of its ``index.html``.

    Parameters
    ----------
    root
        Dataset root (validated by :func:`load_dataset`) or a loaded Dataset.
    out
        Report folder; default ``ROOT/report``. An existing folder must be an earlier report.
    max_thumbnails
        At most this many pairs get thumbnails (worst first, then an even sample).
    per_page
        Pairs per thumbnail page.
    workers
        Threads decoding images and encoding thumbnails (OpenCV releases the GIL).
    progress
        Show a progress bar.

    Raises
    ------
    DatasetError, ReportError, OutputError
    """
    try:
        import matplotlib
    except ImportError:  # pragma: no cover
        raise ReportError("the report needs matplotlib: pip install matplotlib jinja2") from None
    # Agg renders to files without a display; set here, not at import, to leave callers'
    # own backend choice alone until a report is actually made.
    matplotlib.use("Agg")
    if not isinstance(root, Dataset):
        check_not_being_written(Path(root), "reporting on it")
    dataset = root if isinstance(root, Dataset) else load_dataset(root)
    if per_page < 1:
        raise ReportError(f"per_page must be >= 1, got {per_page}")
    folder = Path(out) if out is not None else dataset.root / REPORT_DIR
    _check_out(folder, dataset.root)
    # One report at a time into a folder: a second one would delete the first's pages.
    with RootLock(folder, "expokit curate report"):
        return _build_locked(dataset, folder, max_thumbnails, per_page, workers, progress)


def _build_locked(
    dataset: Dataset,
    folder: Path,
    max_thumbnails: int,
    per_page: int,
    workers: int,
    progress: bool,
) -> Path:
    """The report proper, with ``folder`` checked and locked."""
    _check_out(folder, dataset.root)  # again under the lock: nothing changed meanwhile
    _prepare_out(folder)
    env = _environment()
    frame = dataset.manifest.reset_index(drop=True)
    rows = _report_rows(frame)
    tasks = _image_tasks(dataset, rows, set(select_thumbnails(frame, max_thumbnails)), folder)
    visuals, figures = _images_and_histograms(dataset, frame, tasks, folder, workers, progress)
    clips = _clip_series(rows, visuals)
    shown_clips = sorted(
        clips, key=lambda c: -max(c.target_flicker or 0.0, c.gain_instability_ev or 0.0)
    )[:MAX_CLIP_PLOTS]
    shown_clips.sort(key=lambda c: (c.scene_id, c.clip_id))
    clip_pngs = clip_figures(shown_clips, folder)

    # Thumbnail pages, worst pairs first; the table keeps manifest order.
    order = [p for p in _worst_first(frame) if p in visuals and visuals[p].thumbs]
    pages = [order[i : i + per_page] for i in range(0, len(order), per_page)]
    page_names = [f"pairs-{n:03d}.html" for n in range(1, len(pages) + 1)]
    page_of = {p: page_names[n] for n, members in enumerate(pages) for p in members}
    _attach(rows, visuals, page_of)
    context = _context(dataset, frame, rows, figures)
    context.update(
        clip_pngs=clip_pngs,
        clips_total=len(clips),
        clips_shown=len(shown_clips),
        pages=page_names,
        thumbnailed=len(order),
    )
    index = resolve_inside(folder, "index.html", what="report page")
    atomic_write_text(index, env.get_template("report_index.html").render(**context))
    gallery = env.get_template("report_pairs.html")
    for number, members in enumerate(pages, start=1):
        html = gallery.render(
            **context,
            page=number,
            page_rows=[rows[p] for p in members],
            first=(number - 1) * per_page + 1,
        )
        atomic_write_text(resolve_inside(folder, page_names[number - 1], what="report page"), html)
    return index


def _report_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Manifest rows as dicts (nulls as None) plus ``relative_ev`` and ``flag_list``."""
    columns = [str(c) for c in frame.columns]
    rows = [
        dict(zip(columns, values, strict=True))
        for values in zip(*(_values(frame[c]) for c in frame.columns), strict=True)
    ]
    for row in rows:
        known = row["input_ev"] is not None and row["target_ev"] is not None
        row["relative_ev"] = float(row["input_ev"]) - float(row["target_ev"]) if known else None
        row["flag_list"] = flag_list(row["qa_flags"])
    return rows


def _image_tasks(
    dataset: Dataset, rows: list[dict[str, Any]], with_thumbs: set[int], folder: Path
) -> list[_Task]:
    """Thumbnails for the selected rows; luminance (no thumbnails) for other video frames."""
    tasks = []
    for position, row in enumerate(rows):
        in_clip = row["clip_id"] is not None and row["frame_index"] is not None
        if position not in with_thumbs and not in_clip:
            continue
        paths: list[Path | None] = []
        refused = []
        for column in ("input_path", "target_path", "mask_path"):
            try:
                paths.append(None if row[column] is None else dataset.path(row[column]))
            except PathEscapeError:
                # Shown as unreadable: a link out of the dataset is not the dataset's image.
                paths.append(None)
                refused.append(f"{row[column]} links outside the dataset")
        tasks.append(
            _Task(
                position,
                paths[0],
                paths[1],
                paths[2],
                row["width"],
                row["height"],
                row["photometric_gain"],
                position in with_thumbs,
                folder,
                "; ".join(refused) or None,
            )
        )
    return tasks


def _images_and_histograms(
    dataset: Dataset,
    frame: pd.DataFrame,
    tasks: list[_Task],
    folder: Path,
    workers: int,
    progress: bool,
) -> tuple[dict[int, _Visual], list[dict[str, Any]]]:
    """Run the image tasks on a thread pool while this thread draws the histograms.

    OpenCV releases the GIL, so decoding and encoding overlap with matplotlib, which only
    needs the manifest.
    """
    decode = _srgb_decode_lut()
    _read_small.cache_clear()  # files may have changed since an earlier report
    visuals: dict[int, _Visual] = {}
    figures: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(_make_visual, task, decode) for task in tasks]
        if ev_figure(frame, resolve_inside(folder, "fig/ev.png", what="figure")):
            figures.append({"src": "fig/ev.png", "title": "Exposure", "wide": True, "note": None})
        for metric, label in QA_METRICS.items():
            name = f"fig/hist-{metric}.png"
            note = histogram_figure(
                frame, metric, label, dataset.info, resolve_inside(folder, name, what="figure")
            )
            if note != "empty":
                figures.append({"src": name, "title": label, "wide": False, "note": note})
        bar = show_progress(total=len(tasks), desc="report", unit="pair", enabled=progress)
        for future in futures:
            visual = future.result()
            visuals[visual.position] = visual
            bar.update()
        bar.close()
    _read_small.cache_clear()
    return visuals, figures


def pair_label(pair_id: str, scene_id: str | None, clip_id: str | None) -> str:
    """What a pair id adds beside its scene and clip columns: the id without its leading
    ``scene/`` and ``clip/`` (or the ``-/`` of a still), e.g. ``street/c01/000002`` in
    scene ``street``, clip ``c01`` -> ``000002``; the whole id if it does not start so."""
    rest = pair_id
    for part in (scene_id, clip_id or "-"):
        if part and rest.startswith(f"{part}/"):
            rest = rest[len(part) + 1 :]
    return rest or pair_id


def _attach(
    rows: list[dict[str, Any]], visuals: dict[int, _Visual], page_of: dict[int, str]
) -> None:
    """Add thumbnails, page links and formatted table cells to every row."""
    for position, row in enumerate(rows):
        made = visuals.get(position)
        row["thumbs"] = made.thumbs if made else {}
        row["problem"] = made.problem if made else None
        row["page"] = page_of.get(position)
        row["anchor"] = f"p{position:05d}"
        # The table shows the scene and clip in their own columns right after the pair.
        row["pair_label"] = pair_label(str(row["pair_id"]), row["scene_id"], row["clip_id"])
        row["cells"] = [
            {
                "key": key,
                "text": _fmt_cell(row[key], fmt),
                "sort": _sort_value(row[key]),
                "kind": kind,
            }
            for key, _, kind, fmt in TABLE_COLUMNS
        ]
        row["fmt"] = {cell["key"]: cell["text"] for cell in row["cells"]}


def _context(
    dataset: Dataset, frame: pd.DataFrame, rows: list[dict[str, Any]], figures: list[dict[str, Any]]
) -> dict[str, Any]:
    """Template variables shared by the index and the thumbnail pages."""
    ranks = uses_ranks(frame)
    counts = split_counts(frame)
    flag_names = list(flag_counts(frame))
    by_split_flag = {
        c["split"]: {
            flag: sum(
                1
                for r in rows
                if flag in r["flag_list"] and c["split"] in ("total", r["split"] or "(none)")
            )
            for flag in flag_names
        }
        for c in counts
    }
    values = {
        column: frame[column].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        for column in ("psnr_db", "ssim")
    }
    return {
        "name": str(dataset.info.name or dataset.root.name),
        "root": str(dataset.root),
        "generated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "version": __version__,
        "total": counts[-1],
        "counts": counts,
        "flag_names": flag_names,
        "by_split_flag": by_split_flag,
        "median_psnr": _median(values["psnr_db"]),
        "median_ssim": _median(values["ssim"]),
        "figures": figures,
        "columns": [
            (key, RANK_HEADERS.get(key, header) if ranks else header, kind, fmt)
            for key, header, kind, fmt in TABLE_COLUMNS
        ],
        "selections": selection_counts(frame),
        "exposure_label": exposure_axis_label(frame),
        "ranks": ranks,
        "rows": rows,
        "problems": sum(1 for r in rows if r["problem"]),
        "diff_scale": DIFF_SCALE,
        "split_names": [c["split"] for c in counts if c["split"] != "total"],
        "thresholds": dataset.info.qa_thresholds or {},
        "license": dataset.info.license,
    }


def _optional(value: Any) -> float | None:
    return (
        None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
    )


def _median(values: npt.NDArray[Any]) -> str:
    finite = values[np.isfinite(values)]
    return "–" if finite.size == 0 else f"{float(np.median(finite)):.3g}"


def _clip_series(rows: list[dict[str, Any]], visuals: dict[int, _Visual]) -> list[ClipSeries]:
    """Per-frame luminance of every video clip with at least two readable frames."""
    groups: dict[tuple[str, str], list[int]] = {}
    for position, row in enumerate(rows):
        if row["clip_id"] is None or row["frame_index"] is None:
            continue
        groups.setdefault((str(row["scene_id"]), str(row["clip_id"])), []).append(position)
    series = []
    for (scene, clip), members in sorted(groups.items()):
        members = [p for p in members if visuals.get(p) and visuals[p].lum_target is not None]
        if len(members) < 2:
            continue
        members.sort(key=lambda p: int(rows[p]["frame_index"]))
        first = rows[members[0]]
        series.append(
            ClipSeries(
                scene_id=scene,
                clip_id=clip,
                split=str(rows[members[0]]["split"] or "(none)"),
                frames=[int(rows[p]["frame_index"]) for p in members],
                target=[float(visuals[p].lum_target or 0.0) for p in members],
                input_gain=[float(visuals[p].lum_input_gain or 0.0) for p in members],
                input_raw=[float(visuals[p].lum_input or 0.0) for p in members],
                flagged=[bool(rows[p]["flag_list"]) for p in members],
                target_flicker=_optional(first.get("target_flicker")),
                gain_instability_ev=_optional(first.get("gain_instability_ev")),
            )
        )
    return series
