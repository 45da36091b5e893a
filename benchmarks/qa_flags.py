"""QA flags against injected truth: detection rate per flag and false positives (issue 18).

Run from the repository root::

    python benchmarks/qa_flags.py                    # real clips in ../shared/data, + SICE
    python benchmarks/qa_flags.py --quick            # one clip, 3 magnitudes, 6 SICE scenes
    python benchmarks/qa_flags.py --source generated --json qa_flags.json
    python benchmarks/qa_flags.py --no-sice --workers 1

What is measured
----------------
detection
    The rig simulator (``expokit simulate``) records real footage (``cockatoo.mp4``,
    ``Megamind.avi``, ``realshort.mp4`` from ``../shared/data/video`` or
    ``$EXPOKIT_SHARED_DATA/video``; ``generated`` with steady light when absent or with
    ``--source generated``) with known defects injected at a sweep of magnitudes around
    each flag's threshold (:data:`SWEEPS`); each session goes through the user's chain
    (``calibrate geometry`` on its board stills, ``calibrate sync``, ``curate build``) and
    :func:`expokit.curation.truth.rows_against_truth` maps every manifest row back to its
    defects. A still session carries the six pair defects (misregistration, gain,
    light_change, defocus, clipping, time_offset) at one level, each on 2 of 24 still
    pairs (one per camera), the other 12 clean; a clip session one clip defect (camera
    flicker in the test camera, scene flicker) over the whole movie. The detection rate is
    the share of injected pairs carrying the defect's flag
    (:func:`expokit.curation.truth.expected_flags`); for a clip flag, one decision per
    clip. Where a defect's magnitude maps to its flag's figure (misregistration px =
    residual, gain EV = deviation, light_change ``log2(1 + x)``, camera flicker amplitude
    = ``ln 2 * sqrt 2`` x the gain's spread, scene flicker amplitude = ``target_flicker``)
    the sweep is in multiples of that
    *threshold magnitude* and the headline pools the levels >= 1.5x; elsewhere (defocus,
    clipping, time offset: content decides the figure) the sweep is in the defect's units
    and the headline pools the levels marked clear. Clipping is also read back against
    the share of clipped pixels the defect made (``truth.json`` records it), in
    multiples of its flag's threshold share: that, not the EV, is what the flag judges.
false positives
    Clean pairs (no defect in them or in their clip: the clean still pairs of every
    session and a clean clip per source): the share carrying any flag but ``clipped_*``
    (the footage's own clipped highlights are a fact; they are listed). The negative
    controls (a steady light ramp, a textured object crossing the scene) are counted
    apart: any flag on their pairs is a false positive they provoked. The clean clips'
    own clip figures are printed beside the thresholds.
SICE
    The real tripod multi-exposure sequences (``exposure/sice_7ev_sequences``, built with
    ``curate build --kind sequences``): registered, so any ``misaligned``, ``low_psnr``,
    ``low_ssim`` or ``gain_outlier`` is a false positive; clipping flags are facts, listed
    only.

Goal the QA thresholds are tuned to: >= 95 % detected, <= 2 % false positives. About 4
minutes on a 2-core machine with the defaults (2 workers), 1 minute with ``--quick``.
Heavy libraries are imported inside functions only.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EXPOKIT_SHARED_DATA", REPO.parent / "shared" / "data"))
VIDEO = SHARED / "video"
SICE = SHARED / "exposure" / "sice_7ev_sequences"
#: Real clips (in this order); a clip absent from the shared data is skipped.
REAL_CLIPS = ("cockatoo.mp4", "Megamind.avi", "realshort.mp4")
#: Longer side of the simulated sensors (px); the board is found from about 256x192.
LONG_SIDE = 256
#: Frame rate of generated footage.
GENERATED_FPS = 12.0
#: The test body starts this many frames after the reference (a whole number of frames:
#: paired frames show the same scene instant, so only the injected defects differ).
OFFSET_FRAMES = 3
STILL_PAIRS = 24
CLIP_SECONDS = 3.0
#: Levels (multiples of the threshold magnitude) of the sweeps that have one.
LEVELS = (0.5, 1.0, 1.5, 2.0, 4.0)
QUICK_LEVELS = (0.5, 1.0, 2.0)
#: Levels at or above this multiple of the threshold magnitude make the headline.
CLEAR = 1.5
#: Standard deviation of a sinusoid per unit amplitude (``gain_instability_ev`` is a
#: trimmed standard deviation of log2 gains; ``target_flicker`` is an amplitude itself).
SINE_STD = math.sqrt(0.5)
#: Flags that are a false positive on the registered SICE sequences.
SICE_FALSE = ("misaligned", "low_psnr", "low_ssim", "gain_outlier")
#: Figures kept with each row (for the JSON and for reading a miss).
FIGURES = (
    "alignment_residual_px", "photometric_gain", "gain_deviation_ev", "gain_instability_ev",
    "target_flicker", "focus_ratio", "psnr_db", "ssim", "clipped_bright_input",
    "clipped_bright_target", "usable_fraction", "target_luma",
)  # fmt: skip


@dataclass(frozen=True)
class Sweep:
    """The magnitudes one defect kind is injected at.

    ``threshold`` is the magnitude whose ideal figure equals the flag's threshold and
    ``levels`` multiply it; without one (``None``) ``levels`` are magnitudes in
    ``unit`` (``frames``: of the source's frame rate) and ``clear`` lists those that make
    the headline. ``share``: not injected but read back, the clipped share truth.json
    records over the flag's threshold share (``levels`` are the bins' lower edges)."""

    kind: str
    flag: str
    unit: str
    threshold: float | None
    levels: tuple[float, ...]
    clear: tuple[float, ...] = ()
    clip: bool = False
    share: bool = False

    @property
    def name(self) -> str:
        return f"{self.kind} share" if self.share else self.kind

    def magnitude(self, level: float, fps: float) -> float:
        if self.threshold is not None:
            return round(level * self.threshold, 6)
        return round(level / fps, 6) if self.unit == "frames" else level

    def is_clear(self, level: float) -> bool:
        return level >= CLEAR if self.threshold is not None else level in self.clear

    def label(self, level: float) -> str:
        if self.share:
            return f">= {level:g}x thr"
        if self.threshold is not None:
            return f"{level:g}x ({self.magnitude(level, 1.0):.4g})"
        return f"{level:g} {self.unit}"


def thresholds() -> dict[str, float]:
    """The build's default QA thresholds (names of :class:`QaThresholds`)."""
    from expokit.curation.build.config import QaThresholds

    return {k: float(v) for k, v in QaThresholds().to_dict().items()}


