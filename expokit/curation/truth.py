"""Every calibration and curation stage checked against a simulated session's ``truth.json``.

:func:`compare_to_truth` reads what ``expokit simulate`` knows (``truth.json``) and what the
pipeline recovered (``rig_calibration.json``, ``sync.json``, a dataset built from the
session) and returns one :class:`StageCheck` per stage: the measured value, the truth, the
tolerance and whether it passes. :func:`format_checks` renders them as a text table (the
demo prints it). The tolerances are those of issue 11:

* ``flip``: the mirror recovered exactly;
* ``homography``: mean grid error (every 10 px over the test image) < 0.3 px;
* ``offset``: audio < 1 ms; video-only (brightness) within one frame;
* ``drift``: within 2 ppm when estimated; when the clip is too short to estimate it,
  ``sync.json`` must say so (a warning), never a silent 0 ppm;
* ``frame pairing``: every video pair of the dataset shows the reference and test frames
  of the same scene instant, within half a frame (plus the ms of the sync tolerance);
* ``build residual``: the largest ``alignment_residual_px`` of the dataset < 0.5 px;
* ``photometric gain``: the median over pairs of the median linear ratio target / input on
  pixels below clipping (and above the dark floor) in both, within 2 % of
  ``truth.json["photometric_gain"]`` (``splitter_ratio * 2 ** -ev_offset``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from expokit.core.errors import ExpokitError, InputFileError

TRUTH_FILE = "truth.json"
#: Tolerances of issue 11.
HOMOGRAPHY_TOL_PX = 0.3
AUDIO_OFFSET_TOL_S = 1e-3
DRIFT_TOL_PPM = 2.0
RESIDUAL_TOL_PX = 0.5
GAIN_TOL_REL = 0.02
#: Linear values counted as unclipped: below this fraction of white, above the dark floor.
GAIN_BRIGHT = 0.95
GAIN_DARK = 0.01


class TruthError(ExpokitError):
    """A truth comparison cannot be made; the message names the file and the problem."""


@dataclass(frozen=True)
class StageCheck:
    """One stage against the truth: ``passed`` is ``|measured - truth| <= tolerance``
    (or the stage's own rule, described in ``detail``)."""

    stage: str
    measured: Any
    truth: Any
    tolerance: str
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "measured": self.measured,
            "truth": self.truth,
            "tolerance": self.tolerance,
            "passed": self.passed,
            "detail": self.detail,
        }


