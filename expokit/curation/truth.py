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

The QA flags against injected defects (``expokit simulate --defect``,
``truth.json["defects"]``): :func:`rows_against_truth` maps every manifest row of a dataset
built from simulated sessions back to the defects in its two exposures (:class:`RowTruth`);
:func:`expected_flags` says which flag each defect should raise; :func:`detection_counts`
and :func:`false_positive_counts` turn rows into detection and false-positive counts
(``benchmarks/qa_flags.py`` prints them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from expokit.calibration.homography import homography_grid_error
from expokit.calibration.rig_calibration import read_rig_calibration
from expokit.calibration.sync import synchronize
from expokit.calibration.sync_record import SyncConfig, SyncError, load_sync_json
from expokit.capture.simulator.truth_file import TruthFile, read_truth
from expokit.core.errors import ExpokitError, InputFileError
from expokit.core.schema import to_json
from expokit.curation.build.align import bits_of, to_linear
from expokit.curation.dataset.format import load_dataset

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


def load_truth(session_dir: str | Path) -> TruthFile:
    """``truth.json`` of a simulated session (the one reader) as its typed record
    :class:`~expokit.capture.simulator.truth_file.TruthFile`
    (:func:`~expokit.capture.simulator.truth_file.read_truth`).

    Raises
    ------
    TruthError
        Absent, not JSON, not an object, another ``kind`` or ``format_version``, or a field
        that is missing or of the wrong type (the message names the file and the field).
    """
    path = Path(session_dir) / TRUTH_FILE
    return read_truth(path, lambda p, problem: TruthError(f"{p}: {problem}"))


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


def _geometry_checks(truth: TruthFile, calibration_json: Path) -> list[StageCheck]:
    calib = read_rig_calibration(calibration_json)
    size = (int(truth.image_size[0]), int(truth.image_size[1]))
    if tuple(calib.test_size) != size or tuple(calib.reference_size) != size:
        raise TruthError(
            f"{calibration_json}: calibrated for {calib.test_size[0]}x{calib.test_size[1]} "
            f"images, the simulated session's are {size[0]}x{size[1]}: not this session"
        )
    flip = calib.flip.value
    mean, worst = homography_grid_error(calib.homography, np.array(truth.homography), size)
    return [
        StageCheck("flip", flip, truth.flip, "exact", flip == truth.flip,
                   f"decided by {calib.mirror.method}"),
        StageCheck("homography grid error px", mean, 0.0, f"< {HOMOGRAPHY_TOL_PX}",
                   mean < HOMOGRAPHY_TOL_PX,
                   f"mean {mean:.3f} px, max {worst:.3f} px over a 10 px grid "
                   f"({calib.method}, {calib.inliers}/{calib.correspondences} inliers)"),
    ]  # fmt: skip


# --------------------------------------------------------------------------- sync


def _check_sync_files(truth: TruthFile, result: Any, sync_json: Path | str) -> bool:
    """True when ``result`` is about the session's movies with A = reference (raises when
    it is about other files)."""
    names = {Path(truth.sync_a or "").name, Path(truth.sync_b or "").name}
    a, b = Path(result.media_a.path).name, Path(result.media_b.path).name
    if {a, b} != names:
        raise TruthError(
            f"{sync_json}: synchronizes {a} and {b}, the simulated session's movies are "
            f"{' and '.join(sorted(names))}: not this session"
        )
    return a == Path(str(truth.sync_a)).name


def _sync_checks(truth: TruthFile, result: Any, label: str) -> list[StageCheck]:
    """Offset (and drift) of one :class:`~expokit.calibration.sync.SyncResult`."""
    fps = float(truth.fps or 0.0)
    video_only = result.method != "audio"
    error = abs(result.offset_s - truth.offset_s)
    if video_only:
        tol, tol_text = (1.0 / fps if fps else 0.0), "< 1 frame"
    else:
        tol, tol_text = AUDIO_OFFSET_TOL_S, "< 1 ms"
    checks = [
        StageCheck(f"{label} offset s ({result.method})", result.offset_s, truth.offset_s,
                   tol_text, error < tol,
                   f"error {error * 1000:.3f} ms" + (f" = {error * fps:.3f} frames" if fps else
                                                     "")),
    ]  # fmt: skip
    if video_only:
        return checks
    if result.drift_estimated:
        err = abs(result.drift_ppm - truth.drift_ppm)
        checks.append(
            StageCheck(
                f"{label} drift ppm",
                result.drift_ppm,
                truth.drift_ppm,
                f"<= {DRIFT_TOL_PPM:g} ppm",
                err <= DRIFT_TOL_PPM,
                f"error {err:.3f} ppm over {len(result.windows)} windows",
            )
        )
    else:
        said = [w for w in result.warnings if "drift not estimated" in w]
        checks.append(StageCheck(
            f"{label} drift ppm", "not estimated", truth.drift_ppm, "said so", bool(said),
            said[0] if said else "drift silently taken as 0 ppm (no warning in sync.json)",
        ))  # fmt: skip
    return checks


def _video_only_sync(session: Path, truth: TruthFile) -> Any:
    return synchronize(session / str(truth.sync_a), session / str(truth.sync_b),
                       SyncConfig(method="brightness"))  # fmt: skip


# --------------------------------------------------------------------------- dataset


def _frame_of(label: str) -> tuple[str, int] | None:
    """``(movie file name, frame)`` of a manifest ``source_*`` label ``path#frame=N``."""
    path, sep, frame = str(label).partition("#frame=")
    if not sep or not frame.isdigit():
        return None
    return Path(path).name, int(frame)


def _pairing_check(truth: TruthFile, manifest: Any) -> StageCheck | None:
    """Each video pair's reference and test frames show the same scene instant."""
    bodies = truth.bodies
    fps = float(truth.fps or 0.0)
    if not fps or "reference" not in bodies or "test" not in bodies:
        return None
    names = {Path(str(truth.sync_a)).name: "reference",
             Path(str(truth.sync_b)).name: "test"}  # fmt: skip
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


def _dataset_checks(truth: TruthFile, dataset_root: Path, session: Path) -> list[StageCheck]:
    dataset = load_dataset(dataset_root)
    manifest = dataset.manifest
    movies = {Path(movie).name for movie in (truth.sync_a, truth.sync_b) if movie}
    stills = {Path(p).name for k, p in truth.files.items() if k.startswith("still_")}
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
    gain_truth = float(truth.photometric_gain)
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
        if not truth.sync_a:
            raise TruthError(f"{session / TRUTH_FILE}: the session has no movies to synchronize")
        result = load_sync_json(sync_json)
        if not _check_sync_files(truth, result, sync_json):
            raise TruthError(
                f"{sync_json}: A is the test movie; compare a sync.json made with the "
                "reference movie first (the convention of truth.json)"
            )
        checks += _sync_checks(truth, result, "sync")
    if video_only_sync:
        if not truth.sync_a:
            raise TruthError(f"{session / TRUTH_FILE}: the session has no movies to synchronize")
        try:
            checks += _sync_checks(truth, _video_only_sync(session, truth), "video-only sync")
        except SyncError as exc:  # refused: not wrong, but the stage did not pass
            checks.append(
                StageCheck(
                    "video-only sync offset s (brightness)",
                    "refused",
                    truth.offset_s,
                    "< 1 frame",
                    False,
                    str(exc),
                )
            )
    if dataset_root is not None:
        checks += _dataset_checks(truth, Path(dataset_root), session)
    return checks


# --------------------------------------------------------------------------- injected defects

#: The flag each injected defect kind should raise (``None``: depends on the camera, see
#: :func:`expected_flags`; empty: a negative control, nothing should be raised).
DEFECT_FLAGS: dict[str, tuple[str, ...] | None] = {
    "misregistration": ("misaligned",),
    "light_change": ("gain_outlier",),
    "gain": ("gain_outlier",),
    "time_offset": ("misaligned",),
    "flicker": None,
    "scene_flicker": ("target_flicker",),
    "clipping": None,
    "defocus": ("defocus",),
    "light_ramp": (),
    "motion": (),
}
#: Flags a clip figure raises on every pair of a video clip.
CLIP_FLAGS: tuple[str, ...] = ("gain_unstable", "target_flicker")
#: The manifest's flags column: ``qa_flags`` (dataset format v2), ``flags`` (v1).
FLAG_COLUMNS: tuple[str, ...] = ("qa_flags", "flags")


def expected_flags(defect: Mapping[str, Any]) -> tuple[str, ...]:
    """The QA flags a ``truth.json["defects"]`` entry should raise on the pairs it is in.

    The input of a rig pair is the test camera, the target the reference: ``clipping`` of
    the test camera is ``clipped_input``, of the reference ``clipped_target``; camera
    ``flicker`` makes the pair's gain unstable, and in the reference camera the target's
    brightness oscillate too. Controls (``light_ramp``, ``motion``) expect nothing.

    Raises
    ------
    TruthError
        An unknown defect kind.
    """
    kind = str(defect.get("kind"))
    if kind not in DEFECT_FLAGS:
        raise TruthError(f"unknown defect kind {kind!r} in truth.json (known: "
                         f"{', '.join(DEFECT_FLAGS)})")  # fmt: skip
    fixed = DEFECT_FLAGS[kind]
    if fixed is not None:
        return fixed
    reference = defect.get("camera") == "reference"
    if kind == "clipping":
        return ("clipped_target",) if reference else ("clipped_input",)
    return ("gain_unstable", "target_flicker") if reference else ("gain_unstable",)


def flag_column(manifest: Any) -> str:
    """Name of ``manifest``'s flags column (:data:`FLAG_COLUMNS`; raises when neither)."""
    for name in FLAG_COLUMNS:
        if name in manifest.columns:
            return name
    raise TruthError(f"the manifest has no flags column ({' or '.join(FLAG_COLUMNS)})")


def split_flags(value: Any) -> tuple[str, ...]:
    """The flags of one flags cell (comma-separated; empty or null: none)."""
    if not isinstance(value, str):
        return ()
    return tuple(f.strip() for f in value.split(",") if f.strip())


@dataclass(frozen=True)
class RowTruth:
    """One manifest row of a simulated session and the defects injected into its exposures.

    Attributes
    ----------
    pair_id
        The manifest row.
    session
        The simulated session the pair comes from.
    clip
        ``"<session>/stills"`` or ``"<session>/video"``: the group a clip figure (or a
        still set's gain median) is computed over.
    still
        1-based still pair number (``None`` for a video pair).
    frames
        ``{"reference": i, "test": j}``: the movie frames of a video pair (``None`` for a
        still pair).
    defects
        The ``truth.json["defects"]`` entries in this pair's two exposures.
    clip_defects
        For a video pair, every defect in any frame of its clip (a clip flag is raised on
        every pair of the clip); empty for still pairs.
    flags
        The row's QA flags, as the manifest has them.
    figures
        The row's manifest values, by column (every QA figure among them).
    """

    pair_id: str
    session: Path
    clip: str
    still: int | None
    frames: dict[str, int] | None
    defects: tuple[dict[str, Any], ...]
    clip_defects: tuple[dict[str, Any], ...]
    flags: tuple[str, ...]
    figures: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def clean(self) -> bool:
        """No defect in this pair, nor (video) in its clip: any flag is a false positive."""
        return not self.defects and not self.clip_defects

    def expected(self) -> tuple[str, ...]:
        """Flags the defects in this pair (and, for clip flags, in its clip) should raise."""
        out = {f for d in self.defects for f in expected_flags(d)}
        out |= {f for d in self.clip_defects for f in expected_flags(d) if f in CLIP_FLAGS}
        return tuple(sorted(out))


def _label_path(label: Any) -> tuple[Path, int | None]:
    path, sep, frame = str(label).partition("#frame=")
    return Path(path), (int(frame) if sep and frame.isdigit() else None)


@dataclass(frozen=True)
class _SessionIndex:
    root: Path
    truth: TruthFile
    keys: dict[str, str]  # resolved file path -> truth.json files key
    still_numbers: dict[int, int]  # shot index -> still pair number
    #: ``truth.json["defects"]`` entries as written: what :class:`RowTruth` and
    #: :func:`expected_flags` take (their callers, ``benchmarks/qa_flags.py``, use them so).
    defects: tuple[dict[str, Any], ...]


def _index_session(session: Path) -> _SessionIndex:
    truth = load_truth(session)
    keys = {str((session / path).resolve()): key for key, path in truth.files.items()}
    shots = sorted({int(k.split("_")[1]) for k in truth.files if k.startswith("still_")})
    defects = tuple(to_json(defect) for defect in truth.defects)
    return _SessionIndex(session, truth, keys, {s: n for n, s in enumerate(shots, 1)}, defects)


def _find(indexes: Sequence[_SessionIndex], path: Path) -> tuple[_SessionIndex, str] | None:
    resolved = str(path.resolve())
    for index in indexes:
        if resolved in index.keys:
            return index, index.keys[resolved]
    # A label relative to another working directory: the session file of that name.
    named = [(i, k) for i in indexes for p, k in i.keys.items() if Path(p).name == path.name]
    return named[0] if len(named) == 1 else None


def _in_frames(defect: Mapping[str, Any], frames: Mapping[str, int]) -> bool:
    spans = defect.get("frames") or {}
    return any(
        role in spans and int(spans[role][0]) <= index <= int(spans[role][1])
        for role, index in frames.items()
    )


def rows_against_truth(dataset_root: str | Path, sessions: Iterable[str | Path]) -> list[RowTruth]:
    """Every manifest row of ``dataset_root`` that comes from one of the simulated
    ``sessions``, with the defects injected into its two exposures.

    A still pair is matched by its files (``truth.json["files"]``), a video pair by its
    movies and the two frame numbers of its ``source_input`` / ``source_target`` labels
    (``path#frame=N``). Rows from other sources are left out.

    Raises
    ------
    TruthError
        A session without ``truth.json``, a dataset without a flags column, or no row of
        the dataset from any of the sessions.
    """
    indexes = [_index_session(Path(s)) for s in sessions]
    manifest = load_dataset(dataset_root).manifest
    column = flag_column(manifest)
    rows: list[RowTruth] = []
    for raw in manifest.to_dict("records"):
        record = {str(k): v for k, v in raw.items()}
        found = []
        for label in (record["source_input"], record["source_target"]):
            path, frame = _label_path(label)
            hit = _find(indexes, path)
            if hit is not None:
                found.append((hit[0], hit[1], frame))
        if len(found) != 2 or found[0][0] is not found[1][0]:
            continue
        index = found[0][0]
        defects = index.defects
        roles = {key.rsplit("_", 1)[-1]: frame for _, key, frame in found}
        if all(key.startswith("video_") for _, key, _ in found):
            frames = {role: int(frame) for role, frame in roles.items() if frame is not None}
            if set(frames) != {"reference", "test"}:
                continue
            hit_by = tuple(d for d in defects if _in_frames(d, frames))
            on_clip = tuple(d for d in defects if d.get("frames"))
            rows.append(RowTruth(str(record["pair_id"]), index.root, f"{index.root}/video",
                                 None, frames, hit_by, on_clip, split_flags(record[column]),
                                 record))  # fmt: skip
        elif all(key.startswith("still_") for _, key, _ in found):
            shot = int(found[0][1].split("_")[1])
            hit_by = tuple(d for d in defects if shot in (d.get("still_shots") or ()))
            rows.append(RowTruth(str(record["pair_id"]), index.root, f"{index.root}/stills",
                                 index.still_numbers.get(shot), None, hit_by, (),
                                 split_flags(record[column]), record))  # fmt: skip
    if not rows:
        names = ", ".join(str(i.root) for i in indexes)
        raise TruthError(f"{dataset_root}: no pair of the dataset comes from {names}")
    return rows


@dataclass(frozen=True)
class DetectionCount:
    """Pairs injected with one defect kind at one magnitude, and how many its flag caught.

    ``clips`` counts distinct clips (a clip flag is one decision per clip)."""

    kind: str
    camera: str | None
    magnitude: float
    unit: str
    flag: str
    injected: int
    detected: int
    clips: int

    @property
    def rate(self) -> float:
        return self.detected / self.injected if self.injected else math.nan


def detection_counts(rows: Iterable[RowTruth]) -> list[DetectionCount]:
    """Per (kind, camera, magnitude, expected flag): pairs injected and pairs flagged.

    A pair with several defects counts for each. For a clip flag (:data:`CLIP_FLAGS`) the
    pairs are those of the clips the defect is in (one decision per clip, repeated on each
    of its pairs). Controls expect no flag and so appear in :func:`false_positive_counts`
    only (:func:`control_counts`).
    """
    tally: dict[tuple[str, str | None, float, str, str], list[Any]] = {}
    for row in rows:
        seen: set[int] = set()
        for defect in (*row.defects, *row.clip_defects):
            if id(defect) in seen:
                continue
            seen.add(id(defect))
            in_pair = any(defect is d for d in row.defects)
            for flag in expected_flags(defect):
                if not in_pair and flag not in CLIP_FLAGS:
                    continue
                key = (str(defect["kind"]), defect.get("camera"), float(defect["magnitude"]),
                       str(defect["unit"]), flag)  # fmt: skip
                entry = tally.setdefault(key, [0, 0, set()])
                entry[0] += 1
                entry[1] += flag in row.flags
                entry[2].add(row.clip)
    ordered = sorted(tally.items(), key=_count_order)
    return [DetectionCount(k, c, m, u, f, n, d, len(clips))
            for (k, c, m, u, f), (n, d, clips) in ordered]  # fmt: skip


def _count_order(item: tuple[tuple[str, str | None, float, str, str], Any]) -> tuple[Any, ...]:
    kind, camera, magnitude, unit, flag = item[0]
    return (kind, camera or "", flag, magnitude, unit)


@dataclass(frozen=True)
class FalsePositiveCount:
    """Clean pairs (no defect in them or their clip) and how many carry any flag.

    ``by_flag`` counts each flag on clean pairs; ``ignored`` flags are not counted as
    false positives (facts such as ``clipped_input`` on a real scene)."""

    pairs: int
    flagged: int
    by_flag: dict[str, int]
    ignored: tuple[str, ...] = ()

    @property
    def rate(self) -> float:
        return self.flagged / self.pairs if self.pairs else math.nan


def _flag_counts(rows: Iterable[RowTruth], ignore: Iterable[str]) -> FalsePositiveCount:
    skip = tuple(ignore)
    pairs = flagged = 0
    by_flag: dict[str, int] = {}
    for row in rows:
        pairs += 1
        raised = [f for f in row.flags if f not in skip]
        flagged += bool(raised)
        for flag in raised:
            by_flag[flag] = by_flag.get(flag, 0) + 1
    return FalsePositiveCount(pairs, flagged, dict(sorted(by_flag.items())), skip)


def false_positive_counts(
    rows: Iterable[RowTruth], ignore: Iterable[str] = ()
) -> FalsePositiveCount:
    """Flags on clean pairs (:attr:`RowTruth.clean`), ``ignore`` left out."""
    return _flag_counts((row for row in rows if row.clean), ignore)


def _control_only(row: RowTruth) -> bool:
    defects = (*row.defects, *row.clip_defects)
    return bool(defects) and all(d.get("control") for d in defects)


def control_counts(rows: Iterable[RowTruth], ignore: Iterable[str] = ()) -> FalsePositiveCount:
    """Flags on pairs whose only defects are negative controls (``light_ramp``,
    ``motion``): each one is a false positive the control provoked."""
    return _flag_counts((row for row in rows if _control_only(row)), ignore)
