"""Where pairs come from: source detection, per-scene specs, and reading their pixels.

A *source* is a folder given to ``expokit curate build``; discovery turns it into
:class:`SceneSpec` objects (plain, picklable data: file paths, roles, EVs, exposure
metadata), one per scene, which :func:`expokit.curation.build.scene.build_scene` processes.

Kinds (``--kind auto`` picks by content, see :func:`detect_kind`)
---------------------------------------------------------------
``capture``
    A capture session (``journal.jsonl``, ``rig.json``, ``files/``) or a folder of them.
    Still shots: the ``reference`` file of each shot index is the target, the ``test``
    file the input; the pair is aligned with the rig calibration. When the journal's EXIF
    check read an exposure time for both files, ``input_ev`` is what the cameras actually
    did (:func:`exif_relative_ev`), not what was asked; a file whose EXIF contradicted the
    requested setting carries the text in :attr:`ImageRef.exif_mismatch` (the pair gets the
    ``exif_mismatch`` flag, info.json lists the shot). Video shots: frame pairs
    of the two movies through the ``sync.json`` frame map; ``clip_id = <session>-<index>``.
``render``
    An ``expokit render`` output folder (``render_params.json`` + ``manifest.parquet``):
    per RAW, the render at the target EV is the target and every other EV an input.
``sequences``
    A folder of scene folders, each holding one multi-exposure sequence (SICE-style).
``msec``
    ``INPUT_IMAGES/<name>_<EV>.JPG`` + ``GT_IMAGES/<name>.jpg`` (directly, or in
    ``training/``, ``validation/``, ``testing/`` sub-folders; ``expert_c_testing_set`` is
    used as GT when there is no ``GT_IMAGES``).
``flat``
    One folder of image files cut into multi-exposure sets by a stated rule
    (:func:`discover_flat`): a file-name pattern (default ``<scene>_<tag>.<ext>``, MEFB's
    ``_A``/``_B`` pairs) or consecutive EXIF brackets. Never picked by ``auto`` (any folder
    of images would match): ``--kind flat`` says so. Its scenes are ``sequences`` scenes
    in the manifest.

Problems found while discovering a scene (a shot without its test file, an MSEC input
without GT, ...) are stored in :attr:`SceneSpec.problem`; the scene is then reported as
failed by the build, naming the scene and the file, and the other scenes go on.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from expokit.calibration.rig_calibration import RIG_CALIBRATION_NAME
from expokit.calibration.sync_record import load_sync_json
from expokit.capture.exif_check import read_exposure
from expokit.capture.journal import (
    DownloadedEvent,
    ExifCheckEvent,
    PlannedEvent,
    read_events,
    read_journal,
)
from expokit.capture.rig_config import read_rig_json
from expokit.capture.session import JOURNAL_FILE
from expokit.core.errors import ExpokitError, InputFileError
from expokit.core.ev import ev_token, parse_ev_token
from expokit.core.exif import read_exif_tags
from expokit.core.images import decode_image
from expokit.core.paths import safe_component
from expokit.core.transfer import apply_luts, exposure_lut
from expokit.core.video_io import FrameReader as VideoFrameReader
from expokit.curation.build.config import DEFAULT_GROUP_PATTERN, BuildConfig, group_regex
from expokit.curation.rendering.raw_decode import RAW_EXTENSIONS, decode_raw
from expokit.curation.rendering.render_manifest import read_render_manifest

if TYPE_CHECKING:
    from expokit.capture.journal import JournalEvent

#: Image files a sequence or MSEC folder may hold (any case).
IMAGE_SUFFIXES: frozenset[str] = frozenset(".png .jpg .jpeg .tif .tiff .bmp .webp".split())
MSEC_GT_DIRS: tuple[str, ...] = ("GT_IMAGES", "expert_c_testing_set")
MSEC_SPLIT_DIRS: tuple[str, ...] = ("training", "validation", "testing")
#: Render output formats in the order a render source prefers them.
RENDER_FORMAT_PREFERENCE: tuple[str, ...] = ("png16", "tiff16", "png", "jpg")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class SourceError(ExpokitError):
    """A source folder cannot be used at all (not a known kind, no calibration, ...)."""


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class ImageRef:
    """One image of a pair: a file, or a frame of a movie.

    Attributes
    ----------
    path
        Absolute POSIX path of the file (or movie).
    role
        ``reference``/``test`` (capture), ``ev`` (one exposure of a set) or ``gt``.
    ev
        Exposure relative to the scene's reference exposure (EV), if known.
    frame
        Frame index in the movie (decoded order), ``None`` for image files.
    exposure_time_s, iso, f_number
        Exposure metadata (EXIF, RAW metadata or journal), if known.
    transfer
        How code values encode light: ``"srgb"`` or ``"linear"``.
    requested_ev
        Capture: the EV the shot plan asked for (``ev`` is what EXIF says was done).
    exif_mismatch
        Capture: the journal's EXIF check found the camera did not apply a requested
        setting; what was requested and what EXIF says (``None``: no mismatch found).
    """

    path: str
    role: str
    ev: float | None = None
    frame: int | None = None
    exposure_time_s: float | None = None
    iso: float | None = None
    f_number: float | None = None
    transfer: str = "srgb"
    requested_ev: float | None = None
    exif_mismatch: str | None = None

    @property
    def label(self) -> str:
        """How errors and the manifest name this image (``movie.mp4#frame=12`` for frames)."""
        return self.path if self.frame is None else f"{self.path}#frame={self.frame}"


@dataclass(frozen=True)
class PairSpec:
    """One (input, target) pair of a scene; ``stem`` names its files under the scene."""

    stem: str
    input: ImageRef
    target: ImageRef
    frame_index: int | None = None


@dataclass(frozen=True)
class SceneSpec:
    """Everything the per-scene step needs (picklable; no open files).

    Attributes
    ----------
    scene_id
        Unique, file-system-safe id; outputs go to ``images/<scene_id>/``.
    source
        ``capture``, ``render``, ``sequences`` or ``msec``.
    source_root
        The source folder it was discovered in.
    pairs
        The pairs, in a stable order.
    clip_id
        Video clip or capture session id; ``None`` for still sets.
    calibration
        ``rig_calibration.json`` to align test images with (capture only).
    sync
        ``sync.json`` whose frame map paired the frames (video only).
    expected_frames
        ``{movie path: decoded frame count}`` stated by ``sync.json`` (video only).
    shared_target
        All pairs share one target image (written once unless alignment crops it).
    video
        The pairs are frames of a clip (the clip figures are measured over them).
    ev_basis
        ``"ev"``: the pairs' EVs are exposure values (EXIF, a render, a capture plan);
        ``"rank"``: positions in an exposure order without EXIF (not measured EVs).
    problem
        Why the scene cannot be built (found during discovery), naming the file.
    origins
        ``((path, sha256), ...)`` of the files the inputs were made from (the RAW of a
        render), so one RAW under two names is found even when its renders differ.
    """

    scene_id: str
    source: str
    source_root: str
    pairs: tuple[PairSpec, ...] = ()
    clip_id: str | None = None
    calibration: str | None = None
    sync: str | None = None
    expected_frames: tuple[tuple[str, int], ...] = ()
    shared_target: bool = False
    video: bool = False
    problem: str | None = None
    origins: tuple[tuple[str, str], ...] = ()
    ev_basis: str = "ev"

    def input_files(self) -> list[str]:
        """Every file the scene's outputs depend on (sorted, unique)."""
        files = {p.input.path for p in self.pairs} | {p.target.path for p in self.pairs}
        files |= {f for f in (self.calibration, self.sync) if f}
        return sorted(files)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (part of the scene's record key)."""
        return asdict(self)


def safe_scene_id(text: str) -> str:
    """A file-system-safe scene id: characters outside ``[A-Za-z0-9._-]`` become ``-``."""
    return _UNSAFE.sub("-", text).strip("-.") or "scene"


def _natural_key(name: str) -> list[Any]:
    # 2.jpg before 10.jpg: compare digit runs as numbers.
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _images_in(folder: Path) -> list[Path]:
    found = [
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    return sorted(found, key=lambda p: _natural_key(p.name))


def _holds_raw_files(folder: Path) -> bool:
    """``folder`` or one of its subfolders holds RAW files (``expokit render`` input)."""
    for child in folder.iterdir():
        candidates = child.iterdir() if child.is_dir() else (child,)
        if any(c.is_file() and c.suffix.lower() in RAW_EXTENSIONS for c in candidates):
            return True
    return False


def _posix(path: Path) -> str:
    return path.resolve().as_posix()


# --------------------------------------------------------------------------- detection


def detect_kind(folder: str | Path) -> str:
    """The source kind of ``folder`` (see the module docstring).

    Raises
    ------
    SourceError
        ``folder`` is missing, not a folder, or matches no kind.
    """
    path = Path(folder)
    if not path.is_dir():
        raise SourceError(f"{path}: no such source folder")
    if (path / "journal.jsonl").is_file() or any(
        (c / "journal.jsonl").is_file() for c in path.iterdir() if c.is_dir()
    ):
        return "capture"
    if (path / "render_params.json").is_file():
        return "render"
    if (path / "INPUT_IMAGES").is_dir() or any(
        (path / d / "INPUT_IMAGES").is_dir() for d in MSEC_SPLIT_DIRS
    ):
        return "msec"
    if any(c.is_dir() and _images_in(c) for c in path.iterdir()):
        return "sequences"
    if _holds_raw_files(path):
        raise SourceError(
            f"{path} holds RAW files: render them first: expokit render {path} -o RENDERS, "
            "then expokit curate build RENDERS -o DATASET"
        )
    hint = ""
    if detect_flat(path):
        hint = (
            "; it holds image files directly: for a flat folder of pairs or brackets pass "
            "--kind flat (grouped by --group-pattern, default <scene>_<tag>.<ext>, or "
            "--group-by exposure|time)"
        )
    raise SourceError(
        f"{path}: not a capture session (journal.jsonl), render output (render_params.json), "
        f"MSEC folder (INPUT_IMAGES/) or folder of sequence folders{hint}"
    )


@dataclass
class Discovery:
    """Scenes found in one source and what info.json records about the source."""

    scenes: list[SceneSpec] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)


def discover(
    folder: str | Path,
    config: BuildConfig,
    *,
    kind: str | None = None,
    rig_calibration: str | Path | None = None,
    sync_files: Sequence[str | Path] = (),
) -> Discovery:
    """Scenes of one source folder of ``kind`` (``None``/``"auto"``: :func:`detect_kind`)."""
    path = Path(folder)
    chosen = kind if kind not in (None, "auto") else config.kind
    if chosen == "auto":
        chosen = detect_kind(path)
    elif not path.is_dir():
        raise SourceError(f"{path}: no such source folder")
    if chosen == "capture":
        found = discover_capture(path, config, rig_calibration, sync_files)
    elif chosen == "render":
        found = discover_render(path, config)
    elif chosen == "sequences":
        found = discover_sequences(path, config)
    elif chosen == "msec":
        found = discover_msec(path)
    elif chosen == "flat":
        found = discover_flat(path, config)
    else:
        raise SourceError(f"unknown source kind {chosen!r}")
    found.provenance = {
        "path": _posix(path),
        "kind": chosen,
        "scenes": len(found.scenes),
        **found.provenance,
    }
    return found


# --------------------------------------------------------------------------- sequences


def exposure_value(time_s: float | None, iso: float | None, f_number: float | None) -> float | None:
    """Relative exposure ``t * ISO/100 / N²`` (``None`` without an exposure time)."""
    if time_s is None or not time_s > 0:
        return None
    value = time_s * ((iso / 100.0) if iso and iso > 0 else 1.0)
    return value / (f_number**2 if f_number and f_number > 0 else 1.0)


def exif_relative_ev(image: ImageRef, reference: ImageRef) -> float | None:
    """EV of ``image`` relative to ``reference`` from their exposure metadata.

    ``log2`` of the exposure ratio (:func:`exposure_value`); ISO and f-number enter only
    when both images have them, so a value missing on one side is taken as equal.
    ``None`` unless both have an exposure time.
    """
    if not (image.exposure_time_s and reference.exposure_time_s):
        return None
    both_iso = bool(image.iso and reference.iso)
    both_f = bool(image.f_number and reference.f_number)
    value = exposure_value(
        image.exposure_time_s, image.iso if both_iso else None, image.f_number if both_f else None
    )
    base = exposure_value(
        reference.exposure_time_s,
        reference.iso if both_iso else None,
        reference.f_number if both_f else None,
    )
    if value is None or base is None:
        return None
    return math.log2(value / base)


def read_exif_exposure(path: Path) -> dict[str, float]:
    """``exposure_time_s``, ``iso``, ``f_number`` from a file's EXIF (missing keys absent)."""
    try:
        return read_exposure(path.read_bytes())
    except OSError:
        return {}


def discover_sequences(folder: Path, config: BuildConfig) -> Discovery:
    """One scene per sub-folder holding images: a multi-exposure sequence (SICE-style).

    The sequence is ordered by EXIF exposure or natural file name (``config.sequence_order``),
    the target is ``config.target_rank`` (default: the middle), every other image an input.
    ``input_ev`` is ``log2`` of the exposure ratio to the target when EXIF has it, else the
    rank difference (recorded as ``ev_basis`` in the provenance).
    """
    scene_dirs = sorted(
        (c for c in folder.iterdir() if c.is_dir() and not c.name.startswith(".")),
        key=lambda p: _natural_key(p.name),
    )
    scenes: list[SceneSpec] = []
    bases: dict[str, str] = {}
    for scene_dir in scene_dirs:
        files = _images_in(scene_dir)
        if not files:
            continue
        spec, basis = _sequence_scene(scene_dir, files, folder, config)
        scenes.append(spec)
        if basis:
            bases[spec.scene_id] = basis
    if not scenes:
        raise SourceError(f"{folder}: no scene folders with images (sequences source)")
    provenance: dict[str, Any] = {
        "ev_basis": sorted(set(bases.values())),
        "order": config.sequence_order,
    }
    ranked = sorted(s for s, b in bases.items() if b == "rank")
    if ranked:
        provenance["rank_scenes"] = ranked
        provenance["notes"] = [_rank_note(folder, ranked, len(bases))]
    return Discovery(scenes, provenance)


def _rank_note(folder: Path, ranked: list[str], total: int) -> str:
    """The one line a build prints when EVs are exposure ranks, not measurements."""
    shown = ", ".join(ranked[:_NOTE_SCENES]) + (", ..." if len(ranked) > _NOTE_SCENES else "")
    return (
        f"{folder}: {len(ranked)} of {total} scene(s) have no EXIF exposure times ({shown}); "
        "their input_ev are exposure ranks (ev_basis: rank), not measured EVs: the report, "
        "card and exports say 'exposure rank' and show the measured gain per rank"
    )


def _sequence_scene(
    scene_dir: Path | str,
    files: list[Path],
    root: Path,
    config: BuildConfig,
    *,
    scene_id: str | None = None,
) -> tuple[SceneSpec, str | None]:
    """One multi-exposure set as a scene; ``scene_dir`` names it in messages (a folder, or
    a flat source's group); ``scene_id`` defaults to the folder's name."""
    if scene_id is None:
        scene_id = safe_scene_id(Path(scene_dir).name)
    base = SceneSpec(scene_id, "sequences", _posix(root), shared_target=True)
    if len(files) < 2:
        return replace(
            base, problem=f"{scene_dir}: a sequence needs at least 2 exposures, found {len(files)}"
        ), None
    exif = [read_exif_exposure(f) for f in files]
    values = [
        exposure_value(e.get("exposure_time_s"), e.get("iso"), e.get("f_number")) for e in exif
    ]
    have_exif = all(v is not None for v in values)
    order = config.sequence_order
    if order == "exif" and not have_exif:
        missing = next(f for f, v in zip(files, values, strict=True) if v is None)
        return replace(base, problem=f"{missing}: no EXIF exposure time (--order exif)"), None
    indices = list(range(len(files)))
    if order == "exif" or (order == "auto" and have_exif):
        indices.sort(key=lambda i: (values[i], i))
    n = len(files)
    rank = (n - 1) // 2 if config.target_rank is None else config.target_rank
    if rank < 0:
        rank += n
    if not 0 <= rank < n:
        return replace(
            base,
            problem=f"{scene_dir}: target rank {config.target_rank} is outside the {n} exposures",
        ), None
    ordered = [files[i] for i in indices]
    meta = [exif[i] for i in indices]
    evs: list[float]
    if have_exif:
        target_value = values[indices[rank]]
        assert target_value is not None
        evs = [math.log2(values[i] / target_value) for i in indices]  # type: ignore[operator]
        basis = "exif"
    else:
        evs = [float(i - rank) for i in range(n)]
        basis = "rank"

    def ref(position: int, role: str) -> ImageRef:
        m = meta[position]
        return ImageRef(
            _posix(ordered[position]), role, round(evs[position], 4),
            exposure_time_s=m.get("exposure_time_s"), iso=m.get("iso"), f_number=m.get("f_number"),
        )  # fmt: skip

    target = ref(rank, "ev")
    pairs = tuple(
        PairSpec(f"r{pos}_{ev_token(evs[pos])}", ref(pos, "ev"), target)
        for pos in range(n)
        if pos != rank
    )
    return replace(base, pairs=pairs, ev_basis="rank" if basis == "rank" else "ev"), basis


# --------------------------------------------------------------------------- flat


#: A rank-EV note names at most this many scenes (the provenance lists them all).
_NOTE_SCENES = 8


def read_capture_time(path: Path) -> float | None:
    """EXIF capture time of ``path`` in seconds (``DateTimeOriginal`` + ``SubSecTimeOriginal``,
    else ``DateTime``), on an arbitrary but common epoch; ``None`` without one."""
    from datetime import datetime

    tags = read_exif_tags(path)
    for key, sub in (("EXIF DateTimeOriginal", "EXIF SubSecTimeOriginal"),
                     ("Image DateTime", "EXIF SubSecTime")):  # fmt: skip
        if key not in tags:
            continue
        try:
            stamp = datetime.strptime(str(tags[key]).strip(), "%Y:%m:%d %H:%M:%S")
        except ValueError:
            continue
        fraction = 0.0
        digits = str(tags[sub]).strip() if sub in tags else ""
        if digits.isdigit():
            fraction = int(digits) / 10 ** len(digits)
        return stamp.timestamp() + fraction
    return None


def detect_flat(folder: Path) -> bool:
    """``folder`` holds image files directly (a candidate ``flat`` source; never auto-picked)."""
    return bool(_images_in(folder))


def _group_by_pattern(
    folder: Path, files: list[Path], pattern: re.Pattern[str]
) -> tuple[dict[str, list[Path]], list[Path]]:
    """``{scene group: files}`` (in name order) and the files the pattern does not match."""
    groups: dict[str, list[Path]] = {}
    unmatched: list[Path] = []
    for file in files:
        match = pattern.fullmatch(file.name)
        name = match.group("scene") if match else None
        if not name:
            unmatched.append(file)
            continue
        groups.setdefault(name, []).append(file)
    return groups, unmatched


def _exposures_or_fail(files: list[Path], why: str) -> list[float]:
    values = []
    for file in files:
        e = read_exif_exposure(file)
        value = exposure_value(e.get("exposure_time_s"), e.get("iso"), e.get("f_number"))
        if value is None:
            raise SourceError(f"{file}: no EXIF exposure time; {why}")
        values.append(value)
    return values


def _group_by_exposure(files: list[Path]) -> list[list[Path]]:
    """Consecutive brackets (name order): a new one starts when an exposure repeats
    (within 0.1 EV) one already in the current bracket."""
    values = _exposures_or_fail(files, "--group-by exposure cuts brackets by EXIF exposures")
    groups: list[list[Path]] = []
    seen: list[float] = []
    for file, value in zip(files, values, strict=True):
        if not groups or any(abs(math.log2(value / v)) < 0.1 for v in seen):
            groups.append([])
            seen = []
        groups[-1].append(file)
        seen.append(value)
    return groups


def _group_by_time(files: list[Path], gap_s: float) -> list[list[Path]]:
    """Brackets by EXIF capture time: a new one where a shot starts more than ``gap_s``
    after the previous shot ended (its start plus its exposure time)."""
    shots = []
    for file in files:
        when = read_capture_time(file)
        if when is None:
            raise SourceError(
                f"{file}: no EXIF capture time (DateTimeOriginal); --group-by time needs one"
            )
        exposure = read_exif_exposure(file).get("exposure_time_s") or 0.0
        shots.append((when, _natural_key(file.name), file, exposure))
    shots.sort(key=lambda s: (s[0], s[1]))
    groups: list[list[Path]] = []
    end = -math.inf
    for when, _, file, exposure in shots:
        if not groups or when - end > gap_s:
            groups.append([])
        groups[-1].append(file)
        end = max(end, when + exposure)
    return groups


def discover_flat(folder: Path, config: BuildConfig) -> Discovery:
    """Scenes of one flat folder of image files, grouped by ``config.group_by``.

    ``pattern`` (default): files whose names give the same ``scene`` group of
    ``config.group_pattern`` (default ``<scene>_<tag>.<ext>``, MEFB's ``Candle_A.png`` +
    ``Candle_B.png``) are one scene, ``exposure``/``time``: consecutive EXIF brackets (see
    :class:`~expokit.curation.build.config.BuildConfig`). Each group is then built like a
    sequence folder (:func:`discover_sequences`): ordered, target ``config.target_rank``,
    ``input_ev`` from EXIF when every file of the group has an exposure time (``ev_basis
    exif``), else the rank difference (``ev_basis rank``). Rank EVs are not measurements
    (an MEFB under/over pair 5-8 EV apart gets rank +1): the provenance lists those scenes
    under ``rank_scenes`` and carries a note the build prints.

    A file the pattern does not match, a group of one file, and two groups whose names
    give one scene id fail as scenes, naming the files; scene ids are the ``scene`` group
    (pattern) or the first file's stem (brackets), made safe.

    Raises
    ------
    SourceError
        No image files in ``folder``; no file matches the pattern; a bracket grouping
        without the EXIF it needs.
    """
    files = _images_in(folder)
    if not files:
        raise SourceError(f"{folder}: no image files directly in it (flat source)")
    pattern_text = config.group_pattern or DEFAULT_GROUP_PATTERN
    unmatched: list[Path] = []
    named: list[tuple[str, list[Path]]]
    if config.group_by == "pattern":
        groups, unmatched = _group_by_pattern(folder, files, group_regex(config.group_pattern))
        if not groups:
            raise SourceError(
                f"{folder}: no file name matches the group pattern {pattern_text!r} "
                f"(e.g. {files[0].name}); pass --group-pattern with a (?P<scene>...) group"
            )
        named = [(name, groups[name]) for name in sorted(groups, key=_natural_key)]
    elif config.group_by == "exposure":
        named = [(g[0].stem, g) for g in _group_by_exposure(files)]
    else:
        named = [(g[0].stem, g) for g in _group_by_time(files, config.bracket_gap_s)]
    scenes: list[SceneSpec] = []
    bases: dict[str, str] = {}
    owner: dict[str, str] = {}
    for name, group in named:
        scene_id = safe_component(name, "scene")
        where = f"{folder} (scene {name!r}: {', '.join(f.name for f in group)})"
        if scene_id in owner:
            scenes.append(
                SceneSpec(
                    f"{scene_id}-{len(scenes)}",
                    "sequences",
                    _posix(folder),
                    problem=f"{where}: its scene id {scene_id!r} is also that of scene "
                    f"{owner[scene_id]!r}; rename the files or change --group-pattern",
                )
            )
            continue
        owner[scene_id] = name
        if len(group) < 2:
            how = (
                f"the group pattern {pattern_text!r}"
                if config.group_by == "pattern"
                else (f"--group-by {config.group_by}")
            )
            scenes.append(
                SceneSpec(
                    scene_id,
                    "sequences",
                    _posix(folder),
                    problem=f"{group[0]}: the only file of scene {name!r} by {how}; a scene "
                    "needs at least 2 exposures",
                )
            )
            continue
        spec, basis = _sequence_scene(where, group, folder, config, scene_id=scene_id)
        scenes.append(spec)
        if basis:
            bases[scene_id] = basis
    for file in unmatched:
        scenes.append(
            SceneSpec(
                safe_component(file.name, "file"),
                "sequences",
                _posix(folder),
                problem=f"{file}: its name does not match the group pattern {pattern_text!r}",
            )
        )
    ranked = sorted(s for s, b in bases.items() if b == "rank")
    provenance: dict[str, Any] = {
        "group_by": config.group_by,
        "ev_basis": sorted(set(bases.values())),
        "order": config.sequence_order,
        "rank_scenes": ranked,
    }
    if config.group_by == "pattern":
        provenance["group_pattern"] = pattern_text
    else:
        provenance["bracket_gap_s"] = config.bracket_gap_s if config.group_by == "time" else None
    if ranked:
        provenance["notes"] = [
            _rank_note(folder, ranked, len(bases))
            + " (an under/over pair gets rank +-1 whatever its real gap; MEFB pairs are often "
            "5-8 EV apart)"
        ]
    return Discovery(scenes, provenance)


# --------------------------------------------------------------------------- msec


def _msec_roots(folder: Path) -> list[Path]:
    if (folder / "INPUT_IMAGES").is_dir():
        return [folder]
    return [folder / d for d in MSEC_SPLIT_DIRS if (folder / d / "INPUT_IMAGES").is_dir()]


def discover_msec(folder: Path) -> Discovery:
    """One scene per MSEC name: inputs ``INPUT_IMAGES/<name>_<EV>.JPG``, GT ``<name>.jpg``.

    The EV token is the last ``_`` field (``a0964-20061224_140610__E6B7217_N1.5.JPG`` ->
    name ``a0964-20061224_140610__E6B7217``, EV -1.5). ``target_ev`` is left null: the GT is
    an expert retouch, not an exposure.
    """
    roots = _msec_roots(folder)
    if not roots:
        raise SourceError(f"{folder}: no INPUT_IMAGES folder (msec source)")
    scenes: list[SceneSpec] = []
    gt_dirs: list[str] = []
    for root in roots:
        gt_dir = next((root / d for d in MSEC_GT_DIRS if (root / d).is_dir()), None)
        gt_dirs.append(str(gt_dir.relative_to(folder)) if gt_dir else "")
        gts: dict[str, Path] = {}
        if gt_dir is not None:
            gts = {p.stem: p for p in _images_in(gt_dir)}
        groups: dict[str, list[tuple[float, Path]]] = {}
        for file in _images_in(root / "INPUT_IMAGES"):
            name, _, token = file.stem.rpartition("_")
            try:
                ev = parse_ev_token(token)
                if not name:
                    raise ValueError("no name before the EV token")
            except ValueError as exc:
                scenes.append(
                    SceneSpec(
                        safe_scene_id(file.stem),
                        "msec",
                        _posix(folder),
                        problem=f"{file}: not an MSEC input name <name>_<EV>.JPG ({exc})",
                    )
                )
                continue
            groups.setdefault(name, []).append((ev, file))
        for name in sorted(groups):
            inputs = sorted(groups[name])
            spec = SceneSpec(safe_scene_id(name), "msec", _posix(folder), shared_target=True)
            gt = gts.get(name)
            if gt is None:
                where = gt_dir or (root / "GT_IMAGES")
                scenes.append(
                    replace(
                        spec,
                        problem=f"{where / (name + '.jpg')}: no ground truth for "
                        f"{len(inputs)} input(s) ({inputs[0][1].name}, ...)",
                    )
                )
                continue
            target = ImageRef(_posix(gt), "gt", None)
            pairs = tuple(
                PairSpec(file.stem.rpartition("_")[2], ImageRef(_posix(file), "ev", ev), target)
                for ev, file in inputs
            )
            scenes.append(replace(spec, pairs=pairs))
    return Discovery(scenes, {"gt_dirs": gt_dirs})


# --------------------------------------------------------------------------- render


def discover_render(folder: Path, config: BuildConfig) -> Discovery:
    """One scene per rendered RAW (render manifest ``name``): target = the render at
    ``config.target_ev``, inputs = every other EV, all in one output format."""
    manifest_path = folder / "manifest.parquet"
    if not manifest_path.is_file():
        raise SourceError(f"{folder}: render output without manifest.parquet")
    try:
        frame = read_render_manifest(manifest_path)
    except (ValueError, OSError) as exc:
        raise SourceError(str(exc)) from None  # the message starts with the path
    params: dict[str, Any] = {}
    try:
        params = json.loads((folder / "render_params.json").read_text())
    except (OSError, ValueError):
        params = {}
    scenes: list[SceneSpec] = []
    want = ev_token(config.target_ev)
    for name, rows in sorted(frame.groupby("name", dropna=False), key=lambda kv: str(kv[0])):
        scene = SceneSpec(safe_scene_id(str(name)), "render", _posix(folder), shared_target=True)
        failed = rows[rows["status"] != "ok"]
        if len(failed):
            first = failed.iloc[0]
            scenes.append(
                replace(scene, problem=f"{first['raw_path']}: render failed: {first['error']}")
            )
            continue
        inputs = rows[rows["role"] == "input"]
        formats = list(dict.fromkeys(str(f) for f in inputs["output_format"]))
        fmt = config.render_format or next(
            (f for f in RENDER_FORMAT_PREFERENCE if f in formats), formats[0] if formats else None
        )
        chosen = inputs[inputs["output_format"] == fmt]
        if chosen.empty:
            scenes.append(replace(scene, problem=f"{folder}: no {fmt} render of {name}"))
            continue

        def ref(row: Any, role: str) -> ImageRef:
            return ImageRef(
                _posix(folder / str(row["output_path"])), role, float(row["ev"]),
                exposure_time_s=_num(row["exposure_time_s"]), iso=_num(row["iso"]),
                f_number=_num(row["f_number"]), transfer=str(row["transfer"]),
            )  # fmt: skip

        by_token = {ev_token(float(r["ev"])): r for _, r in chosen.iterrows()}
        if want not in by_token:
            raw = chosen.iloc[0]["raw_path"]
            scenes.append(
                replace(scene, problem=f"{raw}: no EV {want} render of {name} in {folder}")
            )
            continue
        target = ref(by_token[want], "ev")
        origins = tuple(
            sorted({(str(r["raw_path"]), str(r["raw_sha256"])) for _, r in chosen.iterrows()
                    if isinstance(r["raw_sha256"], str) and r["raw_sha256"]})
        )  # fmt: skip
        pairs = tuple(
            PairSpec(token, ref(row, "ev"), target)
            for token, row in sorted(by_token.items(), key=lambda kv: float(kv[1]["ev"]))
            if token != want
        )
        scenes.append(replace(scene, pairs=pairs, origins=origins))
    return Discovery(scenes, {"render_params_hash": params.get("params_hash")})


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# --------------------------------------------------------------------------- capture


def _find_calibration(session: Path, given: str | Path | None) -> Path:
    if given is not None:
        path = Path(given)
        return path / RIG_CALIBRATION_NAME if path.is_dir() else path
    for folder in (session, session.parent):
        if (folder / RIG_CALIBRATION_NAME).is_file():
            return folder / RIG_CALIBRATION_NAME
    raise SourceError(
        f"capture session {session}: no {RIG_CALIBRATION_NAME} in it or its parent; "
        "pass --rig-calibration"
    )


def _sync_candidates(session: Path, given: Sequence[str | Path]) -> list[Path]:
    found: list[Path] = []
    for item in given:
        path = Path(item)
        found += sorted(path.glob("*.json")) if path.is_dir() else [path]
    found += sorted(p for p in session.glob("*.json") if "sync" in p.name.lower())
    return list(dict.fromkeys(found))


def video_frame_pairs(
    sync_path: Path, reference: Path, test: Path
) -> tuple[list[tuple[int, int]], dict[str, int]] | None:
    """Adapter over :mod:`expokit.calibration.sync`: ``(reference_frame, test_frame)`` pairs.

    Returns ``None`` when ``sync_path`` is not about these two movies (matched by file
    name, either order). The second item maps each movie to the decoded frame count
    ``sync.json`` states.

    Raises
    ------
    InputFileError
        Unreadable ``sync.json``, or one without a frame map (no video in it).
    """
    result = load_sync_json(sync_path)
    a, b = Path(result.media_a.path).name, Path(result.media_b.path).name
    if {a, b} != {reference.name, test.name} or a == b:
        return None
    if result.frame_map is None:
        raise InputFileError(sync_path, "sync.json has no frame map (not both movies have video)")
    a_is_reference = a == reference.name
    pairs = []
    for index_a, index_b in enumerate(result.frame_map):
        if index_b is None:
            continue
        pairs.append((index_a, int(index_b)) if a_is_reference else (int(index_b), index_a))
    pairs.sort()
    counts = {}
    for media, movie in ((result.media_a, a), (result.media_b, b)):
        if media.decoded_frames is not None:
            path = reference if movie == reference.name else test
            counts[_posix(path)] = int(media.decoded_frames)
    return pairs, counts


def discover_capture(
    folder: Path,
    config: BuildConfig,
    rig_calibration: str | Path | None,
    sync_files: Sequence[str | Path],
) -> Discovery:
    """Scenes of one capture session, or of every session in ``folder``."""
    sessions = (
        [folder]
        if (folder / "journal.jsonl").is_file()
        else sorted(c for c in folder.iterdir() if (c / "journal.jsonl").is_file())
    )
    if not sessions:
        raise SourceError(f"{folder}: no capture session (journal.jsonl)")
    scenes: list[SceneSpec] = []
    records = []

    for session in sessions:
        events, _ = read_events(session / "journal.jsonl")  # the journal first: it names shots
        calibration = _find_calibration(session, rig_calibration)
        found = _session_scenes(session, events, folder, calibration, sync_files, config)
        scenes += found
        records.append(
            {
                "session": session.name,
                "rig_calibration": _posix(calibration),
                "scenes": len(found),
                "exif_mismatches": _exif_mismatches(found),
                "cameras": session_cameras(session),
            }
        )
    return Discovery(scenes, {"sessions": records})


#: The resolved rig config a capture session stores (expokit.capture.session.CONFIG_FILE).
SESSION_RIG_FILE = "rig.json"


def session_cameras(session: Path) -> list[dict[str, str]]:
    """Each role's camera as the session's ``rig.json`` names it (for the dataset card).

    ``{"role", "serial"}`` from the rig's roles, plus ``"make"``/``"model"`` where the rig
    records them (a fake rig's ``[fake] cameras`` bodies, matched by serial), else the
    model each body reported when capture applied its settings (the journal). ``[]`` for a
    session without ``rig.json``.

    Raises
    ------
    RigConfigError
        ``rig.json`` is unreadable or has a bad key (naming the file and the key).
    """
    path = session / SESSION_RIG_FILE
    if not path.is_file():
        return []
    rig = read_rig_json(path)
    bodies = rig.fake.get("cameras") if rig.backend == "fake" else None
    by_serial = {str(body.get("serial")): body for body in bodies or [] if isinstance(body, dict)}
    reported = _reported_models(session)
    cameras = []
    for role, role_config in rig.roles.items():
        camera = {"role": role, "serial": role_config.serial}
        body = by_serial.get(role_config.serial, {})
        for key in ("make", "model"):
            if body.get(key):
                camera[key] = str(body[key])
        if "model" not in camera and reported.get(role):
            camera["model"] = reported[role]
        cameras.append(camera)
    return cameras


def _reported_models(session: Path) -> dict[str, str]:
    """``{role: model}`` as each body reported itself when its settings were applied (the
    journal's ``settings_applied`` events; a real rig's rig.json holds serials only)."""
    journal = session / JOURNAL_FILE
    if not journal.is_file():
        return {}
    events, _ = read_journal(journal)
    return {
        str(e["role"]): str(e["camera"])
        for e in events
        if e.get("event") == "settings_applied" and e.get("camera") and e.get("role")
    }


def _exif_mismatches(scenes: list[SceneSpec]) -> list[dict[str, Any]]:
    """What info.json records of each file whose EXIF contradicted the requested setting:
    the pair, the role, the EV asked for and the EV the pair got."""
    found = []
    for spec in scenes:
        for pair in spec.pairs:
            for ref in (pair.input, pair.target):
                if ref.exif_mismatch:
                    found.append(
                        {
                            "scene_id": spec.scene_id,
                            "pair": pair.stem,
                            "role": ref.role,
                            "file": ref.path,
                            "requested_ev": ref.requested_ev,
                            "ev": ref.ev,
                            "mismatch": ref.exif_mismatch,
                        }
                    )
    return found


def _mismatch_text(role: str, ok: bool | None, mismatches: list[Any]) -> str | None:
    """One line naming each setting the camera did not apply (from a journal exif_check)."""
    if ok is not False:
        return None
    parts = []
    for item in mismatches:
        if isinstance(item, dict):
            parts.append(
                f"{item.get('setting')} requested {item.get('requested')}, EXIF "
                f"{item.get('exif')} ({item.get('error_ev')} EV off)"
            )
    return f"{role}: " + ("; ".join(parts) or "EXIF does not match the requested settings")


def _with_exif_evs(test: ImageRef, target: ImageRef) -> tuple[ImageRef, ImageRef]:
    """The pair with ``input_ev`` from what the cameras did, when EXIF says so.

    The target (the reference camera's file) keeps its planned EV: EVs are relative to the
    scene's reference exposure, which is the one the reference file recorded. The input's
    EV becomes the target's plus the EXIF exposure difference. The planned EVs stay in
    :attr:`ImageRef.requested_ev`.
    """
    test = replace(test, requested_ev=test.ev)
    target = replace(target, requested_ev=target.ev)
    relative = exif_relative_ev(test, target)
    if relative is None or target.ev is None:
        return test, target
    return replace(test, ev=round(target.ev + relative, 4)), target


def _session_scenes(
    session: Path,
    events: list[JournalEvent],
    root: Path,
    calibration: Path,
    sync_files: Sequence[str | Path],
    config: BuildConfig,
) -> list[SceneSpec]:
    """Scenes of one session from its journal ``events`` (:func:`read_events`)."""
    journal = session / "journal.jsonl"
    plans: dict[int, PlannedEvent] = {}
    files: dict[tuple[int, str], str] = {}
    exif: dict[tuple[int, str], dict[str, Any]] = {}
    mismatches: dict[tuple[int, str], str] = {}
    for event in events:
        if isinstance(event, PlannedEvent):
            plans[event.index] = event
        elif isinstance(event, DownloadedEvent):
            files[(event.index, event.role)] = event.file
        elif isinstance(event, ExifCheckEvent) and event.exif is not None:
            key = (event.index, event.role)
            exif[key] = event.exif
            text = _mismatch_text(event.role, event.ok, event.mismatches)
            if text:
                mismatches[key] = text
            else:
                mismatches.pop(key, None)  # a resumed session re-checked the file
    session_id = safe_scene_id(session.name)
    base = SceneSpec(
        session_id, "capture", _posix(root), clip_id=session_id, calibration=_posix(calibration)
    )

    def ref(index: int, role: str) -> ImageRef | str:
        name = files.get((index, role))
        if name is None:
            return f"{journal}: shot {index} has no downloaded {role} file"
        plan = plans.get(index)
        ev = None if plan is None else plan.role_ev(role)
        meta = exif.get((index, role), {})
        return ImageRef(
            _posix(session / "files" / name), role, ev,
            exposure_time_s=meta.get("exposure_time_s"), iso=meta.get("iso"),
            f_number=meta.get("f_number"), exif_mismatch=mismatches.get((index, role)),
        )  # fmt: skip

    still: list[tuple[int, PairSpec | str]] = []
    scenes: list[SceneSpec] = []
    for index in sorted(plans):
        if plans[index].kind == "calibration":
            continue  # calibration stills (a board) are for `calibrate geometry`, not pairs
        target, test = ref(index, "reference"), ref(index, "test")
        problem = target if isinstance(target, str) else test if isinstance(test, str) else None
        if plans[index].kind == "video":
            clip = f"{session_id}-{index:04d}"
            spec = replace(base, scene_id=clip, clip_id=clip, video=True)
            if problem is not None:
                scenes.append(replace(spec, problem=problem))
            else:
                assert isinstance(target, ImageRef) and isinstance(test, ImageRef)
                scenes.append(_video_scene(spec, target, test, session, sync_files, config))
            continue
        if problem is not None:
            still.append((index, problem))
        else:
            assert isinstance(target, ImageRef) and isinstance(test, ImageRef)
            test, target = _with_exif_evs(test, target)
            still.append((index, PairSpec(f"{index:04d}", test, target)))
    if config.capture_scene == "shot":
        for index, item in still:
            spec = replace(base, scene_id=f"{session_id}-{index:04d}")
            scenes.append(
                replace(spec, problem=item)
                if isinstance(item, str)
                else replace(spec, pairs=(item,))
            )
    elif still:
        problems = [item for _, item in still if isinstance(item, str)]
        pairs = tuple(item for _, item in still if isinstance(item, PairSpec))
        scenes.append(replace(base, pairs=pairs, problem=problems[0] if problems else None))
    return scenes


def _video_scene(
    spec: SceneSpec,
    target: ImageRef,
    test: ImageRef,
    session: Path,
    sync_files: Sequence[str | Path],
    config: BuildConfig,
) -> SceneSpec:
    reference_movie, test_movie = Path(target.path), Path(test.path)
    for candidate in _sync_candidates(session, sync_files):
        try:
            found = video_frame_pairs(candidate, reference_movie, test_movie)
        except InputFileError as exc:
            return replace(spec, problem=str(exc))
        if found is None:
            continue
        pairs, counts = found
        if not pairs:
            return replace(spec, problem=f"{candidate}: the frame map pairs no frames")
        kept = pairs[:: config.video_frame_step]
        return replace(
            spec,
            sync=_posix(candidate),
            expected_frames=tuple(sorted(counts.items())),
            pairs=tuple(
                PairSpec(
                    f"{r:06d}", replace(test, frame=t), replace(target, frame=r), frame_index=r
                )
                for r, t in kept
            ),
        )
    return replace(
        spec,
        problem=f"{reference_movie} / {test_movie.name}: no sync.json pairs these movies "
        "(run `expokit calibrate sync` and pass --sync)",
    )


# --------------------------------------------------------------------------- pixels


@dataclass
class LoadedImage:
    """Pixels of an :class:`ImageRef`: ``(H, W, 3)`` BGR uint8 or uint16, and how they encode
    light; RAW files come back as 16-bit sRGB (LibRaw linear output, sRGB-encoded)."""

    pixels: npt.NDArray[Any]
    transfer: str
    metadata: dict[str, float | None] = field(default_factory=dict)


class FrameReader(VideoFrameReader):
    """Forward reader of one movie's decoded frames as ``(H, W, 3)`` BGR uint8.

    Frame ``i`` is the ``i``-th frame ffmpeg decodes with ``-fps_mode passthrough``: the
    decoder :func:`expokit.core.video_io.decode_frame_series` uses, so the frame
    numbers of ``sync.json``'s frame map and the pixels read here are the same frames
    (:class:`expokit.core.video_io.FrameReader`, in OpenCV's channel order).
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, channels="bgr")


def as_bgr(image: npt.NDArray[Any], path: str) -> npt.NDArray[Any]:
    """``(H, W, 3)`` BGR of an OpenCV image (gray is repeated, alpha dropped).

    Raises
    ------
    InputFileError
        For dtypes other than uint8/uint16 or odd shapes.
    """
    if image.dtype not in (np.uint8, np.uint16):
        raise InputFileError(path, f"unsupported pixel type {image.dtype} (8/16-bit only)")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise InputFileError(path, f"unsupported image shape {image.shape}")


def load_image(ref: ImageRef, readers: dict[str, FrameReader] | None = None) -> LoadedImage:
    """Read the pixels of ``ref`` (image file, RAW file, or movie frame).

    Raises
    ------
    InputFileError
        Missing or undecodable file/frame, naming it.
    """
    meta: dict[str, float | None] = {
        "exposure_time_s": ref.exposure_time_s, "iso": ref.iso, "f_number": ref.f_number,
    }  # fmt: skip
    if ref.frame is not None:
        cache = readers if readers is not None else {}
        reader = cache.setdefault(ref.path, FrameReader(ref.path))
        return LoadedImage(as_bgr(reader.frame(ref.frame), ref.path), "srgb", meta)
    path = Path(ref.path)
    if path.suffix.lower() in RAW_EXTENSIONS:
        return _load_raw(path, meta)
    return LoadedImage(as_bgr(read_complete_image(path), ref.path), ref.transfer, meta)


JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_complete(path: Path, data: bytes) -> None:
    """Refuse a JPEG or PNG whose data stops early.

    OpenCV decodes a truncated JPEG without an error (libjpeg fills the missing rows with
    grey and only prints "Premature end of JPEG file" on stderr), so the pair would be built
    from a half-grey image. Pillow reads the entropy-coded data to its end and raises on
    truncation; decoding at 1/8 scale (JPEG draft mode) keeps that cheap. PNGs must reach
    their ``IEND`` chunk with every chunk CRC intact.

    Raises
    ------
    InputFileError
        ``truncated: ...`` naming the file.
    """
    import io
    import warnings

    from PIL import Image

    if data.startswith(JPEG_MAGIC):
        kind = "JPEG"
    elif data.startswith(PNG_MAGIC):
        kind = "PNG"
    else:
        return  # other formats: OpenCV's decoder fails on them, which load_image reports
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if kind == "JPEG":
                    size = (max(1, image.width // 8), max(1, image.height // 8))
                    image.draft(image.mode, size)
                    image.load()
                else:
                    image.verify()
    except Image.DecompressionBombError:
        return  # Pillow's size guard, not damage: OpenCV decodes it (its own limits apply)
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputFileError(
            path, f"truncated: the {kind} data ends early or is damaged ({exc})"
        ) from None


def read_complete_image(path: Path) -> npt.NDArray[Any]:
    """Read an image file with OpenCV after :func:`check_complete` (16-bit kept), upright
    per its EXIF orientation (:func:`expokit.core.images.decode_image`), so a portrait
    JPEG stored landscape with Orientation 6 gives portrait pairs, as its RAW would.

    Raises
    ------
    InputFileError
        Missing, truncated or undecodable file, naming it.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(path, "no such image file") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot read: {exc.strerror or exc}") from None
    check_complete(path, data)
    return decode_image(data, path)  # refuses oversized headers and OpenCV errors, naming path


def _load_raw(path: Path, meta: dict[str, float | None]) -> LoadedImage:
    decoded = decode_raw(path)
    # As shot (gain 1), sRGB-encoded 16-bit, BGR: the same encoding `expokit render` writes.
    (image,) = apply_luts(decoded.linear, [exposure_lut(1.0, 16, "srgb")], reverse_channels=True)
    m = decoded.metadata
    filled = {
        "exposure_time_s": meta.get("exposure_time_s") or m.exposure_time_s,
        "iso": meta.get("iso") or m.iso,
        "f_number": meta.get("f_number") or m.f_number,
    }
    return LoadedImage(np.asarray(image), "srgb", filled)