def sweeps(qa: dict[str, float], quick: bool) -> list[Sweep]:
    levels = QUICK_LEVELS if quick else LEVELS
    gain_ev = qa.get("max_gain_deviation_ev", 0.1)

    def pick(values: tuple[float, ...], keep: tuple[float, ...]) -> tuple[float, ...]:
        return keep if quick else values

    return [
        Sweep("misregistration", "misaligned", "px", qa.get("max_residual_px", 1.0), levels),
        Sweep("gain", "gain_outlier", "EV", gain_ev, levels),
        Sweep("light_change", "gain_outlier", "fraction", 2.0**gain_ev - 1.0, levels),
        Sweep("defocus", "defocus", "px", None, pick((0.5, 1.0, 2.0, 3.0, 5.0), (1.0, 3.0, 5.0)),
              clear=(3.0, 5.0)),
        Sweep("clipping", "clipped_*", "EV", None, pick((1.0, 2.0, 3.0, 4.0, 6.0), (1.0, 3.0, 6.0)),
              clear=(4.0, 6.0)),
        Sweep("clipping", "clipped_*", "share", 1.0, SHARE_BINS, share=True),
        Sweep("time_offset", "misaligned", "frames", None,
              pick((0.5, 1.0, 2.0, 4.0, 8.0), (1.0, 4.0, 8.0)), clear=(4.0, 8.0)),
        Sweep("flicker", "gain_unstable", "fraction",
              qa.get("max_gain_instability_ev", 0.02) * math.log(2) / SINE_STD, levels,
              clip=True),
        Sweep("scene_flicker", "target_flicker", "fraction",
              qa.get("max_target_flicker", 0.02), levels, clip=True),
    ]  # fmt: skip