def load_truth(session_dir: str | Path) -> dict[str, Any]:
    """``truth.json`` of a simulated session (the one reader), validated through
    :class:`~expokit.capture.simulate.TruthFile`.

    Raises
    ------
    TruthError
        Absent, not JSON, not an object, another ``kind`` or ``format_version``, or a field
        that is missing or of the wrong type (the message names the file and the field).
    """
    from expokit.capture.simulate import TRUTH_KIND, TruthFile

    path = Path(session_dir) / TRUTH_FILE
    if not path.is_file():
        raise TruthError(
            f"{path}: no such file; only a session written by `expokit simulate` has the "
            "truth to compare with"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TruthError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise TruthError(f"{path}: must be a JSON object, got {type(data).__name__}")
    if data.get("kind") != TRUTH_KIND:
        raise TruthError(f"{path}: not an expokit rig simulation truth file")
    if data.get("format_version") != 1 or isinstance(data.get("format_version"), bool):
        raise TruthError(f"{path}: format_version {data.get('format_version')!r} is not 1")
    model = TruthFile.from_json(data, path, lambda p, problem: TruthError(f"{p}: {problem}"))
    return model.to_json()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def format_checks(checks: Sequence[StageCheck]) -> str:
    """A text table: stage, measured, truth, tolerance, PASS/FAIL (and detail)."""
    rows = [("stage", "measured", "truth", "tolerance", "result")]
    rows += [
        (c.stage, _fmt(c.measured), _fmt(c.truth), c.tolerance, "PASS" if c.passed else "FAIL")
        for c in checks
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    details = [f"  {c.stage}: {c.detail}" for c in checks if c.detail]
    return "\n".join(lines + details)


# --------------------------------------------------------------------------- geometry


def _geometry_checks(truth: dict[str, Any], calibration_json: Path) -> list[StageCheck]:
    from expokit.calibration.homography import homography_grid_error
    from expokit.calibration.rig_calibration import read_rig_calibration

    calib = read_rig_calibration(calibration_json)
    size = (int(truth["image_size"][0]), int(truth["image_size"][1]))
    if tuple(calib.test_size) != size or tuple(calib.reference_size) != size:
        raise TruthError(
            f"{calibration_json}: calibrated for {calib.test_size[0]}x{calib.test_size[1]} "
            f"images, the simulated session's are {size[0]}x{size[1]}: not this session"
        )
    flip = calib.flip.value
    mean, worst = homography_grid_error(calib.homography, np.array(truth["homography"]), size)
    return [
        StageCheck("flip", flip, truth["flip"], "exact", flip == truth["flip"],
                   f"decided by {calib.mirror.method}"),
        StageCheck("homography grid error px", mean, 0.0, f"< {HOMOGRAPHY_TOL_PX}",
                   mean < HOMOGRAPHY_TOL_PX,
                   f"mean {mean:.3f} px, max {worst:.3f} px over a 10 px grid "
                   f"({calib.method}, {calib.inliers}/{calib.correspondences} inliers)"),
    ]  # fmt: skip


# --------------------------------------------------------------------------- sync


def _check_sync_files(truth: dict[str, Any], result: Any, sync_json: Path | str) -> bool:
    """True when ``result`` is about the session's movies with A = reference (raises when
    it is about other files)."""
    names = {Path(str(truth.get("sync_a") or "")).name, Path(str(truth.get("sync_b") or "")).name}
    a, b = Path(result.media_a.path).name, Path(result.media_b.path).name
    if {a, b} != names:
        raise TruthError(
            f"{sync_json}: synchronizes {a} and {b}, the simulated session's movies are "
            f"{' and '.join(sorted(names))}: not this session"
        )
    return a == Path(str(truth["sync_a"])).name


def _sync_checks(truth: dict[str, Any], result: Any, label: str) -> list[StageCheck]:
    """Offset (and drift) of one :class:`~expokit.calibration.sync.SyncResult`."""
    fps = float(truth.get("fps") or 0.0)
    video_only = result.method != "audio"
    error = abs(result.offset_s - truth["offset_s"])
    if video_only:
        tol, tol_text = (1.0 / fps if fps else 0.0), "< 1 frame"
    else:
        tol, tol_text = AUDIO_OFFSET_TOL_S, "< 1 ms"
    checks = [
        StageCheck(f"{label} offset s ({result.method})", result.offset_s, truth["offset_s"],
                   tol_text, error < tol,
                   f"error {error * 1000:.3f} ms" + (f" = {error * fps:.3f} frames" if fps else
                                                     "")),
    ]  # fmt: skip
    if video_only:
        return checks
    if result.drift_estimated:
        err = abs(result.drift_ppm - truth["drift_ppm"])
        checks.append(
            StageCheck(
                f"{label} drift ppm",
                result.drift_ppm,
                truth["drift_ppm"],
                f"<= {DRIFT_TOL_PPM:g} ppm",
                err <= DRIFT_TOL_PPM,
                f"error {err:.3f} ppm over {len(result.windows)} windows",
            )
        )
    else:
        said = [w for w in result.warnings if "drift not estimated" in w]
        checks.append(StageCheck(
            f"{label} drift ppm", "not estimated", truth["drift_ppm"], "said so", bool(said),
            said[0] if said else "drift silently taken as 0 ppm (no warning in sync.json)",
        ))  # fmt: skip
    return checks


def _video_only_sync(session: Path, truth: dict[str, Any]) -> Any:
    from expokit.calibration.sync import SyncConfig, synchronize

    return synchronize(session / truth["sync_a"], session / truth["sync_b"],
                       SyncConfig(method="brightness"))  # fmt: skip


# --------------------------------------------------------------------------- dataset


def _frame_of(label: str) -> tuple[str, int] | None:
    """``(movie file name, frame)`` of a manifest ``source_*`` label ``path#frame=N``."""
    path, sep, frame = str(label).partition("#frame=")
    if not sep or not frame.isdigit():
        return None
    return Path(path).name, int(frame)


def _pairing_check(truth: dict[str, Any], manifest: Any) -> StageCheck | None:
    """Each video pair's reference and test frames show the same scene instant."""
    bodies = truth.get("bodies") or {}
    fps = float(truth.get("fps") or 0.0)
    if not fps or "reference" not in bodies or "test" not in bodies:
        return None
    names = {Path(str(truth.get("sync_a"))).name: "reference",
             Path(str(truth.get("sync_b"))).name: "test"}  # fmt: skip
    worst = 0.0
    count = 0
    for label_in, label_t in zip(manifest["source_input"], manifest["source_target"], strict=True):
        fin, ftg = _frame_of(label_in), _frame_of(label_t)
        if fin is None or ftg is None:
            continue
        roles = {names.get(fin[0]): fin[1], names.get(ftg[0]): ftg[1]}
        if set(roles) != {"reference", "test"}:
            raise TruthError(
                f"dataset pair {label_in} -> {label_t} is not from the simulated session's "
                f"movies {' and '.join(sorted(k for k in names))}: not this session"
            )
        times = []
        for role in ("reference", "test"):
            body = bodies[role]
            rate = 1.0 + float(body["clock_ppm"]) * 1e-6
            times.append(float(body["start_s"]) + roles[role] / fps / rate)
        worst = max(worst, abs(times[0] - times[1]) * fps)
        count += 1
    if not count:
        return None
    # Nearest-frame pairing: the instants differ by at most half a frame (+ 1 ms of sync).
    limit = 0.5 + AUDIO_OFFSET_TOL_S * fps
    return StageCheck("frame pairing frames", worst, 0.0, f"<= {limit:.3f}", worst <= limit,
                      f"{count} video pairs, largest scene-time gap {worst:.3f} frames "
                      "(nearest-frame pairing: <= 0.5 + sync error)")  # fmt: skip


def _pair_gain(root: Path, row: Any) -> float | None:
    import cv2

    from expokit.curation.align import bits_of, to_linear

    images = []
    for key in ("input_path", "target_path"):
        image = cv2.imread(str(root / row[key]), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise TruthError(f"{root / row[key]}: unreadable image of pair {row['pair_id']}")
        images.append(image)
    inp, tgt = images
    if inp.shape != tgt.shape:
        return None
    use = np.ones(inp.shape[:2], bool)
    mask_path = row.get("mask_path")
    if isinstance(mask_path, str) and mask_path:
        mask = cv2.imread(str(root / mask_path), cv2.IMREAD_GRAYSCALE)
        if mask is not None and mask.shape == use.shape:
            use &= mask > 127
    lin_in = to_linear(inp) if bits_of(inp) in (8, 16) else inp.astype(np.float32)
    lin_t = to_linear(tgt) if bits_of(tgt) in (8, 16) else tgt.astype(np.float32)
    ok = use[..., None] & (lin_in < GAIN_BRIGHT) & (lin_t < GAIN_BRIGHT)
    ok &= (lin_in > GAIN_DARK) & (lin_t > GAIN_DARK)
    if int(ok.sum()) < 100:
        return None
    return float(np.median(lin_t[ok] / lin_in[ok]))


def _dataset_checks(truth: dict[str, Any], dataset_root: Path, session: Path) -> list[StageCheck]:
    from expokit.curation.dataset import load_dataset

    dataset = load_dataset(dataset_root)
    manifest = dataset.manifest
    movies = {Path(str(truth.get(k))).name for k in ("sync_a", "sync_b") if truth.get(k)}
    stills = {Path(p).name for k, p in truth["files"].items() if k.startswith("still_")}
    own = [
        Path(str(label).partition("#")[0]).name in movies | stills
        for label in manifest["source_input"]
    ]
    if not any(own):
        raise TruthError(
            f"{dataset_root}: no pair of the dataset comes from {session} (its inputs are "
            "other files): not this session"
        )
    rows = manifest[np.array(own, bool)]
    checks: list[StageCheck] = []
    pairing = _pairing_check(truth, rows)
    if pairing is not None:
        checks.append(pairing)
    residual = rows["alignment_residual_px"].astype(float)
    finite = residual[np.isfinite(residual)]
    worst = float(finite.max()) if finite.size else math.nan
    checks.append(StageCheck("build residual px", worst, 0.0, f"< {RESIDUAL_TOL_PX}",
                             bool(finite.size) and worst < RESIDUAL_TOL_PX,
                             f"max over {finite.size} pairs (mean {float(finite.mean()):.3f} px, "
                             "DIS flow, manifest alignment_residual_px)"
                             if finite.size else "no finite residual"))  # fmt: skip
    gain_truth = float(truth["photometric_gain"])
    for kind, is_video in (("stills", False), ("video", True)):
        framed = np.array(["#frame=" in str(v) for v in rows["source_input"]], bool)
        part = rows[framed == is_video]
        gains = [g for _, row in part.iterrows() if (g := _pair_gain(dataset.root, row))]
        if not gains:
            continue
        gain = float(np.median(gains))
        rel = abs(gain / gain_truth - 1.0)
        checks.append(StageCheck(
            f"photometric gain ({kind})", gain, gain_truth, f"within {GAIN_TOL_REL:.0%}",
            rel <= GAIN_TOL_REL,
            f"median of {len(gains)} pairs' median linear target/input ratio on pixels "
            f"in ({GAIN_DARK:g}, {GAIN_BRIGHT:g}) in both; off by {rel:.2%}; pairs range "
            f"{min(gains):.3f}-{max(gains):.3f}",
        ))  # fmt: skip
    return checks


# --------------------------------------------------------------------------- entry point


def compare_to_truth(
    session_dir: str | Path,
    calibration_json: str | Path | None = None,
    sync_json: str | Path | None = None,
    dataset_root: str | Path | None = None,
    *,
    video_only_sync: bool = False,
) -> list[StageCheck]:
    """Check each given stage's output against the session's ``truth.json``.

    Parameters
    ----------
    session_dir
        A session written by ``expokit simulate`` (holds ``truth.json``).
    calibration_json
        ``rig_calibration.json`` (or its folder): flip and homography grid error.
    sync_json
        ``sync.json`` of the session's two movies: offset (and drift, or that it says drift
        was not estimated).
    dataset_root
        A dataset built from the session: frame pairing, build residual, photometric gain.
    video_only_sync
        Also synchronize the movies by brightness only (no audio) and check the offset is
        within one frame.

    Raises
    ------
    TruthError
        No ``truth.json``, or an input that belongs to another session (named).
    """
    from expokit.calibration.sync_record import load_sync_json

    session = Path(session_dir)
    truth = load_truth(session)
    checks: list[StageCheck] = []
    if calibration_json is not None:
        path = Path(calibration_json)
        if not path.exists():
            raise InputFileError(path, "no such file")
        checks += _geometry_checks(truth, path)
    if sync_json is not None:
        if not Path(sync_json).is_file():
            raise InputFileError(sync_json, "no such file")
        if not truth.get("sync_a"):
            raise TruthError(f"{session / TRUTH_FILE}: the session has no movies to synchronize")
        result = load_sync_json(sync_json)
        if not _check_sync_files(truth, result, sync_json):
            raise TruthError(
                f"{sync_json}: A is the test movie; compare a sync.json made with the "
                "reference movie first (the convention of truth.json)"
            )
        checks += _sync_checks(truth, result, "sync")
    if video_only_sync:
        from expokit.calibration.sync import SyncError

        if not truth.get("sync_a"):
            raise TruthError(f"{session / TRUTH_FILE}: the session has no movies to synchronize")
        try:
            checks += _sync_checks(truth, _video_only_sync(session, truth), "video-only sync")
        except SyncError as exc:  # refused: not wrong, but the stage did not pass
            checks.append(
                StageCheck(
                    "video-only sync offset s (brightness)",
                    "refused",
                    truth["offset_s"],
                    "< 1 frame",
                    False,
                    str(exc),
                )
            )
    if dataset_root is not None:
        checks += _dataset_checks(truth, Path(dataset_root), session)
    return checks
