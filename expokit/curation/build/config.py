"""Parameters of ``expokit curate build``: a typed config; click is only its front.

:class:`BuildConfig` holds what a build does to every pair (target choice, alignment, image
format, downscaling, clip levels), the QA thresholds (:class:`QaThresholds`) and the split
specification (:class:`~expokit.curation.build.splits.SplitSpec`).

Only the per-scene parameters enter :meth:`BuildConfig.params_hash`, the key of the
per-scene records: changing a QA threshold or the split re-flags and re-splits the
manifest without re-processing any image.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expokit.calibration.homography import ECC_MOTIONS
from expokit.core import toml as tomllib
from expokit.core.errors import ExpokitError
from expokit.core.hashing import stable_hash
from expokit.curation.build.splits import SplitSpec

#: Version of the per-pair algorithm; bump when a change alters outputs or metrics.
#: 2: ``valid_x/y`` in stored pixels (0 when cropped), capture EVs from EXIF.
BUILD_ALGORITHM_VERSION = 3

SOURCE_KINDS: tuple[str, ...] = ("capture", "render", "sequences", "msec", "flat")
KIND_CHOICES: tuple[str, ...] = ("auto", *SOURCE_KINDS)
SEQUENCE_ORDERS: tuple[str, ...] = ("auto", "name", "exif")
IMAGE_FORMATS: tuple[str, ...] = ("png", "jpg")
CAPTURE_SCENES: tuple[str, ...] = ("session", "shot")
#: How a ``flat`` source (one folder of image files) is cut into scenes.
GROUP_BY: tuple[str, ...] = ("pattern", "exposure", "time")
#: ``--group-pattern`` default, matched against the whole file name: ``<scene>_<tag>.<ext>``
#: (MEFB's ``Candle_A.png``/``Candle_B.png``; the scene is everything before the last ``_``).
DEFAULT_GROUP_PATTERN = r"(?P<scene>.+)_(?P<tag>[^_]+)\.\w+"
#: Build parameters that only choose which files make a scene (discovery), not what is
#: done to them: kept out of :meth:`BuildConfig.scene_params` (the scene's file list is
#: already part of its record key).
DISCOVERY_FIELDS: tuple[str, ...] = ("group_by", "group_pattern", "bracket_gap_s")

#: The type each :class:`BuildConfig` field takes, checked by :func:`check_type`:
#: ``bool``, ``int``, ``float`` (an int is accepted and converted), ``str``, ``str-list``
#: (a list of strings); a trailing ``?`` allows ``None``.
FIELD_TYPES: dict[str, str] = {
    "kind": "str",
    "target_ev": "float",
    "target_rank": "int?",
    "sequence_order": "str",
    "ecc_refine": "bool",
    "ecc_max_side": "int",
    "ecc_motions": "str-list",
    "ecc_max_shift": "float",
    "max_side": "int?",
    "crop": "bool",
    "image_format": "str",
    "jpeg_quality": "int",
    "png_compression": "int",
    "clip_dark": "int",
    "clip_bright": "int",
    "flow_max_side": "int",
    "video_frame_step": "int",
    "capture_scene": "str",
    "render_format": "str?",
    "group_by": "str",
    "group_pattern": "str?",
    "bracket_gap_s": "float",
}

_TYPE_WORDS = {
    "bool": "true or false (a boolean)",
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "str-list": "a list of strings",
}


class BuildConfigError(ExpokitError):
    """A build parameter is out of range, of the wrong type, or unknown."""


def check_type(key: str, value: Any, expected: str, *, what: str = "build parameter") -> Any:
    """Return ``value`` when it has the ``expected`` type, else raise :class:`BuildConfigError`.

    A config file is untyped text: ``"false"`` is a non-empty string (truthy), ``1.5`` a
    frame step, ``True`` an integer to Python. None of these is accepted silently.

    Parameters
    ----------
    key
        The parameter name, for the message.
    value
        The value found (from a config file, an option or a caller).
    expected
        ``bool``, ``int``, ``float``, ``str`` or ``str-list``, with a trailing ``?`` when
        ``None`` is allowed (see :data:`FIELD_TYPES`).
    what
        What ``key`` is, for the message.

    Returns
    -------
    Any
        ``value``, with an int converted to float for ``float`` and a list to a tuple for
        ``str-list``.
    """
    optional = expected.endswith("?")
    base = expected.rstrip("?")
    if value is None and optional:
        return None
    ok = False
    if base == "bool":
        ok = isinstance(value, bool)
    elif base == "int":
        # bool is an int subclass, and a float that happens to be whole is still a float.
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            raise BuildConfigError(f"{what} {key}: expected a finite number, got {value!r}")
        value = float(value) if ok else value
    elif base == "str":
        ok = isinstance(value, str)
    elif base == "str-list":
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    else:
        raise ValueError(f"unknown expected type {expected!r}")
    if not ok:
        wanted = _TYPE_WORDS[base] + (" or null" if optional else "")
        raise BuildConfigError(
            f"{what} {key}: expected {wanted}, got {value!r} ({type(value).__name__})"
        )
    return value


@dataclass(frozen=True)
class QaThresholds:
    """Thresholds that turn QA figures into flags (rows are flagged, never dropped).

    Attributes
    ----------
    min_psnr_db
        ``low_psnr`` below this PSNR (dB, exposure-normalised input vs target).
    min_ssim
        ``low_ssim`` below this SSIM.
    max_residual_px
        ``misaligned`` above this median DIS flow magnitude (px of the stored images).
    min_ecc_correlation
        ``low_ecc`` below this ECC correlation (only rows where ECC ran).
    max_clipped_input, max_clipped_target
        ``clipped_input`` / ``clipped_target`` when the dark or the bright clipped fraction
        of that image exceeds this.
    min_valid_fraction
        ``small_valid_region`` when the valid rectangle covers less than this fraction of the
        reference frame.
    min_usable_fraction
        ``fit_unreliable`` when fewer than this fraction of the valid pixels are unclipped in
        both images (the gain, PSNR/SSIM and residual are then not judged).
    max_gain_deviation_ev
        ``gain_outlier`` when ``|gain_deviation_ev|`` (the pair's gain against the robust
        median of its group, EV) exceeds this, and exceeds the group's own spread
        (:data:`expokit.curation.build.qa.GAIN_SPREAD_FACTOR` robust standard deviations).
    max_gain_instability_ev
        ``gain_unstable`` (every pair of a clip) when the (trimmed) standard deviation of
        the clip's per-frame ``log2`` gains exceeds this (EV).
    max_target_flicker
        ``target_flicker`` (every pair of a clip) when the relative amplitude of the
        strongest fast oscillation of the target's brightness exceeds this.
    min_focus_ratio
        ``defocus`` when ``focus_ratio`` (input sharpness / target sharpness) is below this
        or above its inverse (one camera softer than the other).
    """

    min_psnr_db: float = 18.0
    min_ssim: float = 0.5
    max_residual_px: float = 1.0
    min_ecc_correlation: float = 0.9
    max_clipped_input: float = 0.25
    max_clipped_target: float = 0.1
    min_valid_fraction: float = 0.5
    min_usable_fraction: float = 0.2
    max_gain_deviation_ev: float = 0.1
    max_gain_instability_ev: float = 0.02
    max_target_flicker: float = 0.02
    min_focus_ratio: float = 0.8

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = check_type(f.name, getattr(self, f.name), "float", what="QA threshold")
            object.__setattr__(self, f.name, value)
        for name in ("min_ssim", "min_ecc_correlation"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise BuildConfigError(f"QA threshold {name} must be in [-1, 1]")
        fractions = (
            "max_clipped_input", "max_clipped_target", "min_valid_fraction",
            "min_usable_fraction", "min_focus_ratio",
        )  # fmt: skip
        for name in fractions:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise BuildConfigError(f"QA threshold {name} is a fraction in [0, 1]")
        limits = (
            "max_residual_px", "max_gain_deviation_ev", "max_gain_instability_ev",
            "max_target_flicker",
        )  # fmt: skip
        for name in limits:
            if getattr(self, name) < 0:
                raise BuildConfigError(f"QA threshold {name} must be >= 0")

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QaThresholds:
        if not isinstance(data, Mapping):
            raise BuildConfigError(
                f"build parameter qa: expected a table of QA thresholds, got {data!r}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if "max_flicker" in unknown:
            raise BuildConfigError(
                "QA threshold max_flicker no longer exists: it measured the target's own "
                "brightness, so content and steady light changes read as flicker; use "
                "max_target_flicker (a detrended oscillation of the target) and "
                "max_gain_instability_ev (the pair's ratio over time), see docs/qa.md"
            )
        if unknown:
            raise BuildConfigError(
                f"unknown QA threshold(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**dict(data))


@dataclass(frozen=True)
class BuildConfig:
    """Every parameter of a build.

    Every field is type-checked on construction (:data:`FIELD_TYPES`, :func:`check_type`):
    a config file's ``"false"`` is not a boolean and ``1.5`` is not a frame step.

    Attributes
    ----------
    kind
        Source type, or ``"auto"`` to detect it per source folder.
    target_ev
        Render sources: the EV used as target (every other EV is an input).
    target_rank
        Sequence sources: 0-based position of the target in the exposure order (negative
        counts from the brightest); ``None``: the middle one, ``(n - 1) // 2``.
    sequence_order
        ``"exif"`` orders a sequence by EXIF exposure (time x ISO / f-number²), ``"name"`` by
        natural file-name order, ``"auto"`` by EXIF when every file has it, else by name.
    ecc_refine
        Refine each pair's alignment by ECC (``cv2.findTransformECC``) after the rig
        homography (identity for sources without one).
    ecc_max_side, ecc_motions
        ECC working resolution (longer side, px) and motion models tried in order.
    ecc_max_shift
        Largest move of any image corner ECC may make, as a fraction of the frame diagonal;
        larger moves are treated as divergence and the rig (or identity) mapping is kept.
    max_side
        Downscale every stored image (after alignment) so its longer side is at most this.
    crop
        Crop input and target to the largest valid rectangle (else store full frames and
        rely on the mask).
    image_format
        ``"png"`` (lossless, default) or ``"jpg"``; 16-bit inputs are always stored as 16-bit
        PNG.
    jpeg_quality, png_compression
        Encoder settings.
    clip_dark, clip_bright
        8-bit code levels (integers, ``0 <= dark < bright <= 255``) at/below and at/above
        which a pixel counts as clipped (scaled by 257 for 16-bit images).
    flow_max_side
        DIS optical flow runs at most at this size (longer side); the residual is scaled
        back to stored pixels.
    video_frame_step
        Keep every n-th frame pair of a video clip.
    capture_scene
        ``"session"``: all still pairs of a capture session are one scene (no near-duplicate
        shots leak between splits); ``"shot"``: every shot index is its own scene.
    render_format
        Render sources with several formats: the ``output_format`` to use (``None``: the
        first of png16, tiff16, png, jpg found).
    group_by
        ``flat`` sources (one folder of image files): ``"pattern"`` groups files whose names
        give the same ``scene`` group of :attr:`group_pattern`; ``"exposure"`` cuts the
        files, in natural name order, into brackets of consecutive EXIF exposures (a new
        bracket starts when an exposure repeats one already in the current bracket);
        ``"time"`` cuts them, in EXIF capture-time order, where a shot starts more than
        :attr:`bracket_gap_s` after the previous one ended.
    group_pattern
        ``group_by="pattern"``: a regular expression matched against each whole file name,
        with a named group ``scene`` (and optionally ``tag``); ``None``:
        :data:`DEFAULT_GROUP_PATTERN`.
    bracket_gap_s
        ``group_by="time"``: the largest pause (s) between two shots of one bracket.
    qa
        QA thresholds.
    splits
        Split specification.
    """

    kind: str = "auto"
    target_ev: float = 0.0
    target_rank: int | None = None
    sequence_order: str = "auto"
    ecc_refine: bool = False
    ecc_max_side: int = 1024
    ecc_motions: tuple[str, ...] = ECC_MOTIONS
    ecc_max_shift: float = 0.05
    max_side: int | None = None
    crop: bool = True
    image_format: str = "png"
    jpeg_quality: int = 95
    png_compression: int = 1
    clip_dark: int = 2
    clip_bright: int = 253
    flow_max_side: int = 1024
    video_frame_step: int = 1
    capture_scene: str = "session"
    render_format: str | None = None
    group_by: str = "pattern"
    group_pattern: str | None = None
    bracket_gap_s: float = 2.0
    qa: QaThresholds = field(default_factory=QaThresholds)
    splits: SplitSpec = field(default_factory=SplitSpec)

    def __post_init__(self) -> None:
        for name, expected in FIELD_TYPES.items():
            object.__setattr__(self, name, check_type(name, getattr(self, name), expected))
        if not isinstance(self.qa, QaThresholds):
            raise BuildConfigError(f"build parameter qa: expected QA thresholds, got {self.qa!r}")
        if not isinstance(self.splits, SplitSpec):
            raise BuildConfigError(
                f"build parameter splits: expected a split specification, got {self.splits!r}"
            )

        def choice(name: str, allowed: tuple[str, ...]) -> None:
            if getattr(self, name) not in allowed:
                raise BuildConfigError(
                    f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )

        choice("kind", KIND_CHOICES)
        choice("sequence_order", SEQUENCE_ORDERS)
        choice("image_format", IMAGE_FORMATS)
        choice("capture_scene", CAPTURE_SCENES)
        choice("group_by", GROUP_BY)
        if self.group_pattern is not None:
            group_regex(self.group_pattern)
        if not self.bracket_gap_s > 0:
            raise BuildConfigError(f"bracket gap must be > 0 s, got {self.bracket_gap_s}")
        if not self.ecc_motions or any(m not in ECC_MOTIONS for m in self.ecc_motions):
            raise BuildConfigError(
                f"ECC motions must be among {', '.join(ECC_MOTIONS)}, got {self.ecc_motions}"
            )
        if not 0 < self.ecc_max_shift <= 1:
            raise BuildConfigError(f"ECC max shift must be in (0, 1], got {self.ecc_max_shift}")
        if self.ecc_max_side < 64 or self.flow_max_side < 64:
            raise BuildConfigError("ECC and flow working sizes must be >= 64 px")
        if self.max_side is not None and self.max_side < 32:
            raise BuildConfigError(f"max_side must be >= 32 px, got {self.max_side}")
        if not 1 <= self.jpeg_quality <= 100:
            raise BuildConfigError(f"JPEG quality must be 1..100, got {self.jpeg_quality}")
        if not 0 <= self.png_compression <= 9:
            raise BuildConfigError(f"PNG compression must be 0..9, got {self.png_compression}")
        if not 0 <= self.clip_dark < self.clip_bright <= 255:
            raise BuildConfigError(
                f"clip levels (clip_dark, clip_bright) are 8-bit code values and need "
                f"0 <= dark < bright <= 255, got {self.clip_dark}, {self.clip_bright}"
            )
        if self.video_frame_step < 1:
            raise BuildConfigError(f"video frame step must be >= 1, got {self.video_frame_step}")

    def clip_levels(self, bits: int) -> tuple[int, int]:
        """``(dark, bright)`` code levels for an image of ``bits`` (8 or 16) per channel."""
        scale = 257 if bits == 16 else 1
        return self.clip_dark * scale, self.clip_bright * scale

    def scene_params(self) -> dict[str, Any]:
        """The parameters that change a scene's outputs (not QA thresholds, not splits)."""
        out = self.to_dict()
        for key in ("kind", "qa", "splits", *DISCOVERY_FIELDS):
            out.pop(key)
        return out

    def params_hash(self) -> str:
        """Hash of :meth:`scene_params`, the algorithm version and the OpenCV version."""
        import cv2

        return stable_hash(
            {
                "params": self.scene_params(),
                "algo": BUILD_ALGORITHM_VERSION,
                "opencv": cv2.__version__,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every parameter."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["ecc_motions"] = list(self.ecc_motions)
        out["qa"] = self.qa.to_dict()
        out["splits"] = self.splits.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BuildConfig:
        """Inverse of :meth:`to_dict` for the per-scene fields and ``qa``; ``splits`` accepts
        ``{"fractions": {...}, "salt": ...}`` or ``{"lists": {...}, "default_split": ...}``."""
        values = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BuildConfigError(f"unknown build parameter(s): {', '.join(unknown)}")
        if "qa" in values and not isinstance(values["qa"], QaThresholds):
            values["qa"] = QaThresholds.from_dict(values["qa"])
        if "splits" in values and not isinstance(values["splits"], SplitSpec):
            values["splits"] = split_spec_from_dict(values["splits"])
        try:
            return cls(**values)
        except TypeError as exc:
            raise BuildConfigError(f"invalid build parameters: {exc}") from None


_SPLIT_KEYS = ("fractions", "salt", "lists", "default_split", "source", "method", "unit", "rule")


def split_spec_from_dict(data: object) -> SplitSpec:
    """The ``splits`` build parameter (as :meth:`SplitSpec.to_dict` writes it) as a spec.

    Raises
    ------
    BuildConfigError
        Not a table, an unknown key, or a value of the wrong type, naming the key.
    """
    if not isinstance(data, Mapping):
        raise BuildConfigError(f"build parameter splits: expected a table, got {data!r}")
    spec = dict(data)
    unknown = sorted(set(spec) - set(_SPLIT_KEYS))
    if unknown:
        raise BuildConfigError(
            f"build parameter splits: unknown key(s) {', '.join(map(str, unknown))}; "
            f"known: {', '.join(_SPLIT_KEYS)}"
        )
    for key in ("method", "unit", "rule"):  # descriptive, written by to_dict
        spec.pop(key, None)
    source = spec.pop("source", None)
    fractions = spec.get("fractions")
    if isinstance(fractions, Mapping):
        items = list(fractions.items())
    elif isinstance(fractions, list) and all(
        isinstance(item, list | tuple) and len(item) == 2 for item in fractions
    ):
        items = [tuple(item) for item in fractions]
    elif fractions is None and "fractions" not in spec:
        items = None
    else:
        raise BuildConfigError(
            "build parameter splits.fractions: expected a table {split: fraction} or a list "
            f"of [split, fraction] pairs, got {fractions!r}"
        )
    if items is not None:
        for name, value in items:
            check_type(f"splits.fractions.{name}", value, "float")
        spec["fractions"] = tuple((str(n), float(f)) for n, f in items)
    for key, expected in (("salt", "str"), ("default_split", "str?"), ("source", "str?")):
        if key in spec or (key == "source" and source is not None):
            check_type(f"splits.{key}", source if key == "source" else spec[key], expected)
    lists = spec.get("lists")
    if lists is not None:
        if not isinstance(lists, Mapping):
            raise BuildConfigError(
                f"build parameter splits.lists: expected a table {{split: [scene, ...]}}, "
                f"got {lists!r}"
            )
        for name, scenes in lists.items():
            check_type(f"splits.lists.{name}", scenes, "str-list")
    try:
        return SplitSpec(**spec, lists_source=source)
    except (TypeError, ValueError) as exc:
        raise BuildConfigError(f"build parameter splits: {exc}") from None


def group_regex(pattern: str | None) -> re.Pattern[str]:
    """The compiled ``group_pattern`` (``None``: :data:`DEFAULT_GROUP_PATTERN`).

    Raises
    ------
    BuildConfigError
        Not a regular expression, or one without a named group ``scene``.
    """
    text = DEFAULT_GROUP_PATTERN if pattern is None else pattern
    try:
        regex = re.compile(text)
    except re.error as exc:
        raise BuildConfigError(
            f"group pattern {text!r} is not a regular expression: {exc}"
        ) from None
    if "scene" not in regex.groupindex:
        raise BuildConfigError(
            f"group pattern {text!r} has no named group 'scene': write it as "
            r"'(?P<scene>...)', e.g. '(?P<scene>.+)_(?P<tag>[^_]+)\.\w+'"
        )
    return regex


def load_build_config(path: str | Path) -> dict[str, Any]:
    """Read a JSON or TOML file of build parameters (as accepted by :meth:`from_dict`)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
        data = tomllib.loads(text) if file.suffix.lower() == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BuildConfigError(f"{file}: cannot read build config: {exc}") from None
    if not isinstance(data, dict):
        raise BuildConfigError(f"{file}: a build config is a table/object of parameters")
    return data