#: Bins (lower edges, multiples of the flag's threshold share) of the clipped share a
#: clipping defect made, as truth.json records it.
SHARE_BINS = (0.0, 0.5, 1.0, 1.5, 2.0)
#: Flags that state a fact of the footage (its own clipped highlights), not a false positive.
FACT_FLAGS = ("clipped_input", "clipped_target")
#: Negative controls: (kind, magnitude; motion in frame widths per second).
CONTROLS = (("light_ramp", 0.1), ("light_ramp", 0.3), ("motion", 0.25), ("motion", 0.5))


@dataclass(frozen=True)
class Source:
    label: str
    source: str
    size: tuple[int, int]
    fps: float
    seconds_available: float


@dataclass(frozen=True)
class Job:
    """One simulated session: its config and what each of its defects is (kind -> level)."""

    source: Source
    name: str
    seed: int
    seconds: float
    still_pairs: int
    defects: tuple[str, ...]
    levels: dict[str, float]


@dataclass
class SessionResult:
    job: Job
    rows: list[dict[str, Any]]
    sync: str
    seconds: float
    error: str | None = None


@dataclass
class Tally:
    injected: int = 0
    detected: int = 0
    by_source: dict[str, list[int]] = field(default_factory=dict)

    def add(self, source: str, hit: bool) -> None:
        self.injected += 1
        self.detected += hit
        entry = self.by_source.setdefault(source, [0, 0])
        entry[0] += 1
        entry[1] += hit


def _even(value: float) -> int:
    return max(64, round(value / 2) * 2)


def sources(choice: str | None) -> list[Source]:
    """The footage: the real clips present (or the one asked), else generated."""
    from expokit.core.video_io import probe_media

    found: list[Source] = []
    names = REAL_CLIPS if choice in (None, "real") else (() if choice == "generated" else (choice,))
    for name in names:
        path = Path(name) if Path(name).is_file() else VIDEO / name
        if not path.is_file():
            continue
        media = probe_media(path)
        width, height = media.width or LONG_SIDE, media.height or LONG_SIDE
        scale = LONG_SIDE / max(width, height)
        size = (_even(width * scale), _even(height * scale))
        found.append(Source(path.stem, str(path), size, float(media.fps or 24.0),
                            float(media.duration_s or 0.0)))  # fmt: skip
    if not found:
        found.append(Source("generated", "generated", (256, 192), GENERATED_FPS, math.inf))
    return found


def _place(text: str, still: int) -> str:
    return f"{text},still={still}" if "@" in text else f"{text}@still={still}"


def plan_jobs(
    footage: list[Source], all_sweeps: list[Sweep], quick: bool, repeat: int = 1
) -> list[Job]:
    """Sessions per source (``repeat`` times, each with its own seeds): one still session
    per level, one clip per (clip kind, level), the controls, a clean clip."""
    jobs: list[Job] = []
    seed = 100
    pairs = [s for s in all_sweeps if not s.clip and not s.share]
    clips = [s for s in all_sweeps if s.clip]
    for src in [s for s in footage for _ in range(repeat)]:
        # Leave room for the offset and the longest time offset.
        room = src.seconds_available - (OFFSET_FRAMES + 10) / src.fps - 0.2
        clip_s = max(1.0, min(CLIP_SECONDS, room))
        still_s = max(1.0, min(1.5, room))
        for index in range(len(pairs[0].levels)):
            defects, levels = [], {}
            for slot, sweep in enumerate(pairs):
                level = sweep.levels[index]
                magnitude = sweep.magnitude(level, src.fps)
                levels[sweep.kind] = level
                for camera, still in (("test", 2 + 4 * slot), ("reference", 4 + 4 * slot)):
                    defects.append(_place(f"{sweep.kind}:{magnitude:g}@{camera}", still))
            seed += 1
            name = f"stills{index}-{seed}"
            jobs.append(Job(src, name, seed, still_s, STILL_PAIRS, tuple(defects), levels))
        for sweep in clips:
            for level in sweep.levels:
                seed += 1
                text = f"{sweep.kind}:{sweep.magnitude(level, src.fps):g}@video"
                jobs.append(Job(src, f"{sweep.kind}{level:g}-{seed}", seed, clip_s, 1, (text,),
                                {sweep.kind: level}))  # fmt: skip
        for kind, amount in CONTROLS[::2] if quick else CONTROLS:
            magnitude = amount * src.size[0] if kind == "motion" else amount
            seed += 1
            jobs.append(Job(src, f"{kind}{amount:g}-{seed}", seed, clip_s, 1,
                            (f"{kind}:{magnitude:g}@video",), {kind: amount}))  # fmt: skip
        seed += 1
        jobs.append(Job(src, f"clean-{seed}", seed, clip_s, 1, (), {}))
    return jobs


def _calibrate(session: Path, truth: dict[str, Any], out: Path) -> Path:
    """Geometry from the board stills (ChArUco), else (a small sensor: the board is not
    found) from the features of the board stills or of still pair 1 (clean in every
    session of this benchmark)."""
    from expokit.calibration.boards import BoardSpec
    from expokit.calibration.geometry import calibrate_geometry
    from expokit.core.errors import ExpokitError

    files = truth["files"]
    shot = min(int(k.split("_")[1]) for k in files if k.startswith("still_"))
    board = BoardSpec(kind="charuco", columns=7, rows=5, square_size=0.04, marker_size=0.028)
    tries = [("board", board), ("board", None), (f"still_{shot:04d}", None)]
    for attempt, (key, spec) in enumerate(tries):
        target = out / str(attempt)
        try:
            calibrate_geometry([session / files[f"{key}_reference"]],
                               [session / files[f"{key}_test"]], target, spec)  # fmt: skip
        except ExpokitError:
            if attempt == len(tries) - 1:
                raise
            continue
        return target / "rig_calibration.json"
    raise AssertionError("unreachable")


def _sync(session: Path, truth: dict[str, Any], out: Path) -> tuple[Path, str]:
    """``sync.json`` of the session's movies; when sync refuses (silent, flat footage) or
    misses the true offset by more than a quarter frame, one made from the true offset:
    the benchmark is about the QA flags, not the sync (the note says which)."""
    from dataclasses import replace

    from expokit.calibration.sync import frame_map, synchronize
    from expokit.calibration.sync_record import SyncError, SyncResult, write_sync_json
    from expokit.core.video_io import probe_media

    a, b = session / truth["sync_a"], session / truth["sync_b"]
    fps = float(truth["fps"])
    offset = float(truth["offset_s"])
    result: SyncResult | None
    try:
        result = synchronize(a, b)
        error = abs(result.offset_s - offset) * fps
        note = f"{result.method} ({error:.2f} frame off)"
    except SyncError as exc:
        result, error, note = None, math.inf, f"refused ({type(exc).__name__})"
    if result is None:
        media_a, media_b = probe_media(a), probe_media(b)
        result = SyncResult(media_a, media_b, "brightness", offset, 1.0, 1.0, fps)
    if error > 0.25:
        mapping = frame_map(result.media_a.frame_times, result.media_b.frame_times, offset, 0.0)
        result = replace(result, offset_s=offset, drift_ppm=0.0, drift_estimated=False,
                         frame_map=tuple(mapping))  # fmt: skip
        note += ", true offset used"
    return write_sync_json(result, out), note


def run_job(job: Job, work: str) -> SessionResult:
    """Simulate, calibrate, sync and build one session; its rows against the truth."""
    from expokit.capture.defects import as_specs
    from expokit.capture.simulate import simulate
    from expokit.capture.simulator import SimulationConfig
    from expokit.curation.build.config import BuildConfig
    from expokit.curation.build.driver import build_dataset
    from expokit.curation.truth import rows_against_truth

    started = time.perf_counter()
    src = job.source
    with tempfile.TemporaryDirectory(dir=work, prefix=f"{src.label}-{job.name}-") as tmp:
        base = Path(tmp)
        try:
            config = SimulationConfig(
                source=src.source, size=src.size, fps=src.fps, seconds=job.seconds,
                offset_s=round(OFFSET_FRAMES / src.fps, 9), drift_ppm=0.0, seed=job.seed,
                still_pairs=job.still_pairs, defects=as_specs(job.defects),
                steady_light=src.source == "generated",
                scene_seed=job.seed if src.source == "generated" else None,
            )  # fmt: skip
            session = base / job.name
            truth = simulate(config, session).truth.to_json()
            calibration = _calibrate(session, truth, base / "rig")
            sync_json, note = _sync(session, truth, base / "sync.json")
            summary = build_dataset([session], base / "ds", BuildConfig(),
                                    rig_calibration=calibration, sync_files=[sync_json],
                                    workers=1, progress=False)  # fmt: skip
            if not summary.ok:
                problems = [text for text, bad in summary.report() if bad]
                raise RuntimeError("; ".join(problems) or "build failed")
            rows = rows_against_truth(base / "ds", [session])
        except Exception as exc:  # one failed session must not end the benchmark
            return SessionResult(job, [], "", time.perf_counter() - started,
                                 f"{type(exc).__name__}: {exc}")  # fmt: skip
    kept = [
        {
            "pair_id": r.pair_id, "clip": r.clip, "still": r.still, "frames": r.frames,
            "video": r.frames is not None, "flags": list(r.flags),
            "defects": [{k: d[k] for k in KEPT} for d in r.defects],
            "clip_defects": [{k: d[k] for k in KEPT} for d in r.clip_defects],
            "figures": {k: _plain(r.figures.get(k)) for k in FIGURES},
        }
        for r in rows
    ]  # fmt: skip
    return SessionResult(job, kept, note, time.perf_counter() - started)


#: What the JSON keeps of each defect of a row.
KEPT = ("id", "kind", "magnitude", "unit", "camera", "control", "stills", "params")


def _plain(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# --------------------------------------------------------------------------- tallies


def _share_bin(defect: dict[str, Any], row: dict[str, Any], qa: dict[str, float]) -> float | None:
    """The clipped share a clipping defect made in ``row``'s still over its flag's threshold
    share, binned (:data:`SHARE_BINS`); ``None`` when not recorded (a movie frame)."""
    shares = (defect.get("params") or {}).get("clipped_fraction")
    if not shares or row["still"] not in defect["stills"]:
        return None
    share = float(shares[defect["stills"].index(row["still"])])
    name = "max_clipped_target" if defect["camera"] == "reference" else "max_clipped_input"
    ratio = share / max(qa.get(name, 0.25), 1e-9)
    return max(b for b in SHARE_BINS if ratio >= b)


def tally_detection(
    results: list[SessionResult], all_sweeps: list[Sweep], qa: dict[str, float]
) -> dict[tuple[str, float], Tally]:
    """``(sweep name, level) -> Tally``: pairs (clip flags: clips) injected and flagged."""
    from expokit.curation.truth import CLIP_FLAGS, expected_flags

    out: dict[tuple[str, float], Tally] = {}
    for result in results:
        seen_clips: set[tuple[str, int, str]] = set()
        for row in result.rows:
            extra = [d for d in row["clip_defects"] if d not in row["defects"]]
            for defect in row["defects"] + extra:
                in_pair = defect in row["defects"]
                flags = expected_flags(defect)
                for sweep in (s for s in all_sweeps if s.kind == defect["kind"]):
                    if sweep.clip:
                        key = (row["clip"], defect["id"], sweep.name)
                        if key in seen_clips:
                            continue
                        seen_clips.add(key)
                    elif not in_pair:
                        continue
                    level = (_share_bin(defect, row, qa) if sweep.share
                             else result.job.levels.get(defect["kind"]))  # fmt: skip
                    if level is None:
                        continue
                    hit = any(f in row["flags"] for f in flags if sweep.clip == (f in CLIP_FLAGS))
                    tally = out.setdefault((sweep.name, level), Tally())
                    tally.add(result.job.source.label, hit)
    return out


def tally_clean(
    results: list[SessionResult], *, controls: bool = False
) -> tuple[int, int, dict[str, int], dict[str, list[int]]]:
    """Clean pairs (or, with ``controls``, pairs of the negative controls): count, flagged
    (:data:`FACT_FLAGS` left out: the footage's own clipping), per flag (facts included),
    per source ``[pairs, flagged]``."""
    pairs = flagged = 0
    by_flag: dict[str, int] = {}
    by_source: dict[str, list[int]] = {}
    for result in results:
        for row in result.rows:
            defects = row["defects"] + row["clip_defects"]
            if controls:
                if not defects or not all(d["control"] for d in defects):
                    continue
            elif defects:
                continue
            false = [f for f in row["flags"] if f not in FACT_FLAGS]
            pairs += 1
            flagged += bool(false)
            entry = by_source.setdefault(result.job.source.label, [0, 0])
            entry[0] += 1
            entry[1] += bool(false)
            for flag in row["flags"]:
                by_flag[flag] = by_flag.get(flag, 0) + 1
    return pairs, flagged, dict(sorted(by_flag.items())), by_source


def clean_clip_figures(results: list[SessionResult]) -> dict[str, dict[str, float]]:
    """Per source, the median clip figures of its clean clips (what the footage itself
    gives, beside the thresholds)."""
    import statistics

    values: dict[str, dict[str, list[float]]] = {}
    for result in results:
        rows = [r for r in result.rows if r["video"] and not r["clip_defects"]]
        if not rows:
            continue
        entry = values.setdefault(result.job.source.label, {})
        for name in ("target_flicker", "gain_instability_ev"):
            value = rows[0]["figures"].get(name)
            if value is not None:
                entry.setdefault(name, []).append(value)
    return {label: {k: statistics.median(v) for k, v in entry.items()}
            for label, entry in sorted(values.items())}  # fmt: skip


def _pct(num: int, den: int) -> str:
    return f"{100.0 * num / den:5.1f} %" if den else "    - "


# --------------------------------------------------------------------------- SICE


def sice_false_positives(scenes: int | None, workers: int, work: str) -> dict[str, Any] | None:
    """Flags on the real SICE sequences (``curate build --kind sequences``)."""
    if not SICE.is_dir():
        return None
    from expokit.curation.build.config import BuildConfig
    from expokit.curation.build.driver import build_dataset
    from expokit.curation.dataset.format import load_dataset
    from expokit.curation.truth import flag_column, split_flags

    folders = sorted(p for p in SICE.iterdir() if p.is_dir())[: scenes or None]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=work, prefix="sice-") as tmp:
        source = Path(tmp) / "sice"
        source.mkdir()
        for folder in folders:  # links: the chosen scenes only, nothing copied
            (source / folder.name).symlink_to(folder, target_is_directory=True)
        build_dataset([source], Path(tmp) / "ds", BuildConfig(kind="sequences"),
                      workers=workers, progress=False)  # fmt: skip
        manifest = load_dataset(Path(tmp) / "ds").manifest
        flags = [split_flags(v) for v in manifest[flag_column(manifest)]]
    by_flag: dict[str, int] = {}
    for row in flags:
        for flag in row:
            by_flag[flag] = by_flag.get(flag, 0) + 1
    false = sum(any(f in SICE_FALSE for f in row) for row in flags)
    return {"scenes": len(folders), "pairs": len(flags), "false_positive_pairs": false,
            "false_positive_flags": list(SICE_FALSE), "by_flag": dict(sorted(by_flag.items())),
            "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one clip, 3 levels, 6 SICE scenes")
    parser.add_argument(
        "--source", default=None, help="generated, real (default: the shared clips), or a movie"
    )
    parser.add_argument("--workers", type=int, default=2, help="sessions built in parallel")
    parser.add_argument("--repeat", type=int, default=1, help="every session N times (seeds)")
    parser.add_argument("--no-sice", action="store_true", help="skip the SICE sequences")
    parser.add_argument("--sice-scenes", type=int, default=None, help="first N SICE scenes")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder [temporary]")
    args = parser.parse_args(argv)

    import numpy

    started = time.perf_counter()
    qa = thresholds()
    all_sweeps = sweeps(qa, args.quick)
    footage = sources(args.source)
    if args.quick:
        footage = footage[:1]
    jobs = plan_jobs(footage, all_sweeps, args.quick, max(1, args.repeat))
    print(f"python {platform.python_version()}, numpy {numpy.__version__}, "
          f"{os.cpu_count()} CPUs, {args.workers} worker(s)")  # fmt: skip
    print("footage: " + ", ".join(f"{s.label} {s.size[0]}x{s.size[1]} {s.fps:g} fps"
                                  for s in footage))  # fmt: skip
    print(f"{len(jobs)} sessions; thresholds: "
          + ", ".join(f"{k} {v:g}" for k, v in qa.items()))  # fmt: skip
    work_parent = args.work or Path(tempfile.gettempdir())
    work_parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_parent, prefix="qa-flags-") as work:
        results: list[SessionResult] = []
        with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool:
            futures = [pool.submit(run_job, job, work) for job in jobs]
            for future in concurrent.futures.as_completed(futures):
                result = future.result()
                results.append(result)
                if result.error:
                    print(f"  FAILED {result.job.source.label}/{result.job.name}: {result.error}")
        sims_s = time.perf_counter() - started
        sice = None
        if not args.no_sice:
            sice = sice_false_positives(6 if args.quick else args.sice_scenes, args.workers, work)
    results.sort(key=lambda r: (r.job.source.label, r.job.name))
    for label in sorted({r.job.source.label for r in results}):
        notes = sorted({r.sync for r in results if r.job.source.label == label and r.sync})
        print(f"sync {label}: {'; '.join(notes)}")

    detection = tally_detection(results, all_sweeps, qa)
    print("\ndetection: pairs (clip flags: clips) injected with the defect carrying its flag")
    print(f"{'kind':16s} {'flag':15s} {'level':>20s} {'detected':>10s} {'rate':>8s}   per source")
    headline: dict[str, list[int]] = {}
    records = []
    for sweep in all_sweeps:
        for level in sweep.levels:
            t = detection.get((sweep.name, level))
            if t is None:
                continue
            mark = "*" if sweep.is_clear(level) else " "
            per = "  ".join(f"{s} {d}/{n}" for s, (n, d) in sorted(t.by_source.items()))
            rate = _pct(t.detected, t.injected)
            print(f"{sweep.name:16s} {sweep.flag:15s} {sweep.label(level):>19s}{mark} "
                  f"{t.detected:4d}/{t.injected:<5d} {rate}   {per}")  # fmt: skip
            if sweep.is_clear(level):
                entry = headline.setdefault(sweep.name, [0, 0])
                entry[0] += t.injected
                entry[1] += t.detected
            records.append({"kind": sweep.kind, "sweep": sweep.name, "flag": sweep.flag,
                            "level": level,
                            "unit": sweep.unit, "threshold_magnitude": sweep.threshold,
                            "clear": sweep.is_clear(level), "injected": t.injected,
                            "detected": t.detected, "by_source": t.by_source})  # fmt: skip
    print(
        "  (* clear: >= 1.5x the threshold magnitude, or the levels marked clear; clipping "
        "share: the clipped share truth.json records over the flag's threshold share)"
    )
    print("\nheadline: detected at clear magnitudes (goal >= 95 %)")
    for name, (n, d) in headline.items():
        flag = next(s.flag for s in all_sweeps if s.name == name)
        print(f"  {name:16s} {flag:15s} {d:4d}/{n:<5d} {_pct(d, n)}")

    pairs, flagged, by_flag, per_source = tally_clean(results)
    print(f"\nfalse positives on clean simulated pairs (goal <= 2 %; clipped_* are the "
          f"footage's facts, not counted): {flagged}/{pairs} {_pct(flagged, pairs)}")  # fmt: skip
    for label, (n, f) in sorted(per_source.items()):
        print(f"  {label:16s} {f:4d}/{n:<5d} {_pct(f, n)}")
    print("  by flag: " + (", ".join(f"{k} {v}" for k, v in by_flag.items()) or "none"))
    baseline = clean_clip_figures(results)
    for label, figures in baseline.items():
        print(f"  clean clips of {label}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items())
              + f" (thresholds {qa.get('max_target_flicker', 0):g}, "
              f"{qa.get('max_gain_instability_ev', 0):g})")  # fmt: skip
    c_pairs, c_flagged, c_by_flag, _ = tally_clean(results, controls=True)
    print(f"negative controls (light ramp, moving object): {c_flagged}/{c_pairs} flagged "
          f"{_pct(c_flagged, c_pairs)}; "
          + (", ".join(f"{k} {v}" for k, v in c_by_flag.items()) or "no flag"))  # fmt: skip
    if sice is not None:
        print(f"\nSICE sequences ({sice['scenes']} scenes, {sice['pairs']} pairs, "
              f"{sice['seconds']} s): false positives ({', '.join(SICE_FALSE)}) "
              f"{sice['false_positive_pairs']}/{sice['pairs']} "
              f"{_pct(sice['false_positive_pairs'], sice['pairs'])}")  # fmt: skip
        print("  every flag: " + (", ".join(f"{k} {v}" for k, v in sice["by_flag"].items())
                                  or "none"))  # fmt: skip
    elif not args.no_sice:
        print(f"\nSICE sequences: skipped, not found at {SICE}")
    elapsed = time.perf_counter() - started
    print(f"\n{len(results)} sessions in {sims_s:.0f} s; total {elapsed:.0f} s")
    if args.json:
        document = {
            "benchmark": "qa_flags", "quick": args.quick, "thresholds": qa,
            "footage": [asdict(s) for s in footage],
            "sweeps": [asdict(s) for s in all_sweeps], "detection": records,
            "headline": {k: {"injected": n, "detected": d} for k, (n, d) in headline.items()},
            "false_positives": {"pairs": pairs, "flagged": flagged, "by_flag": by_flag,
                                "by_source": per_source, "facts_not_counted": list(FACT_FLAGS),
                                "clean_clip_figures": baseline},
            "controls": {"pairs": c_pairs, "flagged": c_flagged, "by_flag": c_by_flag},
            "sice": sice,
            "sessions": [{"source": r.job.source.label, "name": r.job.name,
                          "defects": list(r.job.defects), "sync": r.sync, "error": r.error,
                          "seconds": round(r.seconds, 2), "rows": r.rows} for r in results],
            "elapsed_s": round(elapsed, 1),
        }  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=1, default=str), encoding="utf-8")
        print(f"wrote {args.json}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
